"""The machine's group committer for one ledger cache: ``python -m gastown.ledger.committer``.

Started detached by a process handing a write off (``handoff.py``), holding the committer lock
that process took for it. It listens on the spool's ``wake`` FIFO, and at each nudge takes a
turn of the writer lock like any writer of the machine: every spooled write in one commit and
one push, each outcome to its own process (``Ledger.commit_spooled``). After ``LINGER_SECONDS``
without a nudge it stops listening, takes a last turn (for a write spooled as it stopped) and
exits. Killed at any point, it loses nothing: the spool and its journal are on disk.
"""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

from .handoff import WAKE, spool_dir

LINGER_SECONDS = 5.0


def serve(remote: str, cache: Path, git_timeout: float, linger: float = LINGER_SECONDS) -> None:
    spool = spool_dir(cache)
    fifo = spool / WAKE
    if not fifo.exists():
        try:
            os.mkfifo(fifo, 0o600)
        except FileExistsError:
            pass
    listen = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a writer of our own: no end-of-file between nudges
    from .errors import LedgerError
    from .gitstore import set_git_timeout  # the heavy part, once a waiting process can reach us
    from .ledger import Ledger
    from .spool import Spool

    set_git_timeout(git_timeout)
    try:
        ledger = Ledger(remote, cache_dir=cache, actor="gastown committer")
    except LedgerError as e:  # the cache cannot be made: the waiting processes hear why
        Spool(cache).refuse(e)
        os.close(listen)
        os.close(keep)
        return
    with ledger:
        try:
            while True:
                nudged = select.select([listen], [], [], linger)[0]
                if nudged:
                    _drain(listen)
                if not ledger.commit_spooled() and not nudged:
                    break
        finally:
            os.close(listen)  # from here a waiting process starts another committer
            os.close(keep)
        ledger.commit_spooled()  # what was spooled as it stopped listening


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def main(argv: list[str]) -> None:
    remote, cache, lock_fd, git_timeout = argv
    os.set_inheritable(int(lock_fd), False)  # held (flock) until this process exits
    serve(remote, Path(cache), float(git_timeout))


if __name__ == "__main__":
    main(sys.argv[1:])
