"""Effectively-once tool execution: claims and recorded results in Redis.

Owns :class:`InvocationLedger` and :func:`check_persistence`. The invocation id (the
ToolInvocation envelope ``id``) is the idempotency key. Three keys per invocation, in one
Redis hash slot (``{id}``) so the scripts below also run on a Redis Cluster:

- ``<ns>:{<id>}:claim`` = the owner token of the worker running it, with a TTL (``PX``) that
  the owner renews while the tool runs; a crashed owner's claim expires.
- ``<ns>:{<id>}:result`` = the recorded ToolResult envelope (bytes), kept ``result_ttl``.
- ``<ns>:{<id>}:started`` = set (:meth:`InvocationLedger.arm`) just before the handler of an
  ``at_most_once`` tool runs, deleted when a result is recorded. Found with no claim and no
  result, it means a worker died (or gave up) while the handler ran: the outcome is unknown
  and the tool must not run again.

Each step is one Lua script, so "is there a result? else claim", "still ours? then mark the
run started" and "record, then release" are atomic: a worker never claims an invocation
whose result was recorded in between, and never starts an at-most-once handler on a claim
it lost.

The ledger must survive a Redis restart (a Redis without persistence forgets recorded
results, and the tools run again): :func:`check_persistence` is asked before a worker starts.

Must not import Kafka or the rest of the service; talks to Redis only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from flowai_harness.errors import VolatileLedgerError

__all__ = ["Begin", "InvocationLedger", "check_persistence"]

log = logging.getLogger("flowai.tools")

# KEYS: claim, result, started. ARGV: token, claim ttl (ms).
# -> {1, recorded result} | {2, ""} (claimed) | {3, ms left on the other owner's claim}
#  | {4, ""} (claimed, but an at-most-once run started before and left no result)
_BEGIN: Final = """
local recorded = redis.call('GET', KEYS[2])
if recorded then return {1, recorded} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('EXISTS', KEYS[3]) == 1 then return {4, ''} end
  return {2, ''}
end
return {3, redis.call('PTTL', KEYS[1])}
"""

# KEYS: claim, started. ARGV: token, started ttl (ms). -> 1 when the claim is still ours and
# the run is now marked started, else 0 (do not run: another worker may own it now).
_ARM: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: claim. ARGV: token, claim ttl (ms). -> 1 when still ours and extended, else 0.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: claim, result, started. ARGV: token, result, result ttl (ms).
# -> {1, our result} when it is the recorded one, {0, the result recorded before}.
# First record wins, so every publisher of an invocation publishes the same bytes even if a
# lost claim let two workers run it. With a result recorded the started mark means nothing.
_RECORD: Final = """
local stored = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[3])
if stored then return {1, ARGV[2]} end
return {0, redis.call('GET', KEYS[2])}
"""

# KEYS: claim. ARGV: token. Gives the claim up without a result (the worker stops before
# running the tool), so the next delivery need not wait for the TTL.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Begin:
    """What :meth:`InvocationLedger.begin` found.

    Exactly one holds: ``recorded`` is the recorded ToolResult (publish it, do not run);
    ``claimed`` (run it); ``unknown`` (the claim is ours, but an at-most-once run started
    before and never recorded a result: record "outcome unknown", do not run); else
    ``held_ms`` is how long another owner's claim still lasts.
    """

    recorded: bytes | None = None
    claimed: bool = False
    unknown: bool = False
    held_ms: int = 0


class InvocationLedger:
    """Claims and recorded results of tool invocations, keyed by invocation id."""

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        claim_ttl: float,
        result_ttl: float,
    ) -> None:
        if claim_ttl <= 0 or result_ttl <= 0:
            raise ValueError("claim_ttl and result_ttl must be positive (seconds)")
        self.redis = redis
        self.namespace = namespace
        self.claim_ttl_ms = max(1, round(claim_ttl * 1000))
        self.result_ttl_ms = max(1, round(result_ttl * 1000))
        self._begin = redis.register_script(_BEGIN)
        self._arm = redis.register_script(_ARM)
        self._renew = redis.register_script(_RENEW)
        self._record = redis.register_script(_RECORD)
        self._release = redis.register_script(_RELEASE)

    def claim_key(self, invocation_id: str) -> str:
        return f"{self.namespace}:{{{invocation_id}}}:claim"

    def result_key(self, invocation_id: str) -> str:
        return f"{self.namespace}:{{{invocation_id}}}:result"

    def started_key(self, invocation_id: str) -> str:
        return f"{self.namespace}:{{{invocation_id}}}:started"

    def _keys(self, invocation_id: str) -> list[str]:
        return [
            self.claim_key(invocation_id),
            self.result_key(invocation_id),
            self.started_key(invocation_id),
        ]

    async def begin(self, invocation_id: str, token: str) -> Begin:
        """Return the recorded result, or claim the invocation for ``token``, atomically
        (telling whether an at-most-once run of it started before and left no result)."""
        kind, value = await self._begin(
            keys=self._keys(invocation_id), args=[token, self.claim_ttl_ms]
        )
        if kind == 1:
            return Begin(recorded=_as_bytes(value))
        if kind == 2:
            return Begin(claimed=True)
        if kind == 4:
            return Begin(unknown=True)
        # PTTL is -1/-2 only if the key lost its TTL or vanished: look again soon.
        return Begin(held_ms=max(int(value), 0))

    async def arm(self, invocation_id: str, token: str) -> bool:
        """Mark an at-most-once run as started, if ``token`` still holds the claim; call it
        right before the handler runs. False: the claim is lost, do not run."""
        armed = await self._arm(
            keys=[self.claim_key(invocation_id), self.started_key(invocation_id)],
            args=[token, self.result_ttl_ms],
        )
        return bool(armed)

    async def renew(self, invocation_id: str, token: str) -> bool:
        """Extend ``token``'s claim by the claim TTL; False when the claim is no longer ours."""
        extended = await self._renew(
            keys=[self.claim_key(invocation_id)], args=[token, self.claim_ttl_ms]
        )
        return bool(extended)

    async def record(self, invocation_id: str, token: str, result: bytes) -> tuple[bytes, bool]:
        """Record ``result`` unless one is recorded already, and release ``token``'s claim.

        Returns (the recorded result, whether it is ``result``): publish the first.
        """
        ours, value = await self._record(
            keys=self._keys(invocation_id), args=[token, result, self.result_ttl_ms]
        )
        return _as_bytes(value), bool(ours)

    async def release(self, invocation_id: str, token: str) -> None:
        """Give up ``token``'s claim without recording a result."""
        await self._release(keys=[self.claim_key(invocation_id)], args=[token])

    async def recorded(self, invocation_id: str) -> bytes | None:
        """The recorded result, if any (for tests and operators)."""
        value = await self.redis.get(self.result_key(invocation_id))
        return None if value is None else _as_bytes(value)

    @contextlib.asynccontextmanager
    async def holding(self, invocation_id: str, token: str) -> AsyncIterator[None]:
        """Keep ``token``'s claim alive while the body runs: renew it every third of the TTL.

        A tool that runs longer than the TTL is therefore not taken over by another worker;
        only a dead worker (nothing renews) loses its claim.
        """
        task = asyncio.create_task(self._keep_renewing(invocation_id, token))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_renewing(self, invocation_id: str, token: str) -> None:
        interval = self.claim_ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.renew(invocation_id, token):
                    # Another worker may run it now; nothing here can stop a side effect
                    # already under way, so say so loudly. The first result recorded wins.
                    log.warning(
                        "lost the claim on invocation %s while its tool ran (the claim "
                        "expired before it was renewed); another worker may run it again",
                        invocation_id,
                    )
                    return
            except Exception:  # Redis blip: try again at the next tick, the TTL has slack
                log.exception("renewing the claim on invocation %s failed", invocation_id)


async def check_persistence(redis: Redis, *, where: str) -> str:
    """How the Redis at ``where`` persists writes (``"AOF, appendfsync everysec"``...), or
    :class:`~flowai_harness.errors.VolatileLedgerError` when it does not keep an append-only
    file or cannot be asked.

    Only an append-only file keeps the last recorded results across a restart; RDB snapshots
    alone lose everything since the last one, and with it the record that those tools ran.
    Asks ``INFO persistence`` (allowed on most managed Redis) and, for the fsync policy,
    ``CONFIG GET`` (often forbidden there; then the policy is not checked).
    """
    try:
        info = await redis.info("persistence")
    except ResponseError as exc:
        raise VolatileLedgerError(
            f"cannot check that the Redis at {where} persists the tool ledger: INFO "
            f"persistence was refused ({exc}); managed Redis services may forbid it. Make sure "
            "it keeps an append-only file (appendonly yes, appendfsync everysec) or the "
            "provider's equivalent, then pass --allow-volatile-ledger (env "
            "FLOWAI_ALLOW_VOLATILE_LEDGER=1) to start anyway"
        ) from None
    if str(info.get("aof_enabled", "0")) != "1":
        snapshots = await _config(redis, "save")
        rdb = (
            f"RDB snapshots ({snapshots!r}) lose every write since the last one"
            if snapshots
            else "it keeps no snapshots either"
        )
        raise VolatileLedgerError(
            f"the Redis at {where} has no append-only file (appendonly no), so a restart "
            f"forgets recorded tool results and claims and the tools run again; {rdb}. Start "
            "it with --appendonly yes --appendfsync everysec (scripts/services/services and "
            "compose.yaml do), or pass --allow-volatile-ledger (env "
            "FLOWAI_ALLOW_VOLATILE_LEDGER=1) to accept that"
        )
    fsync = await _config(redis, "appendfsync")
    if fsync == "no":
        log.warning(
            "the Redis at %s writes an append-only file but leaves fsync to the OS "
            "(appendfsync no): a machine crash can lose about 30 s of recorded results; "
            "use appendfsync everysec",
            where,
        )
    return f"AOF, appendfsync {fsync or 'not readable (CONFIG GET refused)'}"


async def _config(redis: Redis, name: str) -> str | None:
    try:
        # Typed str-keyed by redis-py 8, bytes-keyed by 5 and 6 (and in fact, without
        # decode_responses): either is looked up.
        values: dict[Any, Any] = dict(await redis.config_get(name))
    except ResponseError:
        return None
    value = values.get(name, values.get(name.encode()))
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected Redis reply {value!r}; use a client without decode_responses")
