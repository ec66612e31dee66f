"""Agent runtimes: the presets, custom runtimes, the session wrapper, and the session backends.

Only this package starts or stops sessions.
"""

from .config import ConfigError, all_runtimes, resolve
from .presets import PRESETS, Runtime

__all__ = ["PRESETS", "ConfigError", "Runtime", "all_runtimes", "resolve"]
