"""Rig: one git repository and the agents that work on it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ..cron import check as check_schedule
from .budget import RigBudget, SharedLimitStatus, SpendStatus
from .common import (
    DNS_SUBDOMAIN,
    BranchName,
    Conditions,
    Model,
    Quantity,
    Resources,
    RuntimeSpec,
    SecretKeyRef,
    SecretRef,
)

# https://host/path, ssh://..., git://..., file:///..., or scp-like user@host:path
GIT_URL = r"^((https?|ssh|git|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)$"


class Gates(Model):
    """Verification gates: each is an argv list run in the rig's checkout, in this order."""

    setup: list[str] | None = Field(default=None, min_length=1)
    lint: list[str] | None = Field(default=None, min_length=1)
    typecheck: list[str] | None = Field(default=None, min_length=1)
    build: list[str] | None = Field(default=None, min_length=1)
    test: list[str] | None = Field(default=None, min_length=1)

    def ordered(self) -> list[tuple[str, list[str]]]:
        names = ("setup", "lint", "typecheck", "build", "test")
        return [(n, getattr(self, n)) for n in names if getattr(self, n)]


class Verification(Model):
    """How the Refinery verifies a batch before merging it."""

    gates: Gates = Field(default_factory=Gates)
    image: str | None = Field(default=None, max_length=512,
                              description="Image that runs the gates (defaults to the agent image).")
    resources: Resources = Field(default_factory=Resources)
    timeout_seconds: int = Field(default=1800, ge=10, le=86400)


CIDR = r"^[0-9a-fA-F.:]+/[0-9]{1,3}$"
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]


class EgressRule(Model):
    """Where agent and verification pods may connect to, besides DNS."""

    cidr: str = Field(pattern=CIDR)
    except_: list[Annotated[str, Field(pattern=CIDR)]] = Field(default_factory=list, alias="except",
                                                                max_length=32)
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=lambda: [443], min_length=1,
                                                               max_length=16)


def _public_egress() -> list[EgressRule]:
    return [EgressRule.model_validate({"cidr": "0.0.0.0/0", "except": PRIVATE, "ports": [443, 22, 9418]})]


class Network(Model):
    """The NetworkPolicy of the rig's pods: no ingress; egress to DNS and these rules only."""

    policy: bool = Field(default=True, description="Create the NetworkPolicy (off: no restriction).")
    egress: list[EgressRule] = Field(
        default_factory=_public_egress, max_length=32,
        description="Default: public addresses on 443 (model APIs, HTTPS git), 22 (SSH git) and 9418 "
                    "(git://). Add the CIDR of an in-cluster git server here.")


RouteName = Literal["event", "condition", "webhook", "log"]


def _default_routes() -> dict[Literal["P0", "P1", "P2", "P3"], list[RouteName]]:
    return {"P0": ["event", "condition", "webhook", "log"], "P1": ["event", "condition", "webhook", "log"],
            "P2": ["event", "log"], "P3": ["log"]}


class EscalationSpec(Model):
    """Where escalations of each severity go, and when unacknowledged ones are bumped."""

    routes: dict[Literal["P0", "P1", "P2", "P3"], list[RouteName]] = Field(
        default_factory=_default_routes,
        description="Per severity: event (on the related object), condition (on the Rig), "
                    "webhook (Slack-compatible POST), log.")
    bump_after_seconds: int = Field(default=4 * 3600, ge=60, le=30 * 86400,
                                    description="An unacknowledged escalation goes one severity up after this "
                                                "long, at most twice.")
    webhook_secret: SecretKeyRef | None = Field(default=None, description="The Secret key holding the webhook URL.")


# five cron fields or a macro; the rest is checked by gastown.cron (a condition names the field)
CRON = r"^(@[a-z]+|\S+\s+\S+\s+\S+\s+\S+\s+\S+)$"


def _schedule(text: str) -> str:
    check_schedule(text)
    return text


Schedule = Annotated[str, Field(pattern=CRON, max_length=100,
                                description="Cron schedule in UTC (five fields or @hourly, @daily, ...)."),
                     AfterValidator(_schedule)]


class Dog(Model):
    """One maintenance job: when it runs, and whether it does."""

    schedule: Schedule
    enabled: bool = Field(default=True, description="false: the Dog never runs (its CronJob is removed).")


class Dogs(Model):
    """Maintenance of the rig: CronJobs on a cluster (the cache gc runs in the operator), timers locally."""

    prune: Dog = Field(default_factory=lambda: Dog(schedule="17 * * * *"),
                       description="Delete merged polecat branches, finished verification refs and stale "
                                   "worktrees. Hourly by default.")
    gc: Dog = Field(default_factory=lambda: Dog(schedule="43 3 * * *"),
                    description="git gc of the operator's (or the town's) caches of this rig. Daily by default.")
    compact: Dog = Field(default_factory=lambda: Dog(schedule="29 4 * * 0"),
                         description="Archive closed ephemeral records (messages, merge batches) older than "
                                     "retainDays. Weekly by default.")
    retain_days: int = Field(default=14, ge=1, le=3650,
                             description="Closed ephemeral records younger than this stay in the live ledger.")


class WitnessSpec(Model):
    """When the Witness judges a session: it never judges one before these times have passed."""

    start_grace_seconds: int = Field(default=120, ge=10, le=3600,
                                     description="A session may take this long to beat for the first time "
                                                 "(on a cluster, counted from its agent container's start).")
    hung_after_seconds: int = Field(default=300, ge=10, le=86400,
                                    description="A running session whose last heartbeat (and, locally, last "
                                                "commit) is older than this is hung: it is stopped (its work "
                                                "saved) and restarted.")
    linger_seconds: int = Field(default=120, ge=10, le=3600,
                                description="A session may take this long to exit after its result is recorded.")


class PolecatHome(Model):
    """Each polecat's HOME on a cluster: a PersistentVolumeClaim of its own, kept across its sessions."""

    # ReadWriteOnce is enough: a polecat runs one session at a time. Owned by its Polecat (deleted
    # with it). What its agent CLI keeps there (its conversations, for --continue / --resume)
    # outlives each session pod.

    enabled: bool = Field(default=True, description="false: a fresh emptyDir per session (no "
                                                    "earlier conversation to resume after a restart).")
    size: Quantity = Field(default="1Gi", description="Storage requested for each polecat's HOME.")
    storage_class_name: str | None = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN,
        description="StorageClass of the claims (default: the cluster's default StorageClass).")


class RigSpec(Model):
    git_url: str = Field(pattern=GIT_URL, max_length=2048,
                         description="Clone URL of the repository (https, ssh, git, file or user@host:path).")
    default_branch: BranchName = Field(default="main", description="Branch that work is merged into.")
    beads_prefix: str = Field(default="gt", pattern=r"^[a-z]{2,10}$",
                              description="Prefix of bead IDs (2-10 lowercase letters), as in gt-k3x9q.")
    credentials_secret: SecretRef | None = Field(
        default=None,
        description="Secret with git credentials: username and password (basic-auth) "
                    "or ssh-privatekey (ssh-auth).")
    max_polecats: int = Field(default=3, ge=1, le=100,
                              description="Most agent sessions that may run at once on this rig.")
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    session_deadline_seconds: int = Field(default=3600, ge=60, le=86400,
                                          description="An agent session is stopped after this long.")
    verification: Verification = Field(default_factory=Verification)
    network: Network = Field(default_factory=Network)
    escalation: EscalationSpec = Field(default_factory=EscalationSpec)
    witness: WitnessSpec = Field(default_factory=WitnessSpec)
    dogs: Dogs = Field(default_factory=Dogs)
    polecat_home: PolecatHome = Field(default_factory=PolecatHome)
    budget: RigBudget = Field(default_factory=RigBudget)


RigPhase = Literal["Pending", "Ready", "Error", "Invalid"]


class RigStatus(Model):
    phase: RigPhase | None = None
    observed_generation: int | None = None
    conditions: Conditions
    ledger_head: str | None = Field(default=None, description="Commit at the tip of the ledger branch.")
    beads: dict[str, int] = Field(default_factory=dict, description="Number of beads by status.")
    active_polecats: int = 0
    last_sync: datetime | None = None
    spend: list[SpendStatus] = Field(default_factory=list, description="This UTC day's and month's spend "
                                                                      "against the rig's budget.")
    shared_limits: list[SharedLimitStatus] = Field(default_factory=list, description="The rig's turns under the "
                                                   "town's shared limits (per key, per runtime).")
