"""The seed's data-environment settings: their shape, and their normalization.

Owns :class:`DataEnvironmentConfig` (the TypedDict the seed's ``create_runtime`` takes) and
:func:`normalize_data_environment`, which checks one and gives its camelCase wire form
without building a runtime, as the seed does. This build has no data catalog, so
``create_runtime`` refuses a data environment; the helper still checks the settings, so code
that prepares them runs unchanged. Must not import the runtime or the native extension.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypedDict

from .errors import SpecError

__all__ = ["DataEnvironmentConfig", "normalize_data_environment"]


class DataEnvironmentConfig(TypedDict, total=False):
    """Every key is optional; snake_case or camelCase."""

    tenant_id: str
    workspace_id: str
    kv: Mapping[str, Any]
    target_database: Mapping[str, Any]
    target_database_url: str
    target_database_schema: str
    catalog: Mapping[str, Any]
    catalog_search: Mapping[str, Any]


_KEYS: Final = {
    "tenant_id": "tenantId",
    "workspace_id": "workspaceId",
    "kv": "kv",
    "target_database": "targetDatabase",
    "target_database_url": "targetDatabaseUrl",
    "target_database_schema": "targetDatabaseSchema",
    "catalog": "catalog",
    "catalog_search": "catalogSearch",
}
_CAMEL_TO_SNAKE: Final = {camel: snake for snake, camel in _KEYS.items()}
_KINDS: Final = {
    "kv": ("memory", "sqlite", "postgres", "redis"),
    "targetDatabase": ("sqlite", "postgres"),
    "catalog": ("empty", "inline", "sqlite", "postgres"),
}


def normalize_data_environment(
    data_environment: Mapping[str, Any] | None,
    target_database_url: str | None = None,
    *,
    runtime_resource_id: str,
) -> dict[str, Any] | None:
    """Check ``data_environment`` and give its camelCase form (None when there is none).

    ``tenant_id`` must be the runtime's tenant; ``target_database`` and
    ``target_database_url`` (either here or as the argument) exclude each other; ``kv``,
    ``target_database`` and ``catalog`` name a known ``kind``.
    """
    if data_environment is None and target_database_url is None:
        return None
    if data_environment is not None and not isinstance(data_environment, Mapping):
        raise SpecError(
            f"data_environment must be a mapping, got {type(data_environment).__name__}"
        )
    normalized: dict[str, Any] = {}
    for key, value in (data_environment or {}).items():
        snake = _CAMEL_TO_SNAKE.get(key, key)
        camel = _KEYS.get(snake)
        if camel is None:
            raise SpecError(
                f"data_environment: unknown key {key!r}; the keys are {', '.join(_KEYS)}"
            )
        if camel in normalized:
            raise SpecError(f"data_environment: {snake} is given twice (snake and camel case)")
        normalized[camel] = value
    if target_database_url is not None:
        if "targetDatabaseUrl" in normalized:
            raise SpecError("target_database_url is given twice; give it once")
        normalized["targetDatabaseUrl"] = target_database_url
    if "targetDatabase" in normalized and "targetDatabaseUrl" in normalized:
        raise SpecError(
            "data_environment: target_database and target_database_url exclude each other"
        )
    tenant = normalized.get("tenantId")
    if tenant is not None and tenant != runtime_resource_id:
        raise SpecError(
            f"data_environment: tenant_id {tenant!r} is not the runtime's tenant "
            f"{runtime_resource_id!r}"
        )
    for key, kinds in _KINDS.items():
        section = normalized.get(key)
        if section is None:
            continue
        kind = section.get("kind") if isinstance(section, Mapping) else None
        if kind not in kinds:
            raise SpecError(
                f"data_environment: {key}.kind must be one of {', '.join(kinds)}, got {kind!r}"
            )
    return normalized
