"""Agent runtimes: the presets, custom runtimes, the session wrapper, and the session backends.

Only this package starts or stops sessions. Its names load on first use: the session wrapper
imports ``runtimes.session`` and starts its agent before the custom runtimes' YAML and pydantic
are loaded.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # typing is not loaded before a session's agent starts (wrapper.py)

if TYPE_CHECKING:
    from .config import ConfigError, all_runtimes, resolve
    from .presets import PRESETS, Runtime

__all__ = ["PRESETS", "ConfigError", "Runtime", "all_runtimes", "resolve"]
_FROM = {"ConfigError": ".config", "all_runtimes": ".config", "resolve": ".config", "PRESETS": ".presets",
         "Runtime": ".presets"}


def __getattr__(name: str) -> object:
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_FROM[name], __name__), name)
