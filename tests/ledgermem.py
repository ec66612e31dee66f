"""An in-memory stand-in for the git store, for property tests of the write path only.

It keeps the remote as a chain of commits and lets a test interfere at each push:
another writer may win the race first, and an answer may be lost. Git itself is never
imitated for anything else: every other ledger test runs on real repositories.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from gastown.ledger.errors import UnknownOutcome
from gastown.ledger.model import Bead


@dataclass
class MemSnapshot:
    commit: str | None
    beads: dict[str, Bead]
    prefix: str = "gt"

    def get(self, bead_id: str) -> Bead | None:
        return self.beads.get(bead_id)

    def ids(self):
        return iter(self.beads)

    def archived(self):
        return iter(())


@dataclass
class MemStore:
    commits: dict[str, tuple[str | None, dict[str, Bead], str]] = field(default_factory=dict)
    tip: str | None = None
    # called before each push decides; returns "ok", "lost-ack" (landed, answer lost)
    # or "lost-push" (did not land, answer lost)
    interfere: Callable[[MemStore], str] = lambda store: "ok"
    _ids: itertools.count = field(default_factory=itertools.count)

    def snapshot(self, commit: str | None) -> MemSnapshot:
        return MemSnapshot(commit, dict(self.commits[commit][1]) if commit else {})

    def write_commit(self, base: MemSnapshot, changes: dict, message: str, author: object, *,
                     archive: set[str]) -> str:
        commit = f"c{next(self._ids)}"
        self.commits[commit] = (base.commit, {**base.beads, **changes}, message)
        return commit

    def push(self, commit: str) -> bool:
        what = self.interfere(self)
        parent = self.commits[commit][0]
        landed = parent == self.tip and what != "lost-push"
        if landed:
            self.tip = commit
        if what in ("lost-ack", "lost-push"):
            raise UnknownOutcome("the answer was lost")
        return landed

    def fetch(self) -> str | None:
        return self.tip

    def is_ancestor(self, commit: str, tip: str) -> bool:
        cur: str | None = tip
        while cur is not None:
            if cur == commit:
                return True
            cur = self.commits[cur][0]
        return False

    def chain(self) -> list[str]:
        out, cur = [], self.tip
        while cur is not None:
            out.append(cur)
            cur = self.commits[cur][0]
        return list(reversed(out))
