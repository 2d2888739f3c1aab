"""Provider settings: the runtime spec's ``providers`` mapping, checked before any call.

Owns :class:`ProviderSettings` and :func:`parse_settings`, which turns one entry of
``providers={"anthropic": {"apiKey": "..."} | {"apiKeyEnv": "ANTHROPIC_API_KEY"}, ...}`` into
settings or raises :class:`~flowai_harness.errors.ProviderConfigError` naming the provider and
the setting (and the variable) that is wrong. Accepted keys: ``apiKey`` or ``apiKeyEnv`` (at
most one; with neither, the key is read from the variable the provider's SDK reads,
``ANTHROPIC_API_KEY`` / ``OPENAI_API_KEY``, so the seed's ``{"anthropic": {}}`` works),
``baseUrl`` (an OpenAI-compatible server, a proxy, the fake provider server),
``timeoutSecs`` (the longest wait for connecting and for each read, the first byte
included), ``maxConcurrency`` (calls in flight at once to this provider), ``defaultHeaders``.

The API key never appears in a repr, a message or ``details``. Must not import the SDKs, the
runtime or the native engine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import ProviderConfigError

__all__ = [
    "DEFAULT_KEY_ENV",
    "KNOWN_PROVIDERS",
    "SETTING_KEYS",
    "ProviderSettings",
    "parse_settings",
]

KNOWN_PROVIDERS: Final = ("anthropic", "openai")
# Where the key is read from when the settings name none (the SDKs' own convention).
DEFAULT_KEY_ENV: Final = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
SETTING_KEYS: Final = frozenset(
    {"apiKey", "apiKeyEnv", "baseUrl", "timeoutSecs", "maxConcurrency", "defaultHeaders"}
)


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """One provider's resolved settings (``api_key`` is left out of the repr)."""

    name: str
    api_key: str = field(repr=False)
    base_url: str | None = None
    timeout_secs: float | None = None
    max_concurrency: int | None = None
    default_headers: Mapping[str, str] = field(default_factory=dict)


def _fail(provider: str, setting: str, message: str, **details: str) -> ProviderConfigError:
    return ProviderConfigError(
        f"providers[{provider!r}]: {message}",
        details={"provider": provider, "setting": setting, **details},
    )


def _api_key(provider: str, raw: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    if "apiKey" in raw and "apiKeyEnv" in raw:
        raise _fail(provider, "apiKey", "give apiKey or apiKeyEnv, not both")
    if "apiKey" in raw:
        key = raw["apiKey"]
        if not isinstance(key, str) or not key.strip():
            raise _fail(provider, "apiKey", "apiKey must be a non-empty string")
        return key
    if "apiKeyEnv" in raw:
        name = raw["apiKeyEnv"]
        if not isinstance(name, str) or not name.strip():
            raise _fail(provider, "apiKeyEnv", "apiKeyEnv must name an environment variable")
        value = environ.get(name, "")
        if not value.strip():
            raise _fail(
                provider,
                "apiKeyEnv",
                f"the environment variable {name} (apiKeyEnv) is not set or empty; export it "
                "or give apiKey",
                env=name,
            )
        return value
    # Neither given: the variable the provider's own SDK reads, named in the error if unset.
    name = DEFAULT_KEY_ENV[provider]
    value = environ.get(name, "")
    if not value.strip():
        raise _fail(
            provider,
            "apiKeyEnv",
            f"no API key: neither apiKey nor apiKeyEnv is given and {name} is not set; export "
            f'{name}, or give {{"apiKey": "..."}} or {{"apiKeyEnv": "VARIABLE"}} (a local '
            "OpenAI-compatible server that needs none takes any placeholder key)",
            env=name,
        )
    return value


def parse_settings(
    provider: str, raw: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ProviderSettings:
    """Check one provider's settings and read its key (from ``environ``, default the
    process environment, when ``apiKeyEnv`` names it)."""
    if provider not in KNOWN_PROVIDERS:
        raise _fail(
            provider,
            "provider",
            f"unknown provider; the known ones are {', '.join(KNOWN_PROVIDERS)} (an "
            "OpenAI-compatible server goes under openai with its baseUrl)",
        )
    if not isinstance(raw, Mapping):
        raise _fail(provider, "provider", f"settings must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - SETTING_KEYS)
    if unknown:
        raise _fail(
            provider,
            unknown[0],
            f"unknown settings {unknown}; the settings are {sorted(SETTING_KEYS)}",
        )
    api_key = _api_key(provider, raw, os.environ if environ is None else environ)

    base_url = raw.get("baseUrl")
    if base_url is not None and (
        not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))
    ):
        raise _fail(provider, "baseUrl", "baseUrl must be an http:// or https:// URL")

    timeout = raw.get("timeoutSecs")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise _fail(provider, "timeoutSecs", "timeoutSecs must be a number of seconds > 0")

    limit = raw.get("maxConcurrency")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise _fail(provider, "maxConcurrency", "maxConcurrency must be an integer >= 1")

    headers = raw.get("defaultHeaders") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise _fail(provider, "defaultHeaders", "defaultHeaders must map header names to strings")

    return ProviderSettings(
        name=provider,
        api_key=api_key,
        base_url=base_url,
        timeout_secs=None if timeout is None else float(timeout),
        max_concurrency=limit,
        default_headers=dict(headers),
    )
