"""The Anthropic provider: one ModelRequest as one streamed Messages API call.

Owns :class:`AnthropicProvider` and :func:`messages_params`, the mapping from the contract's
request (docs/wire.md "Model calls") to ``AsyncAnthropic.messages.create(stream=True)``:

- roles: ``tool`` becomes a ``user`` message of ``tool_result`` blocks (content: a string as it
  is, other JSON as its text); ``reasoning`` goes back as ``thinking`` (with its signature) or
  ``redacted_thinking``; reasoning without a signature (another provider's, after a fallback)
  is dropped, since the API refuses unsigned thinking; empty text blocks are dropped too.
- ``cache``: ``cache_control: {"type": "ephemeral"}`` on the system prompt, the last tool and
  the last cacheable block of the last message (three of the API's four breakpoints).
- ``thinking: {"budget_tokens": n}`` -> ``{"type": "enabled", "budget_tokens": n}``;
  ``temperature`` (no longer a named SDK parameter) goes in the body when given.

The SDK sends the request (``messages.with_streaming_response.create``: its auth, headers,
timeouts, connection pool and typed HTTP errors) and the adapter reads the SSE body itself
(see :mod:`.sse` for why). :class:`MessageStreamFold` folds the events into the response:
text and thinking deltas are reported through ``on_delta`` with the index of their block in
the response, tool input JSON is assembled across ``input_json_delta`` s, usage comes from
``message_start`` and the cumulative ``message_delta``, an ``error`` event is a failure of its
error type. SDK retries are off (the engine decides retries). Must not import the runtime,
the native engine or any service.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Final

import anthropic
import orjson

from .base import (
    Answer,
    ProviderFailure,
    StreamBody,
    StreamingProvider,
    kind_for_status,
    parse_tool_args,
    status_failure,
    tool_result_text,
    transport_message,
    unexpected,
)
from .settings import ProviderSettings

__all__ = ["AnthropicProvider", "MessageStreamFold", "messages_params"]

_EPHEMERAL: Final = {"type": "ephemeral"}
# The API's stop reasons in the seed's finish-reason words.
STOP_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool-calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content-filter",
}
_CACHEABLE: Final = ("text", "tool_use", "tool_result")
# The API's usage fields -> the Answer's (the contract's) names.
_USAGE_FIELDS: Final = (
    ("input_tokens", "prompt_tokens"),
    ("output_tokens", "completion_tokens"),
    ("cache_read_input_tokens", "cache_read_input_tokens"),
    ("cache_creation_input_tokens", "cache_creation_input_tokens"),
)


def _block(block: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": block["text"]} if block["text"] else None
    if kind == "tool_call":
        return {
            "type": "tool_use",
            "id": block["id"],
            "name": block["name"],
            "input": block["args"],
        }
    if kind == "tool_result":
        return {
            "type": "tool_result",
            "tool_use_id": block["tool_call_id"],
            "content": tool_result_text(block["content"]),
            "is_error": bool(block.get("is_error")),
        }
    if kind == "reasoning":
        if block.get("redacted"):
            return {"type": "redacted_thinking", "data": block["redacted"]}
        if block.get("signature"):
            return {"type": "thinking", "thinking": block["text"], "signature": block["signature"]}
        return None
    raise ValueError(f"unknown content block type {kind!r}")


def messages_params(request: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``messages.create`` for a ModelRequest payload."""
    cache = bool(request.get("cache"))
    messages: list[dict[str, Any]] = []
    for message in request["messages"]:
        role = message["role"]
        if role not in ("user", "assistant", "tool"):
            raise ValueError(f"unknown message role {role!r}")
        blocks = [converted for b in message["content"] if (converted := _block(b)) is not None]
        if blocks:
            messages.append({"role": "user" if role == "tool" else role, "content": blocks})
    if cache and messages:
        for block in reversed(messages[-1]["content"]):
            if block["type"] in _CACHEABLE:
                block["cache_control"] = _EPHEMERAL
                break

    params: dict[str, Any] = {
        "model": request["model"],
        "max_tokens": int(request["max_tokens"]),
        "messages": messages,
    }
    system = request.get("system")
    if system:
        params["system"] = (
            [{"type": "text", "text": system, "cache_control": _EPHEMERAL}] if cache else system
        )
    tools = [
        {
            "name": tool["name"],
            "description": tool.get("description") or "",
            "input_schema": tool["input_schema"],
        }
        for tool in request.get("tools") or ()
    ]
    if tools:
        if cache:
            tools[-1]["cache_control"] = _EPHEMERAL
        params["tools"] = tools
    thinking = request.get("thinking")
    if thinking:
        params["thinking"] = {"type": "enabled", "budget_tokens": int(thinking["budget_tokens"])}
    if request.get("temperature") is not None:
        params["extra_body"] = {"temperature": request["temperature"]}
    return params


class AnthropicProvider(StreamingProvider):
    """Anthropic Messages over the official async SDK; see the module docstring.

    ``client`` replaces the SDK client built from the settings (its retries should be off).
    """

    name: ClassVar[str] = "anthropic"

    def __init__(
        self, settings: ProviderSettings, *, client: anthropic.AsyncAnthropic | None = None
    ) -> None:
        super().__init__(settings)
        if client is None:
            client = anthropic.AsyncAnthropic(
                api_key=settings.api_key,
                base_url=settings.base_url,
                timeout=(
                    settings.timeout_secs
                    if settings.timeout_secs is not None
                    else anthropic.NOT_GIVEN
                ),
                max_retries=0,
                default_headers=dict(settings.default_headers) or None,
            )
        self.client = client

    async def aclose(self) -> None:
        await self.client.close()

    def _params(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return messages_params(request)

    def _fold(self, answer: Answer, request: Mapping[str, Any]) -> MessageStreamFold:
        return MessageStreamFold(answer)

    def _open(self, params: dict[str, Any]) -> AbstractAsyncContextManager[StreamBody]:
        return self.client.messages.with_streaming_response.create(**params, stream=True)

    def _failure(self, exc: Exception) -> ProviderFailure:
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderFailure(
                "timeout", transport_message(exc.message, exc, exc.request.url.netloc)
            )
        if isinstance(exc, anthropic.APIConnectionError):
            return ProviderFailure(
                "connection", transport_message(exc.message, exc, exc.request.url.netloc)
            )
        if isinstance(exc, anthropic.APIStatusError):
            return status_failure(
                exc.status_code,
                exc.type,
                exc.api_message or exc.message,
                exc.error_code,
                exc.response.headers,
            )
        return unexpected(self.name, exc)


class MessageStreamFold:
    """Folds the SSE events of one streamed answer into the response payload (``event`` per
    event, then ``result``); public so the benchmark can time it without I/O."""

    __slots__ = ("answer", "blocks", "finished")

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        # the API's block index -> (index in answer.content, tool input parts or None)
        self.blocks: dict[int, tuple[int, list[str] | None]] = {}
        self.finished = False

    def event(self, name: str | None, data: bytes) -> None:
        if name == "ping":
            return
        event = orjson.loads(data)
        kind = event["type"]
        # Ordered by how often each event comes.
        if kind == "content_block_delta":
            self.delta(event["index"], event["delta"])
        elif kind == "content_block_start":
            self.start(event["index"], event["content_block"])
        elif kind == "content_block_stop":
            slot = self.blocks.get(event["index"])
            if slot is not None and slot[1] is not None:
                _finish_tool_call(self.answer.content[slot[0]], slot[1])
        elif kind == "message_delta":
            self.message_delta(event)
        elif kind == "message_start":
            message = event["message"]
            answer = self.answer
            answer.model = message.get("model") or answer.model
            self.usage(message.get("usage") or {})
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            error = event.get("error") or {}
            error_type = error.get("type")
            message = str(error.get("message") or "")
            raise ProviderFailure(
                kind_for_status(200, error_type, message),
                f"error event in the stream ({error_type}): {message}",
            )

    def delta(self, index: int, delta: Mapping[str, Any]) -> None:
        slot = self.blocks.get(index)
        if slot is None:
            return  # a block kind the contract has no place for
        kind = delta["type"]
        if kind == "text_delta":
            self.answer.stream(slot[0], delta["text"], "text-delta")
        elif kind == "input_json_delta":
            if slot[1] is not None:
                slot[1].append(delta["partial_json"])
        elif kind == "thinking_delta":
            self.answer.stream(slot[0], delta["thinking"], "reasoning-delta")
        elif kind == "signature_delta":
            self.answer.content[slot[0]]["signature"] = delta["signature"]

    def start(self, index: int, block: Mapping[str, Any]) -> None:
        kind = block["type"]
        opened: dict[str, Any]
        parts: list[str] | None = None
        if kind == "text":
            opened = {"type": "text", "text": block.get("text") or ""}
        elif kind == "tool_use":
            self.answer.first_content()
            opened = {
                "type": "tool_call",
                "id": block["id"],
                "name": block["name"],
                "args": dict(block.get("input") or {}),
            }
            parts = []
        elif kind == "thinking":
            opened = {"type": "reasoning", "text": block.get("thinking") or ""}
            if block.get("signature"):
                opened["signature"] = block["signature"]
        elif kind == "redacted_thinking":
            opened = {"type": "reasoning", "text": "", "redacted": block["data"]}
        else:
            return  # server tool blocks: never asked for
        self.blocks[index] = (self.answer.open(opened), parts)

    def message_delta(self, event: Mapping[str, Any]) -> None:
        stop_reason = (event.get("delta") or {}).get("stop_reason")
        if stop_reason is not None:
            self.answer.raw_stop_reason = stop_reason
        self.usage(event.get("usage") or {})

    def usage(self, usage: Mapping[str, Any]) -> None:
        # message_delta counts are cumulative and may leave fields out: keep what is known.
        for field, attribute in _USAGE_FIELDS:
            value = usage.get(field)
            if value is not None:
                setattr(self.answer, attribute, value)

    def result(self, provider: str) -> dict[str, Any]:
        if not self.finished:
            raise ProviderFailure("bad_response", "the stream ended before message_stop")
        raw = self.answer.raw_stop_reason
        return self.answer.result(provider, STOP_REASONS.get(raw or "end_turn", "stop"))


def _finish_tool_call(call: dict[str, Any], parts: list[str]) -> None:
    text = "".join(parts)
    if not text:
        return  # the input came whole in content_block_start
    args, error = parse_tool_args(text)
    call["args"] = args
    if error is not None:
        call["args_error"] = error
