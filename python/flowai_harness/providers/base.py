"""What every provider adapter shares: the protocol, the call skeleton, failures and results.

Owns

- :class:`ModelProvider`, the interface the driver and the model workers call:
  ``await provider.complete(request, on_delta=...)`` takes a ``flowai.v1.ModelRequest`` payload
  and returns the ``flowai.v1.ModelResult`` payload (``{"request_id", "response"}`` or
  ``{"request_id", "failure"}``, docs/wire.md "Model calls").
- :class:`StreamingProvider`, the skeleton both adapters run: the per-provider concurrency
  limit, the clock (``latency_ms`` and ``ttft_ms`` count from the moment ``complete`` was
  called, a wait for a concurrency slot included, as the caller sees it), turning every error
  into a failure and only letting cancellation (and an exception raised by ``on_delta``, the
  caller's own) out.
- the failure vocabulary: :data:`FAILURE_KINDS`, :func:`kind_for_status` (HTTP status and the
  provider's error type to a kind), :func:`retry_after_ms` (``retry-after-ms`` /
  ``retry-after`` in seconds or as an HTTP date), :class:`ProviderFailure`.
- the pieces of a response both APIs build alike: :class:`Answer` (content blocks, deltas,
  usage, stop reason, timing), :func:`parse_tool_args`, :func:`tool_result_text`.

Must not import the SDKs (only httpx2, their HTTP client, whose transport errors surface
while the body is read), the runtime or the native engine.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Final, Literal, Protocol

import httpx2
import orjson

from ..messages import FAILURE_KINDS, FailureKind
from .settings import ProviderSettings
from .sse import SSEDecoder

__all__ = [
    "FAILURE_KINDS",
    "Answer",
    "DeltaCallback",
    "FailureKind",
    "ModelProvider",
    "ProviderFailure",
    "StreamBody",
    "StreamFold",
    "StreamingProvider",
    "kind_for_status",
    "parse_tool_args",
    "retry_after_ms",
    "status_failure",
    "tool_result_text",
    "transport_message",
]

log = logging.getLogger("flowai_harness.providers")

DeltaCallback = Callable[[dict[str, Any]], None]

# How providers and OpenAI-compatible servers word "the prompt does not fit the model".
_CONTEXT_LENGTH: Final = re.compile(
    r"prompt is too long|context length|context window|context size|maximum context"
    r"|context_length|too many (input )?tokens",
    re.IGNORECASE,
)


class ModelProvider(Protocol):
    """A model provider as the driver sees it; see the module docstring."""

    async def complete(
        self, request: dict[str, Any], *, on_delta: DeltaCallback | None = None
    ) -> dict[str, Any]:
        """Call the model for one ModelRequest payload; never raises for a provider problem
        (only cancellation propagates, and aborts the HTTP request)."""
        ...


class ProviderFailure(Exception):
    """A failure found while reading the provider's answer (raised and caught inside an
    adapter; callers get it as a ``failure`` result)."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message
        self.status = status
        self.retry_after_ms = retry_after_ms


class _DeltaCallbackError(Exception):
    """Carries an exception raised by the caller's ``on_delta`` out of the failure mapping."""


def kind_for_status(
    status: int, error_type: str | None = None, message: str = "", code: str | None = None
) -> FailureKind:
    """The failure kind of an HTTP error (``status`` < 400: an error event inside a stream
    that began with 200, classified by the provider's ``error_type`` alone)."""
    if status == 429 or error_type in ("rate_limit_error", "rate_limit_exceeded"):
        return "rate_limited"
    if status == 529 or error_type == "overloaded_error":
        return "overloaded"
    if status in (401, 403) or error_type in ("authentication_error", "permission_error"):
        return "auth"
    if status == 408 or error_type == "timeout_error":
        return "timeout"
    if status in (400, 413) or (status < 400 and error_type == "invalid_request_error"):
        if code == "context_length_exceeded" or _CONTEXT_LENGTH.search(message):
            return "context_length"
        return "bad_request"
    if 400 <= status < 500:
        return "bad_request"
    return "server"


def retry_after_ms(headers: Mapping[str, str] | None) -> int | None:
    """Milliseconds the provider asked to wait: ``retry-after-ms``, else ``retry-after`` as
    seconds or as an HTTP date; None when it asked nothing readable."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0, round(float(value)))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0, round(float(value) * 1000))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, round((when.timestamp() - time.time()) * 1000))


def parse_tool_args(text: str) -> tuple[dict[str, Any], str | None]:
    """A tool call's arguments from the model's JSON text, or ``({}, what was wrong)``."""
    if not text.strip():
        return {}, None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return {}, f"the arguments are not valid JSON ({exc}): {text[:200]}"
    if not isinstance(value, dict):
        return {}, f"the arguments are a JSON {type(value).__name__}, not an object"
    return value, None


def tool_result_text(content: Any) -> str:
    """A tool result as the text a model reads: a string as it is, anything else as JSON."""
    if isinstance(content, str):
        return content
    return orjson.dumps(content).decode()


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class Answer:
    """A response while it streams in: content blocks in order, usage, stop reason, timing.

    ``content`` holds the contract's blocks; text and reasoning are collected in parts and
    joined by :meth:`result`, so a long answer costs linear time.
    """

    __slots__ = (
        "_on_delta",
        "_parts",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "completion_tokens",
        "content",
        "model",
        "prompt_tokens",
        "raw_stop_reason",
        "started",
        "ttft_ms",
    )

    def __init__(self, started: float, model: str, on_delta: DeltaCallback | None) -> None:
        self.started = started
        self.model = model
        self.content: list[dict[str, Any]] = []
        self._parts: dict[int, list[str]] = {}
        self._on_delta = on_delta
        self.ttft_ms: int | None = None
        self.raw_stop_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cache_read_input_tokens = 0
        self.cache_creation_input_tokens = 0

    def first_content(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = _ms(time.perf_counter() - self.started)

    def open(self, block: dict[str, Any]) -> int:
        """Append a block; returns its index in ``content`` (the index deltas name)."""
        self.content.append(block)
        index = len(self.content) - 1
        if block["type"] in ("text", "reasoning"):
            self._parts[index] = [block["text"]] if block["text"] else []
        return index

    def stream(self, index: int, text: str, kind: Literal["text-delta", "reasoning-delta"]) -> None:
        """Add streamed text to block ``index`` and report the delta."""
        if self.ttft_ms is None:
            self.ttft_ms = _ms(time.perf_counter() - self.started)
        self._parts[index].append(text)
        if self._on_delta is not None:
            try:
                self._on_delta({"type": kind, "index": index, "text": text})
            except Exception as exc:
                raise _DeltaCallbackError() from exc

    def result(self, provider: str, stop_reason: str) -> dict[str, Any]:
        for index, parts in self._parts.items():
            self.content[index]["text"] = "".join(parts)
        return {
            "content": self.content,
            "stop_reason": stop_reason,
            "raw_stop_reason": self.raw_stop_reason,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
            },
            "provider": provider,
            "model": self.model,
            "latency_ms": _ms(time.perf_counter() - self.started),
            "ttft_ms": self.ttft_ms,
        }


class StreamBody(Protocol):
    """The SDKs' streaming HTTP response, as the adapters read it."""

    def iter_bytes(self) -> AsyncIterator[bytes]: ...


class StreamFold(Protocol):
    """Folds one answer's SSE events into the response payload."""

    def event(self, name: str | None, data: bytes) -> None: ...

    def result(self, provider: str) -> dict[str, Any]: ...


class StreamingProvider:
    """The call skeleton of an adapter. Subclasses give :attr:`name` and

    - ``_params(request)``: the SDK call's keyword arguments (a bad payload raises
      KeyError / TypeError / ValueError, reported as ``bad_request``);
    - ``_fold(answer, request)``: the :class:`StreamFold` for one answer;
    - ``_open(params)``: the SDK's streaming response context (it raises the SDK's typed
      errors for HTTP failures);
    - ``_failure(exc)``: an SDK error as a :class:`ProviderFailure`.

    The skeleton reads the body's SSE events into the fold; a transport error while reading
    is a ``timeout`` or ``connection`` failure, an event that is not what the API sends is
    ``bad_response``.
    """

    name: ClassVar[str]

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        limit = settings.max_concurrency
        self._slots = asyncio.Semaphore(limit) if limit else None
        # Calls waiting for a concurrency slot and calls holding one (or running, unlimited).
        self.waiting = 0
        self.in_flight = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.settings.base_url!r})"

    async def complete(
        self, request: Mapping[str, Any], *, on_delta: DeltaCallback | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        request_id = request.get("request_id")
        slots = self._slots
        if slots is not None:
            self.waiting += 1
            try:
                await slots.acquire()
            finally:
                self.waiting -= 1
        self.in_flight += 1
        try:
            response = await self._call(request, on_delta, started)
            return {"request_id": request_id, "response": response}
        except _DeltaCallbackError as exc:
            cause = exc.__cause__
            assert cause is not None
            raise cause from None
        except ProviderFailure as exc:
            failure = exc
        except Exception as exc:
            failure = self._failure(exc)
        finally:
            self.in_flight -= 1
            if slots is not None:
                slots.release()
        return {
            "request_id": request_id,
            "failure": {
                "kind": failure.kind,
                "message": failure.message,
                "retry_after_ms": failure.retry_after_ms,
                "status": failure.status,
                "provider": self.name,
                "model": request.get("model"),
                "latency_ms": _ms(time.perf_counter() - started),
            },
        }

    async def aclose(self) -> None:
        """Close the SDK client's connections."""

    async def _call(
        self, request: Mapping[str, Any], on_delta: DeltaCallback | None, started: float
    ) -> dict[str, Any]:
        try:
            params = self._params(request)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderFailure(
                "bad_request", f"the ModelRequest payload is not usable: {exc!r}"
            ) from exc
        fold = self._fold(Answer(started, str(params["model"]), on_delta), request)
        async with self._open(params) as response:
            decoder = SSEDecoder()
            try:
                async for chunk in response.iter_bytes():
                    for name, data in decoder.feed(chunk):
                        fold.event(name, data)
            except httpx2.TimeoutException as exc:
                raise ProviderFailure(
                    "timeout", transport_message("the stream timed out", exc, _netloc(exc))
                ) from exc
            except httpx2.TransportError as exc:
                raise ProviderFailure(
                    "connection", transport_message("the stream broke off", exc, _netloc(exc))
                ) from exc
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # orjson.JSONDecodeError is a ValueError: an event whose data is not JSON.
                raise ProviderFailure("bad_response", f"malformed stream: {exc!r}") from exc
        return fold.result(self.name)

    def _params(self, request: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _fold(self, answer: Answer, request: Mapping[str, Any]) -> StreamFold:
        raise NotImplementedError

    def _open(self, params: dict[str, Any]) -> AbstractAsyncContextManager[StreamBody]:
        raise NotImplementedError

    def _failure(self, exc: Exception) -> ProviderFailure:
        raise NotImplementedError


def _netloc(exc: httpx2.TransportError) -> bytes | None:
    try:
        return exc.request.url.netloc
    except RuntimeError:  # an error raised without its request
        return None


def unexpected(provider: str, exc: Exception) -> ProviderFailure:
    """An error no mapping knows: a bad response as far as the caller can tell; logged with
    its traceback because it may as well be a bug here."""
    log.warning("%s call failed with an unexpected error", provider, exc_info=exc)
    return ProviderFailure("bad_response", f"{type(exc).__name__}: {exc}")


def transport_message(message: str, exc: BaseException, netloc: bytes | None) -> str:
    """The SDK's message for a failed transport, completed with what its own words leave
    out: the network error under it and the host it was calling."""
    cause = exc.__cause__
    detail = str(cause) if cause is not None else ""
    if detail and detail not in message:
        message = f"{message} ({type(cause).__name__}: {detail})"
    host = netloc.decode("ascii", "replace") if netloc else ""
    if host and host not in message:
        message = f"{message} calling {host}"
    return message


def status_failure(
    status: int,
    error_type: str | None,
    message: str,
    code: str | None,
    headers: Mapping[str, str],
) -> ProviderFailure:
    """An HTTP error answer (an SDK's APIStatusError) as a failure."""
    return ProviderFailure(
        kind_for_status(status, error_type, message, code),
        f"{status} {error_type or 'error'}: {message}",
        status=status,
        retry_after_ms=retry_after_ms(headers),
    )
