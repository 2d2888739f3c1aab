"""Every provider failure becomes a ModelResult ``failure`` with its kind, status and
retry-after, with exactly one HTTP request sent (SDK retries are off: retrying is the
engine's decision)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from flowai_harness.providers import FAILURE_KINDS, ModelProvider, build_providers, close_providers
from flowai_harness.providers.base import kind_for_status, retry_after_ms
from flowai_harness.testing import (
    FakeProvider,
    Fault,
    Turn,
    context_length_exceeded,
    dropped,
    error_event,
    http_error,
    malformed_sse,
    overloaded,
    rate_limited,
    server_error,
    truncated,
)

MakeRequest = Callable[..., dict[str, Any]]
PROVIDERS = ["anthropic", "openai"]

# (fault, kind, HTTP status, retry_after_ms)
FAULTS: list[tuple[str, Fault, str, int | None, int | None]] = [
    ("429 retry-after seconds", rate_limited(retry_after_s=2), "rate_limited", 429, 2000),
    ("429 retry-after-ms", rate_limited(retry_after_ms=1500), "rate_limited", 429, 1500),
    (
        "429 both headers",
        rate_limited(retry_after_s=9, retry_after_ms=250),
        "rate_limited",
        429,
        250,
    ),
    ("429 without retry-after", rate_limited(), "rate_limited", 429, None),
    ("529 overloaded", overloaded(), "overloaded", 529, None),
    ("500", server_error(500), "server", 500, None),
    ("503", server_error(503), "server", 503, None),
    ("401", http_error(401, "invalid x-api-key"), "auth", 401, None),
    ("403", http_error(403, "not allowed"), "auth", 403, None),
    ("400 context length", context_length_exceeded(), "context_length", 400, None),
    (
        "400 context length, vLLM wording",
        http_error(
            400,
            "This model's maximum context length is 8192 tokens. However, you "
            "requested 9000 tokens.",
        ),
        "context_length",
        400,
        None,
    ),
    ("400 other", http_error(400, "max_tokens: must be at least 1"), "bad_request", 400, None),
    ("404", http_error(404, "model: no such model"), "bad_request", 404, None),
    ("dropped mid-stream", dropped(after_chunks=2), "connection", None, None),
    ("stream cut short", truncated(after_chunks=2), "bad_response", None, None),
    ("malformed SSE", malformed_sse(after_chunks=1), "bad_response", None, None),
    (
        "overloaded in the stream",
        error_event("overloaded_error", "Overloaded"),
        "overloaded",
        None,
        None,
    ),
    (
        "server error in the stream",
        error_event("api_error", "Internal error", after_chunks=1),
        "server",
        None,
        None,
    ),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "kind", "status", "retry_after"),
    [case[1:] for case in FAULTS],
    ids=[case[0] for case in FAULTS],
)
async def test_failure_kinds(
    provider: str,
    fault: Fault,
    kind: str,
    status: int | None,
    retry_after: int | None,
    fake: FakeProvider,
    providers: dict[str, ModelProvider],
    model_request: MakeRequest,
) -> None:
    fake.add(Turn(text="one two three four", fault=fault))
    request = model_request(provider)

    result = await providers[provider].complete(request)

    assert "response" not in result
    failure = result["failure"]
    assert result["request_id"] == request["request_id"]
    assert failure["kind"] == kind
    assert failure["status"] == status
    assert failure["retry_after_ms"] == retry_after
    assert failure["provider"] == provider
    assert failure["model"] == request["model"]
    assert isinstance(failure["latency_ms"], int)
    assert failure["message"]
    assert len(fake.requests) == 1, "the SDK retried on its own"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_slow_first_byte_past_the_timeout_is_a_timeout(
    provider: str, fake: FakeProvider, model_request: MakeRequest
) -> None:
    fake.add(Turn(text="too late", first_byte_delay_s=30))
    built = build_providers(fake.provider_settings(api_key="test-key", timeoutSecs=0.2))
    try:
        result = await built[provider].complete(model_request(provider))
    finally:
        await close_providers(built)

    assert result["failure"]["kind"] == "timeout"
    assert result["failure"]["status"] is None
    # The client gave up and hung up; the server saw it go.
    assert await fake.requests[0].wait_finished() == "disconnected"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_stream_that_goes_quiet_past_the_timeout_is_a_timeout(
    provider: str, fake: FakeProvider, model_request: MakeRequest
) -> None:
    # The headers and the first words arrive, then nothing.
    fake.add(Turn(text="one two three", stall_after=2))
    built = build_providers(fake.provider_settings(api_key="test-key", timeoutSecs=0.2))
    deltas: list[dict[str, Any]] = []
    try:
        result = await built[provider].complete(model_request(provider), on_delta=deltas.append)
    finally:
        await close_providers(built)

    assert result["failure"]["kind"] == "timeout"
    assert [delta["text"] for delta in deltas] == ["one ", "two "]
    assert await fake.requests[0].wait_finished() == "disconnected"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refused_connection_is_a_connection_failure(
    provider: str, model_request: MakeRequest
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    base = f"http://127.0.0.1:{port}"
    built = build_providers(
        {
            "anthropic": {"apiKey": "k", "baseUrl": base},
            "openai": {"apiKey": "k", "baseUrl": f"{base}/v1"},
        }
    )
    try:
        result = await built[provider].complete(model_request(provider))
    finally:
        await close_providers(built)

    assert result["failure"]["kind"] == "connection"
    assert str(port) in result["failure"]["message"] or "refused" in result["failure"]["message"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_unusable_request_payload_is_a_bad_request_failure(
    provider: str, fake: FakeProvider, providers: dict[str, ModelProvider]
) -> None:
    result = await providers[provider].complete({"request_id": "r-1", "model": "m"})

    assert result["failure"]["kind"] == "bad_request"
    assert "messages" in result["failure"]["message"]
    assert fake.requests == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3000),
        ({"retry-after": "0.5"}, 500),
        ({"retry-after-ms": "120", "retry-after": "3"}, 120),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3000),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0),
        ({"retry-after": "whenever"}, None),
    ],
)
def test_retry_after_header_forms(headers: dict[str, str], expected: int | None) -> None:
    assert retry_after_ms(headers) == expected


def test_an_http_date_in_the_future_counts_down_from_now() -> None:
    import email.utils
    import time

    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    waited = retry_after_ms({"retry-after": later})

    assert waited is not None
    assert 110_000 <= waited <= 120_000


def test_every_status_maps_to_a_contract_kind() -> None:
    kinds = {kind_for_status(status) for status in range(400, 600)}

    assert kinds <= set(FAILURE_KINDS)
    assert kind_for_status(408) == "timeout"
    assert kind_for_status(200, "overloaded_error") == "overloaded"
    assert kind_for_status(200, "invalid_request_error", "prompt is too long") == "context_length"
    assert kind_for_status(400, None, "the request exceeds the available context size") == (
        "context_length"
    )
    # Too many bytes is not too many tokens.
    assert kind_for_status(413, "request_too_large", "Request exceeds the maximum size") == (
        "bad_request"
    )
