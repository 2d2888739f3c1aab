"""A local HTTP server that speaks the Anthropic and OpenAI wire protocols from a script.

Owns :class:`FakeProvider`, the server the tests, the demo and the benchmarks point the
official SDKs at (through their base URL), and its command line. It answers

- ``POST /v1/messages`` (Anthropic Messages) and ``POST /v1/chat/completions`` (OpenAI Chat
  Completions), streamed event by event (SSE) or not, as the request's ``stream`` asks;
- ``GET /v1/models`` in either API's shape (Anthropic when the request has an
  ``anthropic-version`` header);
- an admin API under ``/_fake/``: ``POST /_fake/turns`` (queue turns, same JSON as a script
  file, and optionally replace the default), ``GET /_fake/requests`` (what was received),
  ``POST /_fake/reset``, ``GET /_fake/health``.

Each request takes the first queued :class:`~flowai_harness.testing.fake_script.Turn` that
accepts it (API, model, body substring, predicate), else the default (a turn, or a callable
``responder(request) -> Turn | None``), else it is answered 500 with a message saying no turn
matched. Every request is recorded as a :class:`FakeRequest` (body, headers without
credentials, the turn that answered, the outcome: ``completed``, ``disconnected`` when the
client went away first, ``dropped``, ...; when it arrived and when the server was done with it,
``arrived_at`` / ``finished_at`` in wall-clock seconds), so tests assert what the SDK sent and
count calls, and benchmarks measure the model's share of a run.
The server runs handlers with cancellation on disconnect, which is how it observes a client
that aborts a stream. Tests that must know what is in flight hold turns at a named gate
(``Turn(hold="go")``, opened by :meth:`FakeProvider.release`) and read ``in_flight`` /
``max_in_flight``; :meth:`FakeProvider.wait_for_requests` waits for arrivals.

In-process::

    async with FakeProvider([Turn(text="Hello!")]) as fake:
        providers = build_providers(fake.provider_settings())

As a process: ``python -m flowai_harness.testing.fake_provider --port 8765 --script turns.json``
prints ``fake provider listening on http://127.0.0.1:8765`` once it accepts connections.

Needs aiohttp (the ``dev`` and ``kafka`` extras). Must not import the providers, the runtime,
the native engine or any service.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from ..errors import FlowaiError, UsageError
from .fake_script import ApiName, Fault, Turn, turns_from_json
from .fake_wire import (
    anthropic_message,
    anthropic_stream,
    error_event_frame,
    error_response,
    malformed_frame,
    openai_completion,
    openai_stream,
)
from .local_server import LocalServer

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "flowai_harness.testing.fake_provider needs aiohttp: pip install 'flowai-harness[dev]'"
    ) from exc

__all__ = ["FakeProvider", "FakeRequest", "Outcome", "Responder", "main"]

Outcome = Literal[
    "pending",
    "completed",
    "error",
    "disconnected",
    "dropped",
    "truncated",
    "malformed",
    "unmatched",
]
Responder = Callable[["FakeRequest"], Turn | None]
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "x-api-key"})
_DEFAULT_MODELS: Final = ("claude-sonnet-4-6", "gpt-5")
_NO_TURN: Final = Fault(
    "status",
    500,
    "fake provider: no scripted turn accepts this request and there is no default",
    error_type="api_error",
)


@dataclass(eq=False)
class FakeRequest:
    """One request the server received, and how it was answered."""

    seq: int
    api: ApiName
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    api_key: str | None = field(default=None, repr=False)
    turn: str | None = None
    status: int | None = None
    outcome: Outcome = "pending"
    # Wall-clock seconds (time.time()): before the body was read, and once the response was
    # written (or failed), so finished_at - arrived_at is the model's time as the server saw it.
    arrived_at: float = 0.0
    finished_at: float | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def wait_finished(self, within_s: float = 10.0) -> Outcome:
        """Wait (at most ``within_s``) until the server is done with this request; returns
        its outcome."""
        await asyncio.wait_for(self.finished.wait(), within_s)
        return self.outcome

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "api": self.api,
            "path": self.path,
            "body": self.body,
            "turn": self.turn,
            "status": self.status,
            "outcome": self.outcome,
            "arrived_at": self.arrived_at,
            "finished_at": self.finished_at,
        }


@dataclass(eq=False)
class _Queued:
    turn: Turn
    label: str
    remaining: int | None


class FakeProvider(LocalServer):
    """The fake provider server; see the module docstring.

    ``api_key``: when given, requests carrying another key are answered 401 as the real APIs
    do. ``port=0`` takes a free port; :attr:`url` tells which.
    """

    def __init__(
        self,
        turns: Iterable[Turn] = (),
        *,
        default: Turn | Responder | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = _DEFAULT_MODELS,
    ) -> None:
        self.default = default
        self.api_key = api_key
        self.models = tuple(models)
        self.requests: list[FakeRequest] = []
        super().__init__(host, port)
        self._queue: list[_Queued] = []
        self._added = 0
        self._gates: dict[str, asyncio.Event] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._arrived: asyncio.Condition | None = None
        self.add(*turns)

    # --- lifecycle ---------------------------------------------------------------------------

    # Cancellation on disconnect is how a handler learns that the client aborted.
    handler_cancellation = True

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._on_messages)
        app.router.add_post("/v1/chat/completions", self._on_chat_completions)
        app.router.add_get("/v1/models", self._on_models)
        app.router.add_post("/_fake/turns", self._on_admin_turns)
        app.router.add_get("/_fake/requests", self._on_admin_requests)
        app.router.add_post("/_fake/reset", self._on_admin_reset)
        app.router.add_get("/_fake/health", self._on_admin_health)

    async def start(self) -> None:
        await super().start()
        self._arrived = asyncio.Condition()

    # --- where it is -------------------------------------------------------------------------

    @property
    def anthropic_url(self) -> str:
        """The Anthropic SDK's ``base_url`` (it adds ``/v1/messages``)."""
        return self.url

    @property
    def openai_url(self) -> str:
        """The OpenAI SDK's ``base_url`` (it adds ``/chat/completions``)."""
        return f"{self.url}/v1"

    def provider_settings(self, api_key: str = "fake-key", **extra: Any) -> dict[str, Any]:
        """``providers=`` settings that send both providers here (``extra`` goes to both)."""
        return {
            "anthropic": {"apiKey": api_key, "baseUrl": self.anthropic_url, **extra},
            "openai": {"apiKey": api_key, "baseUrl": self.openai_url, **extra},
        }

    # --- the script --------------------------------------------------------------------------

    def add(self, *turns: Turn) -> None:
        """Queue turns; each answers the first ``times`` requests it accepts."""
        for turn in turns:
            self._added += 1
            label = turn.name or f"turn-{self._added}"
            self._queue.append(_Queued(turn, label, turn.times))

    def release(self, gate: str) -> None:
        """Open the gate that turns with ``hold=gate`` wait for (now or later)."""
        self._gate(gate).set()

    def _gate(self, name: str) -> asyncio.Event:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = asyncio.Event()
        return gate

    @property
    def pending_turns(self) -> int:
        return len(self._queue)

    def reset(self) -> None:
        self._queue.clear()
        self.requests.clear()
        self._gates.clear()
        self.max_in_flight = self.in_flight

    def requests_for(self, api: ApiName) -> list[FakeRequest]:
        return [request for request in self.requests if request.api == api]

    async def wait_for_requests(self, count: int, within_s: float = 10.0) -> list[FakeRequest]:
        """Wait (at most ``within_s``) until at least ``count`` requests arrived; returns all
        of them."""
        arrived = self._arrived
        if arrived is None:
            raise UsageError("the fake provider is not started")
        async with arrived:
            await asyncio.wait_for(arrived.wait_for(lambda: len(self.requests) >= count), within_s)
        return list(self.requests)

    def _pick(self, record: FakeRequest, raw: bytes) -> Turn | None:
        for entry in self._queue:
            if entry.turn.accepts(record.api, record.body, raw):
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        self._queue.remove(entry)
                record.turn = entry.label
                return entry.turn
        if isinstance(self.default, Turn):
            record.turn = self.default.name or "default"
            return self.default
        if self.default is not None:
            turn = self.default(record)
            if turn is not None:
                record.turn = turn.name or "default"
            return turn
        return None

    # --- the provider APIs -------------------------------------------------------------------

    async def _on_messages(self, request: web.Request) -> web.StreamResponse:
        return await self._answer("anthropic", request)

    async def _on_chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer("openai", request)

    async def _answer(self, api: ApiName, request: web.Request) -> web.StreamResponse:
        arrived_at = time.time()
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        record = FakeRequest(
            seq=len(self.requests) + 1,
            api=api,
            path=request.path,
            body=body if isinstance(body, dict) else {},
            headers={
                key.lower(): value
                for key, value in request.headers.items()
                if key.lower() not in _CREDENTIAL_HEADERS
            },
            api_key=_credential(request),
            arrived_at=arrived_at,
        )
        self.requests.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self._arrived is not None:
            async with self._arrived:
                self._arrived.notify_all()
        try:
            if not isinstance(body, dict):
                bad = Fault("status", 400, "fake provider: the request body is not a JSON object")
                return self._error(api, record, bad)
            if self.api_key is not None and record.api_key != self.api_key:
                return self._error(api, record, Fault("status", 401, "invalid x-api-key"))
            turn = self._pick(record, raw)
            if turn is None:
                response = self._error(api, record, _NO_TURN)
                record.outcome = "unmatched"
                return response
            if turn.hold is not None:
                await self._gate(turn.hold).wait()
            if turn.first_byte_delay_s:
                await asyncio.sleep(turn.first_byte_delay_s)
            fault = turn.fault
            if fault is not None and fault.kind == "status":
                return self._error(api, record, fault)
            if body.get("stream"):
                return await self._stream(api, request, record, turn, len(raw))
            return self._whole(api, request, record, turn, len(raw))
        except asyncio.CancelledError:
            record.outcome = "disconnected"
            raise
        finally:
            self.in_flight -= 1
            if record.outcome == "pending":
                record.outcome = "completed"
            record.finished_at = time.time()
            record.finished.set()

    def _error(self, api: ApiName, record: FakeRequest, fault: Fault) -> web.Response:
        status, headers, payload = error_response(api, fault, record.seq)
        record.status = status
        record.outcome = "error"
        return web.Response(status=status, headers=headers, body=payload)

    def _whole(
        self, api: ApiName, request: web.Request, record: FakeRequest, turn: Turn, size: int
    ) -> web.StreamResponse:
        fault = turn.fault
        if fault is not None and fault.kind in ("drop", "truncate"):
            _cut(request, record)
            return web.Response(status=200)
        if fault is not None and fault.kind == "error_event":
            return self._error(api, record, Fault("status", 500, fault.message, fault.error_type))
        record.status = 200
        if fault is not None and fault.kind == "malformed":
            record.outcome = "malformed"
            return web.Response(body=b'{"id": "broken", ', content_type="application/json")
        build = anthropic_message if api == "anthropic" else openai_completion
        payload = orjson.dumps(build(turn, record.body, record.seq, size))
        return web.Response(body=payload, content_type="application/json")

    async def _stream(
        self, api: ApiName, request: web.Request, record: FakeRequest, turn: Turn, size: int
    ) -> web.StreamResponse:
        build = anthropic_stream if api == "anthropic" else openai_stream
        frames = build(turn, record.body, record.seq, size)
        id_header = "request-id" if api == "anthropic" else "x-request-id"
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                id_header: f"req_fake_{record.seq:06d}",
            }
        )
        await response.prepare(request)
        record.status = 200
        fault = turn.fault
        content_left = sum(frame.content for frame in frames)
        # A fault or stall "after n chunks" comes before the next content frame, or right
        # after the last one when the answer has no more.
        fault_at = None if fault is None else min(fault.after_chunks, content_left)
        stall_at = None if turn.stall_after is None else min(turn.stall_after, content_left)
        sent = 0
        for frame in frames:
            at_mark = frame.content or content_left == 0
            if fault is not None and at_mark and sent == fault_at:
                await self._fail_stream(api, request, response, record, fault)
                return response
            if at_mark and sent == stall_at:
                await asyncio.Event().wait()
            if frame.content:
                delay = turn.ttft_s if sent == 0 else turn.chunk_delay_s
                if delay:
                    await asyncio.sleep(delay)
                sent += 1
                content_left -= 1
            await response.write(frame.data)
        await response.write_eof()
        return response

    async def _fail_stream(
        self,
        api: ApiName,
        request: web.Request,
        response: web.StreamResponse,
        record: FakeRequest,
        fault: Fault,
    ) -> None:
        if fault.kind == "drop":
            _cut(request, record)
            return
        if fault.kind == "truncate":
            record.outcome = "truncated"
        elif fault.kind == "malformed":
            await response.write(malformed_frame(api))
            record.outcome = "malformed"
        else:
            await response.write(error_event_frame(api, fault))
            record.outcome = "error"
        await response.write_eof()

    async def _on_models(self, request: web.Request) -> web.Response:
        if "anthropic-version" in request.headers:
            data: list[dict[str, Any]] = [
                {
                    "type": "model",
                    "id": model,
                    "display_name": model,
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for model in self.models
            ]
            body: dict[str, Any] = {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        else:
            body = {
                "object": "list",
                "data": [
                    {"id": model, "object": "model", "created": 1735689600, "owned_by": "fake"}
                    for model in self.models
                ],
            }
        return web.json_response(body, dumps=_dumps)

    # --- admin -------------------------------------------------------------------------------

    async def _on_admin_turns(self, request: web.Request) -> web.Response:
        try:
            turns, default = turns_from_json(await request.read())
        except FlowaiError as exc:
            return web.json_response({"error": str(exc)}, status=400, dumps=_dumps)
        self.add(*turns)
        if default is not None:
            self.default = default
        return web.json_response({"queued": self.pending_turns}, dumps=_dumps)

    async def _on_admin_requests(self, request: web.Request) -> web.Response:
        return web.json_response([r.as_json() for r in self.requests], dumps=_dumps)

    async def _on_admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"queued": 0}, dumps=_dumps)

    async def _on_admin_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "queued": self.pending_turns}, dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _credential(request: web.Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _cut(request: web.Request, record: FakeRequest) -> None:
    """Drop the TCP connection without finishing the response, as a failing network does."""
    record.outcome = "dropped"
    transport = request.transport
    if transport is not None:
        transport.abort()


# --- command line ---------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flowai_harness.testing.fake_provider",
        description="Serve the Anthropic and OpenAI APIs from a script, for tests and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 takes a free port (printed)")
    parser.add_argument(
        "--script",
        type=Path,
        help='JSON: {"turns": [...], "default": {...}} (see flowai_harness.testing.fake_script)',
    )
    parser.add_argument("--api-key", help="answer 401 to requests carrying another key")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    turns: list[Turn] = []
    default: Turn | None = None
    if args.script is not None:
        try:
            raw = args.script.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read the script {args.script}: {exc}") from exc
        turns, default = turns_from_json(raw)
    server = FakeProvider(
        turns, default=default, api_key=args.api_key, host=args.host, port=args.port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        print(f"fake provider listening on {server.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        asyncio.run(_serve(args))
    except FlowaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
