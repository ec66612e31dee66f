"""A town on one machine: a directory with the rigs' clones, the sessions, and town.json.

    TOWN/town.json          {"rigs": {"webapp": {"spec": <Rig spec>, "mergeQueue": <MergeQueue spec>,
                                                  "webhookUrl": ...}},
                             "limits": <the town's budget and shared limits (api/budget.py TownLimits)>}
    TOWN/rigs/NAME/         the rig's clone and its polecats' worktrees
    TOWN/sessions/, verify/ session and verification directories (logs, results)
    TOWN/cache/             the cache root of the town and its sessions (their GT_CACHE_DIR): a rig's
                            ledger cache is ledgers/KEY under it, by the one rule (handoff.cache_dir_for)
    TOWN/daemon.pid, daemon.log

A rig is kept as the same spec a Rig resource has, so `gt apply -f rig.yaml` and
`kubectl apply -f rig.yaml` read the same file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..api import Invalid, MergeQueueSpec, RigSpec
from ..api.budget import TownLimits
from ..api.validation import parse_spec
from ..ledger.ledger import default_cache_dir
from ..refinery import QueueSettings
from ..witness import Thresholds
from .driver import RigConfig


class TownError(ValueError):
    pass


def default_town() -> Path:
    return Path(os.environ.get("GT_TOWN") or Path.home() / "gt")


def git_url(remote: str) -> str:
    """A rig's URL as a Rig spec takes it: a local path becomes a file:// URL."""
    if "://" in remote or (":" in remote and "@" in remote.split(":", 1)[0]):
        return remote
    return Path(remote).expanduser().resolve().as_uri()


def rig_config(name: str, spec: RigSpec, queue: MergeQueueSpec | None = None,
               webhook_url: str | None = None) -> RigConfig:
    """How the local driver runs a rig of this spec."""
    return RigConfig(
        name, spec.git_url, max_polecats=spec.max_polecats, runtime=spec.runtime, target=spec.default_branch,
        deadline=float(spec.session_deadline_seconds), escalation=spec.escalation, webhook_url=webhook_url,
        thresholds=Thresholds.from_spec(spec.witness),
        gates=spec.verification.gates.ordered(),
        queue=None if queue is None else QueueSettings.from_spec(queue, spec.default_branch),
        verify_timeout=float(spec.verification.timeout_seconds), dogs=spec.dogs, budget=spec.budget)


class Town:
    def __init__(self, root: Path | None = None):
        self.root = Path(root or default_town()).expanduser().resolve()

    @property
    def config_path(self) -> Path:
        return self.root / "town.json"

    def stamp(self) -> tuple[int, int, int] | None:
        """Which version of town.json is on disk (None: none is): what a daemon compares before
        reading it again."""
        try:
            st = os.stat(self.config_path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _load(self) -> dict:
        try:
            data = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return {"rigs": {}}
        except ValueError as e:
            raise TownError(f"{self.config_path} is not valid JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("rigs", {}), dict):
            raise TownError(f"{self.config_path}: expected {{\"rigs\": {{NAME: ...}}}}")
        return data

    def _save(self, data: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.config_path)

    def settings(self) -> dict[str, object]:
        """The town's own settings (town.json's ``settings``, by camelCase name; see settings.py)."""
        found = self._load().get("settings", {})
        if not isinstance(found, dict):
            raise TownError(f"{self.config_path}: settings must be an object, like {{\"leaseSeconds\": 60}}")
        return found

    def limits(self) -> TownLimits:
        """The town's budget and its limits shared by all rigs (town.json's ``limits``)."""
        try:
            return parse_spec(TownLimits, self._load().get("limits") or {}, prefix="limits")
        except Invalid as e:
            raise TownError(f"{self.config_path}: {e}") from None

    def put_limits(self, limits: TownLimits) -> None:
        data = self._load()
        data["limits"] = limits.wire()
        self._save(data)

    def specs(self) -> dict[str, tuple[RigSpec, MergeQueueSpec | None, str | None]]:
        """Each rig's spec, merge-queue spec and webhook URL, as town.json holds them."""
        out = {}
        for name, raw in self._load().get("rigs", {}).items():
            try:
                spec = parse_spec(RigSpec, raw.get("spec"))
                queue = parse_spec(MergeQueueSpec, raw["mergeQueue"]) if raw.get("mergeQueue") else None
            except Invalid as e:
                raise TownError(f"{self.config_path}: rig {name}: {e}") from None
            out[name] = (spec, queue, raw.get("webhookUrl"))
        return out

    def rigs(self) -> dict[str, RigConfig]:
        return {name: rig_config(name, *entry) for name, entry in self.specs().items()}

    def put_rig(self, name: str, spec: RigSpec, webhook_url: str | None = None) -> bool:
        """Add or change a rig (its merge queue stays); True when something changed."""
        data = self._load()
        entry = data.setdefault("rigs", {}).setdefault(name, {})
        before = dict(entry)
        entry["spec"] = spec.wire()
        if webhook_url is not None:
            entry["webhookUrl"] = webhook_url
        self._save(data)
        return entry != before

    def put_queue(self, rig: str, queue: MergeQueueSpec) -> bool:
        data = self._load()
        entry = data.get("rigs", {}).get(rig)
        if entry is None:
            raise TownError(f"MergeQueue for rig {rig!r}: no such rig in {self.root} (add the Rig first)")
        before = entry.get("mergeQueue")
        entry["mergeQueue"] = queue.wire()
        self._save(data)
        return entry["mergeQueue"] != before

    def remove_rig(self, name: str) -> None:
        data = self._load()
        if name not in data.get("rigs", {}):
            raise TownError(f"no rig {name!r} in {self.root}")
        del data["rigs"][name]
        self._save(data)

    def rig(self, name_or_remote: str) -> RigConfig:
        """A rig of this town by name; a path or URL becomes an unregistered rig."""
        rigs = self.rigs()
        if name_or_remote in rigs:
            return rigs[name_or_remote]
        if "/" in name_or_remote or ":" in name_or_remote or Path(name_or_remote).exists():
            return RigConfig(Path(name_or_remote).name.removesuffix(".git") or "rig", name_or_remote)
        known = ", ".join(sorted(rigs)) or "none yet (gt rig add NAME URL)"
        raise TownError(f"no rig {name_or_remote!r} in the town at {self.root}; rigs: {known}")

    @property
    def cache_root(self) -> Path:
        """The town's cache root: what its sessions' `gt` is given as GT_CACHE_DIR."""
        return self.root / "cache"

    def ledger_cache(self, remote: str) -> Path:
        """The cache of a rig's ledger: the one rule (``ledger.default_cache_dir``) under the town's
        cache root, so that every writer of the town, an agent's `gt` included, shares it."""
        return default_cache_dir(remote, self.cache_root)

    def legacy_cache(self, rig: str) -> Path:
        """Where an earlier gastown cached the ledger of the rig named ``rig`` (``gt up`` drains it)."""
        return self.cache_root / "ledgers" / rig
