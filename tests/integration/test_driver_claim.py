"""One driver per ledger (#18): the driver claim on real git, `gt rig add` refusals, and two real
town daemons on one repository, of which only one drives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from gastown.ledger import BeadType, Ledger, Status
from gastown.ledger.gitrun import git_timeout, set_git_timeout

from conftest import GT, wait_for
from rigs import make_rig


def ledger(rig, cache: str) -> Ledger:
    return Ledger(str(rig.remote), cache_dir=rig.remote.parent / cache, actor="user tester")


class Clock:
    def __init__(self):
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_claim_is_taken_renewed_refused_released_and_taken_over_when_stale(tmp_path):
    rig = make_rig(tmp_path)
    clock = Clock()
    with ledger(rig, "a") as a, ledger(rig, "b") as b:
        tip = a.ensure()
        a.claims.clock = b.claims.clock = clock
        first = a.claims.drive("town A", 60)
        assert first.ok and first.claim.holder == "town A" and first.took_over is None

        b.refresh()
        refused = b.claims.drive("town B", 60)
        assert not refused.ok and refused.claim.holder == "town A"
        assert a.refresh() == tip  # the claim is not on the ledger branch: no reader wakes for it

        clock.now += timedelta(seconds=25)  # a third of the lease: A renews (a new commit, same holder)
        a.refresh()
        renewed = a.claims.drive("town A", 60)
        assert renewed.ok and renewed.claim.commit != first.claim.commit
        clock.now += timedelta(seconds=5)
        a.refresh()
        assert a.claims.drive("town A", 60).claim.commit == renewed.claim.commit  # no push in between

        clock.now += timedelta(seconds=61)  # A stopped renewing: its claim is stale
        b.refresh()
        taken = b.claims.drive("town B", 60)
        assert taken.ok and taken.took_over is not None and taken.took_over.holder == "town A"
        a.refresh()
        assert not a.claims.drive("town A", 60).ok  # A, back, finds B driving

        assert b.claims.release("town B")
        a.refresh()
        assert a.claims.drive("town A", 60).ok  # released: no wait for the lease


def test_of_drivers_racing_for_one_claim_exactly_one_wins(tmp_path):
    rig = make_rig(tmp_path)
    ledgers = [ledger(rig, f"cache-{i}") for i in range(6)]
    results: dict[int, bool] = {}
    barrier = threading.Barrier(len(ledgers))

    def race(i: int) -> None:
        ledgers[i].refresh()
        barrier.wait()
        results[i] = ledgers[i].claims.drive(f"driver {i}", 60).ok

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(ledgers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False] * 5 + [True]
    winner = next(i for i, ok in results.items() if ok)
    holders = {lg.claims.current().holder for lg in ledgers}
    assert holders == {f"driver {winner}"}
    for lg in ledgers:
        lg.close()


def gt(town, *args, env=None, input=None):
    return subprocess.run([GT, *args, "--town", str(town)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, input=input)


def test_a_second_rig_on_one_repository_is_refused(tmp_path):
    rig = make_rig(tmp_path)
    town = tmp_path / "town"
    assert gt(town, "rig", "add", "d1", str(rig.remote), "--runtime", "script", "--agent-arg", "true").returncode == 0
    second = gt(town, "rig", "add", "d2", str(rig.remote), "--runtime", "script", "--agent-arg", "true")
    assert second.returncode == 1 and "is the repository of rig d1 already" in second.stderr
    assert "d2" not in (town / "town.json").read_text()
    doc = (f"apiVersion: gastown.dev/v1alpha1\nkind: Rig\nmetadata: {{name: d3}}\n"
           f"spec: {{gitUrl: 'file://{rig.remote}', runtime: {{preset: script, args: ['true']}}}}\n")
    applied = gt(town, "apply", "-f", "-", input=doc)
    assert applied.returncode == 1 and "rig/d3" in applied.stderr and "rig d1" in applied.stderr


WORK = "open('DONE.md', 'w').write('done')"


def convoy(rig_name: str) -> str:
    return (f"apiVersion: gastown.dev/v1alpha1\nkind: Convoy\nmetadata: {{name: docs}}\n"
            f"spec: {{rig: {rig_name}, beads: [{{key: readme, title: Write the readme}}]}}\n")


@pytest.mark.slow
def test_two_towns_on_one_repository_one_drives_the_other_waits_then_takes_over(tmp_path):
    """Town B cannot add a rig town A drives; forced into B's town.json, B's daemon does nothing
    but say who drives it, until A stops cleanly: then B drives, and the bead merges once."""
    rig = make_rig(tmp_path)
    env = {"GT_LEASE_SECONDS": "6"}  # B asks again every second
    town_a, town_b = tmp_path / "a", tmp_path / "b"
    add = ["rig", "add", "d1", str(rig.remote), "--runtime", "script", "--agent-arg", sys.executable,
           "--agent-arg", "-c", "--agent-arg", WORK]
    assert gt(town_a, *add, env=env).returncode == 0
    assert gt(town_a, "up", env=env).returncode == 0
    try:
        with ledger(rig, "probe") as probe:
            wait_for(lambda: (c := probe.claims.current()) and f"{town_a.resolve()} rig d1" in c.holder,
                     timeout=30, what="town A to claim the ledger")
        refused = gt(town_b, *add, env=env)
        assert refused.returncode == 1 and "driven by town" in refused.stderr and str(town_a.resolve()) in refused.stderr

        town_b.mkdir(exist_ok=True)
        (town_b / "town.json").write_text((town_a / "town.json").read_text())  # by hand, past the checks
        assert gt(town_b, "up", env=env).returncode == 0
        wait_for(lambda: "is driven by town" in (town_b / "daemon.log").read_text(), timeout=30,
                 what="town B's daemon to say who drives the ledger")
        status = gt(town_b, "status").stdout
        assert "not driven by this town" in status and str(town_a.resolve()) in status
    finally:
        assert gt(town_a, "down").returncode == 0
    try:
        with ledger(rig, "probe") as probe:
            wait_for(lambda: (c := probe.claims.current()) and f"{town_b.resolve()} rig d1" in c.holder,
                     timeout=30, what="town B to take the released claim")
        assert gt(town_b, "apply", "-f", "-", input=convoy("d1")).returncode == 0

        def merged():
            with rig.ledger() as lg:
                beads = lg.beads()
            c = next((b for b in beads.values() if b.type == BeadType.CONVOY), None)
            return beads if c is not None and c.status == Status.CLOSED else None
        beads = wait_for(merged, timeout=90, what="town B to merge the convoy")
        mrs = [b for b in beads.values() if b.type == BeadType.MERGE_REQUEST]
        assert len(mrs) == 1 and mrs[0].metadata.get("merged_commit")
        assert "driven by" not in gt(town_b, "status").stdout
    finally:
        assert gt(town_b, "down").returncode == 0
    with ledger(rig, "probe") as probe:
        assert probe.claims.current() is None  # a clean stop released it


def rig_condition(kubeapi, type_):
    obj = kubeapi.get("rigs", "default", "d1") or {}
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


@pytest.mark.slow
def test_a_rig_resource_on_a_repository_a_town_drives_waits_and_says_who(tmp_path, kubeapi, operator, monkeypatch):
    rig = make_rig(tmp_path)
    monkeypatch.setenv("GT_LEASE_SECONDS", "6")
    town = tmp_path / "town"
    assert gt(town, "rig", "add", "d1", str(rig.remote), "--runtime", "script", "--agent-arg", "true").returncode == 0
    assert gt(town, "up").returncode == 0
    try:
        with ledger(rig, "probe") as probe:
            wait_for(lambda: probe.claims.current(), timeout=30, what="the town to claim the ledger")
        operator()
        kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig",
                        "metadata": {"name": "d1", "namespace": "default"},
                        "spec": {"gitUrl": f"file://{rig.remote}"}})
        waiting = wait_for(lambda: (c := rig_condition(kubeapi, "Driving")) and c["status"] == "False" and c,
                           timeout=30, what="the Rig to say another driver holds its ledger")
        assert waiting["reason"] == "LedgerClaimed" and str(town.resolve()) in waiting["message"]
        # the Event is posted by kopf's event queue, a moment after the condition
        wait_for(lambda: any(e["reason"] == "LedgerClaimed" for e in kubeapi.events("default")), timeout=10,
                 what="a LedgerClaimed Event")
    finally:
        assert gt(town, "down").returncode == 0
    wait_for(lambda: (c := rig_condition(kubeapi, "Driving")) and c["status"] == "True", timeout=30,
             what="the operator to drive the ledger once the town let it go")
    with ledger(rig, "probe") as probe:
        assert "operator rig default/d1" in probe.claims.current().holder


def test_a_towns_settings_reach_its_daemon_and_a_bad_one_starts_nothing(tmp_path):
    rig = make_rig(tmp_path)
    town = tmp_path / "town"
    assert gt(town, "rig", "add", "d1", str(rig.remote), "--runtime", "script", "--agent-arg", "true").returncode == 0
    config = json.loads((town / "town.json").read_text())
    (town / "town.json").write_text(json.dumps({**config, "settings": {"leaseSecs": 9}}))
    bad = gt(town, "up")
    assert bad.returncode == 2 and "settings.leaseSecs is not a setting" in bad.stderr
    assert not (town / "daemon.pid").exists()
    (town / "town.json").write_text(json.dumps({**config, "settings": {"leaseSeconds": 9}}))
    assert gt(town, "up").returncode == 0
    try:
        with ledger(rig, "probe") as probe:
            claim = wait_for(lambda: probe.claims.current(), timeout=30, what="the daemon to claim the ledger")
        assert claim.lease == 9
    finally:
        gt(town, "down")


# A remote slow for the driver claim: a push that takes or renews it hangs after the ref moved (its
# post-receive hook), so the pusher does not know yet that it holds the claim.
SLOW_CLAIM = """#!/bin/sh
while read old new ref; do
  if [ "$ref" = refs/gastown/driver ] && [ "$new" != 0000000000000000000000000000000000000000 ]; then
    touch "{marker}"
    sleep 60
  fi
done
"""
HANGING = "#!/bin/sh\nsleep 60\n"  # a remote whose every push hangs (before its refs move)


def hook(rig, name: str, text: str) -> None:
    path = rig.remote / "hooks" / name
    path.write_text(text)
    path.chmod(0o755)


@pytest.mark.slow
def test_a_stop_while_the_operator_takes_the_claim_releases_it_and_another_operator_drives_at_once(
        tmp_path, kubeapi, operator, monkeypatch):
    rig = make_rig(tmp_path)
    monkeypatch.setenv("GT_LEASE_SECONDS", "300")  # a claim left behind would hold any other driver off for minutes
    marker = tmp_path / "claiming"
    hook(rig, "post-receive", SLOW_CLAIM.format(marker=marker))
    first = operator()
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "d1", "namespace": "default"},
                    "spec": {"gitUrl": f"file://{rig.remote}"}})
    wait_for(marker.exists, timeout=30, what=f"the operator's claim push under way\n{first.output()[-2000:]}")
    with ledger(rig, "probe") as probe:
        assert "operator rig default/d1" in probe.claims.current().holder  # it landed; the push has not returned
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(30) == 0, first.output()[-3000:]
    with ledger(rig, "probe") as probe:
        assert probe.claims.current() is None, f"the claim was left behind\n{first.output()[-3000:]}"

    (rig.remote / "hooks" / "post-receive").unlink()
    uid = kubeapi.get("rigs", "default", "d1")["metadata"]["uid"]
    kubeapi.delete("rigs", "default", "d1")  # made again: another Rig (another uid) signs another claim
    kubeapi.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": "d1", "namespace": "default"},
                    "spec": {"gitUrl": f"file://{rig.remote}"}})
    assert kubeapi.get("rigs", "default", "d1")["metadata"]["uid"] != uid
    second = operator()
    started = time.monotonic()
    wait_for(lambda: (c := rig_condition(kubeapi, "Driving")) and c["status"] == "True", timeout=30,
             what=f"the second operator driving the ledger\n{second.output()[-2000:]}")
    print(f"\nthe second operator drives {time.monotonic() - started:.1f} s after its start (the lease: 300 s)")
    with ledger(rig, "probe") as probe:
        assert probe.claims.current().holder != f"operator rig default/d1 (uid {uid})"


def test_a_claim_push_that_hangs_ends_at_its_timeout_with_its_helpers(tmp_path):
    """A release against a remote whose pushes hang gives up after the git timeout (the hook under the
    push is ended with it, or it would hold the push's pipes open until it ends): the claim is not
    released, and goes stale after its lease."""
    rig = make_rig(tmp_path)
    was = git_timeout()
    with ledger(rig, "a") as a:
        a.ensure()
        assert a.claims.drive("town A", 60).ok
        hook(rig, "pre-receive", HANGING)
        set_git_timeout(2)
        try:
            asked = time.monotonic()
            assert not a.claims.release("town A")
            took = time.monotonic() - asked
        finally:
            set_git_timeout(was)
        assert took < 10, f"{took:.1f} s"
        assert a.claims.current().holder == "town A"
