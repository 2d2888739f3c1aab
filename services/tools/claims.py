"""Effectively-once tool execution: claims and recorded results in Redis.

Owns :class:`InvocationLedger`. The invocation id (the ToolInvocation envelope ``id``) is the
idempotency key. Two keys per invocation, in one Redis hash slot (``{id}``) so the scripts
below also run on a Redis Cluster:

- ``<ns>:{<id>}:claim`` = the owner token of the worker running it, with a TTL (``PX``) that
  the owner renews while the tool runs; a crashed owner's claim expires.
- ``<ns>:{<id>}:result`` = the recorded ToolResult envelope (bytes), kept ``result_ttl``.

Each step is one Lua script, so "is there a result? else claim" and "record, then release"
are atomic: a worker never claims an invocation whose result was recorded in between.

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

__all__ = ["Begin", "InvocationLedger"]

log = logging.getLogger("flowai.tools")

# KEYS: claim, result. ARGV: token, claim ttl (ms).
# -> {1, recorded result} | {2, ""} (claimed) | {3, ms left on the other owner's claim}
_BEGIN: Final = """
local recorded = redis.call('GET', KEYS[2])
if recorded then return {1, recorded} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {3, redis.call('PTTL', KEYS[1])}
"""

# KEYS: claim. ARGV: token, claim ttl (ms). -> 1 when still ours and extended, else 0.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: claim, result. ARGV: token, result, result ttl (ms).
# -> {1, our result} when it is the recorded one, {0, the result recorded before}.
# First record wins, so every publisher of an invocation publishes the same bytes even if a
# lost claim let two workers run it.
_RECORD: Final = """
local stored = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
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
    ``claimed`` (run it); else ``held_ms`` is how long another owner's claim still lasts.
    """

    recorded: bytes | None = None
    claimed: bool = False
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
        self._renew = redis.register_script(_RENEW)
        self._record = redis.register_script(_RECORD)
        self._release = redis.register_script(_RELEASE)

    def claim_key(self, invocation_id: str) -> str:
        return f"{self.namespace}:{{{invocation_id}}}:claim"

    def result_key(self, invocation_id: str) -> str:
        return f"{self.namespace}:{{{invocation_id}}}:result"

    def _keys(self, invocation_id: str) -> list[str]:
        return [self.claim_key(invocation_id), self.result_key(invocation_id)]

    async def begin(self, invocation_id: str, token: str) -> Begin:
        """Return the recorded result, or claim the invocation for ``token``, atomically."""
        kind, value = await self._begin(
            keys=self._keys(invocation_id), args=[token, self.claim_ttl_ms]
        )
        if kind == 1:
            return Begin(recorded=_as_bytes(value))
        if kind == 2:
            return Begin(claimed=True)
        # PTTL is -1/-2 only if the key lost its TTL or vanished: look again soon.
        return Begin(held_ms=max(int(value), 0))

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


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected Redis reply {value!r}; use a client without decode_responses")
