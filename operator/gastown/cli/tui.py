"""``gt tui``: the town in a terminal (textual is imported only when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import fail, town_option
from .feed import town_rigs


@click.command()
@click.option("--rig", help="Only this rig of the town.")
@click.option("--interval", type=click.FloatRange(0.2), default=2.0, show_default=True,
              help="Seconds between reads of the town.")
@click.option("-n", "--namespace", help="On a cluster: the Rigs, Polecats, Convoys and MergeQueues of this namespace, "
                                        "read through the API with your kubeconfig. Without it, the local town.")
@click.option("--context", help="With --namespace: this kubeconfig context (default: the current one).")
@town_option
def tui(*, rig: str | None, interval: float, namespace: str | None, context: str | None, town: Path | None) -> None:
    """The town in a terminal: agents, convoys, merge queue, problems, activity.

    The agent tree (rigs, polecats, what each holds and its session's state), convoys with their
    progress, the merge queue (waiting, the batch being verified and its bisection's rounds), the
    problems (blocked rigs, rate limits, hung, stalled or stuck polecats, open escalations) and the
    activity feed, read from the local town every --interval seconds. Keys: enter on a rig drills
    into it (escape: the whole town), enter or p on a polecat shows its session's output, r reads
    now, q quits.

    With --namespace, the same of a cluster: what the objects' statuses say, their conditions that
    say something is wrong as problems, gastown's Events as the activity, and a polecat's session
    output from its pod's log. Needs list on gastown's resources and on events, and get and list on
    pods and get on pods/log in the namespace."""
    try:
        from ..tui.app import TownApp
    except ImportError:
        fail("gt tui needs textual: pip install 'gastown[tui]'")
    if namespace:
        TownApp(rig=rig, interval=interval, model=_cluster(namespace, rig, context)).run()
        return
    if context:
        raise click.UsageError("--context goes with --namespace (a cluster)")
    t, _rigs = town_rigs(town, rig)
    TownApp(t.root, rig, interval).run()


def _cluster(namespace: str, rig: str | None, context: str | None) -> Any:
    """The cluster's model, its rig checked; a missing kubeconfig or a refusal is one line."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    from ..tui.cluster import ClusterModel

    try:
        model = ClusterModel(namespace, rig, context=context)
        rigs = model.rig_names()
    except ConfigException as e:
        fail(f"no cluster to read from: {e}")
    except ApiException as e:
        fail(f"the API refused to list the Rigs of namespace {namespace}: {e.status} {e.reason}")
    except (HTTPError, OSError) as e:
        fail(f"cannot reach the cluster: {e}")
    if rig is not None and rig not in rigs:
        fail(f"no Rig {rig!r} in namespace {namespace}; Rigs: {', '.join(rigs) or 'none'}")
    return model
