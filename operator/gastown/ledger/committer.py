"""The machine's group committer for one ledger cache: ``python -m gastown.ledger.committer``.

Started detached by a process handing a write off (``handoff.py``), holding the committer lock
that process took for it. It listens on the spool's ``wake`` FIFO, and at each nudge takes a
turn of the writer lock like any writer of the machine: every spooled write in one commit and
one push, each outcome to its own process (``Ledger.commit_spooled``); after a turn that saw
several writes, it first waits a little for as many (``_gather``). After ``LINGER_SECONDS``
without a nudge it stops listening, takes a last turn (for a write spooled as it stopped) and
exits. Killed at any point, it loses nothing: the spool and its journal are on disk.
"""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

from .handoff import WAKE, spool_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .spool import Spool

LINGER_SECONDS = 5.0
GATHER_SECONDS = 0.25  # the longest a turn waits for company


def serve(remote: str, cache: Path, git_timeout: float, linger: float = LINGER_SECONDS) -> None:
    fifo = Path(spool_dir(cache)) / WAKE
    if not fifo.exists():
        try:
            os.mkfifo(fifo, 0o600)
        except FileExistsError:
            pass
    listen = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a writer of our own: no end-of-file between nudges
    from .errors import LedgerError
    from .gitrun import set_git_timeout
    from .ledger import Ledger  # the heavy part, once a waiting process can reach us
    from .spool import Spool

    set_git_timeout(git_timeout)
    try:
        ledger = Ledger(remote, cache_dir=cache, actor="gastown committer")
    except LedgerError as e:  # the cache cannot be made: the waiting processes hear why
        Spool(cache).refuse(e)
        os.close(listen)
        os.close(keep)
        return
    spool = ledger.spool
    company, took = 0, 0.0  # the writes the last turn saw (carried, and queued behind it); its seconds
    with ledger:
        try:
            while True:
                nudged = select.select([listen], [], [], linger)[0]
                if nudged:
                    _drain(listen)
                    if spool.waiting():  # not only the nudges of processes whose writes are done
                        _gather(listen, spool, company, min(took / 2, GATHER_SECONDS))
                start = time.monotonic()
                carried = ledger.commit_spooled()
                if carried:  # (an empty turn says nothing of the writers)
                    took = time.monotonic() - start
                    company = carried + spool.waiting()
                if not carried and not nudged:
                    break
        finally:
            os.close(listen)  # from here a waiting process starts another committer
            os.close(keep)
        ledger.commit_spooled()  # what was spooled as it stopped listening


def _gather(listen: int, spool: Spool, want: int, patience: float) -> None:
    """Wait until ``want`` writes are spooled, at most ``patience`` seconds.

    Group commit's wait, sized by the last turn: ``want`` is the writes it saw, those it carried
    and those that queued behind it, and ``patience`` half its time. A push costs about the same
    for one write as for eight, and the processes of those writes are likely writing again: over
    a remote 50 ms away, 8 `gt` processes creating at once made turns of 1 and 7 writes by turns,
    the first back starting a turn alone; with the wait, turns of 8 (bench/cli_bench.py). After a
    lone write the next goes at once."""
    deadline = time.monotonic() + patience
    while spool.waiting() < want and (left := deadline - time.monotonic()) > 0:
        if select.select([listen], [], [], left)[0]:
            _drain(listen)


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
