"""What ends a rig loop's rest on a cluster: one task of kopf's event loop looks for every rig.

Between two ticks a rig loop rests, up to GT_POLL_IDLE_SECONDS when its rig is idle. What the
operator sees of the rig move (``KubeRig.woken``: kopf's indexes, fed by its watches, and this
process's pushes to the rig's ledgers; no request, no git) must end the rest at once, and so must
the daemon's stop. One task looks CHECK_SECONDS apart for every rig that rests and wakes the rigs
whose view moved; a rest is otherwise one timer. An operator of 20 idle rigs so wakes 4 times a
second, not 80: each of those wake-ups was a turn of the event loop and a timeout of its own, most
of an idle operator's CPU. Nobody resting, the task ends: no wake-ups at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("gastown.dispatch")
CHECK_SECONDS = 0.25  # how often the resting rig loops' views are looked at (no request)


@dataclass(eq=False)
class _Resting:
    woken: Callable[[], Hashable]
    stopped: Any  # kopf's flag: true once the daemon is asked to stop
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    seen: Hashable = field(init=False)

    def __post_init__(self) -> None:
        self.seen = self.woken()

    def look(self) -> None:
        try:
            moved = self.woken() != self.seen
        except Exception as e:  # noqa: BLE001 (a tick too many, never one too few)
            log.debug("a rig loop's view could not be read (%s): it ticks", e)
            moved = True
        if moved or self.stopped:
            self.wake.set()


class Rests:
    """The rests of the rig loops of one event loop (kopf's), and the one task that looks."""

    def __init__(self, every: float = CHECK_SECONDS):
        self.every = every
        self._resting: set[_Resting] = set()
        self._task: asyncio.Task | None = None

    async def rest(self, woken: Callable[[], Hashable], stopped: Any, seconds: float) -> None:
        """Wait ``seconds``, or until ``woken()`` differs from what it is now, or ``stopped``."""
        if stopped or seconds <= 0:
            return
        entry = _Resting(woken, stopped)
        self._resting.add(entry)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._look(), name="gastown-rig-rests")
        timer = loop.call_later(seconds, entry.wake.set)
        try:
            await entry.wake.wait()
        finally:
            timer.cancel()
            self._resting.discard(entry)

    async def _look(self) -> None:
        while self._resting:
            await asyncio.sleep(self.every)
            for entry in list(self._resting):
                entry.look()
