"""What wakes a waiting rig loop on this machine: one thread looking for every rig of the process.

Between two ticks a rig loop sleeps, up to GT_POLL_IDLE_SECONDS when the rig is idle. What happens
on this machine must end that sleep at once: a ledger write by any process here (the remote's
``pushed`` marker replaced), a session, a verifier or a Mayor ending. Those are seen by looking (a
stat and a few process polls a rig), ``every`` seconds apart. One thread looks for every rig that
waits, and wakes the rig whose key changed, or whose stop was asked for: a town of 20 idle rigs
costs one thread's wake-ups, not 20 (each a futex timeout and a turn of the GIL, ten a second).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field

_watches: dict[float, Watch] = {}
_guard = threading.Lock()


@dataclass(eq=False)
class _Waiting:
    key: Callable[[], Hashable]
    stop: threading.Event
    wake: threading.Event
    seen: object = field(init=False)

    def __post_init__(self) -> None:
        self.seen = _read(self.key)

    def look(self) -> None:
        if self.stop.is_set():
            self.wake.set()
            return
        now = _read(self.key)
        if now != self.seen:
            self.seen = now
            self.wake.set()


def _read(key: Callable[[], Hashable]) -> object:
    """``key()``; a fresh object (a change: one tick too many, never one too few) when the rig's
    thread changed what it reads meanwhile (a dict of sessions it was adding to)."""
    try:
        return key()
    except RuntimeError:
        return object()


class Watch:
    """The watch of this process that looks ``every`` seconds apart (``Watch.every``)."""

    def __init__(self, every: float):
        self.interval = every
        self._waiting: set[_Waiting] = set()
        self._cv = threading.Condition()
        threading.Thread(target=self._run, daemon=True, name=f"local-watch-{every}").start()

    @classmethod
    def every(cls, seconds: float) -> Watch:
        with _guard:
            watch = _watches.get(seconds)
            if watch is None:
                watch = _watches[seconds] = cls(seconds)
            return watch

    @contextlib.contextmanager
    def waiting(self, key: Callable[[], Hashable], stop: threading.Event,
                wake: threading.Event) -> Iterator[None]:
        """While the block runs, ``wake`` is set as soon as ``key()`` differs from what it was when
        the block began, or ``stop`` is set."""
        entry = _Waiting(key, stop, wake)
        with self._cv:
            if not self._waiting:
                self._cv.notify()  # the thread sleeps while nobody waits
            self._waiting.add(entry)
        try:
            yield
        finally:
            with self._cv:
                self._waiting.discard(entry)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._waiting:
                    self._cv.wait()  # nobody waits: no wake-ups at all
                waiting = list(self._waiting)
            for entry in waiting:
                entry.look()
            with self._cv:
                self._cv.wait(self.interval)
