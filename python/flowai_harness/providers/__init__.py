"""Live model providers: Anthropic and OpenAI (and OpenAI-compatible servers) through their
official async SDKs.

Owns the public entry points: :func:`build_providers` turns the runtime spec's ``providers``
mapping into one :class:`ModelProvider` per entry, checking every setting first (a
:class:`~flowai_harness.errors.ProviderConfigError` names the provider and the missing key or
variable), and :func:`close_providers` releases their connections. A provider's
``complete(request, on_delta=...)`` takes a ``flowai.v1.ModelRequest`` payload and returns the
``flowai.v1.ModelResult`` payload; it never raises for a provider problem (docs/wire.md,
"Model calls").

Must not import the runtime, the native engine, the bus or any service: the driver and the
model workers import this package, not the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ProviderConfigError
from .anthropic_messages import AnthropicProvider
from .base import (
    FAILURE_KINDS,
    DeltaCallback,
    FailureKind,
    ModelProvider,
    StreamingProvider,
)
from .openai_chat import OpenAIProvider
from .settings import KNOWN_PROVIDERS, ProviderSettings, parse_settings

__all__ = [
    "FAILURE_KINDS",
    "KNOWN_PROVIDERS",
    "AnthropicProvider",
    "DeltaCallback",
    "FailureKind",
    "ModelProvider",
    "OpenAIProvider",
    "ProviderSettings",
    "StreamingProvider",
    "build_providers",
    "close_providers",
]

_ADAPTERS: dict[str, type[AnthropicProvider] | type[OpenAIProvider]] = {
    "anthropic": AnthropicProvider,
    "openai": OpenAIProvider,
}


def build_providers(
    settings: Mapping[str, Mapping[str, Any]], *, environ: Mapping[str, str] | None = None
) -> dict[str, ModelProvider]:
    """One provider per entry of ``settings`` (``{"anthropic": {"apiKeyEnv": ...}, ...}``).

    Every entry is checked before any client is made, so a bad setting fails here, naming the
    provider, rather than at the first model call. ``environ`` (default: the process
    environment) is where ``apiKeyEnv`` variables are read.
    """
    if not isinstance(settings, Mapping):
        raise ProviderConfigError(
            f"providers must map a provider name to its settings, got {type(settings).__name__}",
            details={"setting": "providers"},
        )
    parsed = [parse_settings(name, raw, environ) for name, raw in settings.items()]
    return {entry.name: _ADAPTERS[entry.name](entry) for entry in parsed}


async def close_providers(providers: Iterable[ModelProvider] | Mapping[str, ModelProvider]) -> None:
    """Close the connections of providers that hold any (those with an ``aclose``)."""
    values = providers.values() if isinstance(providers, Mapping) else providers
    for provider in values:
        close = getattr(provider, "aclose", None)
        if close is not None:
            await close()
