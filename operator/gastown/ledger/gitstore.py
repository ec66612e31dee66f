"""The ledger's git plumbing: a bare cache repository next to the remote, no work tree.

Objects are written straight into the cache's object store (the loose-object format is a
zlib-compressed "<type> <size>\\0<data>" named by its SHA-1); objects are read through one
persistent ``git cat-file --batch`` (GitPython); fetch, push and ls-remote are the git CLI,
always as argv lists, never a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import subprocess
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import git
from git.objects.fun import tree_entries_from_data, tree_to_stream

from .errors import CorruptRecord, Unavailable, UnknownOutcome
from .model import Bead, bead_path

LEDGER_BRANCH = "gastown/ledger"
LEDGER_REF = f"refs/heads/{LEDGER_BRANCH}"
CACHE_REF = "refs/gastown/remote"
CLAIM_REF = "refs/gastown/driver"  # who drives the ledger (ledger/claim.py)
CONFIG_FILE = "ledger.json"
ARCHIVE_DIR = "archive"  # compacted records: kept, read on demand, never loaded with the live ones
FORMAT = 1
_timeout = {"git": 120.0}  # seconds one git command may take: Settings.git_timeout, set at start-up


def set_git_timeout(seconds: float) -> None:
    """Called once at start-up with the process's Settings.git_timeout."""
    _timeout["git"] = seconds


def git_timeout() -> float:
    return _timeout["git"]

_FILE, _TREE = 0o100644, 0o040000
# git's words for a lost race: another writer moved the ref, or holds its lock right now
_LOST_RACE = ("non-fast-forward", "fetch first", "stale info", "failed to update ref", "failed to lock", "cannot lock")


class GitTimeout(Unavailable):
    """A git command did not finish in time; for a push, it may or may not have landed."""


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS=env.get("GIT_ASKPASS", "true"), LC_ALL="C")
    return env


def run_git(args: list[str], cwd: Path | None = None, input: bytes | None = None,
            timeout: float | None = None, check: bool = True,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    timeout = git_timeout() if timeout is None else timeout
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True,
                              timeout=timeout, env={**git_env(), **(env or {})})
    except subprocess.TimeoutExpired as e:
        raise GitTimeout(f"git {args[0]} timed out after {timeout:.0f}s") from e
    if check and proc.returncode != 0:
        raise Unavailable(f"git {args[0]} failed: {_first_line(proc.stderr)}")
    return proc


def _first_line(raw: bytes) -> str:
    lines = [ln.strip() for ln in raw.decode(errors="replace").splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:", "remote:"))]
    return (fatal or lines or ["no error message"])[0]


def normalise_remote(remote: str) -> str:
    """Absolute path for a local repository; URLs as they are."""
    if "://" in remote or (":" in remote and "@" in remote.split(":", 1)[0]):
        return remote
    return str(Path(remote).expanduser().resolve())


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

    def __init__(self, store: GitStore, commit: str | None, prefix: str, blobs: Mapping[str, bytes],
                 archive: Mapping[str, bytes] | None = None):
        self.store, self.commit, self.prefix = store, commit, prefix
        self.blobs = dict(blobs)  # bead id -> binary sha of its record
        self.archive = dict(archive or {})  # the same, for beads compacted out of the live ledger
        self.corrupt: list[CorruptRecord] = []

    def ids(self) -> Iterator[str]:
        return iter(self.blobs)

    def archived(self) -> Iterator[str]:
        return iter(self.archive)

    def get_archived(self, bead_id: str) -> Bead | None:
        sha = self.archive.get(bead_id)
        return None if sha is None else self.store.bead(sha, f"{ARCHIVE_DIR}/{bead_id}.json", self.commit or "")

    def __contains__(self, bead_id: str) -> bool:
        return bead_id in self.blobs

    def __len__(self) -> int:
        return len(self.blobs)

    def get(self, bead_id: str) -> Bead | None:
        sha = self.blobs.get(bead_id)
        return None if sha is None else self.store.bead(sha, bead_path(bead_id), self.commit or "")

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
        self._repo = git.Repo(self.cache)
        self._read_lock = threading.Lock()
        self._beads: OrderedDict[bytes, Bead] = OrderedDict()
        self._snapshots: OrderedDict[str | None, GitSnapshot] = OrderedDict()
        self._config_blob: bytes | None = None
        self.claim_seen: str | None = None  # the driver claim's commit, as the last ls-remote saw it

    # --- cache repository ----------------------------------------------------------

    def _ensure_cache(self) -> None:
        if (self.cache / "objects").is_dir():
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        with self.locked():
            if not (self.cache / "objects").is_dir():
                run_git(["init", "--quiet", "--bare", str(self.cache)])
                run_git(["config", "gc.auto", "0"], cwd=self.cache)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise ref updates in a cache shared by several processes."""
        with open(self.cache / "gastown.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def close(self) -> None:
        self._repo.close()

    # --- remote ---------------------------------------------------------------------

    def remote_tip(self) -> str | None:
        """The remote ledger tip, asked of the remote (one round trip, no objects moved); the
        driver claim's commit is read in the same round trip (``claim_seen``)."""
        proc = run_git(["ls-remote", "--", self.remote, LEDGER_REF, CLAIM_REF], cwd=self.cache, check=False,
                       env=self.env)
        if proc.returncode != 0:
            raise Unavailable(f"cannot reach the rig repository {self.remote}: {_first_line(proc.stderr)}")
        refs = {ref: sha for sha, ref in (ln.split("\t", 1) for ln in proc.stdout.decode().splitlines() if "\t" in ln)}
        self.claim_seen = refs.get(CLAIM_REF)
        return refs.get(LEDGER_REF)

    def has(self, commit: str) -> bool:
        return run_git(["cat-file", "-e", f"{commit}^{{commit}}"], cwd=self.cache, check=False).returncode == 0

    def ensure(self, commit: str) -> str | None:
        """Make sure ``commit`` and everything it reaches is in the cache; fetch only when it is not.

        The check holds the cache lock: a fetch under way writes the commit before its trees and
        blobs, so a commit seen outside the lock may still be missing its records.
        """
        with self.locked():
            if self.has(commit):
                return commit
            return self._fetch()

    def fetch(self) -> str | None:
        """Bring the remote ledger into the cache; return its tip (None: no ledger yet)."""
        with self.locked():
            return self._fetch()

    def _fetch(self) -> str | None:
        proc = run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.remote,
                        f"+{LEDGER_REF}:{CACHE_REF}"], cwd=self.cache, check=False, env=self.env)
        if proc.returncode != 0:
            if b"couldn't find remote ref" in proc.stderr:
                return None
            raise Unavailable(f"cannot fetch the ledger from {self.remote}: {_first_line(proc.stderr)}")
        return run_git(["rev-parse", CACHE_REF], cwd=self.cache).stdout.decode().strip()

    def push(self, commit: str) -> bool:
        """Compare-and-swap: True when the remote took ``commit``, False when its tip moved.

        ``commit`` has the tip it was built on as its parent, so the remote refuses it
        (non-fast-forward) exactly when another writer got there first.
        """
        try:
            proc = run_git(["push", "--porcelain", "--quiet", self.remote, f"{commit}:{LEDGER_REF}"],
                           cwd=self.cache, check=False, env=self.env)
        except GitTimeout as e:
            raise UnknownOutcome(str(e)) from e
        status = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if "\t" in ln]
        if proc.returncode == 0:
            return True
        if status and status[0].startswith("!"):
            summary = status[0].rsplit("\t", 1)[-1]
            if any(w in summary for w in _LOST_RACE):
                return False
            raise Unavailable(f"the remote refused the ledger update: {summary}")
        raise Unavailable(f"cannot push the ledger to {self.remote}: {_first_line(proc.stderr)}")

    def swap_ref(self, ref: str, commit: str | None, expected: str | None) -> bool:
        """Compare-and-swap ``ref`` on the remote, from ``expected`` (None: absent) to ``commit``
        (None: delete it); False when the ref was not at ``expected``."""
        try:
            proc = run_git(["push", "--porcelain", "--quiet", f"--force-with-lease={ref}:{expected or ''}", self.remote,
                            f"{commit or ''}:{ref}"], cwd=self.cache, check=False, env=self.env)
        except GitTimeout as e:
            raise UnknownOutcome(str(e)) from e
        if proc.returncode == 0:
            return True
        status = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if "\t" in ln]
        if status and status[0].startswith("!") and any(w in status[0] for w in _LOST_RACE):
            return False
        raise Unavailable(f"cannot push {ref} to {self.remote}: "
                          f"{status[0].rsplit(chr(9), 1)[-1] if status else _first_line(proc.stderr)}")

    def is_ancestor(self, commit: str, tip: str) -> bool:
        return run_git(["merge-base", "--is-ancestor", commit, tip], cwd=self.cache,
                       check=False).returncode == 0

    # --- objects ------------------------------------------------------------------------

    def write_object(self, kind: str, data: bytes) -> bytes:
        raw = f"{kind} {len(data)}\0".encode() + data
        sha = hashlib.sha1(raw).digest()  # noqa: S324 (git's object names are SHA-1)
        hexsha = sha.hex()
        path = self.cache / "objects" / hexsha[:2] / hexsha[2:]
        if path.exists():
            os.utime(path)  # freshened, as git does: `git gc` may prune an old unreferenced one meanwhile
        else:
            path.parent.mkdir(exist_ok=True)
            tmp = path.parent / f".tmp-{os.getpid()}-{threading.get_ident()}-{hexsha[2:10]}"
            tmp.write_bytes(zlib.compress(raw, 1))
            os.replace(tmp, path)
        return sha

    def read_object(self, sha: bytes) -> bytes:
        with self._read_lock:
            return self._repo.odb.stream(sha).read()

    def _tree(self, sha: bytes) -> dict[str, tuple[bytes, int]]:
        return {name: (bsha, mode) for bsha, mode, name in tree_entries_from_data(self.read_object(sha))}

    def _write_tree(self, entries: Mapping[str, tuple[bytes, int]]) -> bytes:
        # git orders tree entries by name, directories compared as if they ended in '/'
        ordered = sorted(entries.items(), key=lambda kv: kv[0] + ("/" if kv[1][1] == _TREE else ""))
        buf = io.BytesIO()
        tree_to_stream([(sha, mode, name) for name, (sha, mode) in ordered], buf.write)
        return self.write_object("tree", buf.getvalue())

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
            root = self._tree(root_sha)
            prefix = self.default_prefix
            if CONFIG_FILE in root:
                try:
                    prefix = json.loads(self.read_object(root[CONFIG_FILE][0]))["prefix"]
                except (ValueError, KeyError) as e:
                    raise CorruptRecord(CONFIG_FILE, commit, str(e)) from None
            blobs, archive = self._records(root, "beads"), self._records(root, ARCHIVE_DIR)
            snap = GitSnapshot(self, commit, prefix, blobs, archive)
        self._remember(self._snapshots, commit, snap, 8)
        return snap

    def _records(self, root: Mapping[str, tuple[bytes, int]], directory: str) -> dict[str, bytes]:
        if directory not in root:
            return {}
        return {name[:-5]: sha for name, (sha, _mode) in self._tree(root[directory][0]).items()
                if name.endswith(".json")}

    def write_commit(self, base: GitSnapshot, changes: Mapping[str, Bead], message: str,
                     author: Signature, when: float | None = None, archive: Iterable[str] = ()) -> str:
        """Build a commit on ``base`` with ``changes`` (bead id -> new record) and the beads
        ``archive`` moved to the archive; return its sha."""
        blobs, archived = dict(base.blobs), dict(base.archive)
        for bead_id in archive:
            archived[bead_id] = blobs.pop(bead_id)
        fresh: dict[bytes, Bead] = {}
        for bead_id, bead in changes.items():
            sha = self.write_object("blob", bead.to_json())
            blobs[bead_id] = sha
            archived.pop(bead_id, None)
            fresh[sha] = bead
        config = json.dumps({"format": FORMAT, "prefix": base.prefix}, sort_keys=True).encode() + b"\n"
        entries = {"beads": (self._write_tree({f"{i}.json": (s, _FILE) for i, s in blobs.items()}), _TREE),
                   CONFIG_FILE: (self.write_object("blob", config), _FILE)}
        if archived:
            entries[ARCHIVE_DIR] = (self._write_tree({f"{i}.json": (s, _FILE) for i, s in archived.items()}), _TREE)
        root = self._write_tree(entries)
        commit = self.commit_tree(root.hex(), [base.commit] if base.commit else [], message, author, when)
        for sha, bead in fresh.items():
            self._remember(self._beads, sha, bead, 200_000)
        self._remember(self._snapshots, commit, GitSnapshot(self, commit, base.prefix, blobs, archived), 8)
        return commit

    def commit_tree(self, tree: str, parents: list[str], message: str, author: Signature,
                    when: float | None = None) -> str:
        """Write a commit object for ``tree`` with ``parents``; return its sha."""
        when = time.time() if when is None else when
        lines = [f"tree {tree}", *(f"parent {p}" for p in parents),
                 f"author {author.line(when)}", f"committer {author.line(when)}", "", message]
        return self.write_object("commit", ("\n".join(lines).rstrip("\n") + "\n").encode()).hex()

    # --- history ------------------------------------------------------------------------------

    def last_commit_touching(self, tip: str, path: str) -> str | None:
        proc = run_git(["log", "-1", "--format=%H", tip, "--", path], cwd=self.cache, check=False)
        return proc.stdout.decode().strip() or None

    def log(self, tip: str, *paths: str) -> list[dict]:
        """Commits reachable from ``tip`` (touching any of ``paths``), newest first."""
        args = ["log", "--format=%H%x1f%an%x1f%aI%x1f%B%x1e", tip]
        if paths:
            args += ["--", *paths]
        out = run_git(args, cwd=self.cache).stdout.decode(errors="replace")
        entries = []
        for chunk in out.split("\x1e"):
            chunk = chunk.strip("\n")
            if not chunk:
                continue
            sha, author, date, body = chunk.split("\x1f", 3)
            entries.append({"commit": sha, "author": author, "date": date, "message": body.strip()})
        return entries
