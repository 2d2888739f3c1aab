"""Streamed answers through the official SDKs: text with deltas, tool calls (parallel ones
too), reasoning, usage with cache tokens, stop reasons and timing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flowai_harness.providers import ModelProvider
from flowai_harness.testing import FakeProvider, ToolCall, Turn, Usage

PROVIDERS = ["anthropic", "openai"]
RAW_TOOL_STOP = {"anthropic": "tool_use", "openai": "tool_calls"}
RAW_END_STOP = {"anthropic": "end_turn", "openai": "stop"}

MakeRequest = Callable[..., dict[str, Any]]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_text_streams_as_deltas_and_arrives_whole(
    provider: str,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    fake.add(Turn(text=["There are ", "three ", "orders", "."], model=f"{provider}-model-2026"))
    deltas: list[dict[str, Any]] = []
    request = model_request(provider)

    result = await providers[provider].complete(request, on_delta=deltas.append)

    assert result["request_id"] == request["request_id"]
    response = result["response"]
    assert response["content"] == [{"type": "text", "text": "There are three orders."}]
    assert deltas == [
        {"type": "text-delta", "index": 0, "text": piece}
        for piece in ["There are ", "three ", "orders", "."]
    ]
    assert response["stop_reason"] == "stop"
    assert response["raw_stop_reason"] == RAW_END_STOP[provider]
    assert response["provider"] == provider
    assert response["model"] == f"{provider}-model-2026"
    assert isinstance(response["ttft_ms"], int)
    assert 0 <= response["ttft_ms"] <= response["latency_ms"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_parallel_tool_calls_are_assembled_across_chunks(
    provider: str,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    # Arguments longer than one delta (the fake sends 16 characters per piece).
    first = {"q": "orders placed in the last quarter", "limit": 20}
    second = {"q": "refunds", "filters": {"status": ["open", "closed"]}}
    fake.add(
        Turn(
            text="Looking both up.",
            tool_calls=[
                ToolCall("lookup", first, id="call_a"),
                ToolCall("lookup", second, id="call_b"),
            ],
        )
    )

    result = await providers[provider].complete(model_request(provider))

    response = result["response"]
    assert response["content"] == [
        {"type": "text", "text": "Looking both up."},
        {"type": "tool_call", "id": "call_a", "name": "lookup", "args": first},
        {"type": "tool_call", "id": "call_b", "name": "lookup", "args": second},
    ]
    assert response["stop_reason"] == "tool-calls"
    assert response["raw_stop_reason"] == RAW_TOOL_STOP[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_tool_call_with_invalid_json_arguments_is_flagged(
    provider: str,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    fake.add(
        Turn(
            tool_calls=[
                ToolCall("lookup", '{"q": "orders", ', id="call_bad"),
                ToolCall("lookup", "[1, 2]", id="call_list"),
                ToolCall("lookup", "", id="call_empty"),
            ]
        )
    )

    response = (await providers[provider].complete(model_request(provider)))["response"]

    bad, listed, empty = response["content"]
    assert bad["args"] == {}
    assert "not valid JSON" in bad["args_error"]
    assert listed["args"] == {}
    assert "not an object" in listed["args_error"]
    assert empty == {"type": "tool_call", "id": "call_empty", "name": "lookup", "args": {}}


async def test_anthropic_thinking_and_redacted_thinking_are_reasoning_blocks(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    fake.add(
        Turn(
            reasoning="The user wants a count. ",
            signature="sig-123",
            redacted_reasoning="opaque-bytes",
            text="Three.",
        )
    )
    deltas: list[dict[str, Any]] = []

    result = await providers["anthropic"].complete(
        model_request("anthropic", thinking={"budget_tokens": 2048}), on_delta=deltas.append
    )

    assert result["response"]["content"] == [
        {"type": "reasoning", "text": "The user wants a count. ", "signature": "sig-123"},
        {"type": "reasoning", "text": "", "redacted": "opaque-bytes"},
        {"type": "text", "text": "Three."},
    ]
    assert [d["type"] for d in deltas] == ["reasoning-delta"] * 5 + ["text-delta"]
    assert {d["index"] for d in deltas if d["type"] == "reasoning-delta"} == {0}
    assert deltas[-1] == {"type": "text-delta", "index": 2, "text": "Three."}


async def test_openai_compatible_reasoning_content_is_a_reasoning_block(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    fake.add(Turn(reasoning=["Count ", "them."], text="Three."))
    deltas: list[dict[str, Any]] = []

    result = await providers["openai"].complete(model_request("openai"), on_delta=deltas.append)

    assert result["response"]["content"] == [
        {"type": "reasoning", "text": "Count them."},
        {"type": "text", "text": "Three."},
    ]
    assert deltas == [
        {"type": "reasoning-delta", "index": 0, "text": "Count "},
        {"type": "reasoning-delta", "index": 0, "text": "them."},
        {"type": "text-delta", "index": 1, "text": "Three."},
    ]


async def test_anthropic_usage_counts_cache_reads_and_writes(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    fake.add(Turn(text="ok", usage=Usage(120, 30, 2000, 512)))

    result = await providers["anthropic"].complete(model_request("anthropic", cache=True))

    assert result["response"]["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 512,
    }


async def test_openai_usage_nets_cached_tokens_out_of_the_prompt(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    # The fake reports prompt_tokens = 120 + 2000 with cached_tokens = 2000.
    fake.add(Turn(text="ok", usage=Usage(120, 30, 2000, 512)))

    result = await providers["openai"].complete(model_request("openai"))

    assert result["response"]["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 0,
    }


@pytest.mark.parametrize(
    ("provider", "neutral", "stop"),
    [
        ("anthropic", "length", "length"),
        ("anthropic", "content_filter", "content-filter"),
        ("anthropic", "model_context_window_exceeded", "length"),
        ("openai", "length", "length"),
        ("openai", "content_filter", "content-filter"),
    ],
)
async def test_stop_reasons_are_normalized_and_the_raw_word_kept(
    provider: str,
    neutral: str,
    stop: str,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    fake.add(Turn(text="partial", stop_reason=neutral))

    response = (await providers[provider].complete(model_request(provider)))["response"]

    assert response["stop_reason"] == stop
    assert response["raw_stop_reason"] not in (None, "")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_time_to_first_token_reflects_a_slow_first_token(
    provider: str,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    fake.add(Turn(text="late answer", ttft_s=0.15))

    response = (await providers[provider].complete(model_request(provider)))["response"]

    # The stream opened at once; the first token came 150 ms later.
    assert response["ttft_ms"] >= 140
    assert response["latency_ms"] >= response["ttft_ms"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_exception_in_on_delta_propagates_and_closes_the_stream(
    provider: str,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    fake.add(Turn(text="one two three", stall_after=1))

    def broken(delta: dict[str, Any]) -> None:
        raise LookupError("the caller's own bug")

    with pytest.raises(LookupError, match="the caller's own bug"):
        await providers[provider].complete(model_request(provider), on_delta=broken)

    assert await fake.requests[0].wait_finished() == "disconnected"
