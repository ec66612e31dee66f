"""A leader's clean stop deletes its Lease, but only its own: the Elector against the API double
(its real HTTP API, through the kubernetes client the operator uses)."""

from __future__ import annotations

from kubernetes import client, config

from gastown.kube.leader import Elector

NS, LEASE = "gastown-system", "gastown"


def elector(kubeconfig, identity: str) -> Elector:
    api = client.CoordinationV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    return Elector(LEASE, NS, identity, lease_seconds=10, api=api)


def lease(kubeapi) -> dict | None:
    return kubeapi.get("leases", NS, LEASE, group="coordination.k8s.io")


def test_a_clean_stop_deletes_the_lease_even_after_a_renewal_it_did_not_see_answered(kubeapi, kubeconfig):
    kubeapi.namespace(NS)
    leader = elector(kubeconfig, "gastown-0")
    assert leader.try_acquire()
    leader.leading.set()
    # a renewal that landed while its answer was lost: the Lease moved on from what the leader last read
    kubeapi.patch("leases", NS, LEASE, {"spec": {"renewTime": "2026-12-01T00:00:00.000000Z"}},
                  group="coordination.k8s.io")
    leader.release()
    assert lease(kubeapi) is None


def test_a_clean_stop_leaves_a_lease_someone_else_took(kubeapi, kubeconfig):
    kubeapi.namespace(NS)
    leader = elector(kubeconfig, "gastown-0")
    assert leader.try_acquire()
    leader.leading.set()
    kubeapi.patch("leases", NS, LEASE, {"spec": {"holderIdentity": "gastown-1"}}, group="coordination.k8s.io")
    leader.release()
    assert lease(kubeapi)["spec"]["holderIdentity"] == "gastown-1"
