"""What the operator's handlers share through kopf's memo: its settings and its rig ledgers."""

from __future__ import annotations

import kopf

from ..settings import Settings
from .ledgers import RigLedgers


def ledgers(memo: kopf.Memo) -> RigLedgers:
    """The operator's rig ledgers (made once, by the startup handler)."""
    return memo["ledgers"]


def settings(memo: kopf.Memo) -> Settings:
    """The operator's settings (loaded by `gt operator run`)."""
    return memo.get("settings") or Settings()
