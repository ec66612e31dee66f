"""``gt operator uninstall``: take gastown off a cluster's rig namespaces (registered on the
``gt operator`` group by cli/operator.py)."""

from __future__ import annotations

import signal

import click

from .common import emit, fail, json_option


@click.command("uninstall")
@click.option("-n", "--namespace", "namespaces", multiple=True, metavar="NS",
              help="A rig namespace to clean (repeat for more).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace with a gastown object in it.")
@click.option("--delete-home-claims", is_flag=True,
              help="Delete the polecats' HOME PersistentVolumeClaims too (their CLIs' earlier conversations).")
@click.option("--dry-run", is_flag=True, help="Say what would be changed, change nothing.")
@click.option("--timeout", type=click.IntRange(1, 3600), default=120, show_default=True,
              help="Give up after this many seconds, whatever the API server does.")
@json_option
def uninstall(*, namespaces: tuple[str, ...], all_namespaces: bool, delete_home_claims: bool, dry_run: bool,
              timeout: int, as_json: bool) -> None:
    """Remove gastown's finalizers and what the operator made in each rig namespace.

    Run it after `helm uninstall` (or before, with the operator stopped): it removes the
    gastown.dev/finalizer from every Rig, Convoy, MergeQueue and Polecat, so that they and their
    namespace can be deleted at once, and deletes the agent ServiceAccount, Role and RoleBinding,
    the quotas, the runtimes ConfigMap copy, the NetworkPolicy, the Dogs' CronJobs, the Jobs and
    the heartbeat Leases. It waits for no deletion to finish and gives up after --timeout.

    It leaves the ledgers in git (everything gastown knows: beads, convoys, merge requests,
    agents; a reinstall reads them back), the custom resources themselves, the CRDs, and the
    polecats' HOME claims unless --delete-home-claims.
    """
    if all_namespaces == bool(namespaces):
        raise click.UsageError("give --namespace NS (one or more) or --all-namespaces")
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    from ..kube.uninstall import gastown_namespaces
    from ..kube.uninstall import uninstall as run_uninstall

    def give_up(*_: object) -> None:  # SystemExit: no HTTP client's retry loop catches it
        fail(f"no answer from the API server within {timeout}s; nothing after that was changed. "
             "Run it again when it answers: it is safe to repeat.")

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(timeout)
    try:
        targets = list(namespaces) or gastown_namespaces()
        report = run_uninstall(targets, claims=delete_home_claims, dry_run=dry_run)
    except ApiException as e:
        fail(f"the API server answered {e.status} {e.reason}; nothing after that was changed. "
             "Check your kubeconfig's rights (README: Uninstall) and run it again: it is safe to repeat.")
    except (HTTPError, OSError) as e:
        fail(f"no answer from the API server ({e}); run it again when it answers: it is safe to repeat.")
    finally:
        signal.alarm(0)
    if as_json:
        emit({"namespaces": targets, "dryRun": dry_run, "finalizersRemoved": report.finalizers,
              "deleted": report.deleted, "left": report.left})
        return
    would = "would " if dry_run else ""
    click.echo(f"namespaces: {', '.join(targets) or '(none with gastown objects)'}")
    click.echo(f"{would}remove gastown's finalizer from {len(report.finalizers)} object(s)")
    for item in report.finalizers:
        click.echo(f"  {item}")
    click.echo(f"{would}delete {len(report.deleted)} object(s) the operator made")
    for item in report.deleted:
        click.echo(f"  {item}")
    click.echo("left in place:")
    for item in report.left:
        click.echo(f"  {item}")
