"""``gt peek``: the live output of a polecat's session, or the log of a verification run."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import click

from ..local.town import Town
from ..runtimes.local import LocalBackend, LocalSession
from .common import fail, town_option


@click.command()
@click.argument("name", metavar="POLECAT|RUN")
@click.option("--verify", "verify", is_flag=True,
              help="NAME is a verification run (its ID as `gt feed` and `gt mq status` show it), not a polecat.")
@click.option("--rig", help="The polecat's rig, when polecats of two rigs share its name.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as it is written, until it ends (Ctrl-C stops).")
@click.option("--tail", type=click.IntRange(1), default=None, help="Only the last N lines.")
@click.option("-n", "--namespace", help="On a cluster: read the pod's log through the API in this namespace "
                                        "(your kubeconfig; needs get on pods/log). Without it, the local town.")
@town_option
def peek(*, name: str, verify: bool, rig: str | None, follow: bool, tail: int | None, namespace: str | None,
         town: Path | None) -> None:
    """Show what a polecat's current (or last) session is printing: `gt peek POLECAT`; or the
    output of a verification run: `gt peek --verify RUN`."""
    if namespace:
        _peek_pod(name, verify=verify, rig=rig, follow=follow, tail=tail, namespace=namespace)
        return
    t = Town(town)
    if verify:
        log = _verify_log(t, name)
        _show(log, tail, follow, lambda: (log.parent / "pid").exists() and not _recorded(log.parent))
        return
    session = _session(t, name, rig)
    log = session.dir / "session.log"
    click.echo(f"# polecat {name}: session {session.name} on bead {session.request.bead} (rig {session.request.rig})"
               f", {'running' if session.running() else 'ended'}", err=True)
    _show(log, tail, follow, session.running)


def _session(t: Town, polecat: str, rig: str | None) -> LocalSession:
    """The polecat's newest session in the town (sessions are kept on disk: see LocalBackend)."""
    found = LocalBackend(t.root).sessions(rig, polecat)
    if not found:
        fail(f"no session of polecat {polecat!r}" + (f" on rig {rig}" if rig else "") + f" in the town at {t.root}")
    rigs = {s.request.rig for s in found}
    if len(rigs) > 1:
        fail(f"polecat {polecat!r} has sessions on rigs {', '.join(sorted(rigs))}: say which with --rig")
    return found[-1]


def _verify_log(t: Town, run: str) -> Path:
    """TOWN/verify/BATCH/RUN-ATTEMPT/verify.log (local/driver.py start_verification); the newest attempt."""
    logs = [p for p in (t.root / "verify").glob("*/*/verify.log")
            if p.parent.name == run or p.parent.name.rsplit("-", 1)[0] == run]
    if not logs:
        fail(f"no verification run {run!r} in the town at {t.root} (finished batches' runs are pruned; "
             f"their failing output is in the rejection: gt bead show MR)")
    return max(logs, key=lambda p: p.stat().st_mtime)


def _recorded(vdir: Path) -> bool:
    """The verifier has ended (its process is gone)."""
    try:
        pid = int((vdir / "pid").read_text())
    except (FileNotFoundError, ValueError):
        return True
    return not Path(f"/proc/{pid}").exists()


def _show(log: Path, tail: int | None, follow: bool, running: Callable[[], bool]) -> None:
    try:
        with log.open("rb") as f:
            text = f.read().decode(errors="replace")
            lines = text.splitlines(keepends=True)
            sys.stdout.write("".join(lines[-tail:] if tail else lines))
            sys.stdout.flush()
            while follow:
                chunk = f.read()
                if chunk:
                    sys.stdout.write(chunk.decode(errors="replace"))
                    sys.stdout.flush()
                elif not running():
                    sys.stdout.write(f.read().decode(errors="replace"))
                    return
                else:
                    time.sleep(0.2)
    except FileNotFoundError:
        click.echo("(no output yet)", err=True)
    except KeyboardInterrupt:
        return


def _peek_pod(name: str, *, verify: bool, rig: str | None, follow: bool, tail: int | None, namespace: str) -> None:
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException

    from ..kube import podlogs
    from ..kube.client import api_client

    try:
        client = api_client()
        pod = podlogs.verification_pod(client, namespace, name) if verify else \
            podlogs.session_pod(client, namespace, name, rig)
        click.echo(f"# pod {namespace}/{pod.metadata.name}", err=True)
        if follow:
            for line in podlogs.follow(client, pod):
                click.echo(line)
        else:
            sys.stdout.write(podlogs.read(client, pod, tail))
    except podlogs.NoPod as e:
        fail(e)
    except ConfigException as e:
        fail(f"no cluster to read from: {e}")
    except ApiException as e:
        fail(f"the API refused to give the pod's log: {e.status} {e.reason}")
    except KeyboardInterrupt:
        return
