"""A convoy is one trace: a local town (real git, the real daemon, scripted agents, a gate that
rejects a bad change once) exports its spans over OTLP/HTTP to a receiver in the test, and the
tree is checked: one root per convoy, plan, dispatch, sessions (their spans sent by the session
wrappers, parented across the process boundary), verification runs and merges under it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import GT, wait_for
from towns import convoy_done, gt, ok, town_with_convoy


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf; every span kept as a dict."""

    def __init__(self):
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
                if ok:
                    receiver.take(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource in request.resource_spans:
            service = next((a.value.string_value for a in resource.resource.attributes if a.key == "service.name"), "")
            for scope in resource.scope_spans:
                for s in scope.spans:
                    with self.lock:
                        self.spans.append({
                            "name": s.name, "trace": s.trace_id.hex(), "id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(), "service": service,
                            "attrs": {a.key: _value(a.value) for a in s.attributes}})

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.spans)


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.mark.slow
def test_a_convoy_is_one_trace_across_processes(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    rig, town = town_with_convoy(tmp_path, ["Good one", "BAD one"], polecats=2, fill=2)
    ok(gt(town, "up"))
    try:
        beads = wait_for(lambda: convoy_done(rig), timeout=150, what="the convoy to be done")
        roots = wait_for(lambda: [s for s in receiver.snapshot() if not s["parent"]], timeout=30,
                         what="the convoy's root span")
    finally:
        ok(gt(town, "down"))

    spans = receiver.snapshot()
    assert len(roots) == 1, roots  # one root, one trace: every span of the town is the convoy's
    root = roots[0]
    assert root["name"] == "convoy docs" and root["service"] == "gastown-daemon"
    assert {s["trace"] for s in spans} == {root["trace"]}
    by_id = {s["id"]: s for s in spans}
    assert all(s["parent"] in by_id for s in spans if s is not root), "a span whose parent never came"
    named = defaultdict(list)
    for s in spans:
        named[s["name"]].append(s)
    lines = [ln for ln in (town / "daemon.log").read_text().splitlines() if "started session" in ln]
    assert lines and all(f" trace={root['trace']} span=" in ln for ln in lines)  # the log leads to the trace
    children = {s["name"] for s in spans if s["parent"] == root["id"]}
    assert {"plan", "dispatch", "verify", "merge"} <= children, children

    bad = next(b for b in beads.values() if b.title == "BAD one")
    good = next(b for b in beads.values() if b.title == "Good one")
    dispatches = {(s["attrs"]["gastown.bead"], s["attrs"]["gastown.polecat"]) for s in named["dispatch"]}
    assert {b for b, _ in dispatches} == {bad.id, good.id}
    assert sum(1 for s in named["dispatch"] if s["attrs"]["gastown.bead"] == bad.id) >= 2  # rejected, dispatched again
    assert all(s["attrs"]["gastown.rig"] == "webapp" for s in named["dispatch"])

    # each session's span is sent by its wrapper process, under the daemon's dispatch span
    assert len(named["session"]) == len(named["dispatch"])
    for session in named["session"]:
        parent = by_id[session["parent"]]
        assert session["service"] == "gastown-session" and parent["service"] == "gastown-daemon"
        assert parent["name"] == "dispatch"
        assert session["attrs"]["gastown.bead"] == parent["attrs"]["gastown.bead"]
        assert session["attrs"]["gastown.polecat"] == parent["attrs"]["gastown.polecat"]
        assert {by_id[c["parent"]]["name"] for c in spans if c["parent"] == session["id"]} >= {"session"}
        assert {c["name"] for c in spans if c["parent"] == session["id"]} >= {"runtime", "done"}

    # verification runs: started by the daemon's Refinery, run under it by its verifier threads
    runs = named["verify run"]
    assert runs and all(by_id[r["parent"]]["name"] == "verify" and r["service"] == "gastown-daemon" for r in runs)
    assert {r["attrs"]["gastown.outcome"] for r in runs} >= {"pass", "fail"}
    assert all(r["attrs"]["gastown.run"] and r["attrs"]["gastown.batch"] for r in runs)
    merges = named["merge"]
    merged = {mr for m in merges for mr in m["attrs"]["gastown.merge_requests"].split(",")}
    assert good.metadata["mr"] in merged


@pytest.mark.slow
def test_a_direct_convoys_merge_is_a_span_under_its_root(tmp_path, receiver, monkeypatch):
    """A `direct` convoy's merge request is merged by the rig pass, no batch verified: still a merge span."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    rig, town = town_with_convoy(tmp_path, ["Good one"], polecats=1, strategy="direct")
    ok(gt(town, "up"))
    try:
        beads = wait_for(lambda: convoy_done(rig), timeout=90, what="the direct convoy to be done")
        root = wait_for(lambda: next((s for s in receiver.snapshot() if not s["parent"]), None), timeout=30,
                        what="the convoy's root span")
    finally:
        ok(gt(town, "down"))
    good = next(b for b in beads.values() if b.title == "Good one")
    under = [s for s in receiver.snapshot() if s["parent"] == root["id"]]
    merges = [s for s in under if s["name"] == "merge"]
    assert {"plan", "dispatch", "merge"} <= {s["name"] for s in under}
    assert "verify" not in {s["name"] for s in under}  # nothing was verified: the merge is direct
    assert len(merges) == 1 and merges[0]["service"] == "gastown-daemon"
    assert merges[0]["attrs"] == {"gastown.merge_requests": good.metadata["mr"], "gastown.bead": good.id,
                                  "gastown.target": "main", "gastown.rig": "webapp", "gastown.strategy": "direct"}


def test_the_mayors_plan_on_a_cluster_is_a_span_under_the_convoys_root(tmp_path, receiver):
    """On a cluster the Mayor is a Job running `gt mayor plan` (with the operator's OTLP endpoint in
    its environment): its plan span joins the convoy's trace, whose ids come from the convoy itself."""
    from gastown import convoy as convoys
    from gastown.telemetry.tracing import convoy_ids

    from rigs import make_rig

    rig = make_rig(tmp_path)
    key = "team/feature"
    with rig.ledger() as lg:
        lg.ensure()
        lg.apply(convoys.OpenConvoy(convoys.ConvoyInfo(key=key, name="feature", rig="webapp", source="goal",
                                                       goal="Add a feature"), "operator"))
    plan = json.dumps({"beads": [{"key": "one", "title": "The one thing"}]})
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "GT_CACHE_DIR": str(tmp_path / "mayor-cache")}
    out = subprocess.run([GT, "mayor", "plan", "--convoy", key, "--rig", str(rig.remote), "--runtime", "script",
                          "--workdir", str(tmp_path), "--session-dir", str(tmp_path / "mayor"),
                          sys.executable, "-c", f"print({plan!r})"], capture_output=True, text=True, timeout=60,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert "planned 1 beads" in out.stdout
    spans = wait_for(lambda: [s for s in receiver.snapshot() if s["name"] == "plan"], timeout=10, what="the plan span")
    trace_id, root_id = convoy_ids("webapp", key)
    assert [(s["trace"], s["parent"], s["service"]) for s in spans] == [(f"{trace_id:032x}", f"{root_id:016x}",
                                                                         "gastown-mayor")]
    assert spans[0]["attrs"] == {"gastown.convoy": key, "gastown.rig": "webapp", "gastown.source": "mayor"}
