"""What sessions spend: tokens, cost and time, recorded on the ledger and summed from it. Engine.

Each session's usage, as its runtime reported it, is kept on its work bead under
``metadata.usage[<session>]``: the ledger is where spend is counted from (a convoy's, a rig's),
so a restart or a reinstall never forgets it, and a session recorded twice counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .ledger import Bead
from .ledger.ops import Tx, merged, revise

FIGURES = ("input_tokens", "output_tokens", "cost_usd", "seconds")


@dataclass(frozen=True, kw_only=True)
class RecordUsage:
    """What one session of a bead spent, on the bead, once per session."""

    bead_id: str
    session: str
    runtime: str
    usage: Mapping[str, Any]
    actor: str

    def apply(self, tx: Tx) -> Bead:
        bead = tx.require(self.bead_id)
        spent = dict(bead.metadata.get("usage") or {})
        if self.session in spent:
            return bead
        spent[self.session] = {**self.usage, "runtime": self.runtime, "at": tx.now.isoformat()}
        line = f"session {self.session} spent {describe(self.usage) or 'nothing it reported'}"
        return tx.put(revise(bead, tx, metadata=merged(bead.metadata, {"usage": spent})), line, self.actor)


def records(beads: Iterable[Bead]) -> Iterable[tuple[Bead, str, Mapping[str, Any]]]:
    """(bead, session, usage) for every session recorded on ``beads``."""
    for bead in beads:
        for session, usage in (bead.metadata.get("usage") or {}).items():
            yield bead, session, usage


def unrecorded(bead: Bead) -> str | None:
    """The session that ended on ``bead`` (by `gt done`, or the Deacon for it) whose spend is not
    recorded yet: its wrapper records it only once the runtime has answered, after the bead has
    gone on to review (or was merged)."""
    ended = bead.metadata.get("ended")
    return ended if ended and ended not in (bead.metadata.get("usage") or {}) else None


def total(beads: Iterable[Bead]) -> dict[str, float]:
    """What ``beads``' sessions spent together, by figure."""
    out: dict[str, float] = {}
    for _bead, _session, usage in records(beads):
        for key in FIGURES:
            value = usage.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = out.get(key, 0) + value
    return out


def describe(spent: Mapping[str, Any]) -> str:
    """"12,400 tokens in, 830 out, $0.19, 4m12s": what was reported, nothing more."""
    parts = []
    if spent.get("input_tokens"):
        parts.append(f"{int(spent['input_tokens']):,} tokens in")
    if spent.get("output_tokens"):
        parts.append(f"{int(spent['output_tokens']):,} out")
    if spent.get("cost_usd"):
        parts.append(f"${float(spent['cost_usd']):.2f}")
    if spent.get("seconds"):
        minutes, seconds = divmod(int(spent["seconds"]), 60)
        parts.append(f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s")
    return ", ".join(parts)
