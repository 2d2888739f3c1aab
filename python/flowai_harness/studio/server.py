"""Studio's HTTP API and the page that uses it (FastAPI; OpenAPI at ``/api/docs``).

Owns :func:`create_studio_app`. Every route reads the backend's :class:`~.hub.Hub` or asks
the backend to act; the browser page (``static/``) uses nothing but these routes:

- ``GET /api/status``, ``GET /api/agents``
- ``GET /api/threads`` (filters: ``status``, ``agent``, ``q``), ``GET /api/threads/{id}``
  (with its runs), ``GET /api/threads/{id}/events?since_seq=N`` (logged envelopes),
  ``GET /api/threads/{id}/stream`` (SSE: the logged events after ``since_seq`` or the
  ``Last-Event-ID`` header, each with ``id: <seq>``, then live ones as they come; a browser
  that reconnects resumes after the last seq it saw and loses nothing)
- ``GET /api/threads/{id}/state?at=SEQ`` (the folded state right after event SEQ),
  ``POST /api/threads/{id}/fork`` (a new thread from the history up to ``at``); both only
  where the backend announces ``replay-at`` / ``fork``
- ``POST /api/chat`` (start a run), ``POST /api/threads/{id}/cancel``
- ``GET /api/approvals`` (``status=pending|all``), ``POST /api/approvals/{id}/decision``
- ``GET /api/metrics`` (cost, tokens and latency per run and per agent)
- ``GET /api/stream`` (SSE: a snapshot, then every change to a thread or an approval)
- ``GET /api/evals`` (suites and runs), ``POST /api/evals/runs`` (run a suite),
  ``GET /api/evals/runs/{id}`` (results so far), ``GET /api/evals/runs/{id}/stream`` (SSE:
  the run's ``stream_eval`` envelopes, ``id`` = sequence), ``GET .../chart.svg`` (pass rate
  and pass@k), ``POST .../cancel``, ``GET /api/evals/compare?a=&b=``

A bind other than loopback needs a token (:func:`create_studio_app` ``token``): requests
carry it as ``Authorization: Bearer``, or as the cookie the page gets when opened with
``?token=``. Errors are ``{"error": {"code", "message"}}`` with the status their class
implies.

Must not import Kafka or a backend implementation (it gets one).
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Final, Literal

import orjson
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from .._version import __version__
from ..errors import (
    ApproverNotAllowedError,
    BusError,
    FlowaiError,
    InvalidInputError,
    NotFoundError,
    RunStateError,
    SignatureError,
    SpecError,
    UnknownThreadError,
)
from ..evals.report import pass_at_k_chart
from .backend import StudioBackend
from .evals import EvalRuns, StudioSuite, compare
from .hub import Item

__all__ = ["STUDIO_API_VERSION", "create_studio_app"]

STUDIO_API_VERSION: Final = "flowai-studio/v1"
TOKEN_COOKIE: Final = "flowai_studio_token"
# An SSE comment this often keeps proxies and the browser from closing an idle stream.
KEEPALIVE_S: Final = 15.0


class ChatRequest(BaseModel):
    prompt: str = Field(min_length=1)
    thread_id: str | None = Field(default=None, alias="threadId", min_length=1)
    agent: str | None = None

    model_config = {"populate_by_name": True}


class ChatStarted(BaseModel):
    threadId: str
    agent: str | None


class DecisionRequest(BaseModel):
    outcome: Literal["approve", "reject", "revise"]
    approver: str = Field(min_length=1)
    feedback: str | None = None
    partial: Any = None


class Accepted(BaseModel):
    ok: bool = True


class ForkRequest(BaseModel):
    at: int
    new_thread_id: str | None = Field(default=None, alias="newThreadId", min_length=1)

    model_config = {"populate_by_name": True}


class Forked(BaseModel):
    threadId: str
    source: str
    seq: int
    status: str
    approvalId: str | None


class EvalRunRequest(BaseModel):
    suite: str = Field(min_length=1)


class EvalRunStarted(BaseModel):
    runId: str
    suite: str


def _status_of(exc: FlowaiError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ApproverNotAllowedError | SignatureError):
        return 403
    if isinstance(exc, RunStateError):
        return 409
    if isinstance(exc, InvalidInputError | SpecError):
        return 400
    if isinstance(exc, BusError):
        return 503
    return 500


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _sse(event: str, data: Any, id: int | None = None) -> bytes:
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def create_studio_app(
    backend: StudioBackend,
    *,
    app_name: str = "flowai",
    token: str | None = None,
    serve_page: bool = True,
    suites: Mapping[str, StudioSuite] | None = None,
) -> FastAPI:
    """The Studio API and page over ``backend`` (started and closed with the app);
    ``serve_page=False`` serves the API alone; ``suites`` are the evals the page can run."""
    evals = EvalRuns(backend, suites or {})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await evals.close()
            await backend.close()

    app = FastAPI(
        title="flowai Studio",
        version=__version__,
        description="A browser UI on the run log: chat, runs, approvals, costs.",
        docs_url="/api/docs",
        redoc_url="/api/redoc",
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    hub = backend.hub
    static = resources.files("flowai_harness.studio") / "static"

    @app.exception_handler(FlowaiError)
    async def on_flowai_error(_: Request, exc: FlowaiError) -> JSONResponse:
        return _error(_status_of(exc), exc.code, exc.message)

    if token is not None:

        @app.middleware("http")
        async def require_token(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            given = request.query_params.get("token")
            header = request.headers.get("authorization", "")
            candidates = [
                given,
                header[len("Bearer ") :] if header.startswith("Bearer ") else None,
                request.cookies.get(TOKEN_COOKIE),
            ]
            if not any(c is not None and hmac.compare_digest(c, token) for c in candidates):
                return _error(
                    401,
                    "STUDIO_TOKEN_REQUIRED",
                    "this Studio needs its token: open it with ?token=<token> or send "
                    "Authorization: Bearer <token>",
                )
            response = await call_next(request)
            if given is not None:
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response

    # --- meta ------------------------------------------------------------------------------

    @app.get("/api/status", tags=["meta"])
    async def status() -> dict[str, Any]:
        return {
            "studioApiVersion": STUDIO_API_VERSION,
            "version": __version__,
            "app": app_name,
            "mode": backend.mode,
            "tenant": backend.tenant,
            "capabilities": sorted(backend.capabilities | ({"evals"} if evals.suites else set())),
            "whoMayDecide": backend.who_may_decide(),
        }

    @app.get("/api/agents", tags=["meta"])
    async def agents() -> list[dict[str, Any]]:
        return [agent.as_json() for agent in backend.agents()]

    # --- threads ---------------------------------------------------------------------------

    @app.get("/api/threads", tags=["runs"])
    async def threads(
        status: str | None = None, agent: str | None = None, q: str | None = None
    ) -> list[dict[str, Any]]:
        found = []
        for thread in hub.index.threads.values():
            row = thread.as_json()
            if status and row["status"] != status:
                continue
            if agent and row["agent"] != agent:
                continue
            if q and q.lower() not in (thread.thread_id + " " + row["prompt"]).lower():
                continue
            found.append(row)
        found.sort(key=lambda row: row["updatedAt"] or 0, reverse=True)
        return found

    def _thread(thread_id: str) -> Any:
        thread = hub.index.threads.get(thread_id)
        if thread is None:
            raise UnknownThreadError(f"no thread {thread_id!r} in this tenant's run log")
        return thread

    @app.get("/api/threads/{thread_id}", tags=["runs"])
    async def thread(thread_id: str) -> dict[str, Any]:
        found = _thread(thread_id)
        return {**found.as_json(), "runList": [run.as_json() for run in found.runs]}

    @app.get("/api/threads/{thread_id}/events", tags=["runs"])
    async def thread_events(thread_id: str, since_seq: int = 0) -> list[dict[str, Any]]:
        _thread(thread_id)
        return hub.index.since(thread_id, since_seq)

    @app.get(
        "/api/threads/{thread_id}/stream",
        tags=["runs"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def thread_stream(
        thread_id: str,
        request: Request,
        since_seq: int = Query(0, ge=0),
        last_event_id: str | None = Header(None),
    ) -> StreamingResponse:
        """SSE: ``logged`` events (``id`` = seq) after ``since_seq`` (or ``Last-Event-ID``),
        then new ones as they are logged, and ``live`` events (streaming text, a refused
        query) as they come."""
        start = since_seq
        if last_event_id is not None and last_event_id.isdigit():
            start = max(start, int(last_event_id))

        async def events() -> AsyncIterator[bytes]:
            # Subscribed before reading the index: nothing logged in between is missed.
            with hub.subscribe() as subscription:
                sent = start
                for envelope in hub.index.since(thread_id, start):
                    sent = envelope["seq"]
                    yield _sse("logged", envelope, id=sent)
                yield _sse("caught-up", {"threadId": thread_id, "seq": sent})
                async for item in _items(subscription, request):
                    if item is None:
                        yield b": keep-alive\n\n"
                        continue
                    if item.thread_id != thread_id:
                        continue
                    if item.kind == "live":
                        yield _sse("live", item.event)
                    elif item.envelope is not None and item.envelope["seq"] > sent:
                        sent = item.envelope["seq"]
                        yield _sse("logged", item.envelope, id=sent)

        return _event_stream(events())

    def _unsupported(capability: str, what: str) -> JSONResponse | None:
        if capability in backend.capabilities:
            return None
        return _error(
            501,
            "STUDIO_NOT_SUPPORTED",
            f"{what} is not available on this Studio's {backend.mode} backend (it does not "
            f"announce {capability!r} in /api/status capabilities)",
        )

    @app.get(
        "/api/threads/{thread_id}/state",
        tags=["runs"],
        responses={400: {}, 404: {}, 501: {}},
    )
    async def thread_state(thread_id: str, at: int) -> Any:
        """The thread's folded state right after its event ``at`` (its seq), from the run
        log alone: ``{threadId, seq, status, state}``."""
        refused = _unsupported("replay-at", "state at an event")
        if refused is not None:
            return refused
        _thread(thread_id)
        return await backend.state_at(thread_id, at)

    @app.post(
        "/api/threads/{thread_id}/fork",
        tags=["runs"],
        status_code=201,
        responses={400: {}, 404: {}, 409: {}, 501: {}},
    )
    async def fork(thread_id: str, body: ForkRequest) -> Any:
        """A new thread whose history is this one's up to event ``at``; the source is left
        as it is. Fork after a run's last event (then chat on the fork) or at an
        ``approval-required`` (the fork waits at that gate under its ``approvalId``);
        anywhere else is 409 ``FORK_UNAVAILABLE``."""
        refused = _unsupported("fork", "fork")
        if refused is not None:
            return refused
        _thread(thread_id)
        if body.at < 1:
            raise InvalidInputError(f"at must be a seq >= 1, got {body.at}")
        forked = await backend.fork(thread_id, body.at, body.new_thread_id)
        return Forked(**forked)

    # --- chat ------------------------------------------------------------------------------

    @app.post("/api/chat", tags=["chat"], status_code=202)
    async def chat(body: ChatRequest) -> ChatStarted:
        """Start a run in a thread (a new one unless ``threadId`` is given); follow it on
        ``/api/threads/{threadId}/stream``."""
        thread_id = body.thread_id or f"studio-{uuid.uuid4().hex[:12]}"
        await backend.chat(body.prompt, thread_id, body.agent)
        return ChatStarted(threadId=thread_id, agent=body.agent)

    @app.post("/api/threads/{thread_id}/cancel", tags=["chat"], status_code=202)
    async def cancel(thread_id: str) -> Accepted:
        await backend.cancel(thread_id)
        return Accepted()

    # --- approvals -------------------------------------------------------------------------

    @app.get("/api/approvals", tags=["approvals"])
    async def approvals(
        status: Literal["pending", "all"] = "pending",
    ) -> list[dict[str, Any]]:
        found = hub.index.pending() if status == "pending" else list(hub.index.approvals.values())
        return [approval.as_json() for approval in found]

    @app.post("/api/approvals/{approval_id:path}/decision", tags=["approvals"], status_code=202)
    async def decide(approval_id: str, body: DecisionRequest) -> Accepted:
        """Decide an approval (the first decision wins; the run log shows the outcome)."""
        await backend.decide(
            approval_id,
            body.outcome,
            approver=body.approver,
            feedback=body.feedback,
            partial=body.partial,
        )
        return Accepted()

    # --- costs and latency -----------------------------------------------------------------

    @app.get("/api/metrics", tags=["metrics"])
    async def metrics() -> dict[str, Any]:
        runs = []
        agents: dict[str, dict[str, Any]] = {}
        for thread in hub.index.threads.values():
            for run in thread.runs:
                row = run.as_json()
                runs.append(
                    {
                        "threadId": thread.thread_id,
                        "runId": run.run_id,
                        "agent": run.agent,
                        "status": run.status,
                        "startedAt": run.started_at,
                        "durationMs": row["durationMs"],
                        "totalTokens": run.usage.get("totalTokens", 0),
                        "costUsd": run.cost_usd,
                    }
                )
                for name, stats in run.agents.items():
                    total = agents.setdefault(
                        name,
                        {"agent": name, "calls": 0, "tokens": 0, "latencyMs": 0, "costUsd": None},
                    )
                    total["calls"] += stats.get("calls", 0)
                    total["tokens"] += stats.get("tokens", 0)
                    total["latencyMs"] += stats.get("latencyMs", 0)
                    if stats.get("costUsd") is not None:
                        total["costUsd"] = (total["costUsd"] or 0.0) + stats["costUsd"]
        runs.sort(key=lambda row: row["startedAt"] or 0)
        return {"runs": runs, "agents": sorted(agents.values(), key=lambda row: row["agent"])}

    # --- evals ----------------------------------------------------------------------------

    @app.get("/api/evals", tags=["evals"])
    async def eval_overview() -> dict[str, Any]:
        """The suites this Studio can run (``--evals``) and the runs started here, newest
        first."""
        runs = sorted(evals.runs.values(), key=lambda run: run.started_at, reverse=True)
        return {
            "suites": [suite.as_json() for suite in evals.suites.values()],
            "runs": [run.as_json() for run in runs],
        }

    @app.post("/api/evals/runs", tags=["evals"], status_code=202)
    async def eval_start(body: EvalRunRequest) -> EvalRunStarted:
        """Run a suite; follow it on ``/api/evals/runs/{runId}/stream``."""
        run = evals.start(body.suite)
        return EvalRunStarted(runId=run.run_id, suite=run.suite.name)

    @app.get("/api/evals/compare", tags=["evals"])
    async def eval_compare(a: str, b: str) -> dict[str, Any]:
        """Two completed runs side by side, per test case, with the change from ``a`` to
        ``b``."""
        return compare(evals.run(a), evals.run(b))

    @app.get("/api/evals/runs/{run_id}", tags=["evals"])
    async def eval_run(run_id: str) -> dict[str, Any]:
        """The run, with its finished test cases and each sample's thread."""
        return evals.run(run_id).results()

    @app.get(
        "/api/evals/runs/{run_id}/chart.svg",
        tags=["evals"],
        response_class=Response,
        responses={200: {"content": {"image/svg+xml": {}}}},
    )
    async def eval_chart(run_id: str) -> Response:
        """Pass rate and pass@k per finished test case (the HTML report's chart)."""
        chart = pass_at_k_chart(evals.run(run_id).test_cases())
        return Response(chart, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})

    @app.post("/api/evals/runs/{run_id}/cancel", tags=["evals"], status_code=202)
    async def eval_cancel(run_id: str) -> Accepted:
        evals.cancel(run_id)
        return Accepted()

    @app.get(
        "/api/evals/runs/{run_id}/stream",
        tags=["evals"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def eval_stream(
        run_id: str,
        request: Request,
        after: int = Query(-1, ge=-1),
        last_event_id: str | None = Header(None),
    ) -> StreamingResponse:
        """SSE: the run's envelopes (``eval`` events, ``id`` = sequence) after ``after`` (or
        ``Last-Event-ID``), then new ones as they come; ends after the terminal one."""
        run = evals.run(run_id)
        start = after
        if last_event_id is not None and last_event_id.isdigit():
            start = max(start, int(last_event_id))

        async def events() -> AsyncIterator[bytes]:
            sent = start
            while True:
                changed = run.changed
                for wire in run.envelopes[sent + 1 :]:
                    sent = wire["sequence"]
                    yield _sse("eval", wire, id=sent)
                if run.done:
                    yield _sse("end", run.as_json())
                    return
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"

        return _event_stream(events())

    # --- everything, as it changes ---------------------------------------------------------

    @app.get(
        "/api/stream",
        tags=["meta"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(request: Request) -> StreamingResponse:
        """SSE: ``snapshot`` (threads and pending approvals), then ``thread`` and ``approval``
        as they change."""

        async def events() -> AsyncIterator[bytes]:
            with hub.subscribe() as subscription:
                yield _sse(
                    "snapshot",
                    {
                        "threads": [t.as_json() for t in hub.index.threads.values()],
                        "approvals": [a.as_json() for a in hub.index.pending()],
                    },
                )
                async for item in _items(subscription, request):
                    if item is None:
                        yield b": keep-alive\n\n"
                        continue
                    if item.kind != "logged" or item.change is None:
                        continue
                    found = hub.index.threads.get(item.thread_id)
                    if found is not None:
                        yield _sse("thread", found.as_json())
                    for approval_id in item.change.approval_ids:
                        yield _sse("approval", hub.index.approvals[approval_id].as_json())

        return _event_stream(events())

    # --- the page --------------------------------------------------------------------------

    if serve_page:

        @app.get("/", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(str(static / "index.html"), headers={"Cache-Control": "no-cache"})

        app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


async def _items(subscription: Any, request: Request) -> AsyncIterator[Item | None]:
    """The subscription's items; None every KEEPALIVE_S without one. Ends when the browser
    went away or the subscription was dropped for falling behind."""
    while True:
        try:
            item = await subscription.get(KEEPALIVE_S)
        except TimeoutError:
            if await request.is_disconnected():
                return
            yield None
            continue
        if item is None:
            return
        yield item


def _event_stream(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
