"""Escalations: raising once, acknowledging, closing, bumping on schedule, routing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gastown import escalation as esc
from gastown.api.rig import EscalationSpec
from gastown.ledger import InvalidOperation, Status
from gastown.ledger.ops import Create, Tx

from ledgermem import MemSnapshot

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def tx():
    return Tx(MemSnapshot("c0", {}), NOW)


def test_raise_dedupes_and_checks(tx):
    bead = Create("work", "t", seed="w").apply(tx)
    first = esc.Raise("P1", "stuck", "witness", related=bead.id, source={"bead": bead.id}, dedupe="k").apply(tx)
    again = esc.Raise("P1", "stuck", "witness", related=bead.id, dedupe="k").apply(tx)
    assert again.id == first.id and sorted(first.labels) == ["P1", "escalation"] and first.priority == 1
    assert first.deps() == [bead.id]
    with pytest.raises(InvalidOperation, match="severity must be one of P0, P1, P2, P3"):
        esc.Raise("P7", "x", "t").apply(tx)


def test_bumps_once_per_period_at_most_twice(tx):
    e = esc.Raise("P3", "slow disk", "t").apply(tx)
    for hours, severity in ((3, "P3"), (4, "P2"), (5, "P2"), (8, "P1"), (20, "P1")):
        tx.now = NOW + hours * HOUR
        esc.Bump(e.id, 4 * HOUR, "deacon").apply(tx)
        assert tx.get(e.id).metadata["severity"] == severity, hours
    assert tx.get(e.id).metadata["bumps"] == 2 and tx.get(e.id).labels == ["P1", "escalation"]


def test_ack_stops_the_bumps_and_close_ends_routing(tx):
    e = esc.Raise("P2", "flaky tests", "t").apply(tx)
    esc.Ack(e.id, "user alice").apply(tx)
    tx.now = NOW + 100 * HOUR
    assert esc.upkeep(dict(tx.changes), esc.Routes(), tx.now, "deacon") == []
    acked = tx.get(e.id)
    assert acked.status == Status.IN_PROGRESS and acked.metadata["acked_by"] == "user alice"
    esc.Close(e.id, "user alice", "fixed").apply(tx)
    assert esc.Routes().pending(tx.get(e.id)) == []


def test_routes_follow_the_severity_and_are_delivered_once(tx):
    routes = esc.Routes.from_spec(EscalationSpec.model_validate(
        {"routes": {"P2": ["log"], "P1": ["webhook", "event"]}, "bumpAfterSeconds": 60}))
    e = esc.Raise("P2", "x", "t").apply(tx)
    assert routes.pending(e) == ["log"] and routes.bump_after == timedelta(seconds=60)
    esc.Delivered(e.id, "log", "t").apply(tx)
    esc.Delivered(e.id, "log", "t").apply(tx)
    assert routes.pending(tx.get(e.id)) == [] and tx.get(e.id).metadata["delivered"] == ["P2:log"]
    tx.now = NOW + timedelta(seconds=61)
    [bump] = esc.upkeep(dict(tx.changes), routes, tx.now, "deacon")
    bump.apply(tx)
    assert routes.pending(tx.get(e.id)) == ["webhook", "event"]  # a new severity is routed afresh


def test_message_is_slack_compatible(tx):
    e = esc.Raise("P0", "ledger corrupt", "t", reason="beads/gt-abc.json", source={"rig": "webapp"}).apply(tx)
    body = esc.message(e)
    assert body["text"].startswith("[P0] ledger corrupt (rig webapp)") and "beads/gt-abc.json" in body["text"]
    assert body["fields"]["severity"] == "P0" and body["fields"]["rig"] == "webapp"
