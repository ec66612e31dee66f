"""Budgets and shared limits: what a Rig, a Convoy and the town may spend, and how many sessions
may share a provider key or a runtime across rigs. Periods are UTC days and months."""

from __future__ import annotations

from pydantic import Field, model_validator

from .common import Model


class Amount(Model):
    """A ceiling in tokens (input and output together), in US dollars (where the runtime reports
    cost), or both: whichever is reached first counts."""

    tokens: int | None = Field(default=None, ge=1, description="Tokens in and out, together.")
    usd: float | None = Field(default=None, gt=0, description="US dollars, as the runtime reports cost.")

    @model_validator(mode="after")
    def _something(self) -> Amount:
        if self.tokens is None and self.usd is None:
            raise ValueError("set tokens, usd or both")
        return self


WarnPercent = Field(default=80, ge=1, le=100,
                    description="At this share of a budget a P2 escalation says so (at 100 %: P1, and no new "
                                "session starts under it).")


class RigBudget(Model):
    """What one rig's sessions may spend per UTC day and month, and what one session may use."""

    daily: Amount | None = Field(default=None, description="Per UTC day (from 00:00 UTC).")
    monthly: Amount | None = Field(default=None, description="Per UTC calendar month.")
    warn_percent: int = WarnPercent
    session_tokens: int | None = Field(
        default=None, ge=1, description="One session's ceiling in tokens, where its runtime reports them as it "
                                        "goes: it is ended cleanly (its work pushed) and why is recorded.")
    share: int = Field(default=1, ge=1, le=100,
                       description="This rig's weight in the town's shared limits (per key, per runtime): rigs "
                                   "competing for one get free slots in proportion, 2 twice as many as 1.")
    session_seconds: int | None = Field(
        default=None, ge=10, le=86400, description="One session's ceiling in wall time: ended cleanly (its work "
                                                   "pushed) and why is recorded. Tighter than "
                                                   "sessionDeadlineSeconds, which kills the session's pod.")


class ConvoyBudget(Amount):
    """What a convoy's sessions may spend in all."""

    warn_percent: int = WarnPercent


class TownLimits(Model):
    """The town's own budget and its limits shared by all rigs: locally town.json's ``limits``,
    on a cluster the operator's GT_TOWN_LIMITS (the same, as JSON)."""

    daily: Amount | None = Field(default=None, description="What all rigs together may spend per UTC day.")
    monthly: Amount | None = Field(default=None, description="Per UTC calendar month, all rigs together.")
    warn_percent: int = WarnPercent
    keys: dict[str, int] = Field(
        default_factory=dict,
        description="Most sessions at once on one provider key, across all rigs: by the key's environment "
                    "variable locally (ANTHROPIC_API_KEY), by namespace/secret on a cluster.")
    runtimes: dict[str, int] = Field(default_factory=dict,
                                     description="Most sessions at once of one runtime (preset), across all rigs.")

    @model_validator(mode="after")
    def _positive(self) -> TownLimits:
        for what, limits in (("keys", self.keys), ("runtimes", self.runtimes)):
            bad = [k for k, v in limits.items() if v < 1 or not k]
            if bad:
                raise ValueError(f"{what}: a limit is a name and 1 or more sessions (not {', '.join(bad)})")
        return self


class SpendStatus(Model):
    """Spend against budget over one period, as the ledger's session records add up."""

    period: str = Field(description="day YYYY-MM-DD or month YYYY-MM (UTC), or total.")
    tokens: int = 0
    usd: float = 0.0
    token_budget: int | None = None
    usd_budget: float | None = None
    used_percent: int | None = Field(default=None, description="Of the budget (the larger of tokens and usd).")
    state: str = Field(default="Unbudgeted", description="Unbudgeted, Ok, Warning or Exhausted.")


class SharedLimitStatus(Model):
    """A rig's turns under one of the town's shared limits, as its operator hands them out."""

    name: str = Field(description="The shared limit: key NAMESPACE/SECRET, or runtime NAME.")
    limit: int = Field(description="Most sessions at once under it, all rigs together.")
    in_use: int = Field(default=0, description="Sessions under it now, all rigs together.")
    sessions: int = Field(default=0, description="This rig's sessions under it now.")
    share: int = Field(default=1, description="This rig's weight (spec.budget.share).")
    served: int = Field(default=0, description="Slots given to this rig since the operator started (its turns).")
