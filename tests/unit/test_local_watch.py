"""The process's watch (local/watch.py): one thread wakes each waiting rig whose key changed, or whose
stop was asked for, and no other."""

from __future__ import annotations

import threading

from gastown.local.watch import Watch


def test_the_watch_wakes_the_rig_whose_key_changed_and_the_one_asked_to_stop_only():
    watch = Watch.every(0.01)
    keys = {"a": 0, "b": 0, "c": 0}
    stops = {name: threading.Event() for name in keys}
    wakes = {name: threading.Event() for name in keys}
    with (watch.waiting(lambda: keys["a"], stops["a"], wakes["a"]),
          watch.waiting(lambda: keys["b"], stops["b"], wakes["b"]),
          watch.waiting(lambda: keys["c"], stops["c"], wakes["c"])):
        assert not any(w.wait(0.1) for w in wakes.values())  # nothing changed: nobody woken
        keys["a"] = 1
        assert wakes["a"].wait(5)
        stops["c"].set()
        assert wakes["c"].wait(5)
        assert not wakes["b"].is_set()


def test_a_key_read_while_its_rig_changes_it_counts_as_a_change():
    watch = Watch.every(0.01)
    sessions = {"p1": 1}
    calls = []

    def key():
        calls.append(1)
        if len(calls) == 3:  # the rig's thread adds a session while the watch iterates
            raise RuntimeError("dictionary changed size during iteration")
        return frozenset(sessions)

    wake = threading.Event()
    with watch.waiting(key, threading.Event(), wake):
        assert wake.wait(5)


def test_a_wait_begun_after_a_change_does_not_see_it_as_one():
    watch = Watch.every(0.01)
    key = {"v": 0}
    first, second = threading.Event(), threading.Event()
    with watch.waiting(lambda: key["v"], threading.Event(), first):
        key["v"] = 1
        assert first.wait(5)
    with watch.waiting(lambda: key["v"], threading.Event(), second):  # the pass after it has seen it
        assert not second.wait(0.2)


def test_one_watch_per_interval_for_the_whole_process():
    assert Watch.every(0.1) is Watch.every(0.1)
    assert Watch.every(0.1) is not Watch.every(0.05)
