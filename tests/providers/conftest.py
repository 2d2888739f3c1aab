"""Fixtures for the provider tests: the fake provider server and providers pointed at it.

- ``fake``: a started :class:`~flowai_harness.testing.FakeProvider` on a free port (it
  accepts only the key ``test-key``, as a real API checks keys).
- ``providers``: ``build_providers`` over the fake's settings (both providers), closed after.
- ``model_request(provider, **overrides)``: a ModelRequest payload as the engine emits it
  (docs/wire.md), one user message unless ``messages`` is given.

Nothing here mocks an SDK: the official clients talk HTTP to the fake server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from flowai_harness.providers import ModelProvider, build_providers, close_providers
from flowai_harness.testing import FakeProvider

API_KEY = "test-key"
MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(api_key=API_KEY) as server:
        yield server


@pytest.fixture
async def providers(fake: FakeProvider) -> AsyncIterator[dict[str, ModelProvider]]:
    built = build_providers(fake.provider_settings(api_key=API_KEY))
    yield built
    await close_providers(built)


@pytest.fixture
def model_request() -> Callable[..., dict[str, Any]]:
    counter = iter(range(1, 1_000_000))

    def make(provider: str, **overrides: Any) -> dict[str, Any]:
        n = next(counter)
        request: dict[str, Any] = {
            "request_id": f"acme/t1/run-1/model-{n}/1",
            "agent": "analyst",
            "provider": provider,
            "model": MODELS[provider],
            "attempt": 1,
            "turn": n,
            "system": "You answer questions about orders.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "How many orders?"}]}
            ],
            "tools": [
                {
                    "name": "lookup",
                    "description": "Look orders up.",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
                }
            ],
            "max_tokens": 1024,
            "temperature": None,
            "thinking": None,
            "cache": False,
        }
        request.update(overrides)
        return request

    return make
