"""The town daemon: every rig of town.json driven by the same rig pass as the operator.

One thread per rig runs its RigDriver (convoys, scheduler, sessions, the Refinery, the
Witness); it steps when the rig's ledger moves or a session ends. What happens on this machine
(a write from here, a session ending) is looked at every CHECK_SECONDS by one thread for all
rigs (local/watch.py), and the remote is asked with the rig loop's backoff: GT_POLL_BUSY_SECONDS
apart while the rig is busy, up to GT_POLL_IDLE_SECONDS when it is idle. town.json is looked at
every second and read again when it changed: a rig added, changed or removed is started,
restarted or stopped. The daemon holds no state of its own: stopped at any point and started
again, it re-derives everything from the ledgers, and the sessions it started run on meanwhile
(they are their own process groups) and are found again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..budget import SharedLimits
from ..ledger import Ledger, LedgerError
from ..ledger.spool import Spool
from ..names import DAEMON_ACTOR
from ..rigloop import RESTART_SECONDS
from ..runtimes.local import LocalBackend
from ..scheduler import SharedBackoffs
from ..settings import Settings
from ..telemetry import metrics, tracing
from .driver import RigConfig, RigDriver
from .town import Town, TownError

log = logging.getLogger("gastown.daemon")
CHECK_SECONDS = 0.1  # how often a rig looks at this machine's changes (a stat and a few process polls)


@dataclass
class _Rig:
    config: RigConfig
    ledger: Ledger
    stop: threading.Event
    thread: threading.Thread


class TownDaemon:
    def __init__(self, town: Town, poll: float = CHECK_SECONDS, heartbeat_interval: float = 2.0,
                 settings: Settings | None = None):
        self.town, self.poll, self.settings = town, poll, settings or Settings()
        self.backend = LocalBackend(town.root, cache_root=town.cache_root, heartbeat_interval=heartbeat_interval,
                                    git_timeout=self.settings.git_timeout)
        self.rigs: dict[str, _Rig] = {}
        self.backoffs = SharedBackoffs()  # rigs on one API key wait out its rate limits together
        self.shared = SharedLimits()  # the town's budget and shared limits (town.json's limits, read with the rigs)
        self._synced: object = ()  # the town.json the rigs match (Town.stamp): set once a sync succeeded

    def peer(self, name: str) -> Ledger | None:
        rig = self.rigs.get(name)
        return rig.ledger if rig else None

    def sync(self) -> None:
        """Start, restart or stop rig threads to match town.json (read again only when it changed)."""
        stamp = self.town.stamp()
        if stamp == self._synced:
            return
        wanted = self.town.rigs()
        self.shared.configure(self.town.limits())
        for name in [n for n, r in self.rigs.items() if wanted.get(n) != r.config]:
            self._stop(name)
        for name, config in wanted.items():
            if name not in self.rigs:
                self._start(config)
        self._synced = stamp

    def _start(self, config: RigConfig) -> None:
        self._drain_legacy(config)
        ledger = Ledger(config.remote, cache_dir=self.backend.ledger_cache(config.remote), actor=DAEMON_ACTOR)
        driver = RigDriver(config, self.backend, ledger, peers=self.peer, backoffs=self.backoffs,
                           settings=self.settings, shared=self.shared)
        stop = threading.Event()
        thread = threading.Thread(target=self._drive, args=(driver, stop), name=f"rig-{config.name}", daemon=True)
        self.rigs[config.name] = _Rig(config, ledger, stop, thread)
        thread.start()
        log.info("rig %s: driving %s (%d polecats at most, runtime %s)", config.name, config.remote,
                 config.max_polecats, config.runtime.preset)

    def _drain_legacy(self, config: RigConfig) -> None:
        """An earlier gastown cached a rig's ledger by the rig's name. A write spooled there and
        never committed (its process killed before its turn) goes out now, not stranded: no later
        writer takes a turn in that cache. The cache is not used again."""
        old = self.town.legacy_cache(config.name)
        if old == self.backend.ledger_cache(config.remote) or not Spool.holds_writes(old):
            return
        try:
            with Ledger(config.remote, cache_dir=old, actor=DAEMON_ACTOR) as ledger:
                carried = ledger.commit_spooled()
        except LedgerError as e:
            log.warning("rig %s: the writes an earlier gastown left in %s are not committed yet: %s",
                        config.name, old, e)
            return
        if carried:
            log.info("rig %s: committed %d writes an earlier gastown left in %s, which is no longer used",
                     config.name, carried, old)
        if Spool.holds_writes(old):  # spooled by another installation (its own code applies them, not this)
            log.warning("rig %s: %s holds writes spooled by another gastown installation, which only that one "
                        "applies (its next write there commits them)", config.name, old / "spool")

    def _drive(self, driver: RigDriver, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                driver.run(stop, poll=self.poll)
            except Exception:  # a bug in one rig must not take the town down: say it, and retry
                log.exception("rig %s: the rig loop failed; it restarts in %.0f s", driver.config.name, RESTART_SECONDS)
                stop.wait(RESTART_SECONDS)

    def _stop(self, name: str) -> None:
        rig = self.rigs.pop(name)
        rig.stop.set()
        rig.thread.join(30)
        rig.ledger.close()
        log.info("rig %s: stopped", name)

    def run(self, stop: threading.Event) -> None:
        error: str | None = None
        try:
            while not stop.is_set():
                try:
                    self.sync()
                    error = None
                except (TownError, LedgerError) as e:
                    if str(e) != error:
                        log.error("%s (the rigs running go on; fix town.json or the rig)", e)
                    error = str(e)
                stop.wait(1.0)
        finally:
            for name in list(self.rigs):
                self._stop(name)


# --- the daemon as a background process --------------------------------------------------------


def pid_file(town: Town) -> Path:
    return town.root / "daemon.pid"


def log_file(town: Town) -> Path:
    return town.root / "daemon.log"


def _start_time(pid: int) -> str | None:
    """When the process ``pid`` started (clock ticks after boot, /proc/PID/stat field 22); None when
    there is no such process or it is a zombie (dead, not yet reaped); "" where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else ""
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime 22
    return None if fields[0] in ("Z", "X") else fields[19]


def running(town: Town) -> int | None:
    """The pid of the town's daemon, when it runs: the pid in the pid file, started when the pid
    file says (a pid reused by another process, or a zombie, is not the daemon)."""
    try:
        pid, *rest = pid_file(town).read_text().split()
        pid_ = int(pid)
    except (FileNotFoundError, ValueError):
        return None
    recorded = next((r.removeprefix("start=") for r in rest if r.startswith("start=")), None)
    started = _start_time(pid_)
    if started is None:
        return None
    if started and recorded is not None and started != recorded:
        return None  # the pid was reused
    if not started:  # no /proc: whether some process has the pid
        try:
            os.kill(pid_, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid_
    return pid_


def dashboard_token_file(town: Town) -> Path:
    return town.root / "dashboard.token"


def serve(town: Town, poll: float = CHECK_SECONDS, metrics_port: int = 0, settings: Settings | None = None, *,
          dashboard_port: int = 0) -> None:
    """Run the daemon in this process until SIGTERM or SIGINT (`gt up --foreground`)."""
    other = running(town)
    if other is not None and other != os.getpid():
        raise TownError(f"the town at {town.root} has a daemon already (pid {other}); gt down first")
    town.specs()  # a town.json it cannot read stops it before it starts (TownError)
    town.root.mkdir(parents=True, exist_ok=True)
    if metrics_port:
        metrics.serve(metrics_port, "127.0.0.1")  # a laptop's daemon: not for the network
    tracing.setup("gastown-daemon")  # spans go out over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set
    if dashboard_port:
        _dashboard(town, dashboard_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pid_file(town).write_text(f"{os.getpid()} start={_start_time(os.getpid()) or ''} {time.time():.0f}\n")
    log.info("town %s: daemon %d up", town.root, os.getpid())
    try:
        TownDaemon(town, poll, settings=settings).run(stop)
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            if int(pid_file(town).read_text().split()[0]) == os.getpid():
                pid_file(town).unlink()
        log.info("town %s: daemon %d down", town.root, os.getpid())


def _dashboard(town: Town, port: int) -> None:
    """The web dashboard on 127.0.0.1:PORT; actions only with the token in TOWN/dashboard.token."""
    from ..dashboard.server import Dashboard
    from ..dashboard.sources import local_town

    token_file = dashboard_token_file(town)
    token = token_file.read_text().strip() if token_file.exists() else None
    Dashboard(local_town(town.root)[0], token=token).start("127.0.0.1", port)


def start(town: Town, timeout: float = 15.0, metrics_port: int = 0, dashboard_port: int = 0) -> int:
    """Start the daemon in the background; its pid once it is up."""
    pid = running(town)
    if pid is not None:
        return pid
    town.root.mkdir(parents=True, exist_ok=True)
    with log_file(town).open("ab") as out:
        offset = out.tell()
        proc = subprocess.Popen([sys.executable, "-m", "gastown.cli.main", "up", "--foreground",
                                 "--town", str(town.root), "--metrics-port", str(metrics_port),
                                 "--dashboard-port", str(dashboard_port)],
                                stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running(town) == proc.pid:
            return proc.pid
        if proc.poll() is not None:
            raise TownError(f"the daemon did not start: {_why(town, offset, proc.returncode)}")
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):  # nothing is left running
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise TownError(f"the daemon did not come up within {timeout:.0f}s (stopped); see {log_file(town)}")


def _why(town: Town, offset: int, code: int) -> str:
    """The daemon's own last word in its log (what it wrote from ``offset`` on): its one-line error."""
    with log_file(town).open("rb") as f:
        f.seek(offset)
        lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    said = next((ln.removeprefix("gt: error: ") for ln in reversed(lines) if ln.startswith("gt: error: ")),
                lines[-1] if lines else f"it exited with code {code}")
    return f"{said} (see {log_file(town)})"


def stop(town: Town, timeout: float = 30.0) -> int | None:
    """Stop the daemon (SIGTERM, then SIGKILL after ``timeout``); the pid it had, if it ran."""
    pid = running(town)
    if pid is None:
        return None
    started = _start_time(pid)

    def alive() -> bool:  # the process itself, not its pid file: that goes a moment before it exits
        return _start_time(pid) == started if started else running(town) == pid

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        time.sleep(0.02)
    if alive():
        os.kill(pid, signal.SIGKILL)
        pid_file(town).unlink(missing_ok=True)
    return pid
