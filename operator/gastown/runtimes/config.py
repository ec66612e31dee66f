"""Custom runtimes: a YAML file of runtime definitions, by name; a name of a preset overrides it.

The same file serves both drivers: locally at ``~/.config/gastown/runtimes.yaml`` (or
``$GT_RUNTIMES_FILE``), on a cluster as the ``runtimes`` ConfigMap mounted into the operator
and agent pods with ``GT_RUNTIMES_FILE`` pointing at it.

    runtimes:
      mycli:
        command: [mycli, run]
        args: ["--yes", "{prompt}"]
        promptMode: arg            # arg | stdin | file
        modelArgs: ["--model", "{model}"]
        resumeArgs: ["--continue"]
        apiKeyEnv: [MYCLI_API_KEY]
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..names import RUNTIME_NAME
from .presets import PRESETS, Runtime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .definition import RuntimeDef


class ConfigError(ValueError):
    pass


def config_file() -> Path:
    given = os.environ.get("GT_RUNTIMES_FILE")
    if given:
        return Path(given)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "gastown" / "runtimes.yaml"


def load(path: Path | None = None) -> dict[str, RuntimeDef]:
    path = path or config_file()
    if not path.exists():
        return {}
    import yaml  # only with a file to read: a session's wrapper mostly has none
    from pydantic import ValidationError

    from .definition import RuntimeDef

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    out = {}
    for name, raw in (data.get("runtimes") or {}).items():
        check_name(name)
        try:
            out[name] = RuntimeDef.model_validate(raw)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}: runtimes.{name}.{where}: {first['msg']}") from None
    return out


def save(defs: dict[str, RuntimeDef], path: Path | None = None) -> Path:
    path = path or config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"runtimes": {n: d.model_dump(by_alias=True, exclude_defaults=True) | {"command": d.command}
                         for n, d in sorted(defs.items())}}
    tmp = path.with_suffix(".tmp")
    import yaml

    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
    return path


def check_name(name: str) -> None:
    if not re.fullmatch(RUNTIME_NAME, name):
        raise ConfigError(f"{name!r} is not a runtime name: use lowercase letters, digits and '-'")


def resolve(name: str, path: Path | None = None) -> Runtime:
    """The runtime called ``name``: a custom definition first, then the presets."""
    custom = load(path)
    if name in custom:
        return custom[name].runtime(name)
    if name in PRESETS:
        return PRESETS[name]
    known = sorted(set(PRESETS) | set(custom))
    raise ConfigError(f"unknown runtime {name!r}; known: {', '.join(known)}")


def all_runtimes(path: Path | None = None) -> dict[str, Runtime]:
    out = dict(PRESETS)
    out.update({n: d.runtime(n) for n, d in load(path).items()})
    return out
