"""Which Slack message shows which approval, in Redis, shared by every approvals instance.

Owns :class:`Postings` and :class:`Posting`. Per approval a hash
``<ns>:<tenant>:<approval id>`` records the message (``channel``, ``ts``) and the state it
shows (``shown``); a set ``<ns>:open`` lists the messages that do not show a final state
yet, so an instance that starts finds the messages it may still have to update.

Posting and updating are done under a **lease** (``<ns>:lease:...``, ``SET NX PX``): of many
instances, one posts a request and one updates a message, and a lease left by a killed
instance runs out by itself, after which another instance takes the work over. Slack's
``chat.postMessage`` has no idempotency key, so a process killed after Slack took a message
and before Redis recorded it leaves that message behind and the next holder posts again: a
duplicate in that window, never a missing message.

Redis coordinates the messages; decisions never depend on it (the topics are the record).

Must not import Kafka, aiohttp, Slack or the rest of the service.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import quote

import orjson
from redis.asyncio import Redis

__all__ = ["Posting", "Postings"]

# KEYS: lease. ARGV: the holder's token. Delete only our own lease.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Posting:
    """The message that shows an approval, and what it shows."""

    channel: str
    ts: str
    shown: str


class Postings:
    """Slack messages of approvals, keyed by tenant and approval id."""

    def __init__(self, redis: Redis, *, namespace: str, lease: float = 30.0) -> None:
        if lease <= 0:
            raise ValueError(f"lease must be positive (seconds), got {lease}")
        self.redis = redis
        self.namespace = namespace
        self.lease_ms = max(1, round(lease * 1000))
        self._release = redis.register_script(_RELEASE)

    def _key(self, tenant: str, approval_id: str) -> str:
        return f"{self.namespace}:{quote(tenant, safe='')}:{approval_id}"

    def _open_key(self) -> str:
        return f"{self.namespace}:open"

    async def get(self, tenant: str, approval_id: str) -> Posting | None:
        fields = await cast(
            "Awaitable[dict[bytes, bytes]]", self.redis.hgetall(self._key(tenant, approval_id))
        )
        if b"ts" not in fields:
            return None
        return Posting(
            channel=fields[b"channel"].decode(),
            ts=fields[b"ts"].decode(),
            shown=fields.get(b"shown", b"").decode(),
        )

    async def lease(self, tenant: str, approval_id: str) -> str | None:
        """Take the approval's lease; its token, or None when another instance holds it."""
        token = os.urandom(12).hex()
        key = f"{self.namespace}:lease:{quote(tenant, safe='')}:{approval_id}"
        if await self.redis.set(key, token, nx=True, px=self.lease_ms):
            return token
        return None

    async def release(self, tenant: str, approval_id: str, token: str) -> None:
        key = f"{self.namespace}:lease:{quote(tenant, safe='')}:{approval_id}"
        await self._release(keys=[key], args=[token])

    async def posted(
        self, tenant: str, approval_id: str, channel: str, ts: str, shown: str
    ) -> None:
        """Record the message just posted for the approval."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._key(tenant, approval_id),
                mapping={"channel": channel, "ts": ts, "shown": shown},
            )
            pipe.sadd(self._open_key(), orjson.dumps([tenant, approval_id]))
            await pipe.execute()

    async def shown(self, tenant: str, approval_id: str, shown: str, *, final: bool) -> None:
        """Record what the message shows now (``final``: it will not change again)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(tenant, approval_id), "shown", shown)
            if final:
                pipe.srem(self._open_key(), orjson.dumps([tenant, approval_id]))
            await pipe.execute()

    async def open(self) -> list[tuple[str, str]]:
        """(tenant, approval id) of every message not showing a final state yet."""
        members = await cast("Awaitable[set[bytes]]", self.redis.smembers(self._open_key()))
        found: list[tuple[str, str]] = []
        for member in members:
            tenant, approval_id = orjson.loads(member)
            found.append((tenant, approval_id))
        return found
