"""Which rigs the dashboard shows, each with its ledger: a local town's, or (see ``cluster``) a cluster's."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..ledger import Ledger
from ..refinery import QueueSettings


@dataclass(frozen=True)
class RigView:
    name: str
    ledger: Ledger
    limit: int  # maxPolecats
    queue: QueueSettings


class Ledgers:
    """The dashboard's own Ledger per rig, opened once and kept while the rig's remote stays."""

    def __init__(self, open_ledger: Callable[[str, str], Ledger]):
        self.open = open_ledger  # (rig name, remote) -> Ledger
        self._open: dict[str, tuple[str, Ledger]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, remote: str) -> Ledger:
        with self._lock:
            found = self._open.get(name)
            if found is None or found[0] != remote:
                if found is not None:
                    found[1].close()
                found = (remote, self.open(name, remote))
                self._open[name] = found
            return found[1]

    def close(self) -> None:
        with self._lock:
            for _remote, ledger in self._open.values():
                ledger.close()
            self._open.clear()


def local_town(root: object) -> tuple[Callable[[], dict[str, RigView]], Ledgers]:
    """The rigs of the local town at ``root`` (town.json is read on every call: rigs come and go)."""
    from ..local.town import Town

    town = Town(root)  # type: ignore[arg-type]
    ledgers = Ledgers(lambda name, remote: Ledger(remote, cache_dir=town.ledger_cache(remote),
                                                  actor="gastown dashboard"))

    def rigs() -> dict[str, RigView]:
        return {name: RigView(name, ledgers.get(name, c.remote), c.max_polecats, c.queue_settings)
                for name, c in sorted(town.rigs().items())}
    return rigs, ledgers
