"""The rig loops' rests on a cluster (kube/rests.py), on a real event loop: one task looks for
every resting rig, and wakes only the rig whose view moved or whose daemon stops."""

from __future__ import annotations

import asyncio

from gastown.kube.rests import Rests

LOOKERS = "gastown-rig-rests"


class Flag:
    """kopf's daemon flag, as a rig loop reads it: true once the daemon is asked to stop."""

    def __init__(self) -> None:
        self.set = False

    def __bool__(self) -> bool:
        return self.set


def lookers() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name() == LOOKERS and not t.done()]


def test_one_task_looks_for_every_resting_rig_and_wakes_only_the_rig_whose_view_moved():
    async def scenario() -> None:
        rests, views = Rests(every=0.01), {f"rig{i}": 0 for i in range(20)}
        woke: list[str] = []

        async def rig(name: str) -> None:
            await rests.rest(lambda: views[name], Flag(), 30)
            woke.append(name)

        rigs = [asyncio.create_task(rig(name)) for name in views]
        await asyncio.sleep(0.05)
        assert len(lookers()) == 1, "each resting rig should not look for itself"
        views["rig7"] += 1
        await asyncio.wait_for(rigs[7], 5)
        await asyncio.sleep(0.05)  # several more looks: nobody else moved
        assert woke == ["rig7"]
        for name in views:
            views[name] += 1
        await asyncio.wait_for(asyncio.gather(*rigs), 5)
        await asyncio.sleep(0.05)
        assert lookers() == [], "nobody rests: the task that looks has ended"

    asyncio.run(scenario())


def test_a_rest_ends_at_its_time_when_nothing_moves_and_at_once_when_its_daemon_stops():
    async def scenario() -> None:
        rests, stopping, loop = Rests(every=0.01), Flag(), asyncio.get_running_loop()
        begun = loop.time()
        await asyncio.wait_for(rests.rest(lambda: 0, Flag(), 0.1), 5)
        assert loop.time() - begun >= 0.1
        stopped = asyncio.create_task(rests.rest(lambda: 0, stopping, 30))
        await asyncio.sleep(0.03)
        assert not stopped.done()
        stopping.set = True
        await asyncio.wait_for(stopped, 5)
        await asyncio.wait_for(rests.rest(lambda: 0, stopping, 30), 1)  # a stopped daemon does not rest at all

    asyncio.run(scenario())


def test_a_view_that_cannot_be_read_wakes_its_rig_and_the_others_rest_on():
    async def scenario() -> None:
        rests, broken = Rests(every=0.01), {"now": False}

        def view() -> int:
            if broken["now"]:
                raise RuntimeError("dictionary changed size during iteration")
            return 0

        failing = asyncio.create_task(rests.rest(view, Flag(), 30))
        quiet = asyncio.create_task(rests.rest(lambda: 0, Flag(), 30))
        await asyncio.sleep(0.03)
        broken["now"] = True
        await asyncio.wait_for(failing, 5)
        await asyncio.sleep(0.03)
        assert not quiet.done()
        quiet.cancel()

    asyncio.run(scenario())


def test_every_rig_loop_of_an_operator_shares_one_pool_and_one_looking_task(tmp_path, monkeypatch):
    """kopf gives each object a shallow copy of the operator's memo (its own ResourceMemories here):
    what the rig loops share is made at start-up, in the operator's. Made by each rig loop in its
    own memo, they were one pool of threads and one looking task per rig."""
    import kopf
    from kopf._core.reactor.inventory import ResourceMemories

    from gastown.kube.memo import rig_rests, rig_threads
    from gastown.kube.startup import cleanup, startup

    monkeypatch.setenv("GT_CACHE_DIR", str(tmp_path))
    operator = kopf.Memo()
    startup(settings=kopf.OperatorSettings(), memo=operator)

    async def memos() -> list:
        memories = ResourceMemories()
        return [(await memories.recall({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig",
                                        "metadata": {"uid": uid, "name": uid, "namespace": "default"}},
                                       memobase=operator)).memo for uid in ("webapp", "api")]

    webapp, api = asyncio.run(memos())
    assert webapp is not api
    assert rig_threads(webapp) is rig_threads(api) and rig_rests(webapp) is rig_rests(api)
    rig_threads(operator).shutdown()
    cleanup(memo=operator)
