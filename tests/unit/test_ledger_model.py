"""Bead IDs, status rules, ready work and cycle refusal: the pure parts of the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gastown.ledger import Bead, Dependency, DepType, InvalidOperation, NotFound, Status, ready
from gastown.ledger.ids import MAX_LEN, child_id, id_length, new_id
from gastown.ledger.model import TRANSITIONS, check_transition
from gastown.ledger.ops import AddDep, Close, Create, RemoveDep, Reopen, Tx, Update

from ledgermem import MemSnapshot

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bead(bead_id, status=Status.OPEN, priority=2, deps=(), age=0):
    return Bead(id=bead_id, title=bead_id, status=status, priority=priority, created_by="t",
                created_at=T0 + timedelta(seconds=age), updated_at=T0,
                dependencies=[Dependency(id=d, type=t) for d, t in deps])


def tx_of(*beads):
    return Tx(MemSnapshot("c0", {b.id: b for b in beads}), T0)


def test_id_length_grows_with_the_ledger():
    assert id_length(0) == 3
    assert id_length(10) == 3
    assert id_length(100) == 4
    assert id_length(1000) == 5
    assert id_length(10_000) == 7
    assert id_length(10**9) == MAX_LEN
    lengths = [id_length(n) for n in range(0, 50_000, 97)]
    assert lengths == sorted(lengths)


def test_new_id_is_deterministic_and_avoids_collisions():
    first = new_id("gt", "seed", set(), 0)
    assert first.startswith("gt-") and len(first) == 3 + 3
    assert new_id("gt", "seed", set(), 0) == first
    second = new_id("gt", "seed", {first}, 0)
    assert second != first and len(second) == len(first) + 1


def test_child_ids_count_up():
    assert child_id("gt-abc", set()) == "gt-abc.1"
    assert child_id("gt-abc", {"gt-abc.1", "gt-abc.2"}) == "gt-abc.3"


@pytest.mark.parametrize("old", list(Status))
def test_transition_table(old):
    for new in Status:
        if new == old or new in TRANSITIONS[old]:
            check_transition("gt-x", old, new)
        else:
            with pytest.raises(InvalidOperation, match=f"cannot go from {old} to {new}"):
                check_transition("gt-x", old, new)


def test_closed_only_reopens():
    with pytest.raises(InvalidOperation, match="reopen it first"):
        check_transition("gt-x", Status.CLOSED, Status.IN_PROGRESS)


def test_ready_work_respects_blocks_priority_and_age():
    beads = {b.id: b for b in [
        bead("gt-aaa", priority=2, age=1),
        bead("gt-bbb", priority=1, age=2),
        bead("gt-ccc", deps=[("gt-aaa", DepType.BLOCKS)]),
        bead("gt-ddd", deps=[("gt-eee", DepType.BLOCKS)]),
        bead("gt-eee", status=Status.CLOSED),
        bead("gt-fff", status=Status.IN_PROGRESS),
        bead("gt-ggg", deps=[("gt-aaa", DepType.DISCOVERED_FROM)], age=3),
        bead("gt-hhh", deps=[("gt-gone", DepType.BLOCKS)]),
    ]}
    assert [b.id for b in ready(beads)] == ["gt-bbb", "gt-ddd", "gt-aaa", "gt-ggg"]


def test_dependency_cycles_are_refused_with_the_path():
    tx = tx_of(bead("gt-aaa", deps=[("gt-bbb", DepType.BLOCKS)]), bead("gt-bbb", deps=[("gt-ccc", DepType.PARENT_CHILD)]),
               bead("gt-ccc"))
    with pytest.raises(InvalidOperation, match="dependency cycle gt-ccc -> gt-aaa -> gt-bbb -> gt-ccc"):
        AddDep("gt-ccc", "t", "gt-aaa").apply(tx)
    assert tx.changes == {}
    AddDep("gt-ccc", "t", "gt-aaa", DepType.TRACKS).apply(tx)  # tracks does not order work
    with pytest.raises(InvalidOperation, match="cannot depend on itself"):
        AddDep("gt-aaa", "t", "gt-aaa").apply(tx)
    with pytest.raises(NotFound):
        AddDep("gt-aaa", "t", "gt-zzz").apply(tx)


def test_operations_record_what_changed():
    tx = tx_of(bead("gt-aaa"))
    Update("gt-aaa", "polecat furiosa", status=Status.IN_PROGRESS, fields={"assignee": "furiosa"}).apply(tx)
    Close("gt-aaa", "polecat furiosa", "merged").apply(tx)
    assert tx.lines == ["bead gt-aaa: open -> in_progress; set assignee (polecat furiosa)",
                        "bead gt-aaa: in_progress -> closed: merged (polecat furiosa)"]
    closed = tx.get("gt-aaa")
    assert closed.closed_at == T0 and closed.close_reason == "merged"
    with pytest.raises(InvalidOperation, match="already closed"):
        Close("gt-aaa", "t").apply(tx)
    reopened = Reopen("gt-aaa", "t", "not really").apply(tx)
    assert reopened.status == Status.OPEN and reopened.closed_at is None
    assert reopened.comments[-1].text == "reopened: not really"
    with pytest.raises(InvalidOperation, match="not closed"):
        Reopen("gt-aaa", "t").apply(tx)


def test_update_is_a_no_op_when_nothing_changes():
    tx = tx_of(bead("gt-aaa"))
    Update("gt-aaa", "t", fields={"title": "gt-aaa"}).apply(tx)
    assert tx.lines == [] and tx.changes == {}


def test_update_refuses_bad_values_and_fields():
    tx = tx_of(bead("gt-aaa"))
    with pytest.raises(InvalidOperation, match="priority"):
        Update("gt-aaa", "t", fields={"priority": 9}).apply(tx)
    with pytest.raises(InvalidOperation, match="cannot update id"):
        Update("gt-aaa", "t", fields={"id": "gt-bbb"}).apply(tx)
    with pytest.raises(InvalidOperation, match="is open, expected blocked"):
        Update("gt-aaa", "t", status=Status.HOOKED, expect_status=frozenset({Status.BLOCKED})).apply(tx)


def test_create_children_and_remove_deps():
    tx = tx_of(bead("gt-aaa"))
    child = Create("step one", "t", seed="s", parent="gt-aaa").apply(tx)
    assert child.id == "gt-aaa.1" and child.deps(DepType.PARENT_CHILD) == ["gt-aaa"]
    assert Create("step two", "t", seed="s2", parent="gt-aaa").apply(tx).id == "gt-aaa.2"
    RemoveDep("gt-aaa.1", "t", "gt-aaa").apply(tx)
    assert tx.get("gt-aaa.1").dependencies == []
    with pytest.raises(InvalidOperation, match="does not depend"):
        RemoveDep("gt-aaa.1", "t", "gt-aaa").apply(tx)
    with pytest.raises(InvalidOperation, match="bad bead: title"):
        Create("", "t", seed="s3").apply(tx)
