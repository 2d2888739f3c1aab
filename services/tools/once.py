"""Effectively once: what every worker of this service does around the work of one message.

Owns :class:`OnceWorker`, the base of the tool worker (:mod:`.worker`) and the model worker
(:mod:`.models`), and :class:`Delivery`. A subclass names the schemas it takes (``_routes``)
and does the work; the base decodes and checks the envelope (a malformed message, a schema
nobody here takes or another tenant's message is a dead letter with its reason, and the
consumer goes on), and runs the work effectively once with the envelope id as the key (see
:mod:`.claims`):

1. ``begin``: a recorded result exists -> publish it again and stop (a redelivery never
   repeats the work); another owner's claim is live -> wait, polling, until its result
   appears or the claim expires; else the claim is ours.
2. do the work while renewing the claim.
3. ``record`` the result in Redis (first record wins), then publish it (key
   ``tenant/thread_id``, on the topic its schema belongs to), and only then report the
   delivery done, so its offset may be committed.

A failure of Redis or Kafka before the work ran, or while publishing, restarts the procedure
from 1 (every step is idempotent); once the work ran, recording its result is retried while
the claim is held, so it does not run again.

Must not import another service or drive the engine (workers do not decide).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from flowai_harness.errors import InvalidInputError, TenantMismatchError, UnknownSchemaError
from flowai_harness.kafka import bus, metrics, telemetry

from .claims import Begin, InvocationLedger

__all__ = [
    "MALFORMED",
    "TENANT_MISMATCH",
    "UNKNOWN_SCHEMA",
    "DeadLetter",
    "Delivery",
    "OnceWorker",
    "Outcome",
    "Rejected",
    "Route",
    "default_worker_id",
    "str_or_none",
    "trace_headers",
]

# Per-hop timestamps carried from input to output (the runtime service's header of that
# name): a worker with ``timing`` on adds ``in`` (the input record's timestamp), ``f``
# (fetched), ``b`` (the ledger's begin answered), ``r`` (the work ran) and ``l`` (the
# result recorded), in ms since the epoch.
TIMING: Final = bus.TIMING

log = logging.getLogger("flowai.tools")

# Dead-letter reasons (stable codes operators match on).
MALFORMED: Final = InvalidInputError.code
UNKNOWN_SCHEMA: Final = UnknownSchemaError.code
TENANT_MISMATCH: Final = TenantMismatchError.code


@dataclass(frozen=True, slots=True)
class Delivery:
    """One consumed message, as the worker needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    # The record's own timestamp and when the consumer handed it out (ms / s since the
    # epoch); read only for the timing header.
    timestamp: int = 0
    fetched: float = 0.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What doing the work produced: the result to record, maybe a dead letter."""

    result: bytes
    dead_letter: DeadLetter | None = None


class Rejected(Exception):
    """The delivery cannot be handled at all: dead-letter it and move on."""

    def __init__(self, reason: str, message: str, envelope: Mapping[str, Any] | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.envelope = envelope


Route = Callable[[dict[str, Any], Delivery], Awaitable[None]]
# The work on one envelope, given the claim's token; None: the claim was lost before
# anything ran (start over).
Work = Callable[[dict[str, Any], str], Awaitable[Outcome | None]]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class OnceWorker:
    """Handles deliveries effectively once; see the module docstring for the order of steps.

    :meth:`handle` never raises for a bad message or failing work: it returns once the
    delivery is done (result published or dead-lettered), which is when its offset may be
    committed. It raises only ``CancelledError`` (the worker stops; the offset stays
    uncommitted and the next owner of the partition gets the message again).
    """

    # What this worker is called in messages ("tool worker", "model worker").
    role: ClassVar[str] = "worker"

    def __init__(
        self,
        ledger: InvocationLedger,
        publisher: bus.Publisher,
        topics: bus.Topics,
        *,
        tenant: str,
        worker_id: str | None,
        claim_poll: float,
        failure_backoff: float,
    ) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.topics = topics
        self.tenant = tenant
        self.worker_id = worker_id or default_worker_id()
        self._claim_poll = claim_poll
        self._failure_backoff = failure_backoff
        self._routes: Mapping[str, Route] = {}
        # Counters for logs, tests and the benchmarks; never used to decide anything.
        self.ran = 0
        self.replayed = 0
        self.dead_lettered = 0
        # Add this hop's stamps to the timing header of what is published (benchmarks).
        self.timing = False

    # --- one delivery ----------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        """Handle one delivery until it is done; retried from the top when Redis/Kafka fail."""
        while True:
            try:
                with telemetry.consuming("flowai.worker.message", delivery.headers, None):
                    await self._handle_once(delivery)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                # Every step is idempotent (a recorded result is published again, a claim of
                # ours is renewed or re-taken), so starting over is safe.
                log.exception(
                    "handling %s[%d]@%d failed; trying again in %.1f s",
                    delivery.topic,
                    delivery.partition,
                    delivery.offset,
                    self._failure_backoff,
                )
                await asyncio.sleep(self._failure_backoff)

    async def _handle_once(self, delivery: Delivery) -> None:
        try:
            envelope = self._decode(delivery)
            telemetry.describe(envelope, name_by_schema=True)
            route = self._routes.get(envelope["schema"])
            if route is None:
                raise Rejected(
                    UNKNOWN_SCHEMA,
                    f"schema {envelope['schema']!r} is not handled by {self.role}s; they "
                    f"take {', '.join(sorted(self._routes))}",
                    envelope,
                )
            if envelope["tenant"] != self.tenant:
                raise Rejected(
                    TENANT_MISMATCH,
                    f"the message is for tenant {envelope['tenant']!r}, but this {self.role} "
                    f"serves tenant {self.tenant!r} (its --app); nothing was run. Give each "
                    "tenant's app its own workers and topic prefix",
                    envelope,
                )
            await route(envelope, delivery)
        except Rejected as rejected:
            await self._dead_letter(delivery, rejected.reason, rejected.message, rejected.envelope)

    def _decode(self, delivery: Delivery) -> dict[str, Any]:
        if delivery.value is None:
            raise Rejected(MALFORMED, "the message has no value (a tombstone?)", None)
        try:
            envelope = orjson.loads(delivery.value)
        except orjson.JSONDecodeError as exc:
            raise Rejected(MALFORMED, f"the message is not JSON: {exc}", None) from None
        if not isinstance(envelope, dict):
            raise Rejected(
                MALFORMED, f"the message is JSON {type(envelope).__name__}, not an envelope", None
            )
        problem = _envelope_problem(envelope)
        if problem is not None:
            raise Rejected(MALFORMED, f"not a flowai envelope: {problem}", envelope)
        return envelope

    def _outcome_unknown(self, envelope: dict[str, Any]) -> Outcome:
        """The answer when an at-most-once run started and left no result (a subclass that
        arms its work says what that means)."""
        raise NotImplementedError(f"{self.role}s never mark work at-most-once")

    # --- effectively once ------------------------------------------------------------------

    async def _effectively_once(
        self, envelope: dict[str, Any], delivery: Delivery, run: Work
    ) -> None:
        async def dead_letter(letter: DeadLetter) -> None:
            await self._dead_letter(delivery, letter.reason, letter.message, envelope)

        recorded, stamps = await self.settle(envelope, run, dead_letter)
        await self._publish_result(recorded, delivery, stamps if self.timing else None)

    async def settle(
        self,
        envelope: dict[str, Any],
        run: Work,
        dead_letter: Callable[[DeadLetter], Awaitable[None]],
    ) -> tuple[bytes, tuple[float, float, float] | None]:
        """Steps 1 and 2 of the module docstring: the recorded result of ``envelope`` (its
        id is the key), running ``run`` only when none is recorded and the claim is ours.

        Returns the result and, when the work ran here now, when the ledger answered, when
        the work ended and when its result was recorded (seconds since the epoch).
        ``dead_letter`` is awaited before the result is recorded when the outcome has one.
        """
        key = envelope["id"]
        while True:
            # Unique per attempt to run, even within this worker: a redelivered copy of a
            # message this worker is still working on must wait for it, not join it.
            token = f"{self.worker_id}:{uuid.uuid4().hex}"
            begin = await self._begin(key, token)
            begun = time.time()
            if begin.recorded is not None:
                self.replayed += 1
                return begin.recorded, None
            async with self.ledger.holding(key, token):
                if begin.unknown:
                    outcome: Outcome | None = self._outcome_unknown(envelope)
                else:
                    try:
                        outcome = await run(envelope, token)
                    except BaseException:
                        # Stopped (or a bug) before a result exists: let the next owner start
                        # at once instead of waiting out the claim (an at-most-once run that
                        # had started stays marked: the next owner answers "unknown").
                        with contextlib.suppress(Exception):
                            await asyncio.shield(self.ledger.release(key, token))
                        raise
                if outcome is None:
                    continue  # the claim was lost before anything ran: from the top
                ran = time.time()
                # The work happened: from here on the claim is kept (and renewed) until the
                # result is recorded, whatever Kafka or Redis do meanwhile; giving it up
                # would let the work run again.
                recorded = await self._finish(envelope, token, outcome, dead_letter)
            return recorded, (begun, ran, time.time())

    async def _begin(self, key: str, token: str) -> Begin:
        """``begin`` until the message has a recorded result or is claimed by ``token``."""
        while True:
            begin = await self.ledger.begin(key, token)
            if begin.recorded is not None or begin.claimed or begin.unknown:
                return begin
            # Another worker runs it (or a dead one held it): wait for its result or for
            # its claim to expire, whichever comes first.
            await asyncio.sleep(min(self._claim_poll, max(begin.held_ms, 1) / 1000))

    async def _finish(
        self,
        envelope: dict[str, Any],
        token: str,
        outcome: Outcome,
        dead_letter: Callable[[DeadLetter], Awaitable[None]],
    ) -> bytes:
        """Dead-letter (when the outcome says so), then record; returns the recorded result."""
        letter = outcome.dead_letter
        while True:
            try:
                if letter is not None:
                    # Before the record: a crash in between repeats the dead letter, never
                    # loses it.
                    await dead_letter(letter)
                    letter = None
                recorded, _ours = await self.ledger.record(envelope["id"], token, outcome.result)
                return recorded
            except Exception:
                log.exception(
                    "recording the result of %s failed; trying again in %.1f s",
                    envelope["id"],
                    self._failure_backoff,
                )
                await asyncio.sleep(self._failure_backoff)

    async def _publish_result(
        self,
        result: bytes,
        delivery: Delivery,
        stamps: tuple[float, float, float] | None = None,
    ) -> None:
        body = orjson.loads(result)
        headers = trace_headers(delivery)
        if stamps is not None:
            headers.append((TIMING, _stamped(delivery, stamps)))
        await self.publisher.publish(
            self.topics.result_topic(body["schema"]),
            bus.thread_key(body["tenant"], body["thread_id"]),
            result,
            headers,
        )

    # --- dead letters ----------------------------------------------------------------------

    async def _dead_letter(
        self,
        delivery: Delivery,
        reason: str,
        message: str,
        envelope: Mapping[str, Any] | None,
    ) -> None:
        self.dead_lettered += 1
        metrics.dead_letter(reason)
        log.warning(
            "dead letter from %s[%d]@%d: %s: %s",
            delivery.topic,
            delivery.partition,
            delivery.offset,
            reason,
            message,
        )
        letter = bus.dead_letter(
            reason=reason,
            message=message,
            original=delivery.value or b"",
            service="tools",
            source=(delivery.topic, delivery.partition, delivery.offset),
        )
        tenant = str_or_none(envelope, "tenant")
        thread_id = str_or_none(envelope, "thread_id")
        key = (
            bus.thread_key(tenant, thread_id)
            if tenant is not None and thread_id is not None
            else delivery.key
        )
        await self.publisher.publish(self.topics.dead_letters, key, letter, trace_headers(delivery))


# --- helpers ---------------------------------------------------------------------------------

_ENVELOPE_FIELDS: Final = (("schema", str), ("id", str), ("tenant", str), ("thread_id", str))


def _envelope_problem(envelope: Mapping[str, Any]) -> str | None:
    for name, kind in _ENVELOPE_FIELDS:
        value = envelope.get(name)
        if not isinstance(value, kind) or not value:
            return f"{name!r} must be a non-empty string, got {value!r}"
    if not isinstance(envelope.get("payload"), dict):
        return f"'payload' must be an object, got {envelope.get('payload')!r}"
    return None


def _stamped(delivery: Delivery, stamps: tuple[float, float, float]) -> bytes:
    before = next((value for name, value in delivery.headers if name == TIMING), b"")
    begun, ran, recorded = stamps
    mine = (
        f"in={delivery.timestamp},f={delivery.fetched * 1000:.2f},b={begun * 1000:.2f},"
        f"r={ran * 1000:.2f},l={recorded * 1000:.2f}"
    ).encode()
    return before + b"," + mine if before else mine


def str_or_none(envelope: Mapping[str, Any] | None, name: str) -> str | None:
    value = None if envelope is None else envelope.get(name)
    return value if isinstance(value, str) else None


def trace_headers(delivery: Delivery) -> list[tuple[str, bytes]]:
    # What the worker publishes is caused by the delivery: same trace, a span of its own.
    return telemetry.outgoing(delivery.headers)
