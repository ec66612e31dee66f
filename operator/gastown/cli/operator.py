"""``gt operator``: run the Kubernetes operator."""

from __future__ import annotations

import click

from ..kube.options import OperatorOptions


@click.group()
def operator() -> None:
    """The Kubernetes operator."""


@operator.command("run")
@click.option("-n", "--namespace", "namespaces", multiple=True, metavar="NS",
              help="Watch this namespace (repeat for more; globs like team-* work). "
                   "Without any, all namespaces are watched.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch every namespace (the default).")
@click.option("--standalone", is_flag=True,
              help="Run without peering: do not look for or pause for other gastown operators.")
@click.option("--priority", type=int, default=0, show_default=True,
              help="Peering priority. An operator pauses while one with a higher priority runs, "
                   "so a standby replica can wait with a lower one.")
@click.option("--peering-name", default="gastown", show_default=True,
              help="Name of the kopf peering object shared by the operators of one town.")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              metavar="URL", help="Serve the liveness probe here; an empty value disables it.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9090, show_default=True,
              help="Serve Prometheus metrics at :PORT/metrics; 0 disables them.")
@click.option("--server-timeout", type=click.IntRange(10, 3600), default=270, show_default=True,
              help="Seconds the API server keeps one watch request open.")
@click.option("--client-timeout", type=click.IntRange(10, 3600), default=300, show_default=True,
              help="Seconds before the operator gives up on a silent watch and reconnects.")
@click.option("--workers", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Threads for blocking work (git, API calls) in handlers.")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve the read-only web dashboard at :PORT (actions with a token mounted at "
                   "/etc/gastown/dashboard/token); 0: none.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def run(namespaces: tuple[str, ...], all_namespaces: bool, standalone: bool, priority: int,
        peering_name: str, liveness: str, metrics_port: int, server_timeout: int, client_timeout: int,
        workers: int, dashboard_port: int, verbose: bool) -> None:
    """Run the operator against the cluster of the current kubeconfig (or in-cluster config).

    It reconciles gastown.dev Rig, Polecat, Convoy and MergeQueue objects: it validates them,
    keeps their status and conditions, and posts Events that say what is wrong.
    """
    if all_namespaces and namespaces:
        raise click.UsageError("give either --namespace or --all-namespaces, not both")
    from ..kube.run import run as run_operator
    from .common import settings

    opts = OperatorOptions(namespaces=namespaces, all_namespaces=all_namespaces,
                           standalone=standalone, priority=priority, peering_name=peering_name,
                           liveness=liveness or None, metrics_port=metrics_port,
                           server_timeout=server_timeout,
                           client_timeout=client_timeout, workers=workers)
    if dashboard_port:
        from ..dashboard import cluster
        from ..dashboard.server import Dashboard

        Dashboard(cluster.cluster_rigs(settings().cache_dir), token=cluster.token()).start("0.0.0.0", dashboard_port)  # noqa: S104
    run_operator(opts, settings(), verbose=verbose)
