"""The providers' HTTP wire formats, as the fake provider server writes them.

Owns how a :class:`~flowai_harness.testing.fake_script.Turn` or
:class:`~flowai_harness.testing.fake_script.Fault` becomes bytes on the wire:

- Anthropic Messages (``POST /v1/messages``): the SSE events ``message_start``, ``ping``,
  ``content_block_start`` / ``content_block_delta`` (``thinking_delta``, ``signature_delta``,
  ``text_delta``, ``input_json_delta``) / ``content_block_stop``, ``message_delta`` (stop
  reason and usage), ``message_stop``, the in-stream ``error`` event, the non-streamed
  ``message`` object and the error bodies (``{"type": "error", "error": {...}}``).
- OpenAI Chat Completions (``POST /v1/chat/completions``): ``chat.completion.chunk`` objects
  (role, content, ``reasoning_content`` as OpenAI-compatible servers send it, tool-call deltas
  by index, ``finish_reason``), the usage chunk when ``stream_options.include_usage`` asks for
  it, ``data: [DONE]``, the non-streamed ``chat.completion`` and ``{"error": {...}}`` bodies.

A stream is a list of :class:`Frame` s; ``content`` frames are the ones that carry model output,
so the server places delays, stalls and mid-stream faults between them. Ids are made from the
request's sequence number, so a scripted run produces the same ids every time. Must not import
aiohttp, the providers, the runtime or the native engine.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .fake_script import ApiName, Fault, Turn

__all__ = [
    "Frame",
    "anthropic_message",
    "anthropic_stream",
    "error_event_frame",
    "error_response",
    "malformed_frame",
    "openai_completion",
    "openai_stream",
]

# Tool arguments arrive in pieces this long, so clients must assemble them across deltas.
ARGS_PIECE: Final = 16
_ANTHROPIC_STOP: Final = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}
_OPENAI_STOP: Final = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
}
_ANTHROPIC_ERROR_TYPE: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass(frozen=True, slots=True)
class Frame:
    data: bytes
    content: bool = False


@dataclass(frozen=True, slots=True)
class _Tokens:
    input: int
    output: int
    cache_read: int
    cache_creation: int


def _tokens(turn: Turn, prompt_bytes: int, chunks: int) -> _Tokens:
    usage = turn.usage
    return _Tokens(
        input=usage.input_tokens if usage.input_tokens is not None else max(1, prompt_bytes // 4),
        output=usage.output_tokens if usage.output_tokens is not None else max(1, chunks),
        cache_read=usage.cache_read_input_tokens,
        cache_creation=usage.cache_creation_input_tokens,
    )


def _stop_word(turn: Turn, table: Mapping[str, str]) -> str:
    neutral = turn.stop_reason or ("tool_calls" if turn.tool_calls else "stop")
    return table.get(neutral, neutral)


def _pieces(text: str) -> list[str]:
    return [text[i : i + ARGS_PIECE] for i in range(0, len(text), ARGS_PIECE)] or [""]


def _model(turn: Turn, body: Mapping[str, Any]) -> str:
    return turn.model or str(body.get("model") or "fake-model")


# --- Anthropic ------------------------------------------------------------------------------


def _event(name: str, data: Mapping[str, Any], *, content: bool = False) -> Frame:
    return Frame(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n", content)


def _anthropic_usage(tokens: _Tokens, output: int) -> dict[str, int]:
    return {
        "input_tokens": tokens.input,
        "cache_creation_input_tokens": tokens.cache_creation,
        "cache_read_input_tokens": tokens.cache_read,
        "output_tokens": output,
    }


def _tool_id(api: ApiName, seq: int, position: int, given: str | None) -> str:
    if given:
        return given
    return f"toolu_fake_{seq}_{position}" if api == "anthropic" else f"call_fake_{seq}_{position}"


def anthropic_stream(
    turn: Turn, body: Mapping[str, Any], seq: int, prompt_bytes: int
) -> list[Frame]:
    """Every SSE event of one streamed Messages answer, in the order the API sends them."""
    frames: list[Frame] = []
    index = 0

    def block(start: Mapping[str, Any], deltas: list[Mapping[str, Any]]) -> None:
        nonlocal index
        frames.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for delta in deltas:
            frames.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    content=delta["type"] != "signature_delta",
                )
            )
        frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if turn.reasoning is not None:
        deltas: list[Mapping[str, Any]] = [
            {"type": "thinking_delta", "thinking": piece} for piece in turn.reasoning_chunks()
        ]
        deltas.append({"type": "signature_delta", "signature": turn.signature})
        block({"type": "thinking", "thinking": "", "signature": ""}, deltas)
    if turn.redacted_reasoning is not None:
        block({"type": "redacted_thinking", "data": turn.redacted_reasoning}, [])
    text = turn.text_chunks()
    if text:
        block({"type": "text", "text": ""}, [{"type": "text_delta", "text": t} for t in text])
    for position, call in enumerate(turn.tool_calls):
        block(
            {
                "type": "tool_use",
                "id": _tool_id("anthropic", seq, position, call.id),
                "name": call.name,
                "input": {},
            },
            [{"type": "input_json_delta", "partial_json": p} for p in _pieces(call.args_text())],
        )

    tokens = _tokens(turn, prompt_bytes, sum(frame.content for frame in frames))
    start = {
        "type": "message_start",
        "message": {
            "id": f"msg_fake_{seq:06d}",
            "type": "message",
            "role": "assistant",
            "model": _model(turn, body),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(tokens, 1),
        },
    }
    head = [_event("message_start", start), _event("ping", {"type": "ping"})]
    tail = [
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_word(turn, _ANTHROPIC_STOP), "stop_sequence": None},
                "usage": _anthropic_usage(tokens, tokens.output),
            },
        ),
        _event("message_stop", {"type": "message_stop"}),
    ]
    return head + frames + tail


def _whole_input(text: str) -> Any:
    """A tool call's input in a non-streamed message, which can only carry a JSON object:
    arguments scripted as invalid JSON come as an empty object there."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def anthropic_message(
    turn: Turn, body: Mapping[str, Any], seq: int, prompt_bytes: int
) -> dict[str, Any]:
    """The non-streamed Messages answer."""
    content: list[dict[str, Any]] = []
    if turn.reasoning is not None:
        content.append(
            {
                "type": "thinking",
                "thinking": "".join(turn.reasoning_chunks()),
                "signature": turn.signature,
            }
        )
    if turn.redacted_reasoning is not None:
        content.append({"type": "redacted_thinking", "data": turn.redacted_reasoning})
    text = turn.text_chunks()
    if text:
        content.append({"type": "text", "text": "".join(text)})
    for position, call in enumerate(turn.tool_calls):
        content.append(
            {
                "type": "tool_use",
                "id": _tool_id("anthropic", seq, position, call.id),
                "name": call.name,
                "input": _whole_input(call.args_text()),
            }
        )
    tokens = _tokens(turn, prompt_bytes, len(text) + len(turn.reasoning_chunks()))
    return {
        "id": f"msg_fake_{seq:06d}",
        "type": "message",
        "role": "assistant",
        "model": _model(turn, body),
        "content": content,
        "stop_reason": _stop_word(turn, _ANTHROPIC_STOP),
        "stop_sequence": None,
        "usage": _anthropic_usage(tokens, tokens.output),
    }


# --- OpenAI ---------------------------------------------------------------------------------


def _data(payload: Mapping[str, Any], *, content: bool = False) -> Frame:
    return Frame(b"data: " + orjson.dumps(payload) + b"\n\n", content)


def _openai_usage(tokens: _Tokens) -> dict[str, Any]:
    prompt = tokens.input + tokens.cache_read
    return {
        "prompt_tokens": prompt,
        "completion_tokens": tokens.output,
        "total_tokens": prompt + tokens.output,
        "prompt_tokens_details": {"cached_tokens": tokens.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def openai_stream(turn: Turn, body: Mapping[str, Any], seq: int, prompt_bytes: int) -> list[Frame]:
    """Every ``data:`` line of one streamed Chat Completions answer, ``[DONE]`` included."""
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base: dict[str, Any] = {
        "id": f"chatcmpl-fake-{seq:06d}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": _model(turn, body),
        "system_fingerprint": "fp_fake",
    }
    if include_usage:
        base["usage"] = None

    def chunk(
        delta: Mapping[str, Any], finish: str | None = None, *, content: bool = True
    ) -> Frame:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _data({**base, "choices": [choice]}, content=content)

    frames = [chunk({"role": "assistant", "content": "", "refusal": None}, content=False)]
    frames += [chunk({"reasoning_content": piece}) for piece in turn.reasoning_chunks()]
    frames += [chunk({"content": piece}) for piece in turn.text_chunks()]
    for position, call in enumerate(turn.tool_calls):
        head = {
            "index": position,
            "id": _tool_id("openai", seq, position, call.id),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        frames.append(chunk({"tool_calls": [head]}))
        frames += [
            chunk({"tool_calls": [{"index": position, "function": {"arguments": piece}}]})
            for piece in _pieces(call.args_text())
            if piece
        ]
    tokens = _tokens(turn, prompt_bytes, sum(frame.content for frame in frames))
    frames.append(chunk({}, _stop_word(turn, _OPENAI_STOP), content=False))
    if include_usage:
        frames.append(_data({**base, "choices": [], "usage": _openai_usage(tokens)}))
    frames.append(Frame(b"data: [DONE]\n\n"))
    return frames


def openai_completion(
    turn: Turn, body: Mapping[str, Any], seq: int, prompt_bytes: int
) -> dict[str, Any]:
    """The non-streamed Chat Completions answer."""
    text = "".join(turn.text_chunks())
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": _tool_id("openai", seq, position, call.id),
                "type": "function",
                "function": {"name": call.name, "arguments": call.args_text()},
            }
            for position, call in enumerate(turn.tool_calls)
        ]
    tokens = _tokens(turn, prompt_bytes, len(turn.text_chunks()))
    return {
        "id": f"chatcmpl-fake-{seq:06d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _model(turn, body),
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _stop_word(turn, _OPENAI_STOP),
            }
        ],
        "usage": _openai_usage(tokens),
    }


# --- failures -------------------------------------------------------------------------------


def error_response(api: ApiName, fault: Fault, seq: int) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of an HTTP error answer, as the API writes them."""
    headers = {"content-type": "application/json"}
    if fault.retry_after_s is not None:
        headers["retry-after"] = f"{fault.retry_after_s:g}"
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    if api == "anthropic":
        request_id = f"req_fake_{seq:06d}"
        headers["request-id"] = request_id
        error_type = fault.error_type or _ANTHROPIC_ERROR_TYPE.get(
            fault.status, "api_error" if fault.status >= 500 else "invalid_request_error"
        )
        body: dict[str, Any] = {
            "type": "error",
            "error": {"type": error_type, "message": fault.message},
            "request_id": request_id,
        }
    else:
        headers["x-request-id"] = f"req_fake_{seq:06d}"
        error_type = fault.error_type or (
            "server_error" if fault.status >= 500 else "invalid_request_error"
        )
        body = {
            "error": {
                "message": fault.message,
                "type": error_type,
                "param": None,
                "code": fault.code,
            }
        }
    return fault.status, headers, orjson.dumps(body)


def error_event_frame(api: ApiName, fault: Fault) -> bytes:
    """The in-stream error the API sends when it fails after the stream began."""
    error = {"type": fault.error_type or "api_error", "message": fault.message}
    if api == "anthropic":
        return _event("error", {"type": "error", "error": error}).data
    return _data({"error": {**error, "param": None, "code": fault.code}}).data


def malformed_frame(api: ApiName) -> bytes:
    """An event whose data is cut off mid-object."""
    if api == "anthropic":
        return b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, \n\n'
    return b'data: {"id": "chatcmpl-broken", "choices": [{"index": 0, \n\n'
