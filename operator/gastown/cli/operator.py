"""``gt operator``: run the Kubernetes operator."""

from __future__ import annotations

import click

from ..kube.options import OperatorOptions
from .uninstall import uninstall


@click.group()
def operator() -> None:
    """The Kubernetes operator."""


@operator.command("run")
@click.option("-n", "--namespace", "namespaces", multiple=True, metavar="NS",
              help="Watch this namespace (repeat for more; globs like team-* work). "
                   "Without any, all namespaces are watched.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch every namespace (the default).")
@click.option("--standalone", is_flag=True,
              help="Act at once, without leader election: for a single replica (or a run on your machine). "
                   "Two standalone operators on one town would both act.")
@click.option("--lease-name", default="gastown", show_default=True, metavar="NAME",
              help="The coordination.k8s.io Lease the replicas of one town elect their leader on: only the "
                   "holder acts, the others stand by and take over when it stops renewing it.")
@click.option("--lease-namespace", metavar="NS",
              help="The Lease's namespace. Default: $POD_NAMESPACE (the chart sets it), else the "
                   "kubeconfig context's namespace.")
@click.option("--lease-duration", "lease_seconds", type=click.IntRange(3, 300), default=10, show_default=True,
              metavar="SECONDS",
              help="Seconds a standby waits for a silent leader before taking over. The leader renews "
                   "every tenth of it and stops acting when it could not for two thirds of it.")
@click.option("--priority", type=int, hidden=True, help="Deprecated (kopf peering): ignored.")
@click.option("--peering-name", hidden=True, help="Deprecated (kopf peering): ignored; see --lease-name.")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              metavar="URL", help="Serve the liveness probe here, and the readiness probe at /readyz on the "
                                  "same port; an empty value disables both.")
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
def run(*, namespaces: tuple[str, ...], all_namespaces: bool, standalone: bool, lease_name: str,
        lease_namespace: str | None, lease_seconds: int, priority: int | None, peering_name: str | None,
        liveness: str, metrics_port: int, server_timeout: int, client_timeout: int, workers: int,
        dashboard_port: int, verbose: bool) -> None:
    """Run the operator against the cluster of the current kubeconfig (or in-cluster config).

    It reconciles gastown.dev Rig, Polecat, Convoy and MergeQueue objects: it validates them,
    keeps their status and conditions, and posts Events that say what is wrong.

    Replicas elect one leader on a Lease (holder: $POD_NAME, unique per replica); the others
    stand by. /readyz answers 200 on the leader once it runs, and on a standby that sees a live
    leader; 503 (with the reason) before the API server answers, while a permission is
    missing, or when the Lease is lost.
    """
    if all_namespaces and namespaces:
        raise click.UsageError("give either --namespace or --all-namespaces, not both")
    if priority is not None or peering_name is not None:
        click.echo("gt operator run: --priority and --peering-name are deprecated and ignored: the replicas "
                   "elect a leader on a Lease (--lease-name)", err=True)
    from ..kube.run import run as run_operator
    from .common import settings

    opts = OperatorOptions(namespaces=namespaces, all_namespaces=all_namespaces,
                           standalone=standalone, lease_name=lease_name, lease_namespace=lease_namespace,
                           lease_seconds=lease_seconds,
                           liveness=liveness or None, metrics_port=metrics_port,
                           server_timeout=server_timeout,
                           client_timeout=client_timeout, workers=workers)
    if dashboard_port:
        from ..dashboard import cluster
        from ..dashboard.server import Dashboard

        Dashboard(cluster.cluster_rigs(settings().cache_dir, namespaces), token=cluster.token()).start("0.0.0.0", dashboard_port)  # noqa: S104
    run_operator(opts, settings(), verbose=verbose)


operator.add_command(uninstall)
