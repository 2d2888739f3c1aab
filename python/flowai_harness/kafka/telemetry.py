"""Traces of a distributed query, and the context every log line carries.

Owns the spans the services make and the W3C ``traceparent`` header they write on Kafka
records. With OpenTelemetry on (the ``otel`` extra and :func:`configure`, or
:func:`enable` with a provider of your own) one query is one trace across every service:

- ``flowai.runtime.step`` (CONSUMER): the runtime feeding one input to the engine, child of
  the input's ``traceparent``; everything that step publishes carries the step's context.
- ``flowai.tool.invocation`` / ``flowai.plan.step`` (CONSUMER): a tool worker answering one
  invocation or plan step, with one ``flowai.tool.run`` (INTERNAL) per attempt.
- ``flowai.model.request`` (CONSUMER): a model worker answering one model request, with
  ``chat {model}`` (CLIENT) for the provider call, in the GenAI semantic conventions
  (``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
  ``gen_ai.response.finish_reasons``, ``error.type``).
- ``flowai.approval.wait`` (INTERNAL): from the approval request's time to the decision
  being published, child of the request's ``traceparent``; the decision carries it.

The header is written once per record, from the current span through OpenTelemetry's W3C
propagator; with OpenTelemetry off it is still written (same trace, a new span id), so a
deployment that turns tracing on later keeps its traces linked.

Every message handled also sets the log context (:func:`log_context`): thread, run,
message id and trace id, which :mod:`flowai_harness.kafka.observe`'s JSON log lines carry.

Imports :mod:`flowai_harness.kafka.bus` and :mod:`flowai_harness.kafka.metrics` (the
``kafka`` extra: only services and clients trace). Must not import a service, the runtime or
the native engine; OpenTelemetry is optional.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final

from ..errors import SettingError
from ..messages import ApprovalDecision, CancelRun, ModelRequest, PlanStep, Query, ToolInvocation
from . import bus, metrics

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _PROPAGATOR: Any = TraceContextTextMapPropagator()
except ImportError:  # the otel extra is not installed: traceparent headers only
    trace = None  # type: ignore[assignment]
    _PROPAGATOR = None

__all__ = [
    "EXPORTERS",
    "TRACEPARENT",
    "approval_wait",
    "configure",
    "consuming",
    "describe",
    "disable",
    "enable",
    "enabled",
    "log_context",
    "model_call",
    "outgoing",
    "publishing",
    "remember_approval_request",
    "tool_run",
]

TRACEPARENT: Final = bus.TRACEPARENT
EXPORTERS: Final = ("off", "console", "otlp")
_INSTRUMENTATION: Final = "flowai_harness"
# The approval requests' traceparents the approvals service read (tenant, id) -> header,
# bounded: a decision on an approval older than this many others starts a new trace.
_REMEMBERED: Final = 100_000

_tracer: Any = None
_requests: OrderedDict[tuple[str, str], str] = OrderedDict()
_NO_CONTEXT: Final[Mapping[str, str | None]] = MappingProxyType({})
_LOG: contextvars.ContextVar[Mapping[str, str | None]] = contextvars.ContextVar(
    "flowai_log_context", default=_NO_CONTEXT
)


# --- switching it on -------------------------------------------------------------------------


def enable(provider: Any = None) -> None:
    """Trace with ``provider`` (an OpenTelemetry ``TracerProvider``; default: the global
    one). Tests pass one with an in-memory exporter."""
    global _tracer
    if trace is None:
        raise SettingError(
            "tracing needs OpenTelemetry: pip install 'flowai-harness[otel]'",
            details={"option": "--traces"},
        )
    source = provider if provider is not None else trace.get_tracer_provider()
    _tracer = source.get_tracer(_INSTRUMENTATION)


def disable() -> None:
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


def configure(exporter: str, service: str) -> None:
    """Set the global tracer provider of this process: ``service.name`` ``flowai-<service>``,
    spans batched to ``exporter`` (``console``: stderr; ``otlp``: the OTLP/HTTP endpoint of
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, default localhost:4318), or nothing for ``off``."""
    if exporter == "off":
        disable()
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise SettingError(
            f"--traces {exporter} needs the OpenTelemetry SDK: pip install 'flowai-harness[otel]'",
            details={"option": "--traces", "variable": "FLOWAI_TRACES", "value": exporter},
        ) from None
    span_exporter: Any
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise SettingError(
                "--traces otlp needs the OTLP exporter: pip install 'flowai-harness[otel]'",
                details={"option": "--traces", "variable": "FLOWAI_TRACES", "value": exporter},
            ) from None
        span_exporter = OTLPSpanExporter()
    else:
        raise SettingError(
            f"--traces takes {', '.join(EXPORTERS)}, got {exporter!r}",
            details={"option": "--traces", "variable": "FLOWAI_TRACES", "value": exporter},
        )
    name = os.environ.get("OTEL_SERVICE_NAME") or f"flowai-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    enable(provider)


# --- headers ---------------------------------------------------------------------------------


def _trace_id(traceparent: str | None) -> str | None:
    if traceparent is None:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def outgoing(incoming: Iterable[tuple[str, bytes]] | None = None) -> list[tuple[str, bytes]]:
    """The headers of a record published while handling a message with ``incoming`` headers:
    one ``traceparent``, the current span's when tracing, else a new span id in the
    incoming trace (a new trace when there is none)."""
    if _tracer is not None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        header = carrier.get(TRACEPARENT)
        if header is not None:
            return [(TRACEPARENT, header.encode())]
    return [(TRACEPARENT, bus.child_traceparent(bus.traceparent_of(incoming)).encode())]


# What a client publishes starts a trace: the span's name by the envelope's schema.
_SPAN_OF_PUBLISHED: Final = {
    Query.NAME: "flowai.query",
    CancelRun.NAME: "flowai.cancel",
    ApprovalDecision.NAME: "flowai.approval.decision",
}


def publishing(envelope: bytes, topic: str) -> list[tuple[str, bytes]]:
    """A client publishes ``envelope`` on ``topic``: the root of its trace (a PRODUCER span
    ``flowai.query`` for a query, when tracing, ended once built: the services' spans are its
    children) and the headers that carry it."""
    if _tracer is None:
        return outgoing(None)
    fields = bus.peek(envelope) or {}
    name = _SPAN_OF_PUBLISHED.get(str(fields.get("schema")), "flowai.publish")
    attributes = _attributes(
        _envelope_fields(fields),
        {"messaging.system": "kafka", "messaging.destination.name": topic},
    )
    with _tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
        return outgoing(None)


# --- spans -----------------------------------------------------------------------------------


def log_context() -> Mapping[str, str | None]:
    """Thread, run, message id and trace id of the message being handled (empty outside)."""
    return _LOG.get()


def _envelope_fields(envelope: Mapping[str, Any] | None) -> dict[str, str | None]:
    def text(name: str) -> str | None:
        value = None if envelope is None else envelope.get(name)
        return value if isinstance(value, str) else None

    return {"thread_id": text("thread_id"), "run_id": text("run_id"), "message_id": text("id")}


def _attributes(fields: Mapping[str, str | None], extra: Mapping[str, Any]) -> dict[str, Any]:
    attributes = {f"flowai.{name}": value for name, value in fields.items() if value is not None}
    attributes.update({name: value for name, value in extra.items() if value is not None})
    return attributes


@contextlib.contextmanager
def consuming(
    name: str,
    headers: Iterable[tuple[str, bytes]] | None,
    envelope: Mapping[str, Any] | None,
    **attributes: Any,
) -> Iterator[Any]:
    """Handle one consumed message: a CONSUMER span child of its ``traceparent`` (when
    tracing) and the log context of its envelope. Yields the span (None when not tracing)."""
    incoming = bus.traceparent_of(headers)
    fields = _envelope_fields(envelope)
    if _tracer is None:
        token = _LOG.set({**fields, "trace_id": _trace_id(incoming)})
        try:
            yield None
        finally:
            _LOG.reset(token)
        return
    parent = _PROPAGATOR.extract({TRACEPARENT: incoming} if incoming else {})
    with _tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=_attributes(fields, attributes)
    ) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        token = _LOG.set({**fields, "trace_id": trace_id})
        try:
            yield span
        finally:
            _LOG.reset(token)


# The span a worker's message gets once its schema is known.
_SPAN_OF_SCHEMA: Final = {
    ToolInvocation.NAME: "flowai.tool.invocation",
    PlanStep.NAME: "flowai.plan.step",
    ModelRequest.NAME: "flowai.model.request",
}


def describe(envelope: Mapping[str, Any] | None, *, name_by_schema: bool = False) -> None:
    """The message being handled (inside :func:`consuming`) was decoded: put its thread, run
    and id on the span and in the log context (and, for a worker, name the span after what
    the message asks for)."""
    if envelope is None:
        return
    fields = _envelope_fields(envelope)
    _LOG.set({**_LOG.get(), **fields})
    if _tracer is None:
        return
    span = trace.get_current_span()
    span.set_attributes(_attributes(fields, {"flowai.schema": envelope.get("schema")}))
    if name_by_schema:
        name = _SPAN_OF_SCHEMA.get(str(envelope.get("schema")))
        if name is not None:
            span.update_name(name)


def _span(name: str, kind: str, attributes: Mapping[str, Any]) -> Any:
    """A child span of the current one, made current while inside (a context manager that
    yields None when not tracing)."""
    if _tracer is None:
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(
        name,
        kind=getattr(SpanKind, kind),
        attributes={key: value for key, value in attributes.items() if value is not None},
    )


def _failed(span: Any, code: str) -> None:
    """Mark ``span`` failed with ``code`` (``ok``: not failed)."""
    if span is not None and code != "ok":
        span.set_attribute("error.type", code)
        span.set_status(Status(StatusCode.ERROR, code))


@contextlib.contextmanager
def tool_run(tool: str, attempt: int) -> Iterator[dict[str, Any]]:
    """One run of a tool handler: a ``flowai.tool.run`` span and the latency histogram. Put
    the handler's payload in the yielded dict as ``payload`` so the outcome is recorded."""
    outcome: dict[str, Any] = {}
    started = time.perf_counter()
    with _span(
        "flowai.tool.run", "INTERNAL", {"flowai.tool": tool, "flowai.attempt": attempt}
    ) as span:
        try:
            yield outcome
        finally:
            payload = outcome.get("payload") or {}
            error = payload.get("error") if isinstance(payload, Mapping) else None
            code = str(error.get("code") or "error") if isinstance(error, Mapping) else "ok"
            metrics.tool_run(tool, code, time.perf_counter() - started)
            _failed(span, code)


@contextlib.contextmanager
def model_call(request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One provider call for a ModelRequest payload: a ``chat {model}`` CLIENT span with the
    GenAI attributes, the latency histogram and the token counters. Put the ModelResult
    payload in the yielded dict as ``result``."""
    provider = str(request.get("provider", ""))
    model = str(request.get("model", ""))
    outcome: dict[str, Any] = {}
    started = time.perf_counter()
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": request.get("max_tokens"),
        "gen_ai.request.temperature": request.get("temperature"),
        "flowai.agent": request.get("agent"),
        "flowai.attempt": request.get("attempt"),
    }
    with _span(f"chat {model}", "CLIENT", attributes) as span:
        try:
            yield outcome
        finally:
            result = outcome.get("result") or {}
            response = result.get("response") if isinstance(result, Mapping) else None
            failure = result.get("failure") if isinstance(result, Mapping) else None
            usage = (response or {}).get("usage") or {}
            input_tokens = int(usage.get("prompt_tokens") or 0)
            output_tokens = int(usage.get("completion_tokens") or 0)
            kind = (
                str(failure.get("kind") or "failure")
                if isinstance(failure, Mapping)
                else ("ok" if response else "error")
            )
            metrics.model_call(
                provider, model, kind, time.perf_counter() - started, input_tokens, output_tokens
            )
            if span is not None and response:
                span.set_attribute("gen_ai.response.model", str(response.get("model", model)))
                span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
                span.set_attribute(
                    "gen_ai.response.finish_reasons", [str(response.get("stop_reason"))]
                )
            _failed(span, kind)


# --- approvals ---------------------------------------------------------------------------------


def remember_approval_request(
    value: bytes | None, headers: Iterable[tuple[str, bytes]] | None
) -> None:
    """The approvals service read an ApprovalRequest: keep its ``traceparent``, so the
    decision on it continues the query's trace."""
    header = bus.traceparent_of(headers)
    if header is None or not value:
        return
    fields = bus.peek(value) or {}
    payload = fields.get("payload")
    approval_id = payload.get("id") if isinstance(payload, Mapping) else None
    tenant = fields.get("tenant")
    if not isinstance(tenant, str) or not isinstance(approval_id, str):
        return
    _requests[(tenant, approval_id)] = header
    _requests.move_to_end((tenant, approval_id))
    while len(_requests) > _REMEMBERED:
        _requests.popitem(last=False)


def approval_wait(
    tenant: str, approval_id: str, requested_at_ms: int, **attributes: Any
) -> list[tuple[str, bytes]]:
    """A decision on ``approval_id`` is being published: the ``flowai.approval.wait`` span
    (from the request's time to now, child of the request's trace) and the headers that put
    the decision in that trace."""
    incoming = _requests.get((tenant, approval_id))
    headers = [(TRACEPARENT, incoming.encode())] if incoming is not None else None
    if _tracer is None:
        return outgoing(headers)
    parent = _PROPAGATOR.extract({TRACEPARENT: incoming} if incoming else {})
    extra = {"flowai.approval_id": approval_id, "flowai.tenant": tenant, **attributes}
    span = _tracer.start_span(
        "flowai.approval.wait",
        context=parent,
        kind=SpanKind.INTERNAL,
        attributes={k: v for k, v in extra.items() if v is not None},
        start_time=max(0, int(requested_at_ms)) * 1_000_000,
    )
    try:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return [(TRACEPARENT, carrier[TRACEPARENT].encode())]
    finally:
        span.end()
