"""The operator with many rigs, rigs sharing a namespace, and a reinstall: a real `gt operator run`
against the API double, with real rig repositories."""

from __future__ import annotations

import pytest

from gastown.ledger import Status
from gastown.polecats import EnsureAgent

from conftest import wait_for
from rigs import make_rig

SESSION = "app.kubernetes.io/component=agent-session"


def rig_cr(name: str, remote, **spec) -> dict:
    return {"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": name, "namespace": "default"},
            "spec": {"gitUrl": f"file://{remote}", "maxPolecats": 1, **spec}}


def sessions_by_rig(kubeapi) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for job in kubeapi.list("jobs", "default", selector=SESSION):
        out.setdefault(job["metadata"]["labels"]["gastown.dev/rig"], []).append(job)
    return out


@pytest.mark.slow
def test_twenty_rigs_all_dispatch_on_one_operator_with_default_flags(kubeapi, operator, tmp_path):
    """More rigs than kopf has workers (16 by default): every rig still dispatches its work, and
    the Polecats of all of them are admitted."""
    op = operator()  # default --workers
    names = [f"rig{i:02d}" for i in range(20)]
    for name in names:
        rig = make_rig(tmp_path / name)
        with rig.ledger() as lg:
            lg.create(f"work for {name}")
        kubeapi.create(rig_cr(name, rig.remote))
    wait_for(lambda: sorted(sessions_by_rig(kubeapi)) == names, timeout=120,
             what=f"a session Job on each of the 20 rigs\n{op.output()[-3000:]}")
    polecats = kubeapi.list("polecats", "default")
    assert sorted(p["spec"]["rig"] for p in polecats) == names
    # kopf's own handlers were served too: each Polecat's admission says it is Ready
    wait_for(lambda: all(any(c["type"] == "Ready" and c["status"] == "True"
                             for c in (p.get("status") or {}).get("conditions", []))
                         for p in kubeapi.list("polecats", "default")), timeout=60, what="every Polecat Ready")


def test_two_rigs_in_one_namespace_each_run_their_own_polecat_of_the_same_name(kubeapi, operator, tmp_path):
    operator()
    rigs = {name: make_rig(tmp_path / name) for name in ("webapp", "api")}
    beads = {}
    for name, rig in rigs.items():
        with rig.ledger() as lg:
            beads[name] = lg.create(f"work for {name}").id
        kubeapi.create(rig_cr(name, rig.remote))
    jobs = wait_for(lambda: (s := sessions_by_rig(kubeapi)) and sorted(s) == ["api", "webapp"] and s,
                    timeout=60, what="a session Job on each rig")
    polecats = {p["spec"]["rig"]: p for p in kubeapi.list("polecats", "default")}
    assert sorted(polecats) == ["api", "webapp"]
    for name, rig in rigs.items():
        (job,) = jobs[name]
        polecat = polecats[name]
        # both rigs' first polecat is furiosa in their ledgers; their resources do not collide
        assert polecat["metadata"]["labels"]["gastown.dev/polecat"] == "furiosa"
        assert polecat["metadata"]["labels"]["gastown.dev/rig"] == name
        assert job["metadata"]["labels"]["gastown.dev/polecat"] == "furiosa"
        assert job["metadata"]["labels"]["gastown.dev/bead"] == beads[name]
        assert job["metadata"]["ownerReferences"][0]["uid"] == polecat["metadata"]["uid"]
        env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["GT_POLECAT"] == "furiosa"  # the session speaks the ledger's name
        with rig.ledger() as lg:
            assert lg.get(beads[name]).assignee == "furiosa"
        # each Polecat's status follows its own session
        name_of = polecat["metadata"]["name"]
        wait_for(lambda n=name_of, j=job: ((kubeapi.get("polecats", "default", n).get("status") or {})
                                           .get("session") or {}).get("name") == j["metadata"]["name"],
                 what=f"the {name} Polecat's session")
    assert len({p["metadata"]["name"] for p in polecats.values()}) == 2
    claims = kubeapi.list("persistentvolumeclaims", "default")
    assert len({c["metadata"]["name"] for c in claims}) == 2  # a HOME each
    # the sessions stay: no rig takes the other's Polecat over, nothing is stopped or restarted
    for job in [j for js in jobs.values() for j in js]:
        kubeapi.patch("jobs", "default", job["metadata"]["name"], {"status": {"active": 1, "ready": 1}},
                      subresource="status")
    wait_for(lambda: all((p.get("status") or {}).get("phase") == "Working" for p in kubeapi.list("polecats", "default")),
             what="both Polecats Working")
    assert sorted(p["spec"]["rig"] for p in kubeapi.list("polecats", "default")) == ["api", "webapp"]
    assert sum(len(js) for js in sessions_by_rig(kubeapi).values()) == 2
    for name, rig in rigs.items():
        with rig.ledger() as lg:
            assert lg.get(beads[name]).status == Status.HOOKED


def test_a_reinstall_brings_the_polecats_back_from_the_ledger(kubeapi, operator, tmp_path):
    """Every gastown resource deleted (an uninstall), the ledger kept: applying the Rig again
    brings its Polecats back from their agent beads, idle ones included."""
    rig = make_rig(tmp_path / "webapp")
    with rig.ledger() as lg:
        for polecat in ("furiosa", "nux"):
            lg.apply(EnsureAgent(polecat, "webapp", "user tester", "claude"))
        work = lg.create("work in flight").id
    first = operator()
    kubeapi.create(rig_cr("webapp", rig.remote, maxPolecats=3))
    wait_for(lambda: len(sessions_by_rig(kubeapi).get("webapp", [])) == 1, timeout=60, what="the session")
    with rig.ledger() as lg:
        holder = lg.get(work).assignee
    assert holder in ("furiosa", "nux")

    # uninstall: every gastown resource deleted (their dependents go with them), the operator gone
    for plural in ("convoys", "mergequeues", "polecats", "rigs"):
        for obj in kubeapi.list(plural, "default"):
            kubeapi.delete(plural, "default", obj["metadata"]["name"])
    wait_for(lambda: not kubeapi.list("rigs", "default") and not kubeapi.list("polecats", "default"),
             what="the resources gone")
    first.stop()
    wait_for(lambda: not kubeapi.list("jobs", "default"), what="the Jobs gone with their Polecats")

    # reinstall: the same Rig applied again
    operator()
    kubeapi.create(rig_cr("webapp", rig.remote, maxPolecats=3))
    back = wait_for(lambda: (ps := kubeapi.list("polecats", "default")) and len(ps) == 2 and ps, timeout=60,
                    what="both Polecats back")
    assert sorted(p["metadata"]["labels"]["gastown.dev/polecat"] for p in back) == ["furiosa", "nux"]
    assert all(p["spec"]["rig"] == "webapp" for p in back)
    # the work in flight goes on with the polecat that held it
    (job,) = wait_for(lambda: sessions_by_rig(kubeapi).get("webapp"), timeout=60, what="the session again")
    assert job["metadata"]["labels"]["gastown.dev/polecat"] == holder
    with rig.ledger() as lg:
        assert lg.get(work).assignee == holder
