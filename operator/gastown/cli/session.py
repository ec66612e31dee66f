"""``gt session run`` and ``gt done``: the wrapper around one agent session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .common import cache_option, settings
from .lazy import LazyGroup


# a LazyGroup, so that `gt` loads no git before `session run` starts its agent (it applies the git
# timeout itself, after)
@click.group(cls=LazyGroup, lazy={})
def session() -> None:
    """Agent sessions (what runs inside a Job's pod, or a local subprocess)."""


@session.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--rig", envvar="GT_RIG", required=True, metavar="PATH|URL",
              help="The rig repository: its ledger, and where the branch is pushed (env GT_RIG).")
@click.option("--bead", envvar="GT_BEAD", required=True, help="The bead to work on (env GT_BEAD).")
@click.option("--polecat", envvar="GT_POLECAT", required=True, help="The polecat's name (env GT_POLECAT).")
@click.option("--session", "session_name", envvar="GT_SESSION", required=True,
              help="This session's name (env GT_SESSION).")
@click.option("--runtime", envvar="GT_RUNTIME", default="claude", show_default=True,
              help="Runtime preset or custom runtime (env GT_RUNTIME).")
@click.option("--model", envvar="GT_MODEL", help="Model to ask the runtime for (env GT_MODEL).")
@click.option("--workdir", envvar="GT_WORKDIR", type=click.Path(path_type=Path, file_okay=False),
              default=".", show_default=True, help="The git checkout to work in (env GT_WORKDIR).")
@click.option("--session-dir", envvar="GT_SESSION_DIR", type=click.Path(path_type=Path), required=True,
              help="Where the prompt, log and result go, outside the checkout (env GT_SESSION_DIR).")
@click.option("--target", envvar="GT_TARGET", default="main", show_default=True,
              help="Branch the work is based on and merged into (env GT_TARGET).")
@click.option("--deadline", envvar="GT_DEADLINE", type=click.FloatRange(1), default=3600, show_default=True,
              help="Seconds before the runtime is stopped (env GT_DEADLINE).")
@click.option("--heartbeat", envvar="GT_HEARTBEAT", metavar="file:PATH|lease:NS/NAME",
              help="Where to say the session is alive (env GT_HEARTBEAT).")
@click.option("--heartbeat-interval", type=click.FloatRange(0.1), default=10, show_default=True,
              help="Seconds between heartbeats.")
@cache_option
@click.option("--state-dir", envvar="GT_STATE_DIR", type=click.Path(path_type=Path, file_okay=False),
              help="The polecat's own directory, kept across its sessions: where its runtime keeps the "
                   "conversations a later session resumes (env GT_STATE_DIR).")
@click.option("--max-tokens", envvar="GT_SESSION_MAX_TOKENS", type=click.IntRange(1),
              help="End the session cleanly (its work pushed) once its runtime reports this many tokens "
                   "(env GT_SESSION_MAX_TOKENS; the Rig's budget.sessionTokens).")
@click.option("--max-seconds", envvar="GT_SESSION_MAX_SECONDS", type=click.FloatRange(1),
              help="End the session cleanly (its work pushed) after this many seconds "
                   "(env GT_SESSION_MAX_SECONDS; the Rig's budget.sessionSeconds).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(*, rig: str, bead: str, polecat: str, session_name: str, runtime: str, model: str | None,
        workdir: Path, session_dir: Path, target: str, deadline: float, heartbeat: str | None,
        heartbeat_interval: float, cache_dir: Path | None, state_dir: Path | None, max_tokens: int | None,
        max_seconds: float | None, args: tuple[str, ...]) -> None:
    """Run one agent session on a bead and record how it ended.

    ARGS after `--` go to the runtime (for the script runtime they are the command). The exit
    code says how it ended: 0 completed (or escalated, deferred), 1 failed, 3 rate limited,
    4 timed out. The result is also in SESSION_DIR/result.json.
    """
    from ..runtimes.session import SessionSpec, run_session

    spec = SessionSpec(rig=rig, bead=bead, polecat=polecat, session=session_name, runtime=runtime,
                       workdir=workdir.resolve(), session_dir=session_dir.resolve(), target=target,
                       model=model, extra_args=list(args), deadline=deadline, heartbeat=heartbeat,
                       heartbeat_interval=heartbeat_interval, cache_root=cache_dir,
                       state_dir=state_dir.resolve() if state_dir else None, max_tokens=max_tokens,
                       max_seconds=max_seconds, git_timeout=settings().git_timeout)
    outcome = run_session(spec)  # its spans under the daemon's dispatch span (its TRACEPARENT)
    click.echo(f"session {session_name}: {outcome.status}" + (f": {outcome.reason}" if outcome.reason else ""),
               err=outcome.code != 0)
    _termination_message(f"{outcome.status}: {outcome.reason}"[:4000])
    sys.exit(outcome.code)


def _termination_message(text: str) -> None:
    path = Path("/dev/termination-log")
    if os.environ.get("KUBERNETES_SERVICE_HOST") and path.exists():
        try:
            path.write_text(text)
        except OSError:
            pass


@click.command()
@click.option("--status", type=click.Choice(["completed", "escalated", "deferred"]), default="completed",
              show_default=True, help="completed: ask for a merge; escalated: ask a person for help; "
                                      "deferred: leave it for later.")
@click.option("-r", "--reason", default="", help="What a person should know (required to escalate).")
@click.option("--rig", envvar="GT_RIG", required=True, metavar="PATH|URL", help="The rig repository (env GT_RIG).")
@click.option("--bead", envvar="GT_BEAD", required=True, help="The bead worked on (env GT_BEAD).")
@click.option("--polecat", envvar="GT_POLECAT", required=True, help="The polecat (env GT_POLECAT).")
@click.option("--session", "session_name", envvar="GT_SESSION", default="", help="The session (env GT_SESSION).")
@click.option("--target", envvar="GT_TARGET", default="main", show_default=True,
              help="Branch to merge into (env GT_TARGET).")
@click.option("--workdir", envvar="GT_WORKDIR", type=click.Path(path_type=Path, file_okay=False),
              default=".", show_default=True, help="The checkout (env GT_WORKDIR).")
@click.option("--session-dir", envvar="GT_SESSION_DIR", type=click.Path(path_type=Path),
              help="The session's directory (env GT_SESSION_DIR).")
@cache_option
def done(*, status: str, reason: str, rig: str, bead: str, polecat: str, session_name: str, target: str,
         workdir: Path, session_dir: Path | None, cache_dir: Path | None) -> None:
    """Finish the work on a bead: commit leftovers, push the branch, record the result.

    Inside a session everything comes from the environment: just run `gt done`.
    """
    from ..ledger import LedgerError
    from ..names import branch_for
    from ..runtimes.session import finish
    from ..telemetry import tracing

    if status == "escalated" and not reason.strip():
        click.echo("gt: error: say why with --reason when you escalate", err=True)
        sys.exit(1)
    try:
        with tracing.carried_on("gastown-session"):  # under its session's runtime span
            marker = finish(rig, bead, polecat=polecat, session=session_name,
                            status=status, reason=reason,  # type: ignore[arg-type]
                            workdir=workdir.resolve(), target=target, session_dir=session_dir, cache_root=cache_dir)
    except LedgerError as e:
        click.echo(f"gt: error: {e}", err=True)
        sys.exit(1)
    what = {"completed": "merge request", "escalated": "escalation", "deferred": "deferred"}[status]
    click.echo(f"{bead}: {status}; pushed {branch_for(polecat, bead)} at {marker['commit'][:12]}"
               + (f"; {what} {marker['result']}" if marker["result"] else ""))
