"""Traces: a convoy is one trace, across every process that works on it.

Set up once per process (`setup`), and only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: then
spans go out over OTLP/HTTP in batches (the standard ``OTEL_*`` variables tune the exporter and
its batching). Otherwise no provider and no exporter exist, `span` runs on OpenTelemetry's no-op
tracer, and TRACEPARENT is neither written nor read.

A convoy's trace needs no process to remember it: its trace id and its root span's id are
derived from the convoy (its home rig and key, the same for every rig's part of it; see
`convoy_ids`), so the daemon, the operator, a restarted one and every session parent their spans
under the same root. The root span itself is sent once, when the convoy closes (`convoy_root`).
The trace context reaches a session or a verifier as TRACEPARENT in its environment (`environ`),
and the process inside carries on from it (`inherited`).
"""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:  # a session's wrapper traces without the ledger's model (pydantic) loaded
    from ..ledger import Bead

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACEPARENT = "TRACEPARENT"
LOG_FORMAT = "%(asctime)s %(name)-18s %(levelname)-7s %(message)s%(trace)s"

Context = otel_context.Context
_provider: Any = None  # the SDK's TracerProvider, once `setup` made one
_forced: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("gastown_forced_ids", default=None)
_propagator = TraceContextTextMapPropagator()


def enabled() -> bool:
    return _provider is not None


def setup(service: str) -> bool:
    """Export this process's spans when OTEL_EXPORTER_OTLP_ENDPOINT is set; True when it does.
    Called once at start-up by the daemon, the operator, a session wrapper and a verifier."""
    global _provider
    if _provider is not None:
        return True
    if not os.environ.get(ENDPOINT):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class Ids(RandomIdGenerator):
        """Random ids, but for a convoy's root span: the ids derived from its convoy."""

        def generate_trace_id(self) -> int:
            forced = _forced.get()
            return forced[0] if forced else super().generate_trace_id()

        def generate_span_id(self) -> int:
            forced = _forced.get()
            return forced[1] if forced else super().generate_span_id()

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource, id_generator=Ids())  # flushed and shut down at exit
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def flush(timeout_ms: int = 5000) -> None:
    """Send what is pending now: a short-lived process calls it before it exits."""
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def _tracer() -> trace.Tracer:
    return trace.get_tracer("gastown")


def convoy_ids(home: str, key: str) -> tuple[int, int]:
    """(trace id, root span id) of the trace of convoy ``key`` whose home rig is ``home``: the
    same for each rig's part of it, in any process, at any time."""
    import hashlib  # (OpenSSL: loaded only by a process that traces a convoy)

    digest = hashlib.sha256(f"gastown convoy\0{home}\0{key}".encode()).digest()
    return int.from_bytes(digest[:16]) or 1, int.from_bytes(digest[16:24]) or 1


def _ids_key(convoy: Bead) -> tuple[str, str]:
    """(home rig, key) of a convoy's bead (any rig's part of it)."""
    meta = convoy.metadata
    return meta.get("home") or meta.get("rig") or "", meta.get("key", convoy.id)


def convoy_context(home: str, key: str) -> Context:
    """A context whose parent is the root span of convoy ``key`` (home rig ``home``): what its
    spans are started under."""
    trace_id, span_id = convoy_ids(home, key)
    root = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(root))


def bead_context(ids: str | Iterable[str], beads: Mapping[str, Bead]) -> Context | None:
    """Under the root of the convoy the first of ``ids`` that has one belongs to (a merge request:
    its source's); None when none belongs to a convoy, or while tracing is off."""
    if _provider is None:
        return None
    from .. import convoy as convoys

    for bead_id in [ids] if isinstance(ids, str) else ids:
        bead = beads.get(bead_id)
        if bead is not None and bead.metadata.get("source") in beads:
            bead = beads[bead.metadata["source"]]
        convoy = convoys.convoy_of(bead, beads) if bead is not None else None
        if convoy is not None:
            return convoy_context(*_ids_key(convoy))
    return None


@contextmanager
def span(name: str, parent: Context | None = None, **attrs: Any) -> Iterator[trace.Span]:
    """A span named ``name`` (under ``parent``, else under the current span), with ``attrs`` as
    ``gastown.*`` attributes (None values left out). A no-op without `setup`."""
    if _provider is None:
        yield trace.INVALID_SPAN
        return
    attributes = {f"gastown.{k}": v if isinstance(v, (str, bool, int, float)) else str(v)
                  for k, v in attrs.items() if v is not None}
    with _tracer().start_as_current_span(name, context=parent, attributes=attributes) as current:
        yield current


def planning(home: str, key: str, **attrs: Any) -> AbstractContextManager[trace.Span]:
    """The span of planning convoy ``key`` (home rig ``home``): its beads written."""
    return span("plan", convoy_context(home, key), convoy=key, rig=home, **attrs)


def planning_of(convoy: Bead, **attrs: Any) -> AbstractContextManager[trace.Span]:
    """`planning` of the convoy whose bead (any rig's part) is ``convoy``: what the Mayor's process
    (a Job on a cluster, `gt mayor plan`) opens, knowing only the ledger."""
    return planning(*_ids_key(convoy), **attrs)


def convoy_root(convoy: Bead, end: datetime) -> None:
    """Send ``convoy``'s root span, from its opening to ``end`` (once, when it closes)."""
    if _provider is None:
        return
    token = _forced.set(convoy_ids(*_ids_key(convoy)))
    try:
        root = _tracer().start_span(f"convoy {convoy.metadata.get('name', convoy.id)}", context=otel_context.Context(),
                                    start_time=_nanos(convoy.created_at),
                                    attributes={"gastown.convoy": convoy.id, "gastown.rig": convoy.metadata.get("rig", ""),
                                                "gastown.key": convoy.metadata.get("key", "")})
    finally:
        _forced.reset(token)
    root.end(end_time=_nanos(end))


def _nanos(when: datetime) -> int:
    return int(when.timestamp() * 1e9)


def environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (this process's environment by default) with TRACEPARENT for the current span,
    for a child process that carries the trace on; unchanged while tracing is off."""
    env = dict(os.environ if base is None else base)
    if _provider is not None and trace.get_current_span().get_span_context().is_valid:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        env[TRACEPARENT] = carrier["traceparent"]
    return env


def child_env() -> dict[str, str]:
    """What a session's or a verifier's Job needs to carry the trace on: the exporter's endpoint
    and TRACEPARENT for the current span; nothing while tracing is off. (OTEL_EXPORTER_OTLP_HEADERS
    may hold a credential: it is not copied into a Job's spec.)"""
    if _provider is None:
        return {}
    return {k: v for k, v in environ({}).items()} | {ENDPOINT: os.environ[ENDPOINT]}


def inherited(env: Mapping[str, str] | None = None) -> Context | None:
    """The trace context a parent process passed in TRACEPARENT; None while tracing is off or
    when there is none."""
    value = (os.environ if env is None else env).get(TRACEPARENT)
    if _provider is None or not value:
        return None
    ctx = _propagator.extract({"traceparent": value})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


@contextmanager
def carried_on(service: str) -> Iterator[None]:
    """A process another one started (a session wrapper, `gt done`, a verifier): set up, carry the
    parent's trace on (its TRACEPARENT) and send what is pending before the process ends."""
    setup(service)
    parent = inherited()
    token = otel_context.attach(parent) if parent is not None else None
    try:
        yield
    finally:
        if token is not None:
            otel_context.detach(token)
        flush()


class TraceIds(logging.Filter):
    """Adds ``trace`` to each record: `` trace=ID span=ID`` while a span is current, else empty
    (LOG_FORMAT ends with it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        ids = ({"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
               if _provider is not None and ctx.is_valid else {"trace_id": "", "span_id": ""})
        text = f" trace={ids['trace_id']} span={ids['span_id']}" if ids["trace_id"] else ""
        record.__dict__.update(ids, trace=text)
        return True


class _EndingWithIds(logging.Formatter):
    """Another formatter's line (kopf's, say), then the record's `` trace=ID span=ID``."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return self.inner.format(record) + getattr(record, "trace", "")


def log_ids(logger: logging.Logger | None = None) -> None:
    """Put the trace and span ids on the records of ``logger``'s handlers (the root's by default),
    and at the end of their lines where the handler's format does not place them itself."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, TraceIds) for f in handler.filters):
            handler.addFilter(TraceIds())
        inner = handler.formatter or logging.Formatter()
        if not isinstance(inner, _EndingWithIds) and "%(trace)s" not in (getattr(inner, "_fmt", None) or ""):
            handler.setFormatter(_EndingWithIds(inner))
