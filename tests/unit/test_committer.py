"""The machine's committer waits for company as group commit does, sized by its last turn
(ledger/committer.py ``_gather``): real spool files, a real FIFO, real threads writing."""

from __future__ import annotations

import os
import threading
import time

import pytest

from gastown.ledger.committer import _gather
from gastown.ledger.handoff import WAKE, Create, new_key, wake, write_file
from gastown.ledger.spool import Spool

LONG = 60.0  # a patience no test reaches unless the wait is broken


@pytest.fixture
def spool(tmp_path):
    spool = Spool(tmp_path)
    os.mkfifo(spool.dir / WAKE, 0o600)
    listen = os.open(spool.dir / WAKE, os.O_RDONLY | os.O_NONBLOCK)
    keep = os.open(spool.dir / WAKE, os.O_WRONLY | os.O_NONBLOCK)
    yield spool, listen
    os.close(listen)
    os.close(keep)


def spool_later(spool: Spool, writes: int, after: float) -> threading.Thread:
    """``writes`` creates spooled by their processes ``after`` seconds from now, each nudging."""
    def run():
        time.sleep(after)
        for n in range(writes):
            write_file(spool.dir / f"{new_key()}.op", Create("ann", f"write {n}", "seed").plain())
            wake(str(spool.dir))
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_turn_after_several_writes_waits_until_as_many_are_spooled(spool):
    spool, listen = spool
    writer = spool_later(spool, 3, after=0.2)
    start = time.monotonic()
    _gather(listen, spool, 3, LONG)
    assert spool.waiting() == 3
    assert time.monotonic() - start < LONG / 2
    writer.join()


def test_the_wait_ends_at_its_patience_with_what_came(spool):
    spool, listen = spool
    spool_later(spool, 2, after=0.0).join()
    start = time.monotonic()
    _gather(listen, spool, 5, 0.3)
    assert time.monotonic() - start >= 0.3
    assert spool.waiting() == 2


@pytest.mark.parametrize("last_turn", [0, 1], ids=["nothing", "one write"])
def test_after_a_lone_write_the_next_goes_at_once(spool, last_turn):
    """A writer alone never waits: a single `gt bead create` is as fast as without the wait."""
    spool, listen = spool
    spool_later(spool, 1, after=0.0).join()
    start = time.monotonic()
    _gather(listen, spool, last_turn, LONG)
    assert time.monotonic() - start < LONG / 2


def test_an_answered_write_is_not_counted(spool):
    spool, listen = spool
    spool_later(spool, 2, after=0.0).join()
    answered = sorted(spool.dir.glob("*.op"))[0]
    answered.with_suffix(".done").write_bytes(b"")
    assert spool.waiting() == 1
