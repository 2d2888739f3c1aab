"""What an operator sees of a service: its logs, traces, metrics and health endpoints.

Owns the options every service takes for that (:func:`add_arguments`: ``--log-format``,
``--metrics``, ``--traces``, each also a ``FLOWAI_*`` variable), :func:`setup` (logging and
tracing, at start), the JSON log lines (:class:`JsonFormatter`: thread, run, message id and
trace id on every line, from :func:`flowai_harness.kafka.telemetry.log_context`), readiness
(:func:`ready_when`) and :func:`serving`, the HTTP server of

- ``GET /healthz``: 200 while the process runs (its event loop answers);
- ``GET /readyz``: 200 when every readiness check passes (the runtime: its assigned
  partitions rebuilt from the run log) and the broker answers a metadata request, else 503
  with the reasons;
- ``GET /metrics``: :mod:`flowai_harness.kafka.metrics` in the Prometheus text format, consumer
  lag measured at the scrape.

The service code calls only short hooks (:func:`ready_when`,
:func:`flowai_harness.kafka.metrics.watch_consumer`, the telemetry context managers).

Imports aiohttp and prometheus_client (the ``kafka`` extra). Must not import a service, the
runtime or the native engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web

from . import metrics, telemetry

__all__ = [
    "JsonFormatter",
    "add_arguments",
    "readiness",
    "ready_when",
    "run",
    "serving",
    "setup",
]

T = TypeVar("T")
LOG_FORMATS: Final = ("text", "json")
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A broker that takes longer than this to answer a metadata request is not ready.
_BROKER_WAIT: Final = 3.0

_checks: list[tuple[str, Callable[[], bool]]] = []
_lock = threading.Lock()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--log-format``, ``--metrics`` and ``--traces`` (see the module docstring)."""
    group = parser.add_argument_group("observability")
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text lines, or one JSON object a line with thread_id, run_id, message_id and "
        "trace_id on every line (json)",
    )
    group.add_argument(
        "--metrics",
        default=None,
        metavar="HOST:PORT",
        help="serve /healthz, /readyz and /metrics (Prometheus) on this address; off unless "
        "given (compose.yaml serves them on 0.0.0.0:9464)",
    )
    group.add_argument(
        "--traces",
        choices=telemetry.EXPORTERS,
        default="off",
        help="OpenTelemetry traces: off, console (stderr) or otlp (OTEL_EXPORTER_OTLP_ENDPOINT); "
        "needs the otel extra",
    )


def setup(args: argparse.Namespace, service: str) -> None:
    """Logging (level, format) and tracing for this process, from ``args``."""
    metrics.set_service(service)
    telemetry.configure(getattr(args, "traces", "off"), service)
    root = logging.getLogger()
    if root.handlers:
        # Logging is configured already (a host process, pytest): as logging.basicConfig,
        # leave it as it is.
        return
    handler = logging.StreamHandler(sys.stderr)
    if getattr(args, "log_format", "text") == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(str(args.log_level).upper())


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, service, and the thread, run,
    message id and trace id of the message being handled (null outside one)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        context = telemetry.log_context()
        line: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "thread_id": context.get("thread_id"),
            "run_id": context.get("run_id"),
            "message_id": context.get("message_id"),
            "trace_id": context.get("trace_id"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


# --- readiness ---------------------------------------------------------------------------------


def ready_when(what: str, check: Callable[[], bool]) -> None:
    """Add a readiness condition: ``/readyz`` answers 503 naming ``what`` while ``check()``
    is false."""
    with _lock:
        _checks.append((what, check))


def clear_readiness() -> None:
    """Forget every readiness condition (a service that stops, a test)."""
    with _lock:
        _checks.clear()


async def readiness() -> list[str]:
    """Why the service is not ready (empty: it is)."""
    with _lock:
        checks = list(_checks)
    reasons = [what for what, check in checks if not check()]
    if not checks:
        reasons.append("starting")
    consumers = metrics.watched_consumers()
    if not consumers:
        reasons.append("no Kafka consumer running yet")
    else:
        try:
            await asyncio.wait_for(consumers[0].topics(), _BROKER_WAIT)
        except Exception as exc:
            reasons.append(f"the Kafka broker does not answer ({type(exc).__name__})")
    return reasons


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "up", "service": metrics.service()})


async def _readyz(request: web.Request) -> web.Response:
    reasons = await readiness()
    metrics.READY.labels(metrics.service()).set(0 if reasons else 1)
    body = {"ready": not reasons, "service": metrics.service(), "waiting_for": reasons}
    return web.json_response(body, status=503 if reasons else 200)


async def _metrics(request: web.Request) -> web.Response:
    await metrics.refresh_lag()
    reasons = await readiness()
    metrics.READY.labels(metrics.service()).set(0 if reasons else 1)
    response = web.Response(body=metrics.exposition())
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) -> (host, port)."""
    from ..errors import SettingError

    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingError(
            f"--metrics {text!r}: write it as host:port, e.g. 0.0.0.0:9464",
            details={"option": "--metrics", "variable": "FLOWAI_METRICS", "value": text},
        )
    return host.strip("[]"), int(port)


@contextlib.asynccontextmanager
async def serving(address: str | None) -> AsyncIterator[tuple[str, int] | None]:
    """Serve /healthz, /readyz and /metrics on ``address`` (None: nothing) while inside;
    yields the address bound (the port chosen when ``address`` ends in ``:0``)."""
    if not address:
        yield None
        return
    host, port = parse_address(address)
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][:2]
        logging.getLogger("flowai.observe").info(
            "health and metrics on http://%s:%d (/healthz, /readyz, /metrics)", *bound
        )
        yield (str(bound[0]), int(bound[1]))
    finally:
        await runner.cleanup()


async def run(address: str | None, service: Awaitable[T]) -> T:
    """Await ``service`` while :func:`serving` the health and metrics endpoints."""
    async with serving(address):
        return await service
