"""Tracing's glue: off (no endpoint) it creates nothing and passes nothing on; on, a convoy's
trace is the same in every process and TRACEPARENT carries the current span. Each case runs in a
fresh interpreter: OpenTelemetry's tracer provider is set once per process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

from gastown.ledger import Bead, BeadType, Status
from gastown.telemetry import tracing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _python(code: str, **env: str) -> dict:
    """Run ``code`` (which prints one JSON line last) in a fresh interpreter with ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "TRACEPARENT"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_without_an_endpoint_nothing_is_created_and_traceparent_is_left_alone():
    out = _python("""
        import json, logging, sys
        from opentelemetry import trace
        from gastown.telemetry import tracing
        set_up = tracing.setup("test")
        with tracing.span("dispatch", tracing.convoy_context("webapp", "docs"), bead="gt-1") as span:
            env = tracing.environ({"PATH": "/bin"})
            child = tracing.child_env()
            recording = span.is_recording()
        record = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
        tracing.TraceIds().filter(record)
        print(json.dumps({
            "set_up": set_up, "enabled": tracing.enabled(), "env": env, "child": child, "recording": recording,
            "inherited": tracing.inherited() is not None,
            "provider": type(trace.get_tracer_provider()).__name__, "trace": record.trace,
            "loaded": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter")))}))
    """, TRACEPARENT=TRACEPARENT)
    assert out["set_up"] is False and out["enabled"] is False
    assert out["env"] == {"PATH": "/bin"} and out["child"] == {}  # no TRACEPARENT passed on, no endpoint
    assert out["inherited"] is False  # a TRACEPARENT in the environment is not read
    assert out["recording"] is False and out["provider"] == "ProxyTracerProvider"
    assert out["loaded"] == []  # neither the SDK nor an exporter was even imported
    assert out["trace"] == ""


def test_with_an_endpoint_the_span_travels_in_traceparent():
    out = _python("""
        import json, logging, os
        from opentelemetry import trace
        from gastown.telemetry import tracing
        assert tracing.setup("test")
        parent = tracing.inherited()
        with tracing.span("session", parent, bead="gt-1") as span:
            ctx = span.get_span_context()
            env = tracing.environ({})
            child = tracing.child_env()
            record = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
            tracing.TraceIds().filter(record)
        inner = trace.get_current_span(tracing.inherited(env)).get_span_context()
        print(json.dumps({"trace": f"{ctx.trace_id:032x}", "span": f"{ctx.span_id:016x}", "env": env, "child": child,
                          "inner": [f"{inner.trace_id:032x}", f"{inner.span_id:016x}"], "log": record.trace}))
        os._exit(0)  # nothing to send to a receiver that is not there
    """, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_BSP_SCHEDULE_DELAY="60000", TRACEPARENT=TRACEPARENT)
    assert out["trace"] == "0af7651916cd43dd8448eb211c80319c"  # the parent process's trace, carried on
    assert out["env"]["TRACEPARENT"] == f"00-{out['trace']}-{out['span']}-01"
    assert out["child"] == {"TRACEPARENT": out["env"]["TRACEPARENT"], "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    assert out["inner"] == [out["trace"], out["span"]]
    assert out["log"] == f" trace={out['trace']} span={out['span']}"


def _convoy(rig: str, key: str, home: str | None = None) -> Bead:
    now = datetime.now(UTC)
    return Bead(id="gt-abc", title="convoy", type=BeadType.CONVOY, status=Status.OPEN, created_by="t", created_at=now,
                updated_at=now, metadata={"key": key, "rig": rig, "home": home or rig})


def test_a_convoys_trace_is_derived_from_its_home_and_key():
    home, part = _convoy("webapp", "docs"), _convoy("api", "docs", home="webapp")
    ids = tracing.convoy_ids("webapp", "docs")
    assert tracing._ids_key(home) == tracing._ids_key(part) == ("webapp", "docs")  # every rig's part: one trace
    assert ids == tracing.convoy_ids("webapp", "docs") != tracing.convoy_ids("webapp", "other")
    assert all(0 < i for i in ids) and ids[0] < 2**128 and ids[1] < 2**64


def test_log_ids_adds_the_filter_once():
    logger = logging.getLogger("gastown.test_tracing")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        tracing.log_ids(logger)
        tracing.log_ids(logger)
        assert sum(isinstance(f, tracing.TraceIds) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


def test_the_chart_gives_the_operator_the_endpoint_only_when_set():
    from test_chart import by_kind, render

    def env(*args: str) -> dict:
        (deployment,) = by_kind(render(*args), "Deployment")
        return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env()
    url = "http://otel-collector.observability:4318"
    assert env("--set", f"tracing.otlpEndpoint={url}")["OTEL_EXPORTER_OTLP_ENDPOINT"] == url


JOBS = """
    import json, os
    from gastown.api import RigSpec
    from gastown.api.common import RuntimeSpec
    from gastown.runtimes.kubernetes import JobRequest, VerifyRequest, session_job, verification_job
    from gastown.telemetry import tracing
    tracing.setup("test")
    rig = RigSpec.model_validate({"gitUrl": "https://git.example.com/webapp.git"})
    def env(job):
        return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    with tracing.span("dispatch", tracing.convoy_context("webapp", "docs")) as span:
        session = env(session_job(JobRequest(namespace="a", rig="webapp", rig_spec=rig, polecat="furiosa",
                                             polecat_uid="u", bead="wa-1", count=1, runtime=RuntimeSpec(preset="script"),
                                             image="agent:1")))
        verify = env(verification_job(VerifyRequest(namespace="a", rig="webapp", rig_spec=rig, batch="wa-b", run={},
                                                    ident="x" * 16, attempt=0, ref="refs/x", owner={})))
        ctx = span.get_span_context()
    names = ("TRACEPARENT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS")
    print(json.dumps({"session": {k: session.get(k) for k in names}, "verify": {k: verify.get(k) for k in names},
                      "span": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"}))
    os._exit(0)
"""


def test_session_and_verification_jobs_carry_the_trace_only_while_tracing():
    on = _python(JOBS, OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318", OTEL_BSP_SCHEDULE_DELAY="60000",
                 OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer secret")
    expected = {"TRACEPARENT": on["span"], "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_EXPORTER_OTLP_HEADERS": None}  # a header may be a credential: never in a Job's spec
    assert on["session"] == on["verify"] == expected
    trace_id = f"{tracing.convoy_ids('webapp', 'docs')[0]:032x}"
    assert on["span"].split("-")[1] == trace_id  # the convoy's trace
    off = _python(JOBS)
    assert off["session"] == off["verify"] == dict.fromkeys(expected)


def test_the_operators_log_lines_print_the_ids_under_kopfs_format():
    code = textwrap.dedent("""
        import logging, os, kopf
        from gastown.telemetry import tracing
        kopf.configure(verbose=False)  # kopf's own handler and format, as `gt operator run` has them
        assert tracing.setup("test")
        tracing.log_ids()
        with tracing.span("dispatch", tracing.convoy_context("webapp", "docs")) as span:
            ctx = span.get_span_context()
            logging.getLogger("gastown.operator").warning("dispatched")
        logging.getLogger("gastown.operator").warning("outside")
        print(f"{ctx.trace_id:032x} {ctx.span_id:016x}", flush=True)
        os._exit(0)
    """)
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    trace_id, span_id = proc.stdout.split()
    lines = proc.stderr.splitlines()
    dispatched = next(ln for ln in lines if "dispatched" in ln)
    assert dispatched.endswith(f"dispatched trace={trace_id} span={span_id}")
    assert next(ln for ln in lines if "outside" in ln).endswith("outside")  # no span: nothing added
