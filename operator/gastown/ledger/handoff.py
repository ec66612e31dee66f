"""A write handed to this machine's group committer: one short step for a `gt bead create`,
`close`, `reopen` or `comment`.

A `gt` process that only creates or changes one bead need not load the ledger (pydantic, the
git plumbing: most of its CPU) nor make a push of its own. It puts its request in the cache's spool
(``spool.py``: durable before anything else happens), nudges the machine's committer (a
``python -m gastown.ledger.committer`` process that commits every spooled write in one turn
and lingers a few seconds for more) through the spool's ``wake`` FIFO, and waits for its
outcome file. When no committer listens, the waiting process starts one, detached: it inherits
the committer lock the process took, so concurrent creates start one committer between them.

The guarantees are the spool's: a request is acknowledged only once its commit is on the
remote; a committer killed mid-batch leaves its journal and the requests, and the next holder
of the writer lock (another committer, any ledger writer of the machine) settles them.

This module is light, as is everything a handing-off process loads: the standard library's
cheapest modules only, since a `gt bead create` (``cli/entry.py``) spends most of its CPU
importing. No typing or dataclasses; no pathlib (paths are strings here), hashlib (OpenSSL),
pickle or re: together they cost a create about 20 ms of CPU, more than the interpreter's start.
A write and its outcome travel through the spool as marshal data (``Create.plain``,
``Change.plain``, ``plain_outcome``); subprocess is loaded only when a committer is started.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import marshal
import os
import sys
import time

from .. import __version__
from ..cachedir import cache_root
from . import errors
from .errors import InvalidOperation, LedgerError, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# which installation spooled an operation: only the same code applies it for another process
TAG = f"gastown {__version__} at {os.path.dirname(os.path.realpath(__file__))}"
JOURNAL = "journal"
WAKE = "wake"  # the FIFO a committer listens on (opening it for writing fails when none does)
COMMITTER_LOCK = "gastown.committer.lock"  # held by the machine's committer for this cache
CHECK_SECONDS = 0.05  # how often a waiting process makes sure a committer is there
MAX_STARTS = 10  # committers a waiting process starts before it gives up (one that cannot start at all)
_seq = itertools.count()


def default_actor() -> str:
    if actor := os.environ.get("GT_ACTOR"):
        return actor
    import getpass  # only here: most callers name their actor

    return f"user {getpass.getuser()}@{os.uname().nodename}"


def check_title(title: str) -> str:
    """A title a bead may have: not blank, no NUL byte (git, the shells and the agents choke on it)."""
    if "\0" in title:
        raise InvalidOperation(f"title {title!r}: contains a NUL byte")
    if not title.strip():
        raise InvalidOperation(f"title {title!r}: is blank")
    return title


def normalise_remote(remote: str) -> str:
    """Absolute path for a local repository; URLs as they are."""
    if "://" in remote or (":" in remote and "@" in remote.split(":", 1)[0]):
        return remote
    return os.path.realpath(os.path.expanduser(remote))


def cache_dir_for(remote: str, root: str | os.PathLike[str] | None = None) -> str:
    """Where the ledger of ``remote`` is cached: under ``ledgers/`` of the cache root."""
    return os.path.join(root or cache_root(), "ledgers", sha256_hex(normalise_remote(remote).encode())[:20])


def sha256_hex(data: bytes) -> str:
    """hashlib's SHA-256, from CPython's builtin module where there is one (hashlib falls back on
    it too): importing hashlib loads OpenSSL, about 5 ms of a create's CPU."""
    try:
        from _sha2 import sha256  # Python 3.12 and later
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.11
        except ImportError:
            from hashlib import sha256
    return sha256(data).hexdigest()


def create_seed(title: str, description: str, actor: str) -> str:
    """What a new bead's ID is made from: content, creator, time and a nonce, fixed when asked."""
    return f"{title}\0{description}\0{actor}\0{time.time_ns()}\0{os.urandom(8).hex()}"


def new_key() -> str:
    """A spooled operation's name: oldest first, and its owner's pid (spool._alive reads it)."""
    return f"{time.time_ns():020d}-{os.getpid()}-{next(_seq)}"


def write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` at once: a reader sees the whole file or none."""
    head, name = os.path.split(path)
    tmp = os.path.join(head, f"{name.split('.')[0]}.tmp-{os.getpid()}-{next(_seq)}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        _unlink(tmp)


def take_outcome(spool: str | os.PathLike[str], key: str) -> bytes | None:
    """The outcome another process left for the operation ``key``, taken (None: not yet). The
    ``.op`` goes first: once its owner has read the outcome nobody may apply it again."""
    done = os.path.join(spool, f"{key}.done")
    try:
        with open(done, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    _unlink(os.path.join(spool, f"{key}.op"))
    _unlink(done)
    return raw


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def spool_dir(cache: str | os.PathLike[str]) -> str:
    path = os.path.join(cache, "spool")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def wake(spool: str) -> bool:
    """Nudge the committer listening on the spool; False when none listens."""
    try:
        fd = os.open(os.path.join(spool, WAKE), os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    try:
        os.write(fd, b".")
    except BlockingIOError:  # its buffer is full of nudges: it has been nudged
        pass
    finally:
        os.close(fd)
    return True


class Create:
    """A bead to create, as a handing-off process spools it (``ops.Create`` needs pydantic to
    build); its outcome is the new record as JSON data, which needs nothing to read."""

    __slots__ = ("actor", "fields", "seed", "title")

    def __init__(self, actor: str, title: str, seed: str, fields: dict[str, Any] | None = None) -> None:
        self.actor, self.title, self.seed = actor, title, seed
        self.fields = fields or {}  # Ledger.create's other keywords

    def __repr__(self) -> str:
        return f"Create(actor={self.actor!r}, title={self.title!r}, seed={self.seed!r}, fields={self.fields!r})"

    def apply(self, tx: Any) -> dict[str, Any]:
        from .ledger import create_op

        bead = create_op(self.title, actor=self.actor, seed=self.seed, **self.fields).apply(tx)
        return bead.model_dump(mode="json", exclude_none=True)

    def plain(self) -> bytes:
        """What the spool holds for it (``read_plain`` reads it back)."""
        return marshal.dumps((TAG, "create", self.actor, self.title, self.seed, self.fields))


CHANGES = ("close", "reopen", "comment")  # what a Change does: ``Ledger.close_bead``, ``reopen``, ``comment``


class Change:
    """A change to one bead, as a handing-off process spools it: ``kind`` (one of CHANGES) with
    ``text`` (the reason, or the comment). Its outcome is the bead as it is then, as JSON data."""

    __slots__ = ("actor", "bead_id", "kind", "text")

    def __init__(self, kind: str, actor: str, bead_id: str, text: str) -> None:
        if kind not in CHANGES:
            raise InvalidOperation(f"{kind!r} is not a change a `gt` hands off (one of {', '.join(CHANGES)})")
        self.kind, self.actor, self.bead_id, self.text = kind, actor, bead_id, text

    def __repr__(self) -> str:
        return f"Change({self.kind!r}, actor={self.actor!r}, bead_id={self.bead_id!r}, text={self.text!r})"

    def apply(self, tx: Any) -> dict[str, Any]:
        from . import ops

        made = {"close": ops.Close, "reopen": ops.Reopen, "comment": ops.AddComment}[self.kind]
        return made(self.bead_id, self.actor, self.text).apply(tx).model_dump(mode="json", exclude_none=True)

    def plain(self) -> bytes:
        return marshal.dumps((TAG, "change", self.kind, self.actor, self.bead_id, self.text))


class Ops:
    """Operations applied together (``ops.Together``), as a process that has not loaded them spools
    them: each named by its class in this installation, ``"gastown.module:Class"``, with its fields
    (plain data). A session's wrapper books its result so (runtimes/session.py). Its outcome is the
    last operation's result as JSON data, or None. It is an operation itself: a process that has
    the ledger loaded applies it there."""

    __slots__ = ("actor", "ops")

    def __init__(self, actor: str, ops: list[tuple[str, dict[str, Any]]]) -> None:
        for name, _ in ops:
            module, _, cls = name.partition(":")
            if not module.startswith("gastown.") or not cls.isidentifier():
                raise InvalidOperation(f"{name!r} is not an operation of gastown (like 'gastown.polecats:Done')")
        self.actor, self.ops = actor, ops

    def __repr__(self) -> str:
        return f"Ops(actor={self.actor!r}, ops={self.ops!r})"

    def apply(self, tx: Any) -> dict[str, Any] | None:
        import importlib

        from .ops import Together

        made = []
        for name, fields in self.ops:
            module, _, cls = name.partition(":")
            made.append(getattr(importlib.import_module(module), cls)(**fields))
        result = Together(tuple(made), self.actor).apply(tx)
        return result.model_dump(mode="json", exclude_none=True) if result is not None else None

    def plain(self) -> bytes:
        return marshal.dumps((TAG, "ops", self.actor, self.ops))


PLAIN = (Create, Change, Ops)  # what travels through the spool as marshal data, both ways


def read_plain(data: bytes) -> Create | Change | Ops | None:
    """What ``plain()`` made, or None: another installation's, or a kind this one does not know."""
    tag, what, *fields = marshal.loads(data)
    if tag != TAG:
        return None
    made = {"create": Create, "change": Change, "ops": Ops}.get(what)
    return made(*fields) if made is not None else None


def plain_outcome(ok: bool, value: Any) -> bytes:
    """A handed-off write's outcome for its waiting process: the record (JSON data), or its
    error's class and message (``hand_off`` raises it again, a LedgerError of the same name)."""
    if ok:
        try:
            return marshal.dumps((True, value))
        except ValueError:
            value = LedgerError("this write was made, but its record could not be handed back: show the bead")
    return marshal.dumps((False, (type(value).__name__, str(value))))


def read_outcome(raw: bytes) -> tuple[bool, Any]:
    """What ``plain_outcome`` made: (True, the record) or (False, the error, raised again)."""
    ok, value = marshal.loads(raw)
    return (True, value) if ok else (False, error_named(*value))


def error_named(name: str, message: str) -> LedgerError:
    """The ledger's error class ``name`` (else LedgerError) with ``message``."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, LedgerError):
        try:
            return cls(message)
        except TypeError:  # one made of other parts (CorruptRecord): its message says it all
            pass
    return LedgerError(message)


def hand_off(remote: str, cache: str, op: Create | Change | Ops, *, git_timeout: float) -> Any:
    """Spool ``op`` for the machine's committer (started when none listens) and wait until its
    commit is on the remote; return its outcome or raise its own error (the committer's, when its
    turn failed: a git command timed out after ``git_timeout``, the remote refused). A committer
    that never answers is given up on after a turn's worth of git commands."""
    timeout = 3 * git_timeout + 10  # ls-remote, fetch, push
    spool = spool_dir(cache)
    key = new_key()
    mine = os.path.join(spool, f"{key}.op")
    write_file(mine, op.plain())
    deadline = time.monotonic() + timeout
    check = 0.0
    pause = 0.001
    starts = 0
    while True:
        raw = take_outcome(spool, key)
        if raw is not None:
            ok, value = read_outcome(raw)
            if ok:
                return value
            raise value
        now = time.monotonic()
        if now >= check:
            if not wake(spool):
                starts += start_committer(remote, cache, git_timeout)
            check = now + CHECK_SECONDS
        if now > deadline or starts > MAX_STARTS:
            _unlink(mine)  # taken back: nobody commits it later
            if take_outcome(spool, key) is None:  # unless it was done meanwhile
                raise Unavailable(f"the ledger's committer did not push this write within {timeout:.0f}s (if "
                                  "it had taken it, it may still land: list the beads before trying again)"
                                  if starts <= MAX_STARTS else
                                  f"the ledger's committer stopped {starts} times without pushing this write (nothing "
                                  f"was written): run `{sys.executable} -m gastown.ledger.committer {remote} {cache} 0 "
                                  f"{git_timeout}` to see why")
            continue
        time.sleep(pause)
        pause = min(pause * 1.5, 0.01)


def start_committer(remote: str, cache: str, git_timeout: float) -> bool:
    """Start the machine's committer for ``cache`` unless one holds its lock; True if started.
    The child inherits the lock taken here, so two processes never both start one."""
    with open(os.path.join(cache, COMMITTER_LOCK), "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # one is starting, running, or finishing its last turn
        import subprocess

        subprocess.Popen([sys.executable, "-m", "gastown.ledger.committer", remote, str(cache),  # noqa: S603
                          str(fh.fileno()), str(git_timeout)],
                         pass_fds=(fh.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    return True
