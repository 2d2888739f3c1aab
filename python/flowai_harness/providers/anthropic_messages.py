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

The stream's raw events are folded into the response: text and thinking deltas are reported
through ``on_delta`` with the index of their block in the response, tool input JSON is
assembled across ``input_json_delta`` s, usage comes from ``message_start`` and the cumulative
``message_delta``. SDK retries are off (the engine decides retries). Must not import the
runtime, the native engine or any service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import anthropic
from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    RedactedThinkingBlock,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)

from .base import (
    Answer,
    DeltaCallback,
    ProviderFailure,
    StreamingProvider,
    kind_for_status,
    parse_tool_args,
    request_error,
    retry_after_ms,
    tool_result_text,
    transport_message,
    unexpected,
)
from .settings import ProviderSettings

__all__ = ["AnthropicProvider", "messages_params"]

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

    async def _call(
        self, request: Mapping[str, Any], on_delta: DeltaCallback | None, started: float
    ) -> dict[str, Any]:
        try:
            params = messages_params(request)
        except (KeyError, TypeError, ValueError) as exc:
            raise request_error(exc) from exc
        fold = _MessageFold(Answer(started, params["model"], on_delta))
        stream = await self.client.messages.create(**params, stream=True)
        async with stream:
            async for event in stream:
                fold.event(event)
        return fold.result(self.name)

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
            message = exc.api_message or exc.message
            error_type = exc.type
            status = exc.status_code
            return ProviderFailure(
                kind_for_status(status, error_type, message, exc.error_code),
                f"{status} {error_type}: {message}"
                if status >= 400
                else f"error event in the stream ({error_type}): {message}",
                status=status if status >= 400 else None,
                retry_after_ms=retry_after_ms(exc.response.headers) if status >= 400 else None,
            )
        if isinstance(exc, (anthropic.APIResponseValidationError, ValueError)):
            # json.JSONDecodeError is a ValueError: an event whose data is not JSON.
            return ProviderFailure("bad_response", f"malformed answer: {exc}")
        return unexpected(self.name, exc)


class _MessageFold:
    """Folds the raw stream events into one response."""

    __slots__ = ("answer", "blocks", "finished")

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        # the API's block index -> (index in answer.content, tool input parts or None)
        self.blocks: dict[int, tuple[int, list[str] | None]] = {}
        self.finished = False

    def event(self, event: RawMessageStreamEvent) -> None:
        # Ordered by how often each event comes.
        if isinstance(event, RawContentBlockDeltaEvent):
            self.delta(event)
        elif isinstance(event, RawContentBlockStartEvent):
            self.start(event)
        elif isinstance(event, RawContentBlockStopEvent):
            slot = self.blocks.get(event.index)
            if slot is not None and slot[1] is not None:
                _finish_tool_call(self.answer.content[slot[0]], slot[1])
        elif isinstance(event, RawMessageDeltaEvent):
            answer = self.answer
            if event.delta.stop_reason is not None:
                answer.raw_stop_reason = event.delta.stop_reason
            usage = event.usage
            answer.completion_tokens = usage.output_tokens
            if usage.input_tokens is not None:
                answer.prompt_tokens = usage.input_tokens
            if usage.cache_read_input_tokens is not None:
                answer.cache_read_input_tokens = usage.cache_read_input_tokens
            if usage.cache_creation_input_tokens is not None:
                answer.cache_creation_input_tokens = usage.cache_creation_input_tokens
        elif isinstance(event, RawMessageStartEvent):
            message = event.message
            answer = self.answer
            answer.model = message.model or answer.model
            answer.prompt_tokens = message.usage.input_tokens
            answer.completion_tokens = message.usage.output_tokens
            answer.cache_read_input_tokens = message.usage.cache_read_input_tokens or 0
            answer.cache_creation_input_tokens = message.usage.cache_creation_input_tokens or 0
        elif isinstance(event, RawMessageStopEvent):
            self.finished = True

    def delta(self, event: RawContentBlockDeltaEvent) -> None:
        slot = self.blocks.get(event.index)
        if slot is None:
            return  # a block kind the contract has no place for
        delta = event.delta
        if isinstance(delta, TextDelta):
            self.answer.stream(slot[0], delta.text, "text-delta")
        elif isinstance(delta, InputJSONDelta):
            if slot[1] is not None:
                slot[1].append(delta.partial_json)
        elif isinstance(delta, ThinkingDelta):
            self.answer.stream(slot[0], delta.thinking, "reasoning-delta")
        elif isinstance(delta, SignatureDelta):
            self.answer.content[slot[0]]["signature"] = delta.signature

    def start(self, event: RawContentBlockStartEvent) -> None:
        block = event.content_block
        opened: dict[str, Any]
        parts: list[str] | None = None
        if isinstance(block, TextBlock):
            opened = {"type": "text", "text": block.text}
        elif isinstance(block, ToolUseBlock):
            self.answer.first_content()
            opened = {
                "type": "tool_call",
                "id": block.id,
                "name": block.name,
                "args": dict(block.input),
            }
            parts = []
        elif isinstance(block, ThinkingBlock):
            opened = {"type": "reasoning", "text": block.thinking}
            if block.signature:
                opened["signature"] = block.signature
        elif isinstance(block, RedactedThinkingBlock):
            opened = {"type": "reasoning", "text": "", "redacted": block.data}
        else:
            return  # server tool blocks: never asked for
        self.blocks[event.index] = (self.answer.open(opened), parts)

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
