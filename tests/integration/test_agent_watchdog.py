"""The runtime's watchdog at the agent's end (runtimes/session.py ``_release``), with real processes:
the wrapper waits for the watchdog only while the runtime's group has something left to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from gastown.runtimes import session


def _agent(code: str) -> session._Agent:
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    return session._Agent(proc, session._watch(proc.pid), {})


def _reaped(proc: subprocess.Popen, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while proc.returncode is None and time.monotonic() < end:
        time.sleep(0.02)
    return proc.returncode is not None


def test_an_agent_gone_with_its_group_is_released_without_waiting_for_its_watchdog():
    agent = _agent("pass")
    assert agent.proc is not None and agent.watchdog is not None
    agent.proc.wait()
    os.kill(agent.watchdog.pid, signal.SIGSTOP)  # a watchdog that cannot end yet: nothing must wait for it
    try:
        release = threading.Thread(target=session._release, args=(agent,))
        release.start()
        release.join(2.0)  # the old release waited its full 3 s for a watchdog that does not end
        assert not release.is_alive(), "the agent's end waited for a watchdog with nothing to end"
        assert agent.watchdog.returncode is None
    finally:
        os.kill(agent.watchdog.pid, signal.SIGCONT)
    session._reap(agent)  # after the agent's end is said
    assert agent.watchdog.returncode == 0, "the watchdog was left a zombie"


def test_an_agent_whose_group_lives_on_is_released_once_the_watchdog_has_ended_it():
    agent = _agent("import time; time.sleep(300)")  # what is left in the group: here, the runtime itself
    assert agent.proc is not None and agent.watchdog is not None
    threading.Thread(target=agent.proc.wait, daemon=True).start()  # its parent reaps it, as the wrapper does
    session._release(agent)
    assert agent.watchdog.returncode is not None, "released before the watchdog had ended the group"
    assert _reaped(agent.proc, 1.0) and agent.proc.returncode == -signal.SIGTERM
    assert session._group_gone(agent.proc.pid)
