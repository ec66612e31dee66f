"""Local mode: `gt up`, `gt down`, `gt status`, `gt rig` and `gt apply -f`: a town on one machine."""

from __future__ import annotations

import logging
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from .. import budget as budgets
from .. import convoy as convoys
from ..api import Invalid, RigSpec
from ..api.validation import parse_spec
from ..escalation import open_escalations
from ..ledger import Ledger, LedgerError, default_actor
from ..local import daemon
from ..local.apply import apply as apply_document
from ..local.apply import check, documents
from ..local.driver import read_troubles, town_holder
from ..local.rigcheck import check_claim, check_rig
from ..local.town import Town, TownError, git_url
from ..refinery import queue as mq
from ..runtimes.local import LocalBackend
from ..scheduler import in_flight
from ..spend import describe
from ..trouble import MERGE, VERIFY
from .budget import convoy_standing
from .common import emit, fail, json_option, load_settings, town_option, use_git_timeout

GATES = ("setup", "lint", "typecheck", "build", "test")


@click.command()
@town_option
@click.option("--foreground", is_flag=True, help="Run the daemon here, not in the background (Ctrl-C stops it).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages (with --foreground).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve Prometheus metrics at 127.0.0.1:PORT/metrics (the operator's, with namespace "
                   "\"local\"); 0: none.")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve the web dashboard at http://127.0.0.1:PORT/ (read-only; actions with the token in "
                   "TOWN/dashboard.token); 0: none.")
def up(*, town: Path | None, foreground: bool, verbose: bool, metrics_port: int, dashboard_port: int) -> None:
    """Start the town's daemon: it drives every rig of the town until `gt down`."""
    t = Town(town)
    try:
        config = load_settings(t.settings())  # bad settings in town.json: said here, and nothing starts
        use_git_timeout(config)
        t.limits()  # and bad budgets or shared limits
    except TownError as e:
        fail(e)
    if foreground:
        from ..telemetry.tracing import LOG_FORMAT, log_ids

        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stdout, format=LOG_FORMAT)
        log_ids()  # the trace and span ids in each line, while a span is current
        try:
            daemon.serve(t, metrics_port=metrics_port, settings=config, dashboard_port=dashboard_port)
        except (TownError, OSError) as e:
            fail(e)
        return
    try:
        specs = t.specs()  # a town.json it cannot read: said here, and nothing starts
        was = daemon.running(t)
        pid = daemon.start(t, metrics_port=metrics_port, dashboard_port=dashboard_port)
    except (TownError, OSError) as e:
        fail(e)
    rigs = ", ".join(sorted(specs)) or "none yet: gt rig add NAME URL"
    click.echo(f"town {t.root}: daemon {'already running' if was else 'up'} (pid {pid}); rigs: {rigs}")
    click.echo(f"log: {daemon.log_file(t)}")
    if dashboard_port and not was:
        click.echo(f"dashboard: http://127.0.0.1:{dashboard_port}/")


@click.command()
@town_option
@click.option("--timeout", type=click.FloatRange(1), default=30, show_default=True,
              help="Seconds to wait for a clean stop before killing it.")
def down(town: Path | None, timeout: float) -> None:
    """Stop the town's daemon. Sessions under way finish on their own; the next `gt up` carries on."""
    t = Town(town)
    pid = daemon.stop(t, timeout)
    click.echo(f"town {t.root}: daemon " + (f"stopped (pid {pid})" if pid else "was not running"))


@click.command()
@town_option
@json_option
def status(town: Path | None, as_json: bool) -> None:
    """The town at a glance: the daemon, and per rig its polecats, convoys, merge queue, escalations."""
    t = Town(town)
    try:
        rigs = t.rigs()
    except TownError as e:
        fail(e)
    pid = daemon.running(t)
    out: dict = {"town": str(t.root), "daemon": {"pid": pid, "log": str(daemon.log_file(t))}, "rigs": []}
    now = datetime.now(UTC)
    running = [s.request.rig for s in LocalBackend(t.root).sessions(ended=False) if s.running()]
    for name, config in sorted(rigs.items()):
        troubles = read_troubles(t.root, name) if pid else []  # what the daemon says keeps the rig from working
        row: dict = {"name": name, "remote": config.remote, "runtime": config.runtime.preset,
                     "maxPolecats": config.max_polecats, "working": running.count(name),
                     "blocked": [{**tr.to_dict(), "line": tr.line(now)} for tr in troubles]}
        try:
            with Ledger(config.remote, cache_dir=t.ledger_cache(config.remote)) as ledger:
                beads = ledger.beads()
                claim = ledger.claims.current(fresh=False)
        except LedgerError as e:
            row["error"] = str(e)
            out["rigs"].append(row)
            continue
        now = datetime.now(UTC)
        if claim is not None and claim.holder != town_holder(t.root, name) and not claim.stale(now):
            row["drivenBy"] = claim.describe(now)
        target = config.queue_settings.target
        batch = mq.active_batch(beads, target)
        row.update(
            inFlight=len(in_flight(beads)),
            spend=[s.status() for s in budgets.rig_standings(beads, config.budget, now)],
            convoys=[{"name": c.metadata["name"], "id": c.id, "phase": p.phase, "progress": p.text,
                      "spend": p.spend, "budget": convoy_standing(t, c, beads).status()}
                     for c in convoys.open_convoys(beads) if (p := convoys.progress(c, beads))],
            mergeQueue={"waiting": len(mq.queued(beads, target)), "batch": batch.id if batch else None,
                        **mq.counters(beads, target)},
            escalations=[{"id": e.id, "severity": e.metadata.get("severity"), "title": e.title}
                         for e in open_escalations(beads.values())])
        out["rigs"].append(row)
    if as_json:
        emit(out)
        return
    click.echo(f"town {t.root}: daemon " + (f"running (pid {pid})" if pid else "not running (gt up)"))
    if not out["rigs"]:
        click.echo("no rigs yet: gt rig add NAME URL")
    for r in out["rigs"]:
        click.echo(f"rig {r['name']}  {r['remote']}  runtime {r['runtime']}")
        for blocked in r["blocked"]:
            click.echo(f"  {blocked['line']}")
        if "error" in r:
            if not r["blocked"]:
                click.echo(f"  error: {r['error']}")
            continue
        if "drivenBy" in r:
            click.echo(f"  not driven by this town: its ledger is driven by {r['drivenBy']}")
        q = r["mergeQueue"]
        waiting = r["inFlight"] - r["working"]
        queue_blocked = any(b["key"] in (MERGE, VERIFY) for b in r["blocked"])
        click.echo(f"  polecats: {r['working']} of {r['maxPolecats']} working"
                   + (f", {waiting} waiting to start" if waiting > 0 else "")
                   + f";  merge queue: {q['waiting']} waiting"
                   + (f", batch {q['batch']} {'blocked' if queue_blocked else 'verifying'}" if q["batch"] else "")
                   + f"; merged {q['merged']}, rejected {q['rejected']}")
        click.echo("  spend: " + ";  ".join(budgets.status_line(s) for s in r["spend"]))
        for c in r["convoys"]:
            spent = f", spent {describe(c['spend'])}" if c["spend"] else ""
            spent += f"; budget {budgets.status_line(c['budget'])}" if c["budget"]["state"] != "Unbudgeted" else ""
            click.echo(f"  convoy {c['name']} ({c['id']}): {c['phase']}, {c['progress']}{spent}")
        for esc in r["escalations"]:
            click.echo(f"  escalation {esc['id']} {esc['severity']}: {esc['title']}")


@click.group()
def rig() -> None:
    """The town's rigs: the repositories its agents work on."""


def _rig_options(add: bool):
    """The options of `gt rig add` (with its defaults) and of `gt rig set` (none: only what is given changes)."""
    def default(value: object) -> dict:
        return {"default": value, "show_default": True} if add else {}

    options = [
        click.option("--max-polecats", type=click.IntRange(1, 100), **default(3),
                     help="Most agent sessions at once on this rig."),
        click.option("--runtime", **default("claude"), help="The agent runtime (gt config agent list)."),
        click.option("--model", help="The model, for runtimes that take one" + ("." if add else " ('' clears it).")),
        click.option("--agent-arg", "agent_args", multiple=True, metavar="ARG",
                     help="An argument for the runtime (repeat); the `script` runtime's command line."
                          + ("" if add else " Given, they replace the rig's.")),
        click.option("--branch", **default("main"), help="The branch work is merged into."),
        click.option("--gate", "gates", multiple=True, metavar="NAME=COMMAND",
                     help=f"A verification gate of the merge queue, NAME one of {', '.join(GATES)} (repeat); "
                          "COMMAND is split like a shell would but never run by one."
                          + ("" if add else " Given, it replaces that gate.")),
        click.option("--deadline", type=click.IntRange(60, 86400), **default(3600),
                     help="Seconds an agent session may run."),
        click.option("--webhook-url", help="Where webhook-routed escalations are posted (kept in town.json)."),
    ]
    if not add:
        options += [click.option("--url", help="The rig's repository (a path works too)."),
                    click.option("--remove-gate", "remove_gates", multiple=True, type=click.Choice(GATES),
                                 help="Remove this gate (repeat).")]

    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


@rig.command("add")
@click.argument("name")
@click.argument("url")
@town_option
@_rig_options(add=True)
def rig_add(*, name: str, url: str, town: Path | None, max_polecats: int, runtime: str, model: str | None,
            agent_args: tuple[str, ...], branch: str, gates: tuple[str, ...], deadline: int,
            webhook_url: str | None) -> None:
    """Add the rig NAME, the git repository at URL (a path works too), to the town.

    Nothing is saved unless the rig can be driven: NAME is a valid name, the runtime is known,
    the gates parse, the repository answers, has a commit on the branch and accepts pushes to it.
    """
    t = Town(town)
    try:
        exists = name in t.specs()
    except TownError as e:
        fail(e)
    if exists:
        fail(f"rig {name} exists already: change it with gt rig set {name} --OPTION VALUE, "
             f"or remove it first with gt rig rm {name}")
    raw = {"gitUrl": git_url(url), "defaultBranch": branch, "maxPolecats": max_polecats,
           "sessionDeadlineSeconds": deadline,
           "runtime": {"preset": runtime, **({"model": model} if model else {}), "args": list(agent_args)},
           "verification": {"gates": dict(_gate(g) for g in gates)}}
    _put_rig(t, name, raw, webhook_url=webhook_url, added=True)


@rig.command("set")
@click.argument("name")
@town_option
@_rig_options(add=False)
def rig_set(*, name: str, town: Path | None, max_polecats: int | None, runtime: str | None, model: str | None,
            agent_args: tuple[str, ...], branch: str | None, gates: tuple[str, ...], deadline: int | None,
            webhook_url: str | None, url: str | None, remove_gates: tuple[str, ...]) -> None:
    """Change the rig NAME: only the options given change, the rest of it stays as it is."""
    t = Town(town)
    try:
        specs = t.specs()
    except TownError as e:
        fail(e)
    if name not in specs:
        fail(f"no rig {name!r} in {t.root}; rigs: {', '.join(sorted(specs)) or 'none yet (gt rig add NAME URL)'}")
    raw = specs[name][0].wire()
    changes = {"gitUrl": url and git_url(url), "defaultBranch": branch, "maxPolecats": max_polecats,
               "sessionDeadlineSeconds": deadline}
    raw.update({k: v for k, v in changes.items() if v is not None})
    runtime_raw = raw.setdefault("runtime", {})
    if runtime is not None:
        runtime_raw["preset"] = runtime
    if model is not None:
        runtime_raw.pop("model", None)
        runtime_raw.update({"model": model} if model else {})
    if agent_args:
        runtime_raw["args"] = list(agent_args)
    gate_raw = raw.setdefault("verification", {}).setdefault("gates", {})
    for gate in remove_gates:
        gate_raw.pop(gate, None)
    gate_raw.update(dict(_gate(g) for g in gates))
    if raw == specs[name][0].wire() and webhook_url is None:
        click.echo(f"rig {name} unchanged")
        return
    _put_rig(t, name, raw, webhook_url=webhook_url, added=False, repository=bool(url or branch))


def _gate(text: str) -> tuple[str, list[str]]:
    name, sep, command = text.partition("=")
    if not sep or name not in GATES or not command.strip():
        fail(f"--gate {text!r}: use NAME=COMMAND with NAME one of {', '.join(GATES)}")
    try:
        return name, shlex.split(command)
    except ValueError as e:  # an unbalanced quote
        fail(f"--gate {text!r}: the command does not parse ({e}): close the quote, or quote the whole "
             f"--gate argument for your shell")


def _put_rig(t: Town, name: str, raw: dict, *, webhook_url: str | None, added: bool, repository: bool = True) -> None:
    """Check the rig, create its ledger, and only then save it in town.json."""
    try:
        spec = parse_spec(RigSpec, raw)
    except Invalid as e:
        fail(str(e).replace("spec.", "--"))
    try:
        check_rig(name, spec, repository, others={n: s for n, (s, _q, _w) in t.specs().items()})
        if repository:
            with Ledger(spec.git_url, cache_dir=t.ledger_cache(spec.git_url), actor=default_actor()) as ledger:
                check_claim(ledger, town_holder(t.root, name))
                ledger.ensure()
        t.put_rig(name, spec, webhook_url)
    except (TownError, LedgerError) as e:
        fail(e)
    click.echo(f"rig {name} {'added' if added else 'updated'}: {spec.git_url}, up to {spec.max_polecats} polecats "
               f"({spec.runtime.preset})" + ("" if daemon.running(t) else "; start the town with: gt up"))


@rig.command("list")
@town_option
@json_option
def rig_list(town: Path | None, as_json: bool) -> None:
    """List the town's rigs."""
    try:
        specs = Town(town).specs()
    except TownError as e:
        fail(e)
    if as_json:
        emit({n: {"spec": s.wire(), "mergeQueue": q.wire() if q else None} for n, (s, q, _) in specs.items()})
        return
    for name, (spec, _queue, _hook) in sorted(specs.items()):
        gates = ", ".join(n for n, _ in spec.verification.gates.ordered()) or "no gates"
        click.echo(f"{name:<16} {spec.git_url}  {spec.runtime.preset}, {spec.max_polecats} polecats, {gates}")


@rig.command("rm")
@click.argument("name")
@town_option
def rig_rm(name: str, town: Path | None) -> None:
    """Remove the rig NAME from the town (its repository and ledger are left alone)."""
    try:
        Town(town).remove_rig(name)
    except TownError as e:
        fail(e)
    click.echo(f"rig {name} removed from the town")


@click.command("apply")
@click.option("-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
              help="A YAML file of Rig, MergeQueue, Polecat and Convoy manifests, or - for stdin (repeat).")
@town_option
def apply_(files: tuple[str, ...], town: Path | None) -> None:
    """Apply the manifests you would `kubectl apply` to the local town instead."""
    t = Town(town)
    actor = default_actor()
    docs = []
    for name in files:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except OSError as e:
            fail(f"{name}: {e.strerror}")
        except UnicodeDecodeError:
            fail(f"{name}: not a text file (expected YAML)")
        try:
            docs += documents(text, name)
        except ValueError as e:
            fail(e)
    try:
        check(t, docs)  # every document, before any is applied
        for doc in docs:
            click.echo(apply_document(t, doc, actor))
    except (LedgerError, ValueError) as e:  # ValueError: TownError, FormulaError, a plan that does not hold
        fail(e)
