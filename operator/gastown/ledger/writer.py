"""The write path: apply a batch of operations on the tip, push, and on a lost race re-apply.

No write is lost: an operation is resolved only after the commit holding it is on the
remote. No write is applied twice: an operation is applied once per attempt on a fresh
transaction, and a push whose outcome is unknown is settled by asking whether the
commit reached the remote before anything is re-applied.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from .errors import Unavailable, UnknownOutcome
from .ops import Operation, Snapshot, Tx

MAX_ATTEMPTS = 200


class Store(Protocol):
    def snapshot(self, commit: str | None) -> Snapshot: ...
    def write_commit(self, base: Any, changes: dict, message: str, author: Any, *,
                     archive: set[str]) -> str: ...
    def push(self, commit: str) -> bool: ...
    def fetch(self) -> str | None: ...
    def is_ancestor(self, commit: str, tip: str) -> bool: ...


@dataclass
class Pending:
    op: Operation
    future: Future = field(default_factory=Future)
    key: str | None = None  # its name in the machine's spool (spool.py), once spooled
    owned: bool = True  # False: another process's operation, applied for it by this one


def message_for(lines: Sequence[str]) -> str:
    if len(lines) == 1:
        return lines[0]
    return f"ledger: {len(lines)} changes\n\n" + "\n".join(lines)


def author_for(batch: Sequence[Pending]) -> str:
    actors = {p.op.actor for p in batch}
    return actors.pop() if len(actors) == 1 else "gastown"


def commit_batch(store: Store, tip: str | None, batch: Sequence[Pending],
                 signature: Callable[[str], Any], *, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 backoff: Callable[[int], None] | None = None,
                 pushed: Callable[[str], None] | None = None,
                 pushing: Callable[[str, Sequence[tuple[Pending, bool, Any]]], None] | None = None) -> str | None:
    """Apply ``batch`` on ``tip`` and push; return the new tip. Resolves every future, after
    telling ``pushed`` of the new tip (so that a waiter woken by its future reads it);
    ``pushing`` hears of each commit and the outcomes it holds before it is pushed.

    An operation that fails, whatever the error, fails alone: the others go on without it."""
    backoff = backoff or _jitter
    for attempt in range(MAX_ATTEMPTS):
        tx = Tx(store.snapshot(tip), now())
        outcomes: list[tuple[Pending, bool, Any]] = []
        for p in batch:
            mark = tx.checkpoint()
            try:
                outcomes.append((p, True, p.op.apply(tx)))
            except Exception as e:  # noqa: BLE001 (its own error, never a neighbour's)
                tx.rollback(mark)
                outcomes.append((p, False, e))
        if tx.lines:
            commit = store.write_commit(tx.base, tx.changes, message_for(tx.lines),
                                        signature(author_for([o[0] for o in outcomes if o[1]])), archive=tx.archive)
            if pushing is not None:
                pushing(commit, outcomes)
            try:
                landed = store.push(commit)
            except UnknownOutcome:
                fresh = store.fetch()
                landed = fresh is not None and store.is_ancestor(commit, fresh)
            if not landed:
                tip = store.fetch()
                backoff(attempt)
                continue
            tip = commit
            if pushed is not None:
                pushed(commit)
        for p, ok, value in outcomes:
            if ok:
                p.future.set_result(value)
            else:
                p.future.set_exception(value)
        return tip
    raise Unavailable(f"the ledger moved under every one of {MAX_ATTEMPTS} attempts; try again")


def _jitter(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.2)))  # noqa: S311 (not crypto)
