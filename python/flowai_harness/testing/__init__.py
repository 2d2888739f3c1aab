"""Test helpers shipped with flowai-harness, so users can test their agents the way we do.

Owns the public names of the fake provider server (:mod:`.fake_provider`) and its script
vocabulary (:mod:`.fake_script`): point the official Anthropic / OpenAI SDKs (or
``build_providers``) at :class:`FakeProvider` and script what the "model" answers, how fast,
and how it fails. Importing this package needs aiohttp (the ``dev`` extra). Must not import
the runtime, the native engine or any service.
"""

from __future__ import annotations

from .fake_provider import FakeProvider, FakeRequest, Responder
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
