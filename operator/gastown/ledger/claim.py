"""Who drives a ledger: one claim with a lease, on the rig repository next to the ledger branch.

A rig's ledger is driven (dispatched, merged, patrolled) by one driver at a time: one rig of one
town, or one Rig of one operator. The claim is a commit on ``refs/gastown/driver`` whose message
names the holder and the lease; the holder renews it by replacing the commit, and every change
of the ref is a compare-and-swap (a push with ``--force-with-lease`` on the commit it read), so
two drivers never both win. A claim not renewed for its lease is stale: anyone may take it over.
A holder that stops cleanly deletes its claim, so the next driver need not wait.

The claim is not on the ledger branch: renewals would wake every reader of the ledger and fill
its history. Each renewal is a parentless commit that replaces the last one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import Unavailable, UnknownOutcome
from .gitrun import run_git, stop_grace
from .gitstore import CLAIM_REF, GitStore, Signature

log = logging.getLogger("gastown.ledger")
SEEN_REF = "refs/gastown/driver-seen"  # the claim as last fetched, in the cache
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class Claim:
    """A driver's claim on a ledger, as its commit says."""

    holder: str
    renewed: datetime
    lease: float  # seconds: stale when not renewed for this long
    commit: str

    def age(self, now: datetime) -> float:
        return max(0.0, (now - self.renewed).total_seconds())

    def stale(self, now: datetime) -> bool:
        return self.age(now) > self.lease

    def describe(self, now: datetime) -> str:
        return f"{self.holder} (renewed {self.age(now):.0f}s ago, lease {self.lease:.0f}s)"


@dataclass(frozen=True)
class Drive:
    """The answer to "may I drive?": yes (``claim`` is mine), or no (``claim`` is the holder's)."""

    ok: bool
    claim: Claim | None
    took_over: Claim | None = None  # the stale claim this driver replaced


class ClaimStore:
    """The driver claim of one rig repository, through the ledger's cache."""

    def __init__(self, store: GitStore, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.store, self.clock = store, clock
        self._read: Claim | None = None  # the last claim read (by its commit)

    def current(self, fresh: bool = True) -> Claim | None:
        """The claim on the remote now (``fresh``: ask the remote; else as its last ls-remote saw it)."""
        if fresh:
            self.store.remote_tip()
        sha = self.store.claim_seen
        if sha is None:
            return None
        if self._read is None or self._read.commit != sha:
            self._read = self._load(sha)
        return self._read

    def drive(self, holder: str, lease: float) -> Drive:
        """Take, renew or keep the claim for ``holder``; refused while another holds a live one.

        A renewal is pushed when a third of the lease has passed, so a driver that polls often
        writes to the remote only every ``lease / 3`` seconds."""
        now = self.clock()
        claim = self.current(fresh=False)
        if claim is not None and claim.holder == holder and claim.age(now) < lease / 3:
            return Drive(True, claim)
        if claim is not None and claim.holder != holder and not claim.stale(now):
            return Drive(False, claim)
        mine = self._swap(claim, holder, lease, now)
        if mine is None:  # lost a race: whoever won holds it now
            other = self.current()
            if other is not None and other.holder == holder:
                return Drive(True, other)
            return Drive(False, other)
        took = claim if claim is not None and claim.holder != holder else None
        if took is not None:
            log.warning("ledger of %s: took over from %s, whose claim went stale", self.store.remote,
                        took.describe(now))
        return Drive(True, mine, took)

    def release(self, holder: str) -> bool:
        """Delete the claim if ``holder`` has it (a clean stop): the next driver need not wait. It
        runs even once the process stops its git (``stop_git``), a few seconds at most."""
        with stop_grace():
            claim = self.current()
            if claim is None or claim.holder != holder:
                return False
            return self._push(None, claim.commit)

    def _swap(self, claim: Claim | None, holder: str, lease: float, now: datetime) -> Claim | None:
        body = json.dumps({"holder": holder, "lease": lease, "renewed": now.isoformat()}, sort_keys=True)
        commit = self.store.commit_tree(EMPTY_TREE, [], f"driver: {holder}\n\n{body}\n", Signature.of(holder),
                                        when=now.timestamp())
        self.store.write_object("tree", b"")  # the empty tree, in case the cache has never seen it
        if not self._push(commit, claim.commit if claim else None):
            return None
        self._read = Claim(holder, now, lease, commit)
        self.store.claim_seen = commit
        return self._read

    def _push(self, commit: str | None, expected: str | None) -> bool:
        """Compare-and-swap the claim: from ``expected`` (None: absent) to ``commit`` (None: delete)."""
        try:
            swapped = self.store.swap_ref(CLAIM_REF, commit, expected)
        except UnknownOutcome:
            return False  # read again: whoever holds it now is the answer
        if swapped and commit is None:
            self.store.claim_seen, self._read = None, None
        return swapped

    def _load(self, sha: str) -> Claim:
        if not self.store.has(sha):  # fetched: by now it may have moved on (or gone)
            proc = run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", self.store.remote,
                            f"+{CLAIM_REF}:{SEEN_REF}"], repo=self.store.cache, check=False, env=self.store.env)
            if proc.returncode != 0:
                raise Unavailable(f"cannot read the driver claim of {self.store.remote}")
            sha = self.store.claim_seen = run_git(["rev-parse", SEEN_REF], repo=self.store.cache).stdout.decode().strip()
        raw = run_git(["cat-file", "commit", sha], repo=self.store.cache, check=False).stdout.decode(errors="replace")
        try:
            body = json.loads(raw.split("\n\n", 1)[1].split("\n\n", 1)[1])
            return Claim(str(body["holder"]), datetime.fromisoformat(body["renewed"]), float(body["lease"]), sha)
        except (IndexError, KeyError, TypeError, ValueError):
            # not a claim gastown wrote: whoever wrote it, it names no holder that renews it
            log.warning("ledger of %s: %s holds no driver claim gastown can read; it is treated as stale",
                        self.store.remote, CLAIM_REF)
            return Claim("an unreadable claim", datetime.fromtimestamp(0, UTC), 0.0, sha)
