"""Cancelling a call aborts its HTTP request (the server sees the client go), and the
per-provider concurrency limit holds calls back rather than sending them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from flowai_harness.providers import (
    ModelProvider,
    StreamingProvider,
    build_providers,
    close_providers,
)
from flowai_harness.testing import FakeProvider, Turn

MakeRequest = Callable[..., dict[str, Any]]
PROVIDERS = ["anthropic", "openai"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancel_mid_stream_aborts_the_request(
    provider: str,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    # Two words arrive, then the "model" goes quiet until the client leaves.
    fake.add(Turn(text="Counting the orders now", stall_after=2))
    deltas: list[dict[str, Any]] = []
    streaming = asyncio.Event()

    def on_delta(delta: dict[str, Any]) -> None:
        deltas.append(delta)
        if len(deltas) == 2:
            streaming.set()

    call = asyncio.create_task(
        providers[provider].complete(model_request(provider), on_delta=on_delta)
    )
    await asyncio.wait_for(streaming.wait(), 10)
    call.cancel()

    with pytest.raises(asyncio.CancelledError):
        await call
    assert await fake.requests[0].wait_finished() == "disconnected"
    assert [d["text"] for d in deltas] == ["Counting ", "the "]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_cancel_before_the_first_byte_aborts_the_request(
    provider: str,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    fake.add(Turn(text="never sent", hold="never"))

    call = asyncio.create_task(providers[provider].complete(model_request(provider)))
    (sent,) = await fake.wait_for_requests(1)
    call.cancel()

    with pytest.raises(asyncio.CancelledError):
        await call
    assert await sent.wait_finished() == "disconnected"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_max_concurrency_holds_calls_back_until_a_slot_frees(
    provider: str, fake: FakeProvider, model_request: MakeRequest
) -> None:
    fake.add(Turn(text="answer", hold="go", times=6))
    built = build_providers(fake.provider_settings(api_key="test-key", maxConcurrency=2))
    limited = built[provider]
    assert isinstance(limited, StreamingProvider)
    try:
        calls = [asyncio.create_task(limited.complete(model_request(provider))) for _ in range(6)]
        await fake.wait_for_requests(2)
        # Every call has started: two hold a slot (and reached the server), four wait for one.
        assert (limited.in_flight, limited.waiting) == (2, 4)
        assert len(fake.requests) == 2

        fake.release("go")
        results = await asyncio.wait_for(asyncio.gather(*calls), 10)
    finally:
        await close_providers(built)

    assert all("response" in result for result in results)
    assert len(fake.requests) == 6
    assert fake.max_in_flight == 2
    assert (limited.in_flight, limited.waiting) == (0, 0)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_cancelled_waiter_gives_up_its_place_without_leaking_a_slot(
    provider: str, fake: FakeProvider, model_request: MakeRequest
) -> None:
    fake.add(Turn(text="answer", hold="go", times=3))
    built = build_providers(fake.provider_settings(api_key="test-key", maxConcurrency=1))
    limited = built[provider]
    assert isinstance(limited, StreamingProvider)
    try:
        first = asyncio.create_task(limited.complete(model_request(provider)))
        waiter = asyncio.create_task(limited.complete(model_request(provider)))
        await fake.wait_for_requests(1)
        assert limited.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

        fake.release("go")
        assert "response" in await asyncio.wait_for(first, 10)
        # The slot came back: another call goes through.
        assert "response" in await asyncio.wait_for(limited.complete(model_request(provider)), 10)
    finally:
        await close_providers(built)

    assert len(fake.requests) == 2
    assert (limited.in_flight, limited.waiting) == (0, 0)
