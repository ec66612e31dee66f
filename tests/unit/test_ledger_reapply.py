"""Property: whatever races and lost answers happen, every operation lands exactly once."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from gastown.ledger.model import Bead
from gastown.ledger.ops import AddComment, Create, Tx
from gastown.ledger.writer import Pending, commit_batch

from ledgermem import MemStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHARED = "gt-aaa"


def seed_store() -> MemStore:
    store = MemStore()
    root = Bead(id=SHARED, title="shared", created_by="t", created_at=NOW, updated_at=NOW)
    store.commits["c-root"] = (None, {SHARED: root}, "root")
    store.tip = "c-root"
    return store


def op_for(writer: int, i: int):
    if i % 2:
        return Create(title=f"w{writer}-{i}", actor=f"w{writer}", seed=f"w{writer}-{i}")
    return AddComment(SHARED, f"w{writer}", f"w{writer}-{i}")


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=4), min_size=1, max_size=6),
    events=st.lists(st.sampled_from(["ok", "ok", "race", "lost-ack", "lost-push"]), max_size=40),
)
def test_every_operation_lands_exactly_once(batches, events):
    store = seed_store()
    script = iter(events)
    counters = [0, 0, 0, 0]
    expected: list[str] = []

    def next_op(writer: int):
        counters[writer] += 1
        op = op_for(writer, counters[writer])
        expected.append(f"w{writer}-{counters[writer]}")
        return op

    def interfere(s: MemStore) -> str:
        event = next(script, "ok")
        if event == "race":  # another writer commits first, straight on the remote tip
            tx = Tx(s.snapshot(s.tip), NOW)
            next_op(3).apply(tx)
            parent = s.tip
            s.tip = f"r{len(s.commits)}"
            s.commits[s.tip] = (parent, {**s.snapshot(parent).beads, **tx.changes}, "race")
            return "ok"
        return event

    store.interfere = interfere
    tip = store.tip
    for writers in batches:
        batch = [Pending(next_op(w)) for w in writers]
        tip = commit_batch(store, tip, batch, signature=str, now=lambda: NOW, backoff=lambda _: None)
        for p in batch:
            p.future.result(0)  # every future resolved, none failed

    final = store.snapshot(store.tip).beads
    comments = [c.text for c in final[SHARED].comments]
    titles = [b.title for b in final.values() if b.id != SHARED]
    landed = comments + titles
    assert sorted(landed) == sorted(expected), "an operation was lost or applied twice"
    assert len(set(landed)) == len(landed)
    for w in range(4):  # one writer's operations keep their order
        mine = [c for c in comments if c.startswith(f"w{w}-")]
        assert mine == sorted(mine, key=lambda t: int(t.split("-")[1]))
