"""Fixtures the service tests share: the real Redis (FLOWAI_REDIS_URL) and a key namespace of
their own that is emptied afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    url = os.environ.get("FLOWAI_REDIS_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("FLOWAI_REDIS_URL is not set; start Redis with scripts/services")
        pytest.skip("needs Redis: scripts/services/services start; set -a; . var/services/env")
    client = Redis.from_url(url)
    yield client
    await client.aclose()


@pytest.fixture
async def namespace(redis: Redis) -> AsyncIterator[str]:
    """A Redis key prefix only this test uses; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    keys = [key async for key in redis.scan_iter(match=f"{name}:*", count=10_000)]
    if keys:
        await redis.delete(*keys)
