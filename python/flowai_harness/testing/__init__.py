"""Test helpers shipped with flowai-harness, so users can test their agents the way we do.

Owns the public names of the fake provider server (:mod:`.fake_provider`) and its script
vocabulary (:mod:`.fake_script`): point the official Anthropic / OpenAI SDKs (or
``build_providers``) at :class:`FakeProvider` and script what the "model" answers, how fast,
and how it fails. The server names load on first use (they need aiohttp, the ``dev`` extra),
so the script vocabulary imports without it and ``python -m
flowai_harness.testing.fake_provider`` does not import its own module twice. Must not import
the runtime, the native engine or any service.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .fake_script import (
    Fault,
    ToolCall,
    Turn,
    Usage,
    context_length_exceeded,
    dropped,
    error_event,
    http_error,
    malformed_sse,
    overloaded,
    rate_limited,
    server_error,
    truncated,
    turn_from_dict,
    turns_from_json,
)

if TYPE_CHECKING:
    from .fake_provider import FakeProvider, FakeRequest, Responder

_SERVER_NAMES = frozenset({"FakeProvider", "FakeRequest", "Responder"})


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        return getattr(importlib.import_module(".fake_provider", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FakeProvider",
    "FakeRequest",
    "Fault",
    "Responder",
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
