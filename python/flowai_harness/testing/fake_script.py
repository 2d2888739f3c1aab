"""What the fake provider server answers: scripted turns, their faults, and how they match.

Owns the script vocabulary of :mod:`flowai_harness.testing.fake_provider`:

- :class:`Turn`: one model answer (text, reasoning, tool calls, usage, stop reason), how fast
  it arrives (delay before the first byte, time to the first token, delay between chunks), an
  optional :class:`Fault` instead of or in the middle of it, and which requests it answers
  (API, model, a substring of the request body, a predicate) and how many times.
- :class:`Fault` and its builders (:func:`rate_limited`, :func:`overloaded`,
  :func:`server_error`, :func:`http_error`, :func:`context_length_exceeded`, :func:`dropped`,
  :func:`malformed_sse`, :func:`error_event`): the provider failures the server can inject.
- :func:`turn_from_dict` / :func:`turns_from_json`: the same script as JSON (a script file or
  the admin endpoint); every key is checked, so a typo fails loudly instead of being ignored.

Provider-neutral on purpose: ``stop_reason`` takes ``stop | tool_calls | length |
content_filter`` (any other word is sent verbatim) and each API's rendering lives in
:mod:`flowai_harness.testing.fake_wire`. Must not import aiohttp, the providers, the runtime or
the native engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal

import orjson

from ..errors import UsageError

__all__ = [
    "API_NAMES",
    "Fault",
    "FaultKind",
    "ToolCall",
    "Turn",
    "Usage",
    "context_length_exceeded",
    "dropped",
    "error_event",
    "http_error",
    "malformed_sse",
    "overloaded",
    "rate_limited",
    "server_error",
    "truncated",
    "turn_from_dict",
    "turns_from_json",
]

ApiName = Literal["anthropic", "openai"]
API_NAMES: Final[tuple[ApiName, ...]] = ("anthropic", "openai")
FaultKind = Literal["status", "drop", "truncate", "malformed", "error_event"]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = (
    "status",
    "drop",
    "truncate",
    "malformed",
    "error_event",
)
# Roughly one token per word with its trailing space, as the providers' deltas look.
_WORD: Final = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model makes. ``args`` as a string is sent verbatim (it may be invalid
    JSON on purpose); ``id`` defaults to a server-made id unique per request."""

    name: str
    args: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def args_text(self) -> str:
        if isinstance(self.args, str):
            return self.args
        return orjson.dumps(dict(self.args)).decode()


@dataclass(frozen=True)
class Usage:
    """Token counts to report. ``None`` input/output means: derive them from the request size
    and the number of chunks sent. OpenAI's ``prompt_tokens`` is ``input_tokens +
    cache_read_input_tokens`` (its cached tokens are part of the prompt)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class Fault:
    """A provider failure.

    - ``status``: answer with HTTP ``status`` and the API's error body (``message``,
      ``error_type``, OpenAI ``code``), with ``retry-after`` / ``retry-after-ms`` headers when
      given; nothing is streamed.
    - ``drop``: stream ``after_chunks`` content chunks, then cut the TCP connection.
    - ``truncate``: stream ``after_chunks`` content chunks, then end the response cleanly,
      without the API's closing events (a proxy that gave up).
    - ``malformed``: stream ``after_chunks`` content chunks, then an event whose data is not
      JSON, then end the stream.
    - ``error_event``: stream ``after_chunks`` content chunks, then the API's in-stream error
      event (Anthropic ``event: error``, OpenAI a ``data: {"error": ...}`` chunk).
    """

    kind: FaultKind
    status: int = 500
    message: str = ""
    error_type: str | None = None
    code: str | None = None
    retry_after_s: float | None = None
    retry_after_ms: int | None = None
    after_chunks: int = 0


def rate_limited(*, retry_after_s: float | None = None, retry_after_ms: int | None = None) -> Fault:
    """429 with the given ``retry-after`` (seconds) and/or ``retry-after-ms`` headers."""
    return Fault(
        "status",
        429,
        "Number of request tokens has exceeded your per-minute rate limit",
        error_type="rate_limit_error",
        code="rate_limit_exceeded",
        retry_after_s=retry_after_s,
        retry_after_ms=retry_after_ms,
    )


def overloaded() -> Fault:
    """Anthropic's 529 ``overloaded_error``."""
    return Fault("status", 529, "Overloaded", error_type="overloaded_error")


def server_error(status: int = 500) -> Fault:
    return Fault("status", status, "Internal server error", error_type="api_error")


def http_error(
    status: int, message: str = "", *, error_type: str | None = None, code: str | None = None
) -> Fault:
    """Any status (401, 403, 400, ...) with the API's error body."""
    return Fault("status", status, message or f"fake provider error {status}", error_type, code)


def context_length_exceeded() -> Fault:
    """400: the prompt is longer than the model's context window (both APIs' wording)."""
    return Fault(
        "status",
        400,
        "prompt is too long: 250000 tokens > 200000 maximum",
        error_type="invalid_request_error",
        code="context_length_exceeded",
    )


def dropped(after_chunks: int = 1) -> Fault:
    return Fault("drop", after_chunks=after_chunks)


def truncated(after_chunks: int = 1) -> Fault:
    return Fault("truncate", after_chunks=after_chunks)


def malformed_sse(after_chunks: int = 0) -> Fault:
    return Fault("malformed", after_chunks=after_chunks)


def error_event(
    error_type: str = "overloaded_error", message: str = "Overloaded", *, after_chunks: int = 0
) -> Fault:
    return Fault("error_event", 200, message, error_type=error_type, after_chunks=after_chunks)


@dataclass(frozen=True)
class Turn:
    """One scripted model answer and the requests it may answer.

    Content: ``text`` (a string is cut into word-sized chunks; a list is sent chunk by chunk),
    ``reasoning`` (thinking text, with ``signature``), ``redacted_reasoning`` (the opaque data
    of a redacted thinking block), ``tool_calls`` (several = parallel calls in one turn),
    ``usage``, ``stop_reason`` (neutral word, see the module docstring; default ``tool_calls``
    when there are tool calls, else ``stop``) and ``model`` (the model the answer names;
    default the requested one).

    Timing, in seconds: ``first_byte_delay_s`` before the response headers,
    ``ttft_s`` after the stream opened and before the first content chunk,
    ``chunk_delay_s`` between content chunks; ``stall_after`` chunks sends nothing more until
    the client goes away (for cancellation tests); ``hold`` names a gate the answer waits for
    before its first byte, opened by ``FakeProvider.release(name)`` (for tests that need to
    know what is in flight).

    Matching: ``api`` (``anthropic`` / ``openai``), ``model`` (the requested model),
    ``contains`` (a substring of the raw request body) and ``when`` (a predicate on the parsed
    body, in-process only) must all accept the request; the turn answers ``times`` requests
    (``None``: every matching request). ``name`` labels it in the recorded requests.
    """

    text: str | Sequence[str] = ""
    tool_calls: Sequence[ToolCall] = ()
    reasoning: str | Sequence[str] | None = None
    signature: str = "fake-signature"
    redacted_reasoning: str | None = None
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    model: str | None = None
    first_byte_delay_s: float = 0.0
    ttft_s: float = 0.0
    chunk_delay_s: float = 0.0
    stall_after: int | None = None
    hold: str | None = None
    fault: Fault | None = None
    api: ApiName | None = None
    for_model: str | None = None
    contains: str | None = None
    when: Callable[[Mapping[str, Any]], bool] | None = None
    times: int | None = 1
    name: str | None = None

    def text_chunks(self) -> list[str]:
        return _chunks(self.text)

    def reasoning_chunks(self) -> list[str]:
        return [] if self.reasoning is None else _chunks(self.reasoning)

    def accepts(self, api: ApiName, body: Mapping[str, Any], raw: bytes) -> bool:
        if self.api is not None and self.api != api:
            return False
        if self.for_model is not None and body.get("model") != self.for_model:
            return False
        if self.contains is not None and self.contains.encode() not in raw:
            return False
        return self.when is None or bool(self.when(body))


def _chunks(value: str | Sequence[str]) -> list[str]:
    if isinstance(value, str):
        return _WORD.findall(value)
    return [str(piece) for piece in value]


# --- JSON scripts ---------------------------------------------------------------------------

_NESTED: Final = {"tool_calls", "usage", "fault"}


def _check_keys(what: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UsageError(
            f"{what} has unknown keys {unknown}; allowed: {sorted(allowed)}",
            details={"unknown": unknown},
        )


def _fields(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def turn_from_dict(data: Mapping[str, Any]) -> Turn:
    """A :class:`Turn` from its JSON form (the same names; ``when`` is not available)."""
    if not isinstance(data, Mapping):
        raise UsageError(f"a scripted turn must be a JSON object, got {type(data).__name__}")
    _check_keys("a scripted turn", data, _fields(Turn) - {"when"})
    values = {key: value for key, value in data.items() if key not in _NESTED}
    calls = data.get("tool_calls") or []
    if not isinstance(calls, list):
        raise UsageError("a scripted turn's tool_calls must be a list of objects")
    for call in calls:
        if not isinstance(call, Mapping) or "name" not in call:
            raise UsageError(f"a scripted tool call needs at least a name, got {call!r}")
        _check_keys("a scripted tool call", call, _fields(ToolCall))
    values["tool_calls"] = tuple(ToolCall(**call) for call in calls)
    if "usage" in data:
        _check_keys("a scripted usage", data["usage"], _fields(Usage))
        values["usage"] = Usage(**data["usage"])
    if data.get("fault") is not None:
        fault = data["fault"]
        _check_keys("a scripted fault", fault, _fields(Fault))
        if fault.get("kind") not in FAULT_KINDS:
            raise UsageError(
                f"a scripted fault's kind must be one of {list(FAULT_KINDS)}, "
                f"got {fault.get('kind')!r}"
            )
        values["fault"] = Fault(**fault)
    if values.get("api") not in (None, *API_NAMES):
        raise UsageError(f"a scripted turn's api must be one of {list(API_NAMES)} or null")
    for key in ("text", "reasoning"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    try:
        return Turn(**values)
    except TypeError as exc:
        raise UsageError(f"a scripted turn is not valid: {exc}") from exc


def turns_from_json(raw: bytes | str) -> tuple[list[Turn], Turn | None]:
    """``{"turns": [...], "default": {...}}`` (or a bare list of turns) -> turns and the
    default turn that answers any request no queued turn accepts."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"the fake provider script is not JSON: {exc}") from exc
    if isinstance(data, list):
        data = {"turns": data}
    if not isinstance(data, dict):
        raise UsageError('the fake provider script must be {"turns": [...], "default": {...}}')
    _check_keys("the fake provider script", data, {"turns", "default"})
    turns = [turn_from_dict(item) for item in data.get("turns") or []]
    default = data.get("default")
    return turns, None if default is None else turn_from_dict(default)
