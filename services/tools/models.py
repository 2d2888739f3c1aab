"""What a model worker does with one consumed ``flowai.v1.ModelRequest``.

Owns :class:`ModelWorker`, a :class:`~.once.OnceWorker`, and :class:`ModelSettings`. A model
turn is an effect like a tool call (docs/wire.md, "Model calls"): the runtime publishes the
request on ``model-requests``, a model worker calls the provider through
:func:`flowai_harness.modelcall.call_model` (the code the embedded runtime runs, so the same
provider answer gives the same result) and publishes the ``flowai.v1.ModelResult`` on
``model-results``, keyed by thread. A provider problem is a failure result the engine decides
on (retry after the provider's ``retry-after``, fall back, or give up), never a worker error.

Effectively once, with the request id as the key: a redelivered request whose result is
recorded gets that result again instead of a second (paid) call. A worker that dies mid-call
leaves a claim that expires; the next owner calls the provider again (a model call has no
side effect but its cost). The engine's own deadline per request covers a result that never
comes at all.

While the provider streams, its deltas go to ``model-deltas`` as ``flowai.v1.ModelDelta``
(key ``tenant/thread_id``, ``seq`` 1, 2, 3... per request) for clients to show as they come.
Deltas that pile up while the broker is slower than the model are merged into one message;
every delta is published before the result, so a reader that follows both topics sees the
text stream before the turn completes.

Checked before any call: the envelope's tenant (``TENANT_MISMATCH`` dead letter) and the
payload's shape (``INPUT_INVALID`` dead letter). A request for a provider this worker has no
settings for gets an ``auth`` failure result naming the fix (the run falls back or ends
with it) and a ``PROVIDER_NOT_CONFIGURED`` dead letter: the deployment is wrong.

Must not import another service or drive the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from flowai_harness import messages
from flowai_harness.kafka import bus, telemetry
from flowai_harness.messages import envelope as make_envelope
from flowai_harness.modelcall import Complete, call_model

from .claims import InvocationLedger
from .once import MALFORMED, DeadLetter, Delivery, OnceWorker, Outcome, Rejected

__all__ = ["PROVIDER_NOT_CONFIGURED", "ModelSettings", "ModelWorker"]

log = logging.getLogger("flowai.models")

MODEL_REQUEST: Final = messages.ModelRequest.NAME
MODEL_RESULT: Final = messages.ModelResult.NAME
MODEL_DELTA: Final = messages.ModelDelta.NAME
PROVIDER_NOT_CONFIGURED: Final = "PROVIDER_NOT_CONFIGURED"


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """Limits and timings of the model lane; durations in seconds."""

    # Model calls in flight at once per worker (each provider may limit its own further,
    # with maxConcurrency in its settings). Calls wait on the network, so many fit.
    concurrency: int = 64
    # Publish streamed text on model-deltas (off: clients see each turn when it completes).
    stream_deltas: bool = True
    claim_poll: float = 0.25
    failure_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"model concurrency must be at least 1, got {self.concurrency}")


class ModelWorker(OnceWorker):
    """Answers model requests effectively once (see the module docstring)."""

    role = "model worker"

    def __init__(
        self,
        providers: Mapping[str, Complete],
        ledger: InvocationLedger,
        publisher: bus.Publisher,
        topics: bus.Topics,
        settings: ModelSettings | None = None,
        *,
        tenant: str,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings or ModelSettings()
        super().__init__(
            ledger,
            publisher,
            topics,
            tenant=tenant,
            worker_id=worker_id,
            claim_poll=self.settings.claim_poll,
            failure_backoff=self.settings.failure_backoff,
        )
        self.providers = providers
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._routes = {MODEL_REQUEST: self.on_model_request}
        self.deltas_published = 0

    async def on_model_request(self, envelope: dict[str, Any], delivery: Delivery) -> None:
        """``ModelRequest`` (``model-requests``): call the provider, answer with a
        ``ModelResult`` (``ModelDelta`` records on the way when streaming)."""
        problem = _request_problem(envelope)
        if problem is not None:
            raise Rejected(MALFORMED, f"ModelRequest: {problem}", envelope)
        await self._effectively_once(envelope, delivery, self._call)

    async def _call(self, envelope: dict[str, Any], token: str) -> Outcome:
        request = envelope["payload"]
        deltas = _DeltaStream(self, envelope) if self.settings.stream_deltas else None
        try:
            async with self._slots:
                self.ran += 1
                with telemetry.model_call(request) as call:
                    result = call["result"] = await call_model(
                        self.providers,
                        request,
                        on_delta=None if deltas is None else deltas.put,
                        where="model worker",
                    )
        finally:
            if deltas is not None:
                await deltas.close()
        body = make_envelope(
            MODEL_RESULT,
            # Follows from the request's id, so every copy of its result is recognisable.
            id=f"{envelope['id']}/result",
            tenant=envelope["tenant"],
            thread_id=envelope["thread_id"],
            run_id=envelope.get("run_id"),
            causation_id=envelope["id"],
            ts=bus.now_ms(),
            payload=result,
        )
        letter = None
        if request["provider"] not in self.providers:
            letter = DeadLetter(PROVIDER_NOT_CONFIGURED, result["failure"]["message"])
        return Outcome(body, letter)


class _DeltaStream:
    """Publishes one request's deltas in order, merging those that wait."""

    def __init__(self, worker: ModelWorker, request: Mapping[str, Any]) -> None:
        self._worker = worker
        self._request = request
        self._key = bus.thread_key(request["tenant"], request["thread_id"])
        self._waiting: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._seq = 0
        self._task = asyncio.get_running_loop().create_task(self._publish_all())

    def put(self, delta: dict[str, Any]) -> None:
        """The provider's callback: never blocks the stream it is called from."""
        waiting = self._waiting
        last = waiting[-1] if waiting else None
        if (
            last is not None
            and last.get("type") == delta.get("type")
            and last.get("index") == delta.get("index")
        ):
            last["text"] = f"{last.get('text', '')}{delta.get('text', '')}"
        else:
            waiting.append(dict(delta))
        self._wake.set()

    async def close(self) -> None:
        """Publish what is still waiting, then stop (a publish failure is logged: deltas
        are for display, and the result carries the whole text)."""
        self._closed = True
        self._wake.set()
        with contextlib.suppress(Exception):
            await self._task

    async def _publish_all(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._waiting:
                    # What comes while these go out is merged into the next batch.
                    batch, self._waiting = self._waiting, []
                    for delta in batch:
                        await self._publish(delta)
                if self._closed:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("publishing deltas of %s failed; the rest are dropped", self._id)

    @property
    def _id(self) -> str:
        return str(self._request["id"])

    async def _publish(self, delta: Mapping[str, Any]) -> None:
        self._seq += 1
        payload = self._request["payload"]
        body = make_envelope(
            MODEL_DELTA,
            id=f"{self._id}/delta-{self._seq}",
            tenant=self._request["tenant"],
            thread_id=self._request["thread_id"],
            run_id=self._request.get("run_id"),
            causation_id=self._id,
            ts=bus.now_ms(),
            payload={
                "request_id": payload["request_id"],
                "agent": payload.get("agent"),
                "index": int(delta.get("index", 0)),
                "seq": self._seq,
                "type": delta.get("type", "text-delta"),
                "text": str(delta.get("text", "")),
            },
        )
        await self._worker.publisher.publish(self._worker.topics.model_deltas, self._key, body, ())
        self._worker.deltas_published += 1


def _request_problem(envelope: Mapping[str, Any]) -> str | None:
    """What is wrong with a ModelRequest's payload (None when it can be sent)."""
    payload = envelope["payload"]
    for name in ("request_id", "provider", "model", "agent"):
        if not isinstance(payload.get(name), str) or not payload.get(name):
            return f"payload {name!r} must be a non-empty string, got {payload.get(name)!r}"
    if not isinstance(payload.get("messages"), list) or not payload["messages"]:
        return f"payload 'messages' must be a non-empty list, got {payload.get('messages')!r}"
    if not isinstance(payload.get("tools", []), list):
        return f"payload 'tools' must be a list, got {payload.get('tools')!r}"
    if payload["request_id"] != envelope["id"]:
        return (
            f"payload 'request_id' {payload['request_id']!r} differs from the envelope id "
            f"{envelope['id']!r}; the runtime sets both to the same key"
        )
    return None
