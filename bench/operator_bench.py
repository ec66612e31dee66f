"""One operator, many rigs: the real `gt operator run` (default flags) against the Kubernetes API
double (tests/kubeapi.py), with RIGS real rig repositories (bare git remotes in a temp dir) of
BEADS ready beads each and maxPolecats BEADS.

Prints figures; asserts nothing about time:

  sessions   seconds from the Rigs' creation until every session Job exists (RIGS x BEADS),
             and the slowest rig's
  rss        the operator's resident memory (VmRSS, and its peak VmHWM, from /proc)
  requests   API requests per second in a steady state (every session running, nothing moving),
             overall and per rig, and which requests they were

Then IDLE more rigs with no work at all (a separate operator): after their loops have backed off
(GT_POLL_IDLE_SECONDS), over a window of IDLE_WINDOW seconds:

  idle       API requests per second per idle rig (target: under 5), remote polls (git
             ls-remote, counted by a shim in front of the real git) per second per idle rig, and
             the operator's CPU (its own and its git's, from /proc), % of one core

The double runs no pods: a session Job stays active (no status), as a running session's does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from gastown.ledger import ops

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from idle_bench import cpu_seconds  # noqa: E402

from kubeapi import KubeAPI  # noqa: E402
from rigs import make_rig  # noqa: E402

SESSION = "app.kubernetes.io/component=agent-session"
TARGET = 5.0  # API requests per second per rig in a steady state (issue 16)
SHIM = """#!/bin/sh
for a in "$@"; do
  if [ "$a" = ls-remote ]; then echo "$PPID" >> "{log}"; break; fi
done
exec "{git}" "$@"
"""
GT = str(Path(sys.executable).parent / "gt")


def kubeconfig(api: KubeAPI, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "bench",
        "clusters": [{"name": "bench", "cluster": {"server": api.url}}],
        "users": [{"name": "bench", "user": {"token": "bench-token"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench", "namespace": "default"}}]}))
    return path


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def kind(path_qs: str) -> str:
    """A request's resource (and subresource): /apis/g/v/namespaces/ns/plural/name/status -> plural/status."""
    path, _, query = path_qs.partition("?")
    parts = [p for p in path.split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        parts = parts[2:]
    out = parts[0] if parts else "discovery"
    if len(parts) > 2:
        out += "/" + parts[2]
    return out + (" (watch)" if "watch=true" in query else "")


def seed(root: Path, rigs: int, beads: int) -> list[tuple[str, Path]]:
    made = []
    for i in range(rigs):
        name = f"rig{i:02d}"
        rig = make_rig(root / name)
        with rig.ledger() as lg:
            futures = [lg.submit(ops.Create(title=f"work {j} of {name}", actor="user bench", seed=f"{name}/{j}"))
                       for j in range(beads)]
            for f in futures:
                f.result()
        made.append((name, rig.remote))
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rigs", type=int, default=50)
    ap.add_argument("--beads", type=int, default=10, help="ready beads per rig (and its maxPolecats)")
    ap.add_argument("--timeout", type=float, default=300, help="give up on the sessions after this long")
    ap.add_argument("--steady", type=float, default=30, help="seconds of steady state to count requests over")
    ap.add_argument("--idle", type=int, default=20, help="idle rigs (no work) for the idle figures; 0: none")
    ap.add_argument("--idle-window", type=float, default=60, help="seconds to count an idle rig's requests over")
    args = ap.parse_args()

    if args.rigs:
        with tempfile.TemporaryDirectory(prefix="gt-operator-bench-") as tmp:
            root = Path(tmp)
            t = time.monotonic()
            rigs = seed(root, args.rigs, args.beads)
            print(f"seeded {args.rigs} rigs x {args.beads} beads in {time.monotonic() - t:.1f}s")
            operate(root, rigs, lambda api, proc: run(api, proc, rigs, args))
    if args.idle:
        with tempfile.TemporaryDirectory(prefix="gt-operator-bench-idle-") as tmp:
            root = Path(tmp)
            rigs = seed(root, args.idle, 0)
            operate(root, rigs, lambda api, proc: idle(api, proc, rigs, args, root / "ls-remote.log"))


def operate(root: Path, rigs: list[tuple[str, Path]], bench) -> None:
    """Run ``bench(api, proc)`` with a fresh API double and `gt operator run` (its git behind a shim
    that logs each ls-remote)."""
    shim = root / "shim"
    shim.mkdir()
    (shim / "git").write_text(SHIM.format(log=root / "ls-remote.log", git=shutil.which("git")))
    (shim / "git").chmod(0o755)
    api = KubeAPI().start()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig(api, root / "kubeconfig")), "PYTHONUNBUFFERED": "1",
           "GT_CACHE_DIR": str(root / "cache"), "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    log = root / "operator.log"
    proc = subprocess.Popen([GT, "operator", "run", "--standalone", "--liveness", "", "--metrics-port", "0"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    try:
        bench(api, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        api.stop()
    errors = [line for line in log.read_text(errors="replace").splitlines() if "Traceback" in line or "ERROR" in line]
    print(f"operator log: {len(errors)} error lines" + (f", first: {errors[0][:200]}" if errors else ""))


def idle(api: KubeAPI, proc: subprocess.Popen, rigs: list[tuple[str, Path]], args: argparse.Namespace,
         polls: Path) -> None:
    time.sleep(3)  # the operator up and watching
    for name, remote in rigs:
        api.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": name},
                    "spec": {"gitUrl": f"file://{remote}", "maxPolecats": 2}})
    settle = float(os.environ.get("GT_POLL_IDLE_SECONDS", 30)) + 30
    time.sleep(settle)  # the first passes, then the waits grow to the idle cap

    def own() -> int:
        return sum(1 for ln in polls.read_text().splitlines() if ln == str(proc.pid)) if polls.exists() else 0
    before, git_before, cpu_before = len(api.requests), own(), sum(cpu_seconds(proc.pid))
    time.sleep(args.idle_window)
    window, git, cpu = api.requests[before:], own() - git_before, sum(cpu_seconds(proc.pid)) - cpu_before
    rate = len(window) / args.idle_window / len(rigs)
    print(f"idle:      {rate:.3f} API requests/s per idle rig (target < {TARGET:.0f}), "
          f"{git / args.idle_window / len(rigs):.3f} remote polls/s per idle rig, {len(rigs)} idle rigs over "
          f"{args.idle_window:.0f}s, {settle:.0f}s after they were created")
    print(f"           the operator's CPU, its git included: {100 * cpu / args.idle_window:.1f} % of a core for "
          f"{len(rigs)} idle rigs")
    for what, n in Counter(f"{m} {kind(p)}" for m, p in window).most_common(4):
        print(f"           {n / args.idle_window:7.2f}/s  {what}")


def run(api: KubeAPI, proc: subprocess.Popen, rigs: list[tuple[str, Path]], args: argparse.Namespace) -> None:
    want = args.rigs * args.beads
    time.sleep(3)  # the operator up and watching
    start, first = time.monotonic(), len(api.requests)
    for name, remote in rigs:
        api.create({"apiVersion": "gastown.dev/v1alpha1", "kind": "Rig", "metadata": {"name": name},
                    "spec": {"gitUrl": f"file://{remote}", "maxPolecats": args.beads}})
    full: dict[str, float] = {}
    count = 0
    while time.monotonic() - start < args.timeout:
        per_rig = Counter(j["metadata"]["labels"]["gastown.dev/rig"] for j in api.list("jobs", "default", selector=SESSION))
        for rig, n in per_rig.items():
            if n >= args.beads and rig not in full:
                full[rig] = time.monotonic() - start
        count = sum(per_rig.values())
        if count >= want:
            break
        time.sleep(0.5)
    took = time.monotonic() - start
    ramp = len(api.requests) - first
    mem = memory(proc.pid)
    if count < want:
        print(f"sessions:  {count} of {want} session Jobs after {took:.1f}s (gave up)")
    else:
        print(f"sessions:  all {want} session Jobs exist {took:.1f}s after the {args.rigs} Rigs were created "
              f"(first rig full at {min(full.values()):.1f}s, last at {max(full.values()):.1f}s)")
    print(f"ramp:      {ramp} API requests while the sessions started ({ramp / took:.0f}/s, "
          f"{ramp / want:.1f} per session)")
    print(f"rss:       {mem['VmRSS']} MB now, {mem['VmHWM']} MB at most")
    time.sleep(10)  # the passes that follow the last start settle
    before = len(api.requests)
    time.sleep(args.steady)
    window = api.requests[before:]
    rate = len(window) / args.steady
    print(f"requests:  {rate:.2f}/s overall, {rate / args.rigs:.3f}/s per rig (target < {TARGET:.0f}), "
          f"in {args.steady:.0f}s of steady state")
    for what, n in Counter(f"{m} {kind(p)}" for m, p in window).most_common(8):
        print(f"           {n / args.steady:7.2f}/s  {what}")
    print(f"rss:       {memory(proc.pid)['VmRSS']} MB after the steady state")


if __name__ == "__main__":
    main()
