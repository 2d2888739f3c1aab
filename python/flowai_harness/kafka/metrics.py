"""The services' Prometheus metrics: one registry per process, and the calls that count.

Owns :data:`REGISTRY` and every metric the services export (the list below is the contract
docs/services.md repeats), the process's ``service`` label (:func:`set_service`), the
consumers whose lag is measured at each scrape (:func:`watch_consumer`,
:func:`refresh_lag`) and :func:`exposition` (the text format). The service code calls the
short functions here (:func:`dead_letter`, :func:`transaction`, ...); nothing in it reads a
metric back to decide anything.

Metrics (counters end in ``_total`` in the exposition):

- ``flowai_inputs_total{service}``: messages a service took in to handle
- ``flowai_events_appended_total{service}``: events appended to the run log (committed)
- ``flowai_transactions_total{service,outcome}``: Kafka transactions, ``committed`` /
  ``aborted`` / ``fenced``
- ``flowai_replayed_events_total{service}``: run-log events folded while rebuilding
- ``flowai_replay_pending_partitions{service}``: partitions assigned and not yet rebuilt
- ``flowai_consumer_lag{service,topic,partition}``: records between a consumer's position
  and the partition's last stable offset (measured when scraped)
- ``flowai_tool_duration_seconds{tool,outcome}``: one tool handler run (an attempt)
- ``flowai_model_call_duration_seconds{provider,model,outcome}``: one provider call
- ``flowai_model_tokens_total{provider,model,kind}``: tokens, ``input`` / ``output``
- ``flowai_retries_total{service,kind}``: retried tool attempts (``tool``, counted by the
  tool workers) and model requests the engine asks again, after a failure or on a fallback
  model (``model``, counted by the runtime)
- ``flowai_dead_letters_total{service,reason}``: dead letters by their reason code
- ``flowai_pending_approvals{service}``: approvals waiting for a decision (approvals)
- ``flowai_ready{service}``: 1 when /readyz would answer 200

Imports ``prometheus_client`` (the ``kafka`` extra). Must not import a service, the runtime
or the native engine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "CONTENT_TYPE",
    "REGISTRY",
    "dead_letter",
    "events_appended",
    "exposition",
    "input_taken",
    "model_call",
    "pending_approvals_from",
    "refresh_lag",
    "replay_started",
    "replayed",
    "retry",
    "service",
    "set_service",
    "tool_run",
    "transaction",
    "watch_consumer",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
REGISTRY: Final = CollectorRegistry()
# Seconds: a tool or a model call takes from milliseconds to minutes.
_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

INPUTS: Final = Counter(
    "flowai_inputs", "Messages a service took in to handle.", ["service"], registry=REGISTRY
)
EVENTS_APPENDED: Final = Counter(
    "flowai_events_appended",
    "Events appended to the run log by committed transactions.",
    ["service"],
    registry=REGISTRY,
)
TRANSACTIONS: Final = Counter(
    "flowai_transactions",
    "Kafka transactions by outcome (committed, aborted, fenced).",
    ["service", "outcome"],
    registry=REGISTRY,
)
REPLAYED: Final = Counter(
    "flowai_replayed_events",
    "Run-log events folded into the engine while rebuilding partitions.",
    ["service"],
    registry=REGISTRY,
)
REPLAY_PENDING: Final = Gauge(
    "flowai_replay_pending_partitions",
    "Partitions assigned to this instance and not rebuilt from the run log yet.",
    ["service"],
    registry=REGISTRY,
)
CONSUMER_LAG: Final = Gauge(
    "flowai_consumer_lag",
    "Records between a consumer's position and the partition's last stable offset.",
    ["service", "topic", "partition"],
    registry=REGISTRY,
)
TOOL_SECONDS: Final = Histogram(
    "flowai_tool_duration_seconds",
    "One run (attempt) of a tool handler, by outcome (ok, error code).",
    ["tool", "outcome"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
MODEL_SECONDS: Final = Histogram(
    "flowai_model_call_duration_seconds",
    "One call to a model provider, by outcome (ok, failure kind).",
    ["provider", "model", "outcome"],
    buckets=_BUCKETS,
    registry=REGISTRY,
)
MODEL_TOKENS: Final = Counter(
    "flowai_model_tokens",
    "Tokens of model calls, by kind (input, output).",
    ["provider", "model", "kind"],
    registry=REGISTRY,
)
RETRIES: Final = Counter(
    "flowai_retries",
    "Retried attempts, by kind (tool, model).",
    ["service", "kind"],
    registry=REGISTRY,
)
DEAD_LETTERS: Final = Counter(
    "flowai_dead_letters",
    "Dead letters published, by reason code.",
    ["service", "reason"],
    registry=REGISTRY,
)
PENDING_APPROVALS: Final = Gauge(
    "flowai_pending_approvals",
    "Approvals waiting for a decision.",
    ["service"],
    registry=REGISTRY,
)
READY: Final = Gauge(
    "flowai_ready", "1 when the service is ready (as /readyz).", ["service"], registry=REGISTRY
)

_service = "flowai"
# Partitions waiting to be rebuilt (a list: one mutable cell, no global statement).
_replay: list[int] = [0]
# (service label, consumer) pairs measured at each scrape.
_consumers: list[tuple[str, Any]] = []


def set_service(name: str) -> None:
    """The ``service`` label of everything this process counts from now on."""
    global _service
    _service = name


def service() -> str:
    return _service


def input_taken(count: int = 1) -> None:
    INPUTS.labels(_service).inc(count)


def events_appended(count: int) -> None:
    if count:
        EVENTS_APPENDED.labels(_service).inc(count)


def transaction(outcome: str) -> None:
    """``committed``, ``aborted`` or ``fenced``."""
    TRANSACTIONS.labels(_service, outcome).inc()


def dead_letter(reason: str) -> None:
    DEAD_LETTERS.labels(_service, reason).inc()


def retry(kind: str) -> None:
    RETRIES.labels(_service, kind).inc()


def replay_started(partitions: int) -> None:
    """A rebuild of ``partitions`` begins (rebuilds run one at a time: this replaces what an
    earlier, failed one left)."""
    _replay[0] = partitions
    REPLAY_PENDING.labels(_service).set(_replay[0])


def replayed(events: int) -> None:
    """One partition rebuilt from ``events`` run-log events."""
    _replay[0] = max(0, _replay[0] - 1)
    REPLAY_PENDING.labels(_service).set(_replay[0])
    if events:
        REPLAYED.labels(_service).inc(events)


def replay_pending() -> int:
    """Partitions assigned and not rebuilt yet (readiness waits for none)."""
    return _replay[0]


def tool_run(tool: str, outcome: str, seconds: float) -> None:
    TOOL_SECONDS.labels(tool, outcome).observe(seconds)


def model_call(
    provider: str, model: str, outcome: str, seconds: float, input_tokens: int, output_tokens: int
) -> None:
    MODEL_SECONDS.labels(provider, model, outcome).observe(seconds)
    if input_tokens:
        MODEL_TOKENS.labels(provider, model, "input").inc(input_tokens)
    if output_tokens:
        MODEL_TOKENS.labels(provider, model, "output").inc(output_tokens)


def pending_approvals_from(count: Callable[[], int]) -> None:
    """Read the number of pending approvals from ``count`` at each scrape."""
    PENDING_APPROVALS.labels(_service).set_function(lambda: float(count()))


def watch_consumer(consumer: Any) -> None:
    """Measure ``consumer``'s lag at each scrape (until it stops)."""
    _consumers.append((_service, consumer))


def forget_consumer(consumer: Any) -> None:
    _consumers[:] = [(name, c) for name, c in _consumers if c is not consumer]


def watched_consumers() -> list[Any]:
    return [consumer for _, consumer in _consumers]


async def refresh_lag(within: float = 1.0) -> None:
    """Set ``flowai_consumer_lag`` for every partition the watched consumers hold now."""
    CONSUMER_LAG.clear()
    for name, consumer in list(_consumers):
        with contextlib.suppress(Exception):
            for tp in consumer.assignment():
                end = consumer.last_stable_offset(tp)
                if end is None:
                    end = consumer.highwater(tp)
                if end is None:
                    continue  # nothing fetched from it yet: unknown, not zero
                try:
                    position = await asyncio.wait_for(consumer.position(tp), within)
                except (TimeoutError, Exception):
                    continue
                CONSUMER_LAG.labels(name, tp.topic, str(tp.partition)).set(max(0, end - position))


def exposition() -> bytes:
    """Every metric, in the Prometheus text format."""
    return generate_latest(REGISTRY)
