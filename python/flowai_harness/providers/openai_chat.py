"""The OpenAI provider: one ModelRequest as one streamed Chat Completions call.

Owns :class:`OpenAIProvider` and :func:`chat_params`, the mapping from the contract's request
(docs/wire.md "Model calls") to ``AsyncOpenAI.chat.completions.create(stream=True,
stream_options={"include_usage": True})``:

- the system prompt is the first ``system`` message; an assistant turn becomes one message
  with its text and ``tool_calls`` (arguments as JSON text); each ``tool_result`` becomes its
  own ``role: tool`` message (content: a string as it is, other JSON as its text);
  ``reasoning`` blocks are dropped (Chat Completions takes none back).
- ``max_tokens`` is sent as ``max_completion_tokens``; ``thinking`` and ``cache`` have no
  Chat Completions parameter (OpenAI caches long prompts by itself) and are not sent.

Why Chat Completions and not the Responses API: every OpenAI-compatible server (vLLM, Ollama,
LM Studio, llama.cpp, most gateways) speaks Chat Completions, and ``baseUrl`` is how users
reach them with the same adapter; the engine keeps the whole history itself, so the Responses
API's server-side conversation state buys nothing. What Chat Completions gives up is handing
an OpenAI reasoning model its own (encrypted) reasoning back between tool calls; that would
be a Responses adapter beside this one, not a replacement.

The SDK sends the request (``chat.completions.with_streaming_response.create``: its auth,
headers, timeouts, connection pool and typed HTTP errors) and the adapter reads the SSE body
itself (see :mod:`.sse` for why). The parameters other than ``model`` travel in
``extra_body``: they are already the API's JSON, and the SDK's type-driven transform of
``messages`` and ``tools`` would only copy them, at a cost larger than the rest of the call.
:class:`ChatStreamFold` folds the chunks into the response: text deltas (and the
``reasoning_content`` / ``reasoning`` deltas that OpenAI-compatible reasoning servers send)
are reported through ``on_delta``; tool-call arguments are assembled across chunks by their
index (parallel calls); usage comes from the final usage chunk, ``prompt_tokens`` net of
``prompt_tokens_details.cached_tokens``; an ``error`` chunk is a failure of its type. SDK
retries are off (the engine decides retries). Must not import the runtime, the native engine
or any service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Final

import openai
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

__all__ = ["ChatStreamFold", "OpenAIProvider", "chat_params"]

# The API's finish reasons in the seed's finish-reason words.
STOP_REASONS: Final = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}
_STREAM_OPTIONS: Final = {"include_usage": True}
# Where OpenAI-compatible servers put reasoning text in a delta (not in the SDK's types).
_REASONING_FIELDS: Final = ("reasoning_content", "reasoning")
_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")


def _user_content(blocks: list[Mapping[str, Any]]) -> str | list[dict[str, str]] | None:
    texts = [block["text"] for block in blocks if block["type"] == "text" and block["text"]]
    if not texts:
        return None
    if len(texts) == 1:
        return str(texts[0])
    return [{"type": "text", "text": text} for text in texts]


def chat_params(request: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for a ModelRequest payload."""
    messages: list[dict[str, Any]] = []
    system = request.get("system")
    if system:
        messages.append({"role": "system", "content": system})
    for message in request["messages"]:
        role = message["role"]
        blocks = message["content"]
        for block in blocks:
            if block["type"] not in ("text", "reasoning", "tool_call", "tool_result"):
                raise ValueError(f"unknown content block type {block['type']!r}")
        if role == "user":
            content = _user_content(blocks)
            if content is not None:
                messages.append({"role": "user", "content": content})
        elif role == "assistant":
            text = "\n\n".join(b["text"] for b in blocks if b["type"] == "text" and b["text"])
            calls = [
                {
                    "id": b["id"],
                    "type": "function",
                    "function": {"name": b["name"], "arguments": orjson.dumps(b["args"]).decode()},
                }
                for b in blocks
                if b["type"] == "tool_call"
            ]
            if text or calls:
                turn: dict[str, Any] = {"role": "assistant", "content": text or None}
                if calls:
                    turn["tool_calls"] = calls
                messages.append(turn)
        elif role == "tool":
            messages.extend(
                {
                    "role": "tool",
                    "tool_call_id": b["tool_call_id"],
                    "content": tool_result_text(b["content"]),
                }
                for b in blocks
                if b["type"] == "tool_result"
            )
        else:
            raise ValueError(f"unknown message role {role!r}")

    params: dict[str, Any] = {
        "model": request["model"],
        "messages": messages,
        "max_completion_tokens": int(request["max_tokens"]),
        "stream": True,
        "stream_options": _STREAM_OPTIONS,
    }
    tools = []
    for tool in request.get("tools") or ():
        function = {"name": tool["name"], "parameters": tool["input_schema"]}
        if tool.get("description"):
            function["description"] = tool["description"]
        tools.append({"type": "function", "function": function})
    if tools:
        params["tools"] = tools
    if request.get("temperature") is not None:
        params["temperature"] = request["temperature"]
    return params


class OpenAIProvider(StreamingProvider):
    """OpenAI Chat Completions over the official async SDK; see the module docstring.

    ``client`` replaces the SDK client built from the settings (its retries should be off).
    """

    name: ClassVar[str] = "openai"

    def __init__(
        self, settings: ProviderSettings, *, client: openai.AsyncOpenAI | None = None
    ) -> None:
        super().__init__(settings)
        if client is None:
            client = openai.AsyncOpenAI(
                api_key=settings.api_key,
                base_url=settings.base_url if settings.base_url is not None else openai.NOT_GIVEN,
                timeout=(
                    settings.timeout_secs if settings.timeout_secs is not None else openai.NOT_GIVEN
                ),
                max_retries=0,
                default_headers=dict(settings.default_headers) or None,
            )
        self.client = client

    async def aclose(self) -> None:
        await self.client.close()

    def _params(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return chat_params(request)

    def _fold(self, answer: Answer, request: Mapping[str, Any]) -> ChatStreamFold:
        return ChatStreamFold(answer, str(request.get("request_id")))

    def _open(self, params: dict[str, Any]) -> AbstractAsyncContextManager[StreamBody]:
        body = {key: value for key, value in params.items() if key != "model"}
        return self.client.chat.completions.with_streaming_response.create(
            model=params["model"], messages=[], stream=True, extra_body=body
        )

    def _failure(self, exc: Exception) -> ProviderFailure:
        if isinstance(exc, openai.APITimeoutError):
            return ProviderFailure(
                "timeout", transport_message(exc.message, exc, exc.request.url.netloc)
            )
        if isinstance(exc, openai.APIConnectionError):
            return ProviderFailure(
                "connection", transport_message(exc.message, exc, exc.request.url.netloc)
            )
        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, Mapping) else {}
            message = str(body.get("message") or exc.message)
            return status_failure(
                exc.status_code, exc.type, message, exc.code, exc.response.headers
            )
        return unexpected(self.name, exc)


class ChatStreamFold:
    """Folds the streamed chunks of one answer into the response payload (``event`` per SSE
    event, then ``result``; choice 0, as ``n`` is never asked for); public so the benchmark
    can time it without I/O."""

    __slots__ = (
        "answer",
        "calls",
        "done",
        "finish",
        "model_seen",
        "reasoning_at",
        "request_id",
        "text_at",
    )

    def __init__(self, answer: Answer, request_id: str) -> None:
        self.answer = answer
        self.request_id = request_id
        self.text_at: int | None = None
        self.reasoning_at: int | None = None
        # the API's tool-call index -> (index in answer.content, argument parts)
        self.calls: dict[int, tuple[int, list[str]]] = {}
        self.finish: str | None = None
        self.model_seen = False
        self.done = False

    def event(self, name: str | None, data: bytes) -> None:
        if self.done or data.startswith(b"[DONE]"):
            self.done = True
            return
        chunk = orjson.loads(data)
        error = chunk.get("error")
        if error:
            self.error(error)
        answer = self.answer
        if not self.model_seen and chunk.get("model"):
            answer.model = chunk["model"]
            self.model_seen = True
        usage = chunk.get("usage")
        if usage:
            details = usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens") or 0
            answer.prompt_tokens = (usage.get("prompt_tokens") or 0) - cached
            answer.cache_read_input_tokens = cached
            answer.completion_tokens = usage.get("completion_tokens") or 0
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for field in _REASONING_FIELDS:
                text = delta.get(field)
                if text and isinstance(text, str):
                    if self.reasoning_at is None:
                        self.reasoning_at = answer.open({"type": "reasoning", "text": ""})
                    answer.stream(self.reasoning_at, text, "reasoning-delta")
                    break
            text = delta.get("content")
            if text:
                if self.text_at is None:
                    self.text_at = answer.open({"type": "text", "text": ""})
                answer.stream(self.text_at, text, "text-delta")
            for part in delta.get("tool_calls") or ():
                self.tool_call(part)
            if choice.get("finish_reason") is not None:
                self.finish = choice["finish_reason"]

    def tool_call(self, part: Mapping[str, Any]) -> None:
        function = part.get("function") or {}
        name = function.get("name")
        slot = self.calls.get(part["index"])
        call: dict[str, Any]
        if slot is None:
            self.answer.first_content()
            call = {"type": "tool_call", "id": part.get("id") or "", "name": name or "", "args": {}}
            slot = self.calls[part["index"]] = (self.answer.open(call), [])
        elif part.get("id") or name:
            call = self.answer.content[slot[0]]
            call["id"] = call["id"] or part.get("id") or ""
            call["name"] = call["name"] or name or ""
        arguments = function.get("arguments")
        if arguments:
            slot[1].append(arguments)

    def error(self, error: Any) -> None:
        details = error if isinstance(error, Mapping) else {"message": str(error)}
        error_type = details.get("type") or details.get("code")
        message = str(details.get("message") or "")
        raise ProviderFailure(
            kind_for_status(200, error_type, message, details.get("code")),
            f"error in the stream ({error_type}): {message}",
        )

    def result(self, provider: str) -> dict[str, Any]:
        if self.finish is None:
            raise ProviderFailure("bad_response", "the stream ended without a finish_reason")
        answer = self.answer
        for position, (index, parts) in self.calls.items():
            call = answer.content[index]
            if not call["id"]:
                # Some OpenAI-compatible servers send no id; the engine needs one per call.
                call["id"] = _ID_UNSAFE.sub("_", f"call_{self.request_id}_{position}")
            args, error = parse_tool_args("".join(parts))
            call["args"] = args
            if error is not None:
                call["args_error"] = error
        answer.raw_stop_reason = self.finish
        stop = STOP_REASONS.get(self.finish, "stop")
        if self.calls and stop == "stop":
            # Several OpenAI-compatible servers finish a tool-calling turn with "stop".
            stop = "tool-calls"
        return answer.result(provider, stop)
