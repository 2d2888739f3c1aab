"""Tools marked ``placement="inline"``, run inside the runtime service instead of a worker.

Owns :class:`InlineTools` and :func:`open_inline_tools`. The runtime service hands each
ToolInvocation of an inline tool to :meth:`InlineTools.run` while it handles the input that
asked for it, feeds the result straight back to the engine, and logs both in the one
transaction that consumes that input: no trip through ``tool-invocations`` and
``tool-results``, and no second transaction.

Effectively once through the tool workers' own machinery: the invocation id is the key in
the same ledger (:class:`~.claims.InvocationLedger`, namespace ``<prefix>:tools``, shared
with the workers, so an invocation a worker ran is never run again inline, and the other way
round), and the call goes through :class:`~.worker.ToolWorker`'s checks, retries, timeout and
at-most-once marking. A runtime killed before its transaction commits leaves the input
uncommitted; the partition's next owner asks the engine again, gets the same invocation id,
and finds the recorded result (nothing runs again), a live claim (it waits for it to expire)
or nothing (the handler runs again, with the same ``ctx.idempotency_key``). An at-most-once
tool interrupted mid-call answers ``TOOL_OUTCOME_UNKNOWN``, as on a worker.

A dead letter an inline call asks for (bad arguments, retries exhausted) goes into the
runtime's transaction with the result; if the runtime dies after recording and before the
commit, the next owner finds the recorded result and that one dead letter is not repeated
(the result, with its error, is still logged).

An inline call holds up the runtime's inputs while it runs (the runtime feeds its engine under
one lock, and the call is part of that): inline is for cheap, trusted tools; anything slow
or that may hang belongs on the workers.

Must not import Kafka or the runtime service; the runtime service does not import this (its
command line hands an instance over).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from flowai_harness.errors import SpecError, VolatileLedgerError
from flowai_harness.kafka import bus
from flowai_harness.references import RedisReferenceStore
from flowai_harness.specs import RuntimeSpec

from .app import ToolApp
from .claims import InvocationLedger, check_persistence
from .once import DeadLetter
from .worker import ToolWorker, WorkerSettings

__all__ = ["InlineSettings", "InlineTools", "inline_tool_names", "open_inline_tools"]

log = logging.getLogger("flowai.tools")

DAY: Final = 24 * 60 * 60


def inline_tool_names(spec: RuntimeSpec) -> frozenset[str]:
    """The tools of ``spec`` marked ``placement="inline"``."""
    return frozenset(tool.name for tool in spec.tools if tool.placement == "inline")


@dataclass(frozen=True)
class InlineSettings:
    """Where the ledger is and how inline calls run (durations in seconds)."""

    redis_url: str
    prefix: str = bus.DEFAULT_PREFIX
    claim_ttl: float = 60.0
    result_ttl: float = 7 * DAY
    allow_volatile_ledger: bool = False
    worker_id: str | None = None
    # An inline call holds its partition's transaction: a shorter limit than a worker's.
    worker: WorkerSettings = field(
        default_factory=lambda: WorkerSettings(tool_timeout=10.0, max_attempts=2)
    )


class _NoPublisher:
    """Inline calls publish nothing themselves: the runtime's transaction carries it all."""

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        raise RuntimeError(f"an inline tool call tried to publish to {topic} itself")


class InlineTools:
    """Runs the inline tools of one app effectively once (see the module docstring)."""

    def __init__(
        self,
        app: ToolApp,
        ledger: InvocationLedger,
        settings: InlineSettings,
        *,
        references: RedisReferenceStore | None = None,
    ) -> None:
        self.names = inline_tool_names(app.spec)
        unbound = sorted(self.names - set(app.tools))
        if unbound:
            raise SpecError(
                f"tool(s) {', '.join(map(repr, unbound))} are placement='inline' but have no "
                "handler in the runtime's --app; bind a handler in the app the runtime "
                "service loads, or place them on the workers"
            )
        self._references = references
        self.worker = ToolWorker(
            app,
            ledger,
            _NoPublisher(),
            bus.Topics(settings.prefix),
            settings.worker,
            worker_id=settings.worker_id,
            references=references,
        )
        self._redis: Redis | None = None

    def takes(self, tool: str) -> bool:
        return tool in self.names

    async def run(self, invocation: bytes) -> tuple[bytes, tuple[str, str] | None]:
        """The recorded ToolResult of ``invocation`` (running it if none is recorded), and the
        dead letter (reason, message) its outcome asks for, if any."""
        envelope: dict[str, Any] = orjson.loads(invocation)
        letters: list[DeadLetter] = []

        async def keep(letter: DeadLetter) -> None:
            letters.append(letter)

        result, _ = await self.worker.settle(envelope, self.worker._run_invocation, keep)
        letter = letters[0] if letters else None
        return result, None if letter is None else (letter.reason, letter.message)

    async def close(self) -> None:
        if self._references is not None:
            self._references.close()
        if self._redis is not None:
            await self._redis.aclose()


async def open_inline_tools(app: ToolApp, settings: InlineSettings) -> InlineTools:
    """Connect the ledger (refusing a Redis that forgets, unless allowed) and build the
    runner for ``app``'s inline tools."""
    redis = Redis.from_url(settings.redis_url)
    try:
        try:
            how = await check_persistence(redis, where=settings.redis_url.split("@")[-1])
            log.info("inline tools' ledger: %s", how)
        except VolatileLedgerError as exc:
            if not settings.allow_volatile_ledger:
                raise
            log.warning("%s; starting anyway (--allow-volatile-ledger)", exc.message)
        ledger = InvocationLedger(
            redis,
            namespace=f"{settings.prefix}:tools",
            claim_ttl=settings.claim_ttl,
            result_ttl=settings.result_ttl,
        )
        references = RedisReferenceStore.from_url(
            settings.redis_url, namespace=f"{settings.prefix}:refs"
        )
        tools = InlineTools(app, ledger, settings, references=references)
    except BaseException:
        await redis.aclose()
        raise
    tools._redis = redis
    return tools
