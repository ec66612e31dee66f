"""The operator's /metrics, scraped over HTTP from a real operator process."""

from __future__ import annotations

import pytest

from conftest import free_port, scrape, wait_for
from rigs import make_rig


@pytest.fixture
def rig(tmp_path):
    return make_rig(tmp_path)


def test_metrics_follow_the_rigs_ledger(kubeapi, operator, rig):
    with rig.ledger() as lg:
        for title in ("Add login", "Add logout"):  # deferred: no polecat picks them up meanwhile
            lg.create(title, status="deferred")
        done = lg.create("Fix the header")
        lg.close_bead(done.id, "fixed")
    port = free_port()
    operator("--metrics-port", str(port))
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "webapp"},
                    "spec": {"gitUrl": f"file://{rig.remote}"}})
    rig_labels = (("namespace", "default"), ("rig", "webapp"))

    def beads(status):
        return scrape(port).get(("gastown_beads", tuple(sorted((*rig_labels, ("status", status))))))

    wait_for(lambda: beads("deferred") == 2.0, timeout=30, what="gastown_beads{status=deferred} == 2")
    assert beads("closed") == 1.0 and beads("in_progress") == 0.0
    metrics = scrape(port)
    assert metrics[("gastown_rig_pass_seconds_count", rig_labels)] >= 1
    assert metrics[("gastown_escalations_open", tuple(sorted((*rig_labels, ("severity", "P1")))))] == 0.0
    with rig.ledger() as lg:  # the ledger moves: the next pass moves the gauge
        lg.close_bead(next(b.id for b in lg.beads().values() if b.title == "Add login"), "done")
    wait_for(lambda: beads("closed") == 2.0, timeout=30, what="gastown_beads{status=closed} == 2")
