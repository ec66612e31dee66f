"""Bead IDs: ``<prefix>-<base36>``, short while the ledger is small, never reused."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Container

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
MIN_LEN, MAX_LEN = 3, 8
# Largest chance we accept that two of the ledger's IDs would share a hash prefix.
COLLISION_BUDGET = 0.01


def base36(n: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(ALPHABET[r])
    return "".join(reversed(out)) or "0"


def id_length(count: int) -> int:
    """Shortest length whose birthday-collision chance over ``count + 1`` IDs is within budget."""
    n = count + 1
    for length in range(MIN_LEN, MAX_LEN + 1):
        if -math.expm1(-n * (n - 1) / (2 * 36**length)) <= COLLISION_BUDGET:
            return length
    return MAX_LEN


def new_id(prefix: str, seed: str, existing: Container[str], count: int) -> str:
    """An ID for a new bead, from a hash of ``seed`` (content, creator, time, nonce).

    A collision with an existing ID is detected and a longer ID is taken (with a new nonce).
    Deterministic for the same ``seed`` and ledger, so re-applying a create is stable.
    """
    length = id_length(count)
    for nonce in range(1000):
        digest = hashlib.sha256(f"{seed}\0{nonce}".encode()).digest()
        suffix = base36(int.from_bytes(digest[:16], "big")).rjust(MAX_LEN, "0")[-length:]
        candidate = f"{prefix}-{suffix}"
        if candidate not in existing:
            return candidate
        length = min(length + 1, MAX_LEN)
    raise RuntimeError("could not find a free bead ID")  # 1000 collisions at 8 chars: impossible


def child_id(parent: str, existing: Container[str]) -> str:
    """The next free ``parent.N``."""
    n = 1
    while f"{parent}.{n}" in existing:
        n += 1
    return f"{parent}.{n}"


def stable_id(prefix: str, kind: str, name: str) -> str:
    """The same ID for the same named record every time (a polecat, a convoy, a role)."""
    digest = hashlib.sha256(f"{kind}\0{name}".encode()).digest()
    return f"{prefix}-{base36(int.from_bytes(digest[:8], 'big')).rjust(MAX_LEN, '0')[-MAX_LEN:]}"
