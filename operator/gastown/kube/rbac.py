"""What the operator may do on the API: the rules its Helm chart grants, kept in one list.

The chart's RBAC renders exactly these (tests/unit/test_chart.py checks both ways), and every
integration test against the API double checks that each call the operator made is allowed by
them (tests/conftest.py), so a new API call without a rule fails a test.
"""

from __future__ import annotations

from typing import NamedTuple


class Rule(NamedTuple):
    group: str  # "" is the core API group
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str


WATCH = ("get", "list", "watch")
CRS = ("rigs", "polecats", "convoys", "mergequeues")

# namespaced: a Role in each watched namespace, or a ClusterRole when watching all of them
NAMESPACED = (
    Rule("gastown.dev", CRS, (*WATCH, "patch"), "reconcile; kopf's finalizers and annotations"),
    Rule("gastown.dev", tuple(f"{r}/status" for r in CRS), ("get", "patch"), "status projected from the ledger"),
    Rule("gastown.dev", ("polecats",), ("create",), "a rig grows a polecat when work waits"),
    Rule("batch", ("jobs",), (*WATCH, "create", "delete"),
         "sessions, the Mayor, verification runs; the Witness stops hung sessions"),
    Rule("batch", ("cronjobs",), ("create", "patch", "delete"), "each rig's Dogs (prune, compact)"),
    Rule("", ("persistentvolumeclaims",), ("create",),
         "each polecat's HOME, kept across its sessions (owned by the Polecat: the garbage collector deletes it)"),
    Rule("", ("pods",), (*WATCH, "delete"), "session pod failures (OOMKilled, ImagePullBackOff, ...); the "
         "Deacon deletes gastown's pods that have no owner"),
    Rule("coordination.k8s.io", ("leases",), (*WATCH, "create", "update"),
         "session heartbeats; held so that the rig's Role may grant them to agent pods"),
    Rule("", ("events",), ("create", "patch"), "Events on gastown's objects (kopf and the operator)"),
    Rule("", ("secrets",), ("get",), "git credentials, webhook URLs, named by the Rig"),
    Rule("", ("serviceaccounts", "configmaps"), ("create", "patch"),
         "each rig's agent account; the custom runtimes for session pods"),
    Rule("", ("resourcequotas",), ("create", "patch", "delete"),
         "the namespace's quotas for its rigs (delete: the quota older versions wrote)"),
    Rule("rbac.authorization.k8s.io", ("roles", "rolebindings"), ("create", "patch"), "each rig's agent Role"),
    Rule("networking.k8s.io", ("networkpolicies",), ("create", "patch"), "each rig's NetworkPolicy"),
)

# cluster-scoped: always a ClusterRole
CLUSTER = (
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch"), "kopf finds its resources"),
    Rule("", ("namespaces",), ("list", "watch"), "kopf follows the namespaces it watches"),
)

# the leader Lease: a Role in the release's namespace (get, update and delete only on the Lease's own name)
LEADER = (
    Rule("coordination.k8s.io", ("leases",), ("get", "create", "update", "delete"),
         "leader election between the operator's replicas (kube/leader.py); a clean stop deletes the Lease"),
)


def allows(rules: tuple[Rule, ...], verb: str, group: str, resource: str) -> bool:
    return any(r.group == group and resource in r.resources and verb in r.verbs for r in rules)


def triples(rules: tuple[Rule, ...]) -> set[tuple[str, str, str]]:
    return {(v, r.group, res) for r in rules for res in r.resources for v in r.verbs}

# `gt operator uninstall` (run by a user, not the operator): what it reads, patches and deletes
UNINSTALL = (
    Rule("gastown.dev", CRS, ("list", "patch"), "remove gastown's finalizer"),
    Rule("batch", ("cronjobs", "jobs"), ("list", "delete"), "the Dogs, the sessions and runs"),
    Rule("", ("serviceaccounts", "resourcequotas", "configmaps", "persistentvolumeclaims"), ("list", "delete"),
         "the agent account, the quotas, the runtimes copy; HOME claims when asked"),
    Rule("rbac.authorization.k8s.io", ("roles", "rolebindings"), ("list", "delete"), "the agent Role"),
    Rule("networking.k8s.io", ("networkpolicies",), ("list", "delete"), "the rig's NetworkPolicy"),
    Rule("coordination.k8s.io", ("leases",), ("list", "delete"), "the sessions' heartbeats"),
)
