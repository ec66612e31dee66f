"""The operator's dashboard when the operator watches some namespaces (the chart's watchNamespaces):
its RBAC is a Role in each of them and no cluster-wide right on Rigs, so the dashboard lists the Rigs
of each watched namespace, not the cluster's."""

from __future__ import annotations

import urllib.request

from conftest import free_port, wait_for
from rigs import make_rig


def rig_cr(name: str, namespace: str, remote) -> dict:
    return {"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": name, "namespace": namespace},
            "spec": {"gitUrl": f"file://{remote}", "maxPolecats": 2}}


def test_the_dashboard_lists_the_rigs_of_the_watched_namespaces_only(tmp_path, kubeapi, operator):
    kubeapi.namespaces = {"team-a", "team-b"}  # the chart's Roles: watchNamespaces [team-a, team-b]
    for ns in ("team-a", "team-b", "team-c"):
        kubeapi.namespace(ns)
    for ns, name in (("team-a", "webapp"), ("team-b", "api"), ("team-c", "elsewhere")):
        rig = make_rig(tmp_path / ns)
        with rig.ledger() as lg:
            lg.create(f"work of {ns}")
        kubeapi.create(rig_cr(name, ns, rig.remote))
    port = free_port()
    op = operator("--namespace", "team-a", "--namespace", "team-b*", "--dashboard-port", str(port))

    def page(path):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read().decode()
        except OSError:
            return None
    town = wait_for(lambda: (p := page("/")) and "team-a/webapp" in p and "team-b/api" in p and p, timeout=60,
                    what=f"the dashboard to list both watched namespaces' rigs\n{op.output()[-3000:]}")
    assert "team-c/elsewhere" not in town  # not watched (and not readable: no Role there)
    assert "Traceback" not in op.output()
    # the dashboard's calls were each allowed by a Role of a watched namespace (or the ClusterRole)
    forbidden = [r for r in kubeapi.requests if "/rigs" in r[1] and "/namespaces/" not in r[1]]
    assert forbidden == [], forbidden
