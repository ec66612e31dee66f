"""What the operator's handlers share through kopf's memo: its settings, its rig ledgers, the
threads the rig loops tick in, and the task that ends their rests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import kopf

from ..settings import Settings
from .ledgers import RigLedgers
from .rests import Rests

# At most this many rig ticks at once (a tick is a git ls-remote, sometimes a pass): the rig loops'
# own threads, started as rigs need them, apart from kopf's workers (--workers), which the
# handlers keep for themselves.
RIG_THREADS = 16


def ledgers(memo: kopf.Memo) -> RigLedgers:
    """The operator's rig ledgers (made once, by the startup handler)."""
    return memo["ledgers"]


def settings(memo: kopf.Memo) -> Settings:
    """The operator's settings (loaded by `gt operator run`)."""
    return memo.get("settings") or Settings()


def share(memo: kopf.Memo) -> None:
    """What every rig loop of the operator shares, made in the operator's memo at start-up: kopf
    gives each object a shallow copy of that memo, so what a rig loop added to its own stayed its
    own (a pool and a looking task per rig, where there is to be one of each)."""
    memo["rig_threads"] = ThreadPoolExecutor(max_workers=RIG_THREADS, thread_name_prefix="rig-loop")
    memo["rig_rests"] = Rests()


def rig_threads(memo: kopf.Memo) -> ThreadPoolExecutor:
    """The pool the rig loops' ticks run in."""
    return memo["rig_threads"]


def rig_rests(memo: kopf.Memo) -> Rests:
    """The rig loops' rests, and the one task that looks for them."""
    return memo["rig_rests"]
