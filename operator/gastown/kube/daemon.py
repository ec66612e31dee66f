"""A kopf daemon for each Rig that puts no finalizer on it.

kopf adds its finalizer to every object a daemon runs for, so that it may stop the daemon before
the object goes. With the operator stopped, nothing removes that finalizer: a deleted Rig, and the
namespace it is in, stay Terminating for ever. A rig loop needs no work at its Rig's end (the
garbage collector deletes what the Rig owns, the ledger stays in git), only to stop: here it stops
when kopf says so, or when its Rig (by uid) has left kopf's index of rigs, which is what a
deletion without a finalizer looks like to a running operator.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from ..api import GROUP, VERSION


@kopf.index(GROUP, VERSION, "rigs")
def rig_uids(namespace: str | None, name: str, uid: str, **_: Any) -> dict:
    return {(namespace, name): uid}


class _Stopped:
    """kopf's DaemonStopped, also true once the Rig is gone."""

    def __init__(self, stopped: Any, gone: Callable[[], bool]):
        self._stopped, self._gone = stopped, gone

    def __bool__(self) -> bool:
        return bool(self._stopped) or self._gone()

    def wait(self, timeout: float | None = None) -> Any:  # a coroutine for an async daemon, as kopf's
        return self._stopped.wait(timeout)


def _gone(namespace: str, name: str, uid: str, index: Mapping) -> Callable[[], bool]:
    return lambda: uid not in index.get((namespace, name), [])


def rig_daemon(*, id: str, **options: Any) -> Callable[[Callable], Callable]:  # noqa: A002 (kopf's word)
    """``@kopf.daemon(GROUP, VERSION, "rigs", id=..., **options)`` of a coroutine, without the finalizer."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        async def run(*, stopped: Any, name: str, namespace: str, uid: str, rig_uids: kopf.Index,
                      **kwargs: Any) -> Any:
            gone = _gone(namespace, name, uid, rig_uids)
            return await fn(stopped=_Stopped(stopped, gone), name=name, namespace=namespace, uid=uid,
                            rig_uids=rig_uids, **kwargs)

        kopf.daemon(GROUP, VERSION, "rigs", id=id, **options)(run)  # type: ignore[arg-type]  # kopf's Protocol has no index kwargs
        # kopf.daemon has no option for it: the handler it registered, without requires_finalizer
        spawning = kopf.get_default_registry()._spawning  # noqa: SLF001 (kopf 1.45's registry)
        spawning._handlers = [dataclasses.replace(h, requires_finalizer=False) if h.fn is run else h  # noqa: SLF001
                              for h in spawning._handlers]  # noqa: SLF001
        return fn

    return decorate
