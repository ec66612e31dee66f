"""Every tunable of gastown, in one place: loaded and validated once at start-up, then passed down.

A process reads its settings when it starts (``gt operator run``, the town daemon, any ``gt``
command) with ``Settings.from_env``; nothing else reads these variables. A bad value stops
the start with a message that names the variable.

    variable                  default                          what
    GT_PATROL_SECONDS         30                               operator: a rig pass at least this often (heartbeats
                                                               age and escalations bump without any event)
    GT_DEACON_SECONDS         60                               both drivers: the Deacon's patrol period
    GT_ORPHAN_GRACE_SECONDS   120                              the Deacon leaves a bead held by an unknown polecat
                                                               alone this long (a new polecat may not be seen yet)
    GT_POLL_BUSY_SECONDS      1                                both drivers: a rig with work under way (sessions,
                                                               a batch verifying, a Mayor planning) asks its
                                                               remote for the ledger's tip this often
    GT_POLL_IDLE_SECONDS      30                               ... and an idle one: the wait doubles from the busy
                                                               one on each quiet tick up to this (and never
                                                               beyond a third of GT_LEASE_SECONDS, so the driver
                                                               claim is renewed in time). A change made on this
                                                               machine (a `gt` command, a session, a verifier)
                                                               wakes the town's daemon at once; other machines'
                                                               changes are seen within this many seconds
    GT_GIT_TIMEOUT            120                              seconds one git command may take
    GT_LEASE_SECONDS          120                              both drivers: the lease of a driver's claim on a rig's
                                                               ledger; a crashed driver's claim is taken over this
                                                               long after its last renewal (by itself: at once)
    GT_RETRY_BASE_SECONDS     1.2                              both drivers: the first wait before an operation
                                                               that failed (the remote, a merge push, a worktree,
                                                               a verification) is tried again; it doubles
    GT_RETRY_MAX_SECONDS      300                              ... up to this
    GT_ESCALATE_AFTER_ATTEMPTS 5                               failed attempts of one problem before it is
                                                               escalated (once, P1; closed when it clears)
    GT_CACHE_DIR              $XDG_CACHE_HOME/gastown,         the cache root; ledger caches are under ledgers/
                              else ~/.cache/gastown
    GT_AGENT_IMAGE            gastown/agent:<version>          operator: the image of session, verification and
                                                               Dog pods
    GT_RUNTIMES_CONFIGMAP     (none)                           operator: the ConfigMap of custom runtimes
    POD_NAME                  the host name                    operator: the instance named on its Events, and
                                                               the holder it writes in the leader Lease
    POD_NAMESPACE             the pod's (or kubeconfig's)      operator: where its leader Lease is
    GT_TOWN_LIMITS            (none)                           operator: the town's budget and its limits shared by
                                                               all rigs, as JSON: {"daily": {"usd": 50}, "keys":
                                                               {"NAMESPACE/SECRET": 4}, "runtimes": {"claude": 8}}
                                                               (api/budget.py TownLimits; a local town keeps the
                                                               same in town.json's ``limits``)

A local town may also keep settings in its town.json, by camelCase name (``{"settings":
{"leaseSeconds": 60, "gitTimeout": 300}}``): the environment wins over them, flags over both.

Read where they are used, at the time they are used, because they name a place or a person rather
than tune the engine: GT_TOWN (the local town), GT_ACTOR (who a `gt` command signs as),
GT_FORMULAS_DIR and GT_RUNTIMES_FILE (extra formulas and runtimes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .cachedir import cache_root

if TYPE_CHECKING:
    from .api.budget import TownLimits
    from .trouble import Backoff


class SettingsError(ValueError):
    """A setting's value is not valid; the message names the variable."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    patrol_seconds: float = 30.0
    deacon_seconds: float = 60.0
    orphan_grace_seconds: float = 120.0
    git_timeout: float = 120.0
    poll_busy_seconds: float = 1.0
    poll_idle_seconds: float = 30.0
    lease_seconds: float = 120.0
    retry_base_seconds: float = 1.2
    retry_max_seconds: float = 300.0
    escalate_after_attempts: int = 5
    cache_dir: Path = field(default_factory=lambda: Path(cache_root()))
    agent_image: str = f"gastown/agent:{__version__}"
    runtimes_configmap: str | None = None
    pod_name: str = field(default_factory=lambda: os.uname().nodename)  # the host name, without loading socket
    pod_namespace: str | None = None
    town_limits: str = ""

    _ENV = {"patrol_seconds": "GT_PATROL_SECONDS", "deacon_seconds": "GT_DEACON_SECONDS",
            "orphan_grace_seconds": "GT_ORPHAN_GRACE_SECONDS", "git_timeout": "GT_GIT_TIMEOUT",
            "lease_seconds": "GT_LEASE_SECONDS", "poll_busy_seconds": "GT_POLL_BUSY_SECONDS",
            "poll_idle_seconds": "GT_POLL_IDLE_SECONDS",
            "retry_base_seconds": "GT_RETRY_BASE_SECONDS", "retry_max_seconds": "GT_RETRY_MAX_SECONDS",
            "escalate_after_attempts": "GT_ESCALATE_AFTER_ATTEMPTS",
            "agent_image": "GT_AGENT_IMAGE", "runtimes_configmap": "GT_RUNTIMES_CONFIGMAP",
            "pod_name": "POD_NAME", "pod_namespace": "POD_NAMESPACE", "town_limits": "GT_TOWN_LIMITS"}

    def __post_init__(self) -> None:
        for name in ("patrol_seconds", "deacon_seconds", "git_timeout", "lease_seconds", "retry_base_seconds",
                     "retry_max_seconds", "poll_busy_seconds", "poll_idle_seconds"):
            _positive(self._ENV[name], getattr(self, name))
        if self.poll_idle_seconds < self.poll_busy_seconds:
            raise SettingsError(f"GT_POLL_IDLE_SECONDS ({self.poll_idle_seconds}) must be at least "
                                f"GT_POLL_BUSY_SECONDS ({self.poll_busy_seconds})")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise SettingsError(f"GT_RETRY_MAX_SECONDS ({self.retry_max_seconds}) must be at least "
                                f"GT_RETRY_BASE_SECONDS ({self.retry_base_seconds})")
        if self.escalate_after_attempts < 1:
            raise SettingsError(f"GT_ESCALATE_AFTER_ATTEMPTS must be 1 or more attempts, not "
                                f"{self.escalate_after_attempts}")
        if not math.isfinite(self.orphan_grace_seconds) or self.orphan_grace_seconds < 0:
            raise SettingsError(f"GT_ORPHAN_GRACE_SECONDS must be 0 or more seconds, not {self.orphan_grace_seconds}")
        if not self.agent_image.strip():
            raise SettingsError("GT_AGENT_IMAGE must name an image")
        if self.town_limits.strip():
            self.limits()

    def limits(self) -> TownLimits:
        """The town's budget and shared limits (GT_TOWN_LIMITS)."""
        from .api.budget import (
            TownLimits,  # pydantic: only where limits are read (gt --help stays light)
        )
        from .api.validation import Invalid, parse_spec

        try:
            raw = json.loads(self.town_limits) if self.town_limits.strip() else {}
        except ValueError as e:
            raise SettingsError(f"GT_TOWN_LIMITS is not JSON: {e}") from None
        try:
            return parse_spec(TownLimits, raw, prefix="GT_TOWN_LIMITS")
        except Invalid as e:
            raise SettingsError(str(e)) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, config: Mapping[str, object] | None = None,
                 **given: object) -> Settings:
        """The settings of this process: ``given`` (flags), else the environment, else ``config``
        (a local town's ``settings`` in town.json, by camelCase name), else the defaults."""
        env = os.environ if env is None else env
        values: dict[str, object] = {"cache_dir": Path(cache_root(env))}
        by_key = {_camel(name): name for name in cls._ENV if name not in ("pod_name", "town_limits")}
        for key, raw in (config or {}).items():
            if key not in by_key:
                raise SettingsError(f"settings.{key} is not a setting; the settings are: {', '.join(sorted(by_key))}")
            values[by_key[key]] = cls._parse(by_key[key], f"settings.{key}", raw)
        for name, var in cls._ENV.items():
            if env.get(var):
                values[name] = cls._parse(name, var, env[var])
        values.update({k: v for k, v in given.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def _parse(cls, name: str, where: str, raw: object) -> object:
        if isinstance(getattr(cls, name, None), int):  # a count
            text = str(raw).strip()
            if isinstance(raw, bool) or not text.lstrip("-").isdigit():
                raise SettingsError(f"{where} must be a whole number, not {raw!r}")
            return int(text)
        if not isinstance(getattr(cls, name, None), float):
            return str(raw)
        try:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise SettingsError(f"{where} must be a number of seconds, not {raw!r}") from None

    def backoff(self) -> Backoff:
        """How a rig loop tries again what fails (trouble.py)."""
        from .trouble import Backoff

        return Backoff(self.retry_base_seconds, self.retry_max_seconds, self.escalate_after_attempts)

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _positive(var: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{var} must be a positive number of seconds, not {value}")
