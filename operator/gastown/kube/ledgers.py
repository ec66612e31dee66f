"""One Ledger per rig for the whole operator process, with its cache on the operator's disk
and the rig's git credentials (from its Secret) in the environment of its git commands."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ..api import RigSpec
from ..ledger import Ledger
from ..ledger.credentials import GitCredentials
from ..names import OPERATOR_ACTOR
from .client import read_secret

SECRET_TTL = 60.0  # seconds a Secret's content is trusted before it is read again


class RigLedgers:
    def __init__(self, root: Path):
        self.root = root  # Settings.cache_dir
        self._ledgers: dict[tuple[str, str], tuple[Ledger, object]] = {}
        self._secrets: dict[tuple[str, str], tuple[float, GitCredentials]] = {}
        self._lock = threading.Lock()

    def _credentials(self, namespace: str, spec: RigSpec) -> GitCredentials | None:
        if spec.credentials_secret is None:
            return None
        key = (namespace, spec.credentials_secret.name)
        cached = self._secrets.get(key)
        if cached is None or time.monotonic() - cached[0] > SECRET_TTL:
            cached = (time.monotonic(), GitCredentials.from_secret_data(read_secret(*key)))
            self._secrets[key] = cached
        return cached[1]

    def for_rig(self, namespace: str, rig: str, spec: RigSpec) -> Ledger:
        """The rig's ledger; a new one when the URL or the credentials changed."""
        creds = self._credentials(namespace, spec)
        home = self.root / "git-home" / namespace / rig
        identity = (spec.git_url, creds)
        with self._lock:
            current = self._ledgers.get((namespace, rig))
            if current is not None and current[1] == identity:
                return current[0]
            if current is not None:
                current[0].close()
            ledger = Ledger(spec.git_url, cache_dir=self.root / "ledgers" / namespace / rig,
                            prefix=spec.beads_prefix, actor=OPERATOR_ACTOR,
                            env=creds.env(home) if creds else None)
            self._ledgers[(namespace, rig)] = (ledger, identity)
            return ledger

    def close(self) -> None:
        with self._lock:
            for ledger, _ in self._ledgers.values():
                ledger.close()
            self._ledgers.clear()
