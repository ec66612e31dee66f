"""A stand-in for the model providers' APIs: the agent CLIs are real, the model is played.

Used by the agent contract suite (tests/agents) and by `DEMO_RUNTIME=<cli> make demo` when no
API key is given. Never part of a real session: nothing in the engine imports it.
"""

from .server import Conversation, Dialect, Reply, Script, Seen, StandIn, Turn, steps

__all__ = ["Conversation", "Dialect", "Reply", "Script", "Seen", "StandIn", "Turn", "steps"]
