"""The ledger's git plumbing: a bare cache repository next to the remote, no work tree.

Objects are written straight into the cache's object store (the loose-object format is a
zlib-compressed "<type> <size>\\0<data>" named by its SHA-1); objects are read through one
persistent ``git cat-file --batch`` (catfile.py); fetch, push and ls-remote are the git CLI,
always as argv lists, never a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .catfile import CatFile
from .errors import CorruptRecord, Unavailable, UnknownOutcome
from .gitrun import GitTimeout, first_line, git_env, git_says, run_git
from .handoff import normalise_remote
from .layout import ARCHIVE_DIR, BEADS_DIR, FORMAT, LEVELS, TREE, Config, record_path
from .model import Bead
from .ops import merged

LEDGER_BRANCH = "gastown/ledger"
LEDGER_REF = f"refs/heads/{LEDGER_BRANCH}"
CACHE_REF = "refs/gastown/remote"
WRITTEN_REF = "refs/gastown/written"  # the last tip pushed through this cache, so gc keeps it
CLAIM_REF = "refs/gastown/driver"  # who drives the ledger (ledger/claim.py)
CONFIG_FILE = "ledger.json"
# the line a commit that migrates the ledger to this release's format carries (layout.py)
MIGRATION = f"ledger: migrated to format {FORMAT} (records fanned out to beads/<h0>/<h1>/<id>.json)"
# caches have gc.auto=0 (no gc inside a fetch on the hot path): a writer starts a background
# `git gc --auto` instead, checked every PACK_CHECK_EVERY pushes of a process and at its first
PACK_LOOSE_OBJECTS, PACK_CHECK_EVERY = 2048, 16
# git's words for a lost race: another writer moved the ref, or holds its lock right now
_LOST_RACE = ("non-fast-forward", "fetch first", "stale info", "failed to update ref", "failed to lock", "cannot lock")


@dataclass(frozen=True)
class Signature:
    name: str
    email: str

    @classmethod
    def of(cls, actor: str) -> Signature:
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in actor.lower()).strip("-")
        return cls(actor.replace("<", "").replace(">", "").strip() or "gastown",
                   f"{slug or 'gastown'}@gastown.local")

    def line(self, when: float) -> str:
        return f"{self.name} <{self.email}> {int(when)} +0000"


class GitSnapshot:
    """The ledger at one commit: which beads exist, parsed lazily and cached by blob."""

    def __init__(self, store: GitStore, commit: str | None, prefix: str, blobs: Mapping[str, bytes], *,
                 archive: Mapping[str, bytes] | None = None, format: int = FORMAT,
                 dirs: Mapping[str, bytes | None] | None = None):
        self.store, self.commit, self.prefix, self.format = store, commit, prefix, format
        self.blobs = dict(blobs)  # bead id -> binary sha of its record
        self.archive = dict(archive or {})  # the same, for beads compacted out of the live ledger
        self.dirs = dict(dirs or {})  # BEADS_DIR / ARCHIVE_DIR -> its tree (absent: empty)
        self.corrupt: list[CorruptRecord] = []

    def ids(self) -> Iterator[str]:
        return iter(self.blobs)

    def archived(self) -> Iterator[str]:
        return iter(self.archive)

    def get_archived(self, bead_id: str) -> Bead | None:
        sha = self.archive.get(bead_id)
        return None if sha is None else self.store.bead(sha, record_path(ARCHIVE_DIR, bead_id, self.format),
                                                         self.commit or "")

    def __contains__(self, bead_id: str) -> bool:
        return bead_id in self.blobs

    def __len__(self) -> int:
        return len(self.blobs)

    def get(self, bead_id: str) -> Bead | None:
        sha = self.blobs.get(bead_id)
        return None if sha is None else self.store.bead(sha, record_path(BEADS_DIR, bead_id, self.format),
                                                         self.commit or "")

    def beads(self) -> dict[str, Bead]:
        """Every readable bead; unreadable ones are listed in ``corrupt``, never dropped silently."""
        out, self.corrupt = {}, []
        for bead_id in self.blobs:
            try:
                bead = self.get(bead_id)
            except CorruptRecord as e:
                self.corrupt.append(e)
                continue
            if bead is not None:
                out[bead_id] = bead
        return out


class GitStore:
    """A remote ledger branch seen through a local bare cache repository."""

    def __init__(self, remote: str, cache_dir: Path, default_prefix: str = "gt",
                 env: Mapping[str, str] | None = None):
        self.remote = normalise_remote(remote)
        self.cache = Path(cache_dir)
        self.default_prefix = default_prefix
        self.env = dict(env or {})  # credentials for the remote, for the commands that reach it
        self._ensure_cache()
        self._objects = CatFile(self.cache, git_env(self.cache))
        self._beads: OrderedDict[bytes, Bead] = OrderedDict()
        self._snapshots: OrderedDict[str | None, GitSnapshot] = OrderedDict()
        self.trees = layout.Trees(self.read_object, self.write_object)
        self._config_blobs: dict[str, bytes] = {}  # prefix -> this release's ledger.json blob
        self._pushes = 0
        self.claim_seen: str | None = None  # the driver claim's commit, as the last ls-remote saw it
        self._whole: str | None = None  # a commit known to be in the cache with all it reaches (``ensure``)

    # --- cache repository ----------------------------------------------------------

    def _ensure_cache(self) -> None:
        if (self.cache / "objects").is_dir():
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        with self.locked():
            if not (self.cache / "objects").is_dir():
                run_git(["init", "--quiet", "--bare", str(self.cache)])
                run_git(["config", "gc.auto", "0"], repo=self.cache)

    @contextlib.contextmanager
    def locked(self, name: str = "gastown.lock") -> Iterator[None]:
        """Serialise ref updates in a cache shared by several processes."""
        with open(self.cache / name, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def writing(self, done: Callable[[], bool] = lambda: False) -> Iterator[bool]:
        """One writer at a time among the processes sharing this cache (the CLI's, on one machine):
        they take turns instead of racing each other's pushes, and the holder commits the writes
        every process spooled meanwhile (spool.py). Yields True with the lock held (its file then
        names the holder's pid), or False once ``done()`` says another process did this one's
        writes while it waited (asked between short polls of the lock)."""
        with open(self.cache / "gastown.write.lock", "a+b") as fh:
            pause = 0.001
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if done():
                        yield False
                        return
                    time.sleep(pause)
                    pause = min(pause * 1.5, 0.02)
            try:
                fh.truncate(0)
                fh.write(f"{os.getpid()}\n".encode())
                fh.flush()
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def written_tip(self) -> str | None:
        """The tip the last writer through this cache pushed (whichever process it was)."""
        try:
            tip, remote = (self.cache / "gastown.tip").read_text().split("\t", 1)
        except (FileNotFoundError, ValueError):
            return None
        return tip if remote.strip() == self.remote else None

    def wrote(self, tip: str) -> None:
        """Called with the tip just pushed, inside ``writing``: the next writer builds on it."""
        for path, text in ((self.cache / "gastown.tip", f"{tip}\t{self.remote}\n"),
                           (self.cache / WRITTEN_REF, f"{tip}\n")):  # the ref: what gc must keep
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.{os.getpid()}"
            tmp.write_text(text)
            os.replace(tmp, path)
        self._whole = tip
        self._pushes += 1
        if self._pushes % PACK_CHECK_EVERY == 1:
            self.pack_if_loose()

    def pack_if_loose(self) -> bool:
        """Start `git gc --auto` in the background when the cache has many loose objects (git's own
        estimate: the objects in one of its 256 directories); True when it was started."""
        try:
            sample = len(os.listdir(self.cache / "objects" / "17"))
        except FileNotFoundError:
            return False
        if sample * 256 <= PACK_LOOSE_OBJECTS:  # git packs only above gc.auto (more than 8 here of 2048)
            return False
        # its own session, not waited for: it outlives a one-shot CLI process, off the hot path
        subprocess.Popen(["git", "-c", f"gc.auto={PACK_LOOSE_OBJECTS}", "-c", "gc.autoDetach=false", "gc", "--auto",
                          "--quiet"], cwd=self.cache, env=git_env(self.cache), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        return True

    def close(self) -> None:
        self._objects.close()

    # --- remote ---------------------------------------------------------------------

    def remote_tip(self) -> str | None:
        """The remote ledger tip, asked of the remote (one round trip, no objects moved); the
        driver claim's commit is read in the same round trip (``claim_seen``)."""
        proc = run_git(["ls-remote", "--", self.remote, LEDGER_REF, CLAIM_REF], repo=self.cache, check=False,
                       env=self.env)
        if proc.returncode != 0:
            raise Unavailable(f"cannot reach the rig repository {self.remote}: {first_line(proc.stderr)}")
        refs = {ref: sha for sha, ref in (ln.split("\t", 1) for ln in proc.stdout.decode().splitlines() if "\t" in ln)}
        self.claim_seen = refs.get(CLAIM_REF)
        return refs.get(LEDGER_REF)

    def has(self, commit: str) -> bool:
        """``commit`` is in the cache. Its loose object is looked for first (what this machine's
        writers push is written loose, and so is a small fetch): no git process, where a rig
        loop's tick that finds a new tip asked `git cat-file -e` each time; a packed one, git."""
        return self._loose_commit(commit) or run_git(
            ["cat-file", "-e", f"{commit}^{{commit}}"], repo=self.cache, check=False).returncode == 0

    def _loose_commit(self, commit: str) -> bool:
        """A loose object named ``commit`` is in the cache, and it is a commit (its header says so)."""
        if len(commit) != 40 or not all(c in "0123456789abcdef" for c in commit):
            return False
        try:
            with open(self._loose(commit), "rb") as fh:
                head = zlib.decompressobj().decompress(fh.read(64), 16)
        except (OSError, zlib.error):
            return False
        return head.startswith(b"commit ")

    def _loose(self, hexsha: str) -> Path:
        """Where git keeps the loose object ``hexsha`` of the cache."""
        return self.cache / "objects" / hexsha[:2] / hexsha[2:]

    def ensure(self, commit: str) -> str | None:
        """Make sure ``commit`` and everything it reaches is in the cache; fetch only when it is not.

        The check holds the cache lock: a fetch under way writes the commit before its trees and
        blobs, so a commit seen outside the lock may still be missing its records.
        """
        if commit == self._whole:  # an idle poll: the tip it has already (a ref keeps it from gc)
            return commit
        with self.locked():
            self._whole = commit if self.has(commit) else self._fetch()
            return self._whole

    def fetch(self) -> str | None:
        """Bring the remote ledger into the cache; return its tip (None: no ledger yet)."""
        with self.locked():
            return self._fetch()

    def _fetch(self) -> str | None:
        proc = run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.remote,
                        f"+{LEDGER_REF}:{CACHE_REF}"], repo=self.cache, check=False, env=self.env)
        if proc.returncode != 0:
            if b"couldn't find remote ref" in proc.stderr:
                return None
            raise Unavailable(f"cannot fetch the ledger from {self.remote}: {first_line(proc.stderr)}")
        return run_git(["rev-parse", CACHE_REF], repo=self.cache).stdout.decode().strip()

    def push(self, commit: str) -> bool:
        """Compare-and-swap: True when the remote took ``commit``, False when its tip moved.

        ``commit`` has the tip it was built on as its parent, so the remote refuses it
        (non-fast-forward) exactly when another writer got there first.
        """
        try:
            proc = run_git(["push", "--porcelain", "--quiet", self.remote, f"{commit}:{LEDGER_REF}"],
                           repo=self.cache, check=False, env=self.env)
        except GitTimeout as e:
            raise UnknownOutcome(str(e)) from e
        status = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if "\t" in ln]
        if proc.returncode == 0:
            return True
        if status and status[0].startswith("!"):
            summary = status[0].rsplit("\t", 1)[-1]
            if any(w in summary for w in _LOST_RACE):
                return False
            said = git_says(proc.stderr.decode(errors="replace"))  # a hook's own words, when it gave any: why
            why = f"; {said.removeprefix('remote:').strip()}" if said.startswith("remote:") else ""
            raise Unavailable(f"the remote refused the ledger update: {summary}{why}")
        raise Unavailable(f"cannot push the ledger to {self.remote}: {first_line(proc.stderr)}")

    def swap_ref(self, ref: str, commit: str | None, expected: str | None) -> bool:
        """Compare-and-swap ``ref`` on the remote, from ``expected`` (None: absent) to ``commit``
        (None: delete it); False when the ref was not at ``expected``."""
        try:
            proc = run_git(["push", "--porcelain", "--quiet", f"--force-with-lease={ref}:{expected or ''}", self.remote,
                            f"{commit or ''}:{ref}"], repo=self.cache, check=False, env=self.env)
        except GitTimeout as e:
            raise UnknownOutcome(str(e)) from e
        if proc.returncode == 0:
            return True
        status = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if "\t" in ln]
        if status and status[0].startswith("!") and any(w in status[0] for w in _LOST_RACE):
            return False
        raise Unavailable(f"cannot push {ref} to {self.remote}: "
                          f"{status[0].rsplit(chr(9), 1)[-1] if status else first_line(proc.stderr)}")

    def is_ancestor(self, commit: str, tip: str) -> bool:
        return run_git(["merge-base", "--is-ancestor", commit, tip], repo=self.cache,
                       check=False).returncode == 0

    # --- objects ------------------------------------------------------------------------

    def write_object(self, kind: str, data: bytes) -> bytes:
        raw = f"{kind} {len(data)}\0".encode() + data
        sha = hashlib.sha1(raw).digest()  # noqa: S324 (git's object names are SHA-1)
        hexsha = sha.hex()
        path = self._loose(hexsha)
        if path.exists():
            os.utime(path)  # freshened, as git does: `git gc` may prune an old unreferenced one meanwhile
        else:
            path.parent.mkdir(exist_ok=True)
            tmp = path.parent / f".tmp-{os.getpid()}-{threading.get_ident()}-{hexsha[2:10]}"
            tmp.write_bytes(zlib.compress(raw, 1))
            os.replace(tmp, path)
        return sha

    def read_object(self, sha: bytes) -> bytes:
        return self._objects.read(sha)

    def bead(self, sha: bytes, path: str, commit: str) -> Bead:
        cached = self._beads.get(sha)
        if cached is not None:
            return cached
        raw = self.read_object(sha)
        try:
            bead = Bead.from_json(raw)
        except ValueError as e:
            raise CorruptRecord(path, self.last_commit_touching(commit, path) or commit,
                                str(e).splitlines()[0]) from None
        if path.rsplit("/", 1)[-1] != f"{bead.id}.json":
            raise CorruptRecord(path, commit, f"it holds bead {bead.id}")
        self._remember(self._beads, sha, bead, 200_000)
        return bead

    @staticmethod
    def _remember(cache: OrderedDict, key, value, limit: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)

    # --- snapshots and commits --------------------------------------------------------------

    def snapshot(self, commit: str | None) -> GitSnapshot:
        cached = self._snapshots.get(commit)
        if cached is not None:
            return cached
        if commit is None:
            snap = GitSnapshot(self, None, self.default_prefix, {})
        else:
            root_sha = bytes.fromhex(self.read_object(bytes.fromhex(commit)).split(b"\n", 1)[0].split()[1].decode())
            root = self.trees.entries(root_sha)
            config = Config(1, self.default_prefix)
            if CONFIG_FILE in root:
                try:
                    config = Config.from_json(self.read_object(root[CONFIG_FILE][0]))
                except ValueError as e:
                    raise CorruptRecord(CONFIG_FILE, commit, str(e)) from None
            dirs = {d: root[d][0] for d in (BEADS_DIR, ARCHIVE_DIR) if d in root and root[d][1] == TREE}
            levels = LEVELS[config.format]
            snap = GitSnapshot(self, commit, config.prefix, self.trees.records(dirs.get(BEADS_DIR), levels),
                               archive=self.trees.records(dirs.get(ARCHIVE_DIR), levels), format=config.format,
                               dirs=dirs)
        self._remember(self._snapshots, commit, snap, 8)
        return snap

    def write_commit(self, base: GitSnapshot, changes: Mapping[str, Bead], message: str,
                     author: Signature, *, when: float | None = None, archive: Iterable[str] = ()) -> str:
        """Build a commit on ``base`` with ``changes`` (bead id -> new record) and the beads
        ``archive`` moved to the archive; return its sha. Only the directories on the changed
        records' paths are written; a base in an older format is migrated in this commit."""
        live: dict[str, bytes | None] = {}
        archived: dict[str, bytes | None] = {}
        for bead_id in archive:
            archived[bead_id], live[bead_id] = base.blobs[bead_id], None
        fresh: dict[bytes, Bead] = {}
        for bead_id, bead in changes.items():
            sha = live[bead_id] = self.write_object("blob", bead.to_json())
            if bead_id in base.archive:
                archived[bead_id] = None
            fresh[sha] = bead
        blobs = merged(base.blobs, live)
        archive_blobs = merged(base.archive, archived)
        levels = LEVELS[FORMAT]
        if base.format == FORMAT:
            dirs = {BEADS_DIR: self.trees.edit(base.dirs.get(BEADS_DIR), levels, live) if live
                    else base.dirs.get(BEADS_DIR),
                    ARCHIVE_DIR: self.trees.edit(base.dirs.get(ARCHIVE_DIR), levels, archived) if archived
                    else base.dirs.get(ARCHIVE_DIR)}
        else:  # the migration: every record at its new path, once
            dirs = {BEADS_DIR: self.trees.edit(None, levels, blobs) if blobs else None,
                    ARCHIVE_DIR: self.trees.edit(None, levels, archive_blobs) if archive_blobs else None}
            if MIGRATION not in message:
                message = f"{message}\n\n{MIGRATION}"
        entries = {d: (sha, TREE) for d, sha in dirs.items() if sha is not None}
        entries[CONFIG_FILE] = (self._config_blob(base.prefix), layout.FILE)
        root = self.trees.write(entries)
        commit = self.commit_tree(root.hex(), [base.commit] if base.commit else [], message, author, when=when)
        for sha, bead in fresh.items():
            self._remember(self._beads, sha, bead, 200_000)
        self._remember(self._snapshots, commit, GitSnapshot(self, commit, base.prefix, blobs,
                                                            archive=archive_blobs, dirs=dirs), 8)
        return commit

    def _config_blob(self, prefix: str) -> bytes:
        sha = self._config_blobs.get(prefix)
        if sha is None:
            sha = self._config_blobs[prefix] = self.write_object("blob", Config(FORMAT, prefix).to_json())
        return sha

    def commit_tree(self, tree: str, parents: list[str], message: str, author: Signature, *,
                    when: float | None = None) -> str:
        """Write a commit object for ``tree`` with ``parents``; return its sha."""
        when = time.time() if when is None else when
        lines = [f"tree {tree}", *(f"parent {p}" for p in parents),
                 f"author {author.line(when)}", f"committer {author.line(when)}", "", message]
        return self.write_object("commit", ("\n".join(lines).rstrip("\n") + "\n").encode()).hex()

    # --- history ------------------------------------------------------------------------------

    def last_commit_touching(self, tip: str, path: str) -> str | None:
        proc = run_git(["log", "-1", "--format=%H", tip, "--", path], repo=self.cache, check=False)
        return proc.stdout.decode().strip() or None

    def log(self, tip: str, *paths: str) -> list[dict]:
        """Commits reachable from ``tip`` (touching any of ``paths``), newest first."""
        args = ["log", "--format=%H%x1f%an%x1f%aI%x1f%B%x1e", tip]
        if paths:
            args += ["--", *paths]
        out = run_git(args, repo=self.cache).stdout.decode(errors="replace")
        entries = []
        for chunk in out.split("\x1e"):
            chunk = chunk.strip("\n")
            if not chunk:
                continue
            sha, author, date, body = chunk.split("\x1f", 3)
            entries.append({"commit": sha, "author": author, "date": date, "message": body.strip()})
        return entries
