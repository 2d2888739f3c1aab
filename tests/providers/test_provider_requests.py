"""What the official SDKs put on the wire for a ModelRequest, read back from the fake server:
roles and blocks per API, prompt caching breakpoints, extended thinking, streaming options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowai_harness.providers import ModelProvider
from flowai_harness.testing import FakeProvider, Turn

MakeRequest = Callable[..., dict[str, Any]]
EPHEMERAL = {"type": "ephemeral"}

CONVERSATION = [
    {"role": "user", "content": [{"type": "text", "text": "How many orders?"}]},
    {
        "role": "assistant",
        "content": [
            {"type": "reasoning", "text": "Count them.", "signature": "sig-1"},
            {"type": "reasoning", "text": "", "redacted": "opaque"},
            {"type": "reasoning", "text": "another provider's thoughts"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_call", "id": "toolu_01", "name": "lookup", "args": {"q": "orders"}},
            {"type": "tool_call", "id": "toolu_02", "name": "lookup", "args": {"q": "refunds"}},
        ],
    },
    {
        "role": "tool",
        "content": [
            {
                "type": "tool_result",
                "tool_call_id": "toolu_01",
                "content": {"n": 3},
                "is_error": False,
            },
            {
                "type": "tool_result",
                "tool_call_id": "toolu_02",
                "content": "lookup timed out",
                "is_error": True,
            },
        ],
    },
]


def _cache_marks(value: Any) -> int:
    if isinstance(value, dict):
        return (value.get("cache_control") is not None) + sum(map(_cache_marks, value.values()))
    if isinstance(value, list):
        return sum(map(_cache_marks, value))
    return 0


async def test_anthropic_request_has_cache_breakpoints_and_thinking_when_asked(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    fake.add(Turn(text="Three orders."))

    await providers["anthropic"].complete(
        model_request(
            "anthropic", messages=CONVERSATION, cache=True, thinking={"budget_tokens": 4096}
        )
    )

    (sent,) = fake.requests
    body = sent.body
    assert sent.path == "/v1/messages"
    assert body["stream"] is True
    assert body["model"] == "claude-sonnet-4-6"
    assert body["max_tokens"] == 1024
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert body["system"] == [
        {"type": "text", "text": "You answer questions about orders.", "cache_control": EPHEMERAL}
    ]
    assert body["tools"][-1]["cache_control"] == EPHEMERAL
    assert body["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL
    assert _cache_marks(body) == 3
    assert "temperature" not in body


async def test_anthropic_request_maps_roles_and_blocks(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    fake.add(Turn(text="Three orders."))

    await providers["anthropic"].complete(
        model_request("anthropic", messages=CONVERSATION, temperature=0.2)
    )

    body = fake.requests[0].body
    assert _cache_marks(body) == 0
    assert body["system"] == "You answer questions about orders."
    assert body["temperature"] == 0.2
    assert body["tools"] == [
        {
            "name": "lookup",
            "description": "Look orders up.",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "How many orders?"}]},
        {
            "role": "assistant",
            "content": [
                # Signed thinking and redacted thinking go back as they came; unsigned
                # reasoning (another provider's) cannot, and is left out.
                {"type": "thinking", "thinking": "Count them.", "signature": "sig-1"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"q": "orders"}},
                {"type": "tool_use", "id": "toolu_02", "name": "lookup", "input": {"q": "refunds"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "content": '{"n":3}',
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_02",
                    "content": "lookup timed out",
                    "is_error": True,
                },
            ],
        },
    ]


async def test_openai_request_maps_roles_and_blocks(
    fake: FakeProvider, providers: dict[str, ModelProvider], model_request: MakeRequest
) -> None:
    fake.add(Turn(text="Three orders."))

    await providers["openai"].complete(
        model_request("openai", messages=CONVERSATION, cache=True, temperature=0.2)
    )

    (sent,) = fake.requests
    body = sent.body
    assert sent.path == "/v1/chat/completions"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 1024
    assert body["temperature"] == 0.2
    assert "thinking" not in body
    assert _cache_marks(body) == 0
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look orders up.",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    assert body["messages"] == [
        {"role": "system", "content": "You answer questions about orders."},
        {"role": "user", "content": "How many orders?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "toolu_01",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q":"orders"}'},
                },
                {
                    "id": "toolu_02",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q":"refunds"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": '{"n":3}'},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "lookup timed out"},
    ]


async def test_the_api_key_and_default_headers_reach_the_server(fake: FakeProvider) -> None:
    from flowai_harness.providers import build_providers, close_providers

    fake.add(Turn(text="hi", times=2))
    built = build_providers(
        fake.provider_settings(api_key="test-key", defaultHeaders={"x-team": "data"})
    )
    try:
        for name in ("anthropic", "openai"):
            request = {
                "request_id": f"r-{name}",
                "model": "m",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            }
            assert "response" in await built[name].complete(request)
    finally:
        await close_providers(built)

    assert [(r.api, r.api_key, r.headers["x-team"]) for r in fake.requests] == [
        ("anthropic", "test-key", "data"),
        ("openai", "test-key", "data"),
    ]
    # Only the fields the contract sets: no system prompt, no tools when there are none.
    assert set(fake.requests[0].body) == {"model", "max_tokens", "messages", "stream"}
