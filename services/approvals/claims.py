"""The first decision wins: one claim per approval in Redis, taken before publishing.

Owns :class:`DecisionClaims`. ``SET <ns>:<tenant>:<approval id> <decision> NX`` decides which
of two concurrent decisions (in this instance or another) is published; the loser gets the
winner's decision back for its 409 answer. A claim whose publish failed is given back (only
by its owner), so the approval can be decided again.

Redis coordinates; it is not the record. Decisions already on the ``approval-decisions``
topic are known to every instance from the topic itself, so a claim only has to outlive the
moment between publishing and every instance reading it back (kept a day by default).

Must not import Kafka, aiohttp or the rest of the service.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import orjson
from redis.asyncio import Redis

__all__ = ["DecisionClaims"]

# KEYS: claim. ARGV: the owner's claim value. Delete only our own claim.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DecisionClaims:
    """Claims on approvals, keyed by tenant and approval id."""

    def __init__(self, redis: Redis, *, namespace: str, ttl: float = 24 * 3600) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive (seconds), got {ttl}")
        self.redis = redis
        self.namespace = namespace
        self.ttl_ms = max(1, round(ttl * 1000))
        self._release = redis.register_script(_RELEASE)

    def key(self, tenant: str, approval_id: str) -> str:
        return f"{self.namespace}:{quote(tenant, safe='')}:{approval_id}"

    async def claim(
        self, tenant: str, approval_id: str, decision: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Claim the approval for ``decision``; None when ours, else the decision that holds it."""
        value = orjson.dumps(decision)
        key = self.key(tenant, approval_id)
        while True:
            if await self.redis.set(key, value, nx=True, px=self.ttl_ms):
                return None
            held = await self.redis.get(key)
            if held is not None:
                holder: dict[str, Any] = orjson.loads(held)
                return holder
            # The other claim was given back (or expired) between SET and GET: try again.

    async def release(self, tenant: str, approval_id: str, decision: dict[str, Any]) -> None:
        """Give back our claim (its publish failed), so the approval can be decided again."""
        await self._release(keys=[self.key(tenant, approval_id)], args=[orjson.dumps(decision)])
