"""What keeps a rig from working, and when to try again: backoff and escalation per problem. Pure.

A rig loop keeps one ``Troubles``. Each operation that can keep failing (reaching the remote,
pushing a merge, making a session's worktree, starting a verification) has a key: while its
problem lasts, the operation is tried again only when ``due``, the wait doubling from
``Backoff.base`` up to ``Backoff.cap``; the first success clears it. The rig's status names each
problem, one warning is logged when it starts and one at each backoff step (never one per
poll), and after ``Backoff.escalate_after`` attempts it is escalated, once per problem.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

log = logging.getLogger("gastown.rig")

# the keys: the remote, a merge's push, the merge target, a session's start, a verifier's, any other failure of a pass
REMOTE, MERGE, TARGET, SESSION, VERIFY, PASS = "remote", "merge", "target", "session", "verify", "pass"


@dataclass(frozen=True)
class Backoff:
    base: float = 1.2  # seconds before the second attempt
    cap: float = 300.0  # the longest wait between two attempts
    escalate_after: int = 5  # failed attempts before a person is told

    def delay(self, attempts: int) -> float:
        """The wait after ``attempts`` failed attempts in a row."""
        return min(self.base * 2 ** min(max(attempts - 1, 0), 30), self.cap)


@dataclass(frozen=True, kw_only=True)
class Trouble:
    key: str
    problem: str  # what is wrong and how to fix it, in one line
    since: datetime
    attempts: int
    next_try: datetime
    escalation: str | None = None  # the escalation's ID ("" when it could not be recorded)

    @property
    def escalated(self) -> bool:
        return self.escalation is not None

    def line(self, now: datetime) -> str:
        """The rig's status line for it."""
        wait = max((self.next_try - now).total_seconds(), 0)
        said = f"; escalated {self.escalation}" if self.escalation else "; escalated" if self.escalated else ""
        return (f"blocked: {self.problem} ({self.attempts} attempt{'s' * (self.attempts != 1)} since "
                f"{self.since:%H:%M:%S}, next in {wait:.0f}s{said})")

    def to_dict(self) -> dict:
        return {"key": self.key, "problem": self.problem, "since": self.since.isoformat(), "attempts": self.attempts,
                "nextTry": self.next_try.isoformat(), "escalation": self.escalation}

    @classmethod
    def from_dict(cls, raw: dict) -> Trouble:
        return cls(key=raw["key"], problem=raw["problem"], since=datetime.fromisoformat(raw["since"]),
                   attempts=int(raw["attempts"]), next_try=datetime.fromisoformat(raw["nextTry"]),
                   escalation=raw.get("escalation"))


@dataclass
class Troubles:
    """The problems of one rig, by key."""

    rig: str
    backoff: Backoff = field(default_factory=Backoff)
    _open: dict[str, Trouble] = field(default_factory=dict)
    _cleared: list[Trouble] = field(default_factory=list)

    def due(self, key: str, now: datetime) -> bool:
        """Whether ``key``'s operation may be tried now (it has no problem, or its wait is over)."""
        trouble = self._open.get(key)
        return trouble is None or now >= trouble.next_try

    def failed(self, key: str, problem: str, now: datetime) -> Trouble:
        """One more failed attempt: the next wait, and a warning (the first, then one per backoff step)."""
        before = self._open.get(key)
        attempts = before.attempts + 1 if before else 1
        delay = self.backoff.delay(attempts)
        trouble = Trouble(key=key, problem=problem, since=before.since if before else now, attempts=attempts,
                          next_try=now + timedelta(seconds=delay), escalation=before.escalation if before else None)
        self._open[key] = trouble
        log.warning("rig %s: blocked: %s (attempt %d; next in %.1fs)", self.rig, problem, attempts, delay)
        return trouble

    def cleared(self, key: str) -> Trouble | None:
        """``key``'s operation worked: its problem (if it had one) is over."""
        trouble = self._open.pop(key, None)
        if trouble is not None:
            self._cleared.append(trouble)
            log.info("rig %s: no longer blocked (after %d attempts): %s", self.rig, trouble.attempts,
                        trouble.problem)
        return trouble

    @contextmanager
    def trying(self, key: str, now: datetime, problem: Callable[[str], str],
               errors: tuple[type[BaseException], ...]) -> Iterator[None]:
        """Run the block as ``key``'s attempt: a failure (one of ``errors``) is recorded, not raised,
        as ``problem(what was said)``; success clears the problem."""
        try:
            yield
        except errors as e:
            self.failed(key, problem(str(e)), now)
        else:
            self.cleared(key)

    def wait(self, key: str, now: datetime) -> float:
        """Seconds until ``key`` is due (0 when it is)."""
        trouble = self._open.get(key)
        return max((trouble.next_try - now).total_seconds(), 0.0) if trouble else 0.0

    def next_try(self, besides: tuple[str, ...] = ()) -> datetime | None:
        """When the first of the problems (but ``besides``) is due to be tried again."""
        return min((t.next_try for t in self._open.values() if t.key not in besides), default=None)

    def to_escalate(self) -> list[Trouble]:
        """The problems that failed ``escalate_after`` times and have not been escalated."""
        return [t for t in self._open.values() if not t.escalated and t.attempts >= self.backoff.escalate_after]

    def escalated(self, key: str, escalation: str) -> None:
        """``key``'s problem was escalated (``escalation``: its ID, "" when it could not be recorded)."""
        if key in self._open:
            self._open[key] = replace(self._open[key], escalation=escalation)

    def take_cleared(self) -> list[Trouble]:
        """The problems that cleared since the last call (to close their escalations)."""
        cleared, self._cleared = self._cleared, []
        return cleared

    def current(self) -> list[Trouble]:
        return sorted(self._open.values(), key=lambda t: (t.since, t.key))


# -- what each problem says, and its fix ------------------------------------------------------


def merge_problem(target: str) -> Callable[[str], str]:
    """What a failed merge push says, and its fix."""
    def problem(error: str) -> str:
        if not error.startswith("cannot push"):
            return f"cannot merge: {error}"
        if "checked out" in error:
            return (f"push refused: {error}: the remote is a checkout with {target} checked out; use a bare "
                    f"repository (git clone --bare), or set receive.denyCurrentBranch=updateInstead in it")
        return f"push refused: {error}: check the remote's permissions, protection rules and hooks"
    return problem


def session_problem(polecat: str, bead: str, target: str) -> Callable[[str], str]:
    """What a session that cannot start says, and its fix."""
    def problem(error: str) -> str:
        fix = f": the repository has no commits; push a first commit to {target}" \
            if "invalid reference: HEAD" in error else ""
        return f"cannot start a session for {polecat} on {bead}: {error}{fix}"
    return problem
