"""`gt tui --namespace NS`, driven by textual's test pilot against the HTTP-level API double holding a
town's objects with the statuses the operator writes: the panels show what the statuses and the
conditions say, gastown's Events are the activity, and a polecat's peek is its session pod's log."""

from __future__ import annotations

import pytest

pytest.importorskip("textual")

from textual.widgets import Log, Tree  # noqa: E402

from gastown.api import API_VERSION  # noqa: E402
from gastown.tui.app import PeekScreen, TownApp  # noqa: E402
from gastown.tui.cluster import ClusterModel, api_client  # noqa: E402

from kubeapi import KubeAPI  # noqa: E402
from support import write_kubeconfig  # noqa: E402
from towns import gt  # noqa: E402
from tuiview import rows, title  # noqa: E402

NS = "team"
TITLE = "Fix [red]it[/red] <script>"  # shown as text: neither markup nor HTML


# the batch being bisected as the operator writes it (kube/mergequeue_handlers.py): round 1 failed,
# round 2 runs the halves, one of them still running
BATCH = {"id": "gt-b9", "phase": "verifying", "mrs": ["gt-m1", "gt-m2", "gt-m3"], "round": 2,
         "rounds": [{"round": 1, "runs": [{"run": "aa11-0", "group": ["gt-m1", "gt-m2", "gt-m3"], "stackedOn": 0,
                                           "result": "fail", "summary": "3 MR(s) on 0 accepted", "gate": "test"}]},
                    {"round": 2, "runs": [{"run": "bb22-0", "group": ["gt-m1"], "stackedOn": 0, "result": "pass",
                                           "summary": "1 MR(s) on 0 accepted"},
                                          {"run": "cc33-0", "group": ["gt-m2", "gt-m3"], "stackedOn": 0,
                                           "result": "running", "summary": "2 MR(s) on 0 accepted"}]}],
         "accepted": [], "rejected": []}
RECENT = [{"mr": "gt-m0", "title": TITLE, "outcome": "rejected", "reason": "gate test failed (run dd44 in gt-b8)",
           "at": "2026-12-01T10:02:00+00:00"},
          {"mr": "gt-m7", "title": "Merge polecat/toast/x", "outcome": "merged", "commit": "a" * 40,
           "at": "2026-12-01T10:01:00+00:00"}]


def put(api: KubeAPI, kind: str, plural: str, name: str, spec: dict, status: dict) -> None:
    api.create({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec})
    api.patch(plural, NS, name, {"status": status}, subresource="status", group="gastown.dev")


def event(api: KubeAPI, kind: str, name: str, reason: str, message: str, when: str) -> None:
    api.create({"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": f"{name}-", "namespace": NS},
                "involvedObject": {"apiVersion": API_VERSION, "kind": kind, "name": name, "namespace": NS},
                "reason": reason, "message": message, "type": "Normal", "lastTimestamp": when,
                "source": {"component": "gastown-operator"}})


def cond(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T10:00:00Z"}


def a_town(api: KubeAPI) -> None:
    """Two rigs: webapp (two polecats, one working on a convoy's bead, one stalled; a queue bisecting
    a batch) and docs (its remote out of reach); an Event on each and one on a pod (not shown)."""
    put(api, "Rig", "rigs", "webapp", {"gitUrl": "https://example.com/webapp.git", "maxPolecats": 4},
        {"phase": "Ready", "activePolecats": 1, "beads": {"open": 3, "in_progress": 1, "hooked": 1, "closed": 2},
         "conditions": [cond("Ready", "True", "Ready"), cond("GitReachable", "True", "Reachable")]})
    put(api, "Rig", "rigs", "docs", {"gitUrl": "https://example.com/docs.git"},
        {"phase": "Error", "conditions": [cond("Ready", "False", "GitUnreachable", "cannot reach the remote"),
                                          cond("GitReachable", "False", "Unreachable", "cannot reach the remote")]})
    put(api, "Polecat", "polecats", "toast", {"rig": "webapp"},
        {"phase": "Working", "currentBead": "gt-a1", "session": {"name": "gt-toast-gt-a1-1"}})
    put(api, "Polecat", "polecats", "nux", {"rig": "webapp"}, {"phase": "Stalled", "currentBead": "gt-b2"})
    put(api, "Convoy", "convoys", "feature", {"rig": "webapp", "beads": [{"key": "a", "title": "x"}]},
        {"phase": "Running", "progress": "1/3", "convoyBead": "gt-c0",
         "beads": [{"key": "a", "id": "gt-a1", "title": TITLE, "state": "in_progress"},
                   {"key": "b", "id": "gt-b2", "title": "Second", "state": "hooked"}],
         "spend": {"period": "total", "tokens": 1200, "usd": 0.5},
         "conditions": [cond("Stalled", "True", "NoProgress", "no bead progressed since 10:00")]})
    put(api, "MergeQueue", "mergequeues", "webapp", {"rig": "webapp"},
        {"phase": "Bisecting", "queueLength": 2, "currentBatch": ["gt-m1", "gt-m2", "gt-m3"],
         "batch": BATCH, "recent": RECENT, "counters": {"merged": 5, "rejected": 1}})
    event(api, "Convoy", "feature", "Planned", "3 beads planned", "2026-12-01T10:00:00Z")
    event(api, "Rig", "docs", "GitUnreachable", "cannot reach the remote", "2026-12-01T10:05:00Z")
    api.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "other", "namespace": NS},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "x", "namespace": NS},
                "reason": "Pulled", "message": "not gastown's", "lastTimestamp": "2026-12-01T11:00:00Z"})
    api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gt-toast-gt-a1-1", "namespace": NS, "labels": {
        "app.kubernetes.io/component": "agent-session", "gastown.dev/polecat": "toast", "gastown.dev/rig": "webapp"}},
        "spec": {"containers": [{"name": "agent", "image": "x"}]}})
    api.patch("pods", NS, "gt-toast-gt-a1-1", {"status": {"phase": "Running"}}, subresource="status", group="")
    api.logs[(NS, "gt-toast-gt-a1-1")] = "first line\n[bold]agent output[/bold] <b>untouched</b>\n"


@pytest.fixture
def cluster(tmp_path):
    """The API double with a town in it, and a user's kubeconfig for it (its context: "test")."""
    api = KubeAPI().start()  # a user's kubeconfig: `gt tui` is not the operator (no chart RBAC check)
    path = write_kubeconfig(tmp_path / "kubeconfig", api.url)
    api.namespace(NS)
    a_town(api)
    yield api, path
    api.stop()


@pytest.mark.asyncio
async def test_the_tui_shows_a_clusters_town_from_the_api_and_peeks_at_a_pods_log(cluster, monkeypatch):
    api, kubeconfig = cluster
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    app = TownApp(interval=3600, model=ClusterModel(NS, client=api_client("test")))
    async with app.run_test(size=(220, 60)) as pilot:
        await app.reload()
        assert app.sub_title == f"cluster, namespace {NS}"
        tree = app.query_one(Tree)
        assert [str(n.label) for n in tree.root.children] == [
            "docs  0 of 3 working, 0 in flight; cannot reach the remote",
            "webapp  1 of 4 working, 2 in flight; Ready"]
        webapp = tree.root.children[1]
        assert [str(n.label) for n in webapp.children] == [
            "nux  stalled  gt-b2 Second", f"toast  working  gt-a1 {TITLE}  [running]"]
        assert rows(app, "convoys") == [["webapp", "feature", "Running", f"{'█' * 3}{'░' * 7} 1/3",
                                         "1200 tokens, $0.50"]]
        # the merge queue: the batch's bisection round by round, each run with its ID (gt peek --verify RUN)
        assert rows(app, "queue") == [
            ["webapp", "waiting", "2 MRs", ""],
            ["webapp", "batch", "gt-b9", "verifying: 3 MRs (gt-m1, gt-m2, gt-m3)"],
            ["webapp", "round 1", "1 runs", "3 MR(s) on 0 accepted: fail (test) [aa11-0]"],
            ["webapp", "round 2", "2 runs", "1 MR(s) on 0 accepted: pass [bb22-0]; 2 MR(s) on 0 accepted: running "
                                            "[cc33-0]"],
            ["webapp", "rejected", "gt-m0", f"{TITLE}: gate test failed (run dd44 in gt-b8)"],
            ["webapp", "merged", "gt-m7", f"Merge polecat/toast/x as {'a' * 12}"]]
        assert title(app, "queue") == "Merge queue: 2 waiting, verifying gt-b9; merged 5, rejected 1"
        assert sorted(rows(app, "problems")) == [
            ["docs", "gitreachable", "Rig docs", "Unreachable: cannot reach the remote"],
            ["webapp", "stalled", "Convoy feature", "NoProgress: no bead progressed since 10:00"],
            ["webapp", "stalled", "nux", "gt-b2: polecat stalled"]]
        assert [r[:5] for r in rows(app, "events")] == [
            ["10:05:00", "docs", "GitUnreachable", "Rig docs", "cannot reach the remote"],
            ["10:00:00", "webapp", "Planned", "Convoy feature", "3 beads planned"]]  # the Pod's event left out

        # enter on a polecat: its session pod's log, as text
        tree.focus()
        tree.move_cursor(webapp.children[1])
        await pilot.press("enter")
        await pilot.pause()
        for _ in range(50):
            if isinstance(app.screen, PeekScreen) and app.screen.query_one("#peek", Log).lines:
                break
            await pilot.pause(0.1)
        peek = app.screen
        assert isinstance(peek, PeekScreen) and peek.polecat == "toast"
        assert peek.query_one("#peek", Log).lines[:2] == ["first line", "[bold]agent output[/bold] <b>untouched</b>"]
        assert str(peek.query_one("#peek-head").render()) == f"polecat toast (rig webapp): pod {NS}/gt-toast-gt-a1-1, " \
                                                             "running"
        await pilot.press("escape")
        # the stalled polecat has no pod: said in the head
        tree.move_cursor(webapp.children[0])
        await pilot.press("p")
        for _ in range(50):
            if isinstance(app.screen, PeekScreen) and str(app.screen.query_one("#peek-head").render()):
                break
            await pilot.pause(0.1)
        assert str(app.screen.query_one("#peek-head").render()) == \
            f"no session pod of polecat 'nux' in namespace {NS} (rig webapp): it has no session now, or its pod is gone"
        await pilot.press("escape")

        # the rig changes on the cluster: the next read shows it
        api.patch("rigs", NS, "docs", {"status": {"phase": "Ready", "conditions": [cond("Ready", "True", "Ready"),
                                                                                   cond("GitReachable", "True", "Ok")]}},
                  subresource="status", group="gastown.dev")
        # the batch ends (merged): the queue panel still shows how its bisection went
        ended = {**BATCH, "phase": "merged", "round": 3, "accepted": ["gt-m1", "gt-m3"], "rejected": ["gt-m2"]}
        api.patch("mergequeues", NS, "webapp", {"status": {"phase": "Idle", "queueLength": 0, "currentBatch": [],
                                                           "batch": ended}},
                  subresource="status", group="gastown.dev")
        await app.reload()
        assert rows(app, "queue")[0] == ["webapp", "last batch", "gt-b9", "merged: 3 MRs (gt-m1, gt-m2, gt-m3)"]
        assert title(app, "queue") == "Merge queue: 0 waiting, no batch verifying; merged 5, rejected 1"
        assert [r[0] for r in rows(app, "problems")] == ["webapp", "webapp"]
        assert str(tree.root.children[0].label) == "docs  0 of 3 working, 0 in flight; Ready"
    assert ("list", "gastown.dev", "rigs") in api.verbs() and ("get", "", "pods/log") in api.verbs()


@pytest.mark.asyncio
async def test_one_rig_of_a_cluster(cluster, monkeypatch):
    api, kubeconfig = cluster
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    app = TownApp(rig="docs", interval=3600, model=ClusterModel(NS, "docs", client=api_client()))
    async with app.run_test(size=(200, 50)):
        await app.reload()
        assert [str(n.label).split()[0] for n in app.query_one(Tree).root.children] == ["docs"]
        assert rows(app, "convoys") == [] and [r[0] for r in rows(app, "problems")] == ["docs"]
        assert [r[1] for r in rows(app, "events")] == ["docs"]


def test_gt_tui_on_a_cluster_says_what_is_wrong_in_one_line(cluster, tmp_path):
    api, kubeconfig = cluster
    env = {"KUBECONFIG": str(kubeconfig)}
    ghost = gt(tmp_path, "tui", "-n", NS, "--rig", "ghost", env=env)
    assert ghost.returncode == 1 and ghost.stderr == f"gt: error: no Rig 'ghost' in namespace {NS}; Rigs: docs, webapp\n"
    nowhere = gt(tmp_path, "tui", "-n", NS, "--context", "nowhere", env=env)
    assert nowhere.returncode == 1 and "gt: error: no cluster to read from" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
    api.forbidden.add(("list", "gastown.dev", "rigs"))
    refused = gt(tmp_path, "tui", "-n", NS, env=env)
    assert refused.returncode == 1 and refused.stderr.startswith(
        f"gt: error: the API refused to list the Rigs of namespace {NS}: 403")
    lone = gt(tmp_path, "tui", "--context", "test", env=env)
    assert lone.returncode == 2 and "--context goes with --namespace" in lone.stderr
