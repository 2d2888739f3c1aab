"""``build_providers``: settings are checked before any client exists, errors name the
provider and the setting (or variable), and an API key never shows in a repr or an error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flowai_harness.errors import ProviderConfigError, SpecError, error_from_code
from flowai_harness.providers import (
    AnthropicProvider,
    OpenAIProvider,
    build_providers,
    close_providers,
)
from flowai_harness.providers.settings import parse_settings
from flowai_harness.testing import FakeProvider, Turn

SECRET = "sk-very-secret-value"
MakeRequest = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(
    ("settings", "provider", "setting", "words"),
    [
        ({"anthropic": {}}, "anthropic", "apiKeyEnv", "ANTHROPIC_API_KEY is not set"),
        (
            {"openai": {"baseUrl": "http://localhost:11434/v1"}},
            "openai",
            "apiKeyEnv",
            "OPENAI_API_KEY is not set",
        ),
        ({"anthropic": {"apiKey": ""}}, "anthropic", "apiKey", "non-empty"),
        ({"anthropic": {"apiKey": SECRET, "apiKeyEnv": "X"}}, "anthropic", "apiKey", "not both"),
        ({"anthropic": {"apiKeyEnv": ""}}, "anthropic", "apiKeyEnv", "environment variable"),
        ({"mistral": {"apiKey": SECRET}}, "mistral", "provider", "unknown provider"),
        ({"openai": {"apiKey": SECRET, "apikey": "x"}}, "openai", "apikey", "unknown settings"),
        ({"openai": {"apiKey": SECRET, "baseUrl": "localhost:8000"}}, "openai", "baseUrl", "URL"),
        ({"openai": {"apiKey": SECRET, "timeoutSecs": 0}}, "openai", "timeoutSecs", "> 0"),
        ({"openai": {"apiKey": SECRET, "timeoutSecs": "5"}}, "openai", "timeoutSecs", "> 0"),
        (
            {"anthropic": {"apiKey": SECRET, "maxConcurrency": 0}},
            "anthropic",
            "maxConcurrency",
            ">= 1",
        ),
        (
            {"anthropic": {"apiKey": SECRET, "maxConcurrency": 2.5}},
            "anthropic",
            "maxConcurrency",
            "integer",
        ),
        (
            {"anthropic": {"apiKey": SECRET, "defaultHeaders": {"x-n": 1}}},
            "anthropic",
            "defaultHeaders",
            "strings",
        ),
        ({"anthropic": "sk-..."}, "anthropic", "provider", "mapping"),
    ],
)
def test_bad_settings_fail_early_naming_provider_and_setting(
    settings: dict[str, Any], provider: str, setting: str, words: str
) -> None:
    with pytest.raises(ProviderConfigError) as caught:
        build_providers(settings, environ={})

    error = caught.value
    assert error.code == "PROVIDER_CONFIG_INVALID"
    assert error.details["provider"] == provider
    assert error.details["setting"] == setting
    assert f"providers[{provider!r}]" in str(error)
    assert words in str(error)
    assert SECRET not in str(error)
    assert SECRET not in repr(error.details)


def test_an_unset_key_variable_is_named() -> None:
    with pytest.raises(ProviderConfigError) as caught:
        build_providers({"openai": {"apiKeyEnv": "TEAM_OPENAI_KEY"}}, environ={"OTHER": "x"})

    assert caught.value.details == {
        "provider": "openai",
        "setting": "apiKeyEnv",
        "env": "TEAM_OPENAI_KEY",
    }
    assert "TEAM_OPENAI_KEY" in str(caught.value)


async def test_empty_settings_read_the_sdk_conventional_variable() -> None:
    built = build_providers(
        {"anthropic": {}, "openai": {}},
        environ={"ANTHROPIC_API_KEY": SECRET, "OPENAI_API_KEY": SECRET + "-2"},
    )
    try:
        settings = {name: vars(provider)["settings"] for name, provider in built.items()}
    finally:
        await close_providers(built)

    assert settings["anthropic"].api_key == SECRET
    assert settings["openai"].api_key == SECRET + "-2"


def test_one_bad_entry_fails_the_whole_build() -> None:
    with pytest.raises(ProviderConfigError, match="openai"):
        build_providers({"anthropic": {"apiKey": SECRET}, "openai": {}}, environ={})


def test_the_error_is_a_spec_error_with_a_stable_code() -> None:
    assert issubclass(ProviderConfigError, SpecError)
    assert type(error_from_code("PROVIDER_CONFIG_INVALID", "m")) is ProviderConfigError


def test_settings_are_parsed_with_their_types() -> None:
    settings = parse_settings(
        "openai",
        {
            "apiKeyEnv": "OPENAI_API_KEY",
            "baseUrl": "http://127.0.0.1:8000/v1",
            "timeoutSecs": 30,
            "maxConcurrency": 8,
            "defaultHeaders": {"x-team": "data"},
        },
        environ={"OPENAI_API_KEY": SECRET},
    )

    assert settings.api_key == SECRET
    assert settings.base_url == "http://127.0.0.1:8000/v1"
    assert settings.timeout_secs == 30.0
    assert settings.max_concurrency == 8
    assert settings.default_headers == {"x-team": "data"}
    assert SECRET not in repr(settings)


async def test_providers_are_built_per_entry_and_never_show_their_key() -> None:
    built = build_providers(
        {"anthropic": {"apiKey": SECRET}, "openai": {"apiKeyEnv": "K"}}, environ={"K": SECRET}
    )
    try:
        assert isinstance(built["anthropic"], AnthropicProvider)
        assert isinstance(built["openai"], OpenAIProvider)
        for provider in built.values():
            assert SECRET not in repr(provider)
            assert SECRET not in str(vars(provider).get("settings"))
    finally:
        await close_providers(built)


async def test_the_key_from_the_variable_is_what_the_server_receives(
    fake: FakeProvider, model_request: MakeRequest
) -> None:
    fake.add(Turn(text="hi", times=2))
    settings = {
        "anthropic": {"apiKeyEnv": "ANTHROPIC_KEY_FOR_TEST", "baseUrl": fake.anthropic_url},
        "openai": {"apiKeyEnv": "OPENAI_KEY_FOR_TEST", "baseUrl": fake.openai_url},
    }
    built = build_providers(
        settings, environ={"ANTHROPIC_KEY_FOR_TEST": "test-key", "OPENAI_KEY_FOR_TEST": "test-key"}
    )
    try:
        for name in ("anthropic", "openai"):
            assert "response" in await built[name].complete(model_request(name))
    finally:
        await close_providers(built)

    assert [request.api_key for request in fake.requests] == ["test-key", "test-key"]


async def test_a_wrong_key_is_an_auth_failure(
    fake: FakeProvider, model_request: MakeRequest
) -> None:
    built = build_providers(fake.provider_settings(api_key="wrong-key"))
    try:
        results = [await built[name].complete(model_request(name)) for name in built]
    finally:
        await close_providers(built)

    assert [(r["failure"]["kind"], r["failure"]["status"]) for r in results] == [
        ("auth", 401),
        ("auth", 401),
    ]
    assert all("wrong-key" not in r["failure"]["message"] for r in results)
