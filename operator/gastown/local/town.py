"""A town on one machine: a directory with the rigs' clones, the sessions, and town.json.

    TOWN/town.json     {"rigs": {"webapp": {"remote": ..., "maxPolecats": 3, ...}}}
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from ..api.common import RuntimeSpec
from .driver import RigConfig


class TownError(ValueError):
    pass


def default_town() -> Path:
    return Path(os.environ.get("GT_TOWN") or Path.home() / "gt")


class Town:
    def __init__(self, root: Path | None = None):
        self.root = Path(root or default_town()).expanduser().resolve()

    @property
    def config_path(self) -> Path:
        return self.root / "town.json"

    def _load(self) -> dict:
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return {"rigs": {}}
        except ValueError as e:
            raise TownError(f"{self.config_path} is not valid JSON: {e}") from None

    def _save(self, data: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.config_path)

    def rigs(self) -> dict[str, RigConfig]:
        out = {}
        for name, raw in self._load().get("rigs", {}).items():
            runtime = RuntimeSpec.model_validate(raw.get("runtime") or {"preset": "script"})
            out[name] = RigConfig(name, raw["remote"], raw.get("maxPolecats", 3), runtime,
                                  raw.get("target", "main"), raw.get("deadline", 3600.0))
        return out

    def add_rig(self, config: RigConfig) -> None:
        data = self._load()
        raw = asdict(config)
        data.setdefault("rigs", {})[config.name] = {
            "remote": raw["remote"], "maxPolecats": raw["max_polecats"], "target": raw["target"],
            "deadline": raw["deadline"], "runtime": config.runtime.wire()}
        self._save(data)

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
