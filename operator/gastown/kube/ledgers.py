"""One Ledger per rig for the whole operator process, with its cache on the operator's disk."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..ledger import Ledger


class RigLedgers:
    def __init__(self, root: Path | None = None):
        self.root = Path(root or os.environ.get("GT_CACHE_DIR") or Path.home() / ".cache" / "gastown")
        self._ledgers: dict[tuple[str, str], Ledger] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, rig: str, git_url: str, prefix: str = "gt") -> Ledger:
        key = (namespace, rig)
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is not None and ledger.remote != git_url:  # the Rig now points elsewhere
                ledger.close()
                ledger = None
            if ledger is None:
                ledger = Ledger(git_url, cache_dir=self.root / "ledgers" / namespace / rig, prefix=prefix,
                                actor="gastown operator")
                self._ledgers[key] = ledger
            return ledger

    def close(self) -> None:
        with self._lock:
            for ledger in self._ledgers.values():
                ledger.close()
            self._ledgers.clear()
