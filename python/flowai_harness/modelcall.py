"""One model call: from a ``flowai.v1.ModelRequest`` to its ``ModelResult`` payload.

Owns what the embedded runtime and the model workers do alike with a request, so the same
provider answer gives the same result in both: find the request's provider (a request for a
provider this process has no settings for is an ``auth`` failure naming the fix, which the
engine treats like any failure: fall back, or give up), call it with the caller's delta
callback, and return the result payload (docs/wire.md, "Model calls") with the request's
hash (:func:`request_sha256`) on its response, which the engine logs as the
``model-response``'s ``requestHash``. Never raises for a provider problem; only
cancellation propagates.

Must not import the runtime, the native engine, the bus or any service.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import orjson

__all__ = ["Complete", "DeltaSink", "call_model", "request_sha256", "unconfigured"]

# What names one attempt rather than what is asked: left out of the request hash.
_NOT_HASHED: Final = frozenset({"request_id", "attempt", "turn"})

DeltaSink = Callable[[dict[str, Any]], None]


class Complete(Protocol):
    """What a provider must offer (``flowai_harness.providers.ModelProvider``)."""

    async def complete(
        self, request: dict[str, Any], *, on_delta: DeltaSink | None = None
    ) -> dict[str, Any]: ...


def unconfigured(request: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The failure for a request whose provider has no settings in this process."""
    provider = request.get("provider")
    return {
        "request_id": request["request_id"],
        "failure": {
            "kind": "auth",
            "message": f"provider {provider!r} is not configured in this {where}; declare it "
            "in define_runtime(providers={...}) with the environment variable holding its key",
            "provider": provider,
            "model": request.get("model"),
            "latency_ms": 0,
        },
    }


async def call_model(
    providers: Mapping[str, Complete],
    request: dict[str, Any],
    *,
    on_delta: DeltaSink | None = None,
    where: str = "runtime",
) -> dict[str, Any]:
    """Ask the request's provider for one turn; returns the ModelResult payload."""
    provider = providers.get(request["provider"])
    if provider is None:
        return unconfigured(request, where)
    asked = request_sha256(request)
    result = await provider.complete(request, on_delta=on_delta)
    response = result.get("response")
    if isinstance(response, dict):
        # Logged with the answer (requestHash), so a replay can tell an unchanged request.
        response["request_hash"] = asked
    return result


def request_sha256(request: Mapping[str, Any]) -> str:
    """SHA-256 of what a ModelRequest asks: every field but the ids of the attempt
    (``request_id``, ``attempt``, ``turn``), as canonical JSON (sorted keys, compact). The
    same system prompt, messages, tools, model and settings give the same hash, whichever
    thread, run or retry asked."""
    asked = {key: value for key, value in request.items() if key not in _NOT_HASHED}
    return hashlib.sha256(orjson.dumps(asked, option=orjson.OPT_SORT_KEYS)).hexdigest()
