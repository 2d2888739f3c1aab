"""References: large values kept out of the model's context and out of the run log.

Owns :func:`define_reference` and :class:`ReferenceSpec` (a kind of value with its schema, a
time to live and a glimpse function), :func:`glimpse` (the default short summary), the stores
that hold payloads (:class:`MemoryReferenceStore`, :class:`FileReferenceStore` under
``<log_path>/<tenant>/refs/<id>.json``, and :class:`RedisReferenceStore`, the claim-check
store of the distributed services), :class:`ReferenceAccess` (what a tool handler gets as
``ctx.references``) and :class:`ReferenceHandle` (the handle's model, for plan actions).

A handle is ``{"kind", "id", "glimpse"}``. Ids are content-addressed and tenant-scoped:
``ref_`` + the first 32 hex digits of SHA-256 over ``tenant \\0 kind \\0 canonical JSON``, and
every lookup goes through the caller's tenant, so another tenant's id is simply unknown and
reads exactly like one. Stores keep the value's JSON form: ``resolve`` returns plain JSON values
(dicts, lists, strings, numbers) whatever type was validated on the way in.

Must not import the runtime, specs or the native extension at module level (a JSON Schema
dict is checked by the engine's validator, imported when first needed); ``redis`` (the
``kafka`` extra) is imported only by :meth:`RedisReferenceStore.from_url`.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import importlib
import os
import re
import time
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from decimal import Decimal
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote

import orjson
import pydantic

from .errors import (
    FlowaiError,
    InvalidInputError,
    InvalidSchemaError,
    ReferenceNotFoundError,
    ReferenceValidationError,
    SpecError,
    UnknownReferenceKindError,
)
from .tools import check_name

if TYPE_CHECKING:
    from redis import Redis as SyncRedis

__all__ = [
    "FileReferenceStore",
    "MemoryReferenceStore",
    "RedisReferenceStore",
    "ReferenceAccess",
    "ReferenceHandle",
    "ReferenceSpec",
    "ReferenceStore",
    "define_reference",
    "glimpse",
    "reference_id",
    "to_json_safe",
]

Clock = Callable[[], int]

_ID: Final = re.compile(r"ref_[0-9a-f]{32}")


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


# --- JSON-safe values and glimpses ----------------------------------------------------------


def to_json_safe(value: Any, *, lenient: bool = False) -> Any:
    """``value`` as plain JSON types: Pydantic values and dataclasses as dicts, decimals,
    UUIDs and paths as strings, dates and times in ISO 8601, enums by value, sets sorted.

    Anything else is a TypeError, or its ``str()`` when ``lenient`` (glimpses are summaries:
    a readable string beats a failed call).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {_key(key): to_json_safe(item, lenient=lenient) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(item, lenient=lenient) for item in value]
    if isinstance(value, Set):
        items = [to_json_safe(item, lenient=lenient) for item in value]
        return sorted(items, key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_json_safe(getattr(value, field.name), lenient=lenient)
            for field in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return to_json_safe(value.value, lenient=lenient)
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (Decimal, uuid.UUID, PurePath)):
        return str(value)
    if lenient:
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    safe = to_json_safe(key, lenient=True)
    return safe if isinstance(safe, str) else orjson.dumps(safe).decode()


def glimpse(value: Any, *, max_items: int = 3) -> Any:
    """A short, JSON-safe summary of ``value``, safe to put in front of a model.

    A mapping (or a Pydantic value or dataclass) passes through; a sequence or set becomes
    ``{"count": n, "sample": [its first max_items items]}``; anything else ``{"value": v}``.
    """
    if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 0:
        raise ValueError(f"glimpse max_items must be an int >= 0, got {max_items!r}")
    if isinstance(value, (Mapping, pydantic.BaseModel)) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        return to_json_safe(value, lenient=True)
    if isinstance(value, Set):
        items = to_json_safe(value, lenient=True)
        return {"count": len(items), "sample": items[:max_items]}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        sample = [to_json_safe(item, lenient=True) for item in value[:max_items]]
        return {"count": len(value), "sample": sample}
    return {"value": to_json_safe(value, lenient=True)}


# --- reference kinds ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class ReferenceSpec:
    """A kind of referenced value. Build it with :func:`define_reference`."""

    name: str
    schema: dict[str, Any]
    ttl_ms: int | None = None
    glimpse: Callable[[Any], Any] | None = None
    # Validates (and dumps to JSON) when the schema came from a Python type; None for a JSON
    # Schema dict, which the engine's validator checks.
    adapter: pydantic.TypeAdapter[Any] | None = dataclasses.field(default=None, repr=False)

    def declaration(self) -> dict[str, Any]:
        """The ``references[]`` entry of the runtime spec (docs/wire.md)."""
        return {"name": self.name, "schema": self.schema, "ttl_ms": self.ttl_ms}

    def validate(self, value: Any) -> Any:
        """``value`` checked against the schema, as its JSON form (what the store keeps)."""
        return self.check(value)[1]

    def check(self, value: Any) -> tuple[Any, Any]:
        """``value`` checked against the schema: (the typed value, its JSON form). Without a
        Python type behind the schema both are the JSON form."""
        if self.adapter is None:
            try:
                json_value = to_json_safe(value)
            except TypeError as exc:
                raise ReferenceValidationError(
                    f"reference {self.name!r}: the value is not JSON: {exc}"
                ) from None
            _check_with_engine(self, json_value)
            return json_value, json_value
        try:
            typed = self.adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            raise ReferenceValidationError(
                f"reference {self.name!r}: the value does not match its schema: {_violations(exc)}",
                details={"errors": exc.errors(include_url=False, include_context=False)},
            ) from None
        return typed, self.adapter.dump_python(typed, mode="json")

    def summarize(self, typed: Any, json_value: Any) -> Any:
        """The glimpse of a checked value: the kind's glimpse function (given the typed
        value), else ``{}`` (the seed's rule: the model sees nothing of a value nobody
        summarized)."""
        if self.glimpse is not None:
            return to_json_safe(self.glimpse(typed), lenient=True)
        return {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReferenceSpec):
            return NotImplemented
        return self.declaration() == other.declaration() and self.glimpse == other.glimpse

    def __hash__(self) -> int:
        return hash(self.name)


def _violations(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = "/".join(str(part) for part in error["loc"]) or "the value"
        parts.append(f"at {where}: {error['msg'][:1].lower()}{error['msg'][1:]}")
    return "; ".join(parts)


def _check_with_engine(spec: ReferenceSpec, json_value: Any) -> None:
    """Check a value against a JSON Schema dict with the engine's own validator (only the
    engine knows the schema subset; the same logic written twice would drift)."""
    native = importlib.import_module("flowai_harness._native")
    try:
        native.validate_json(orjson.dumps(spec.schema), orjson.dumps(json_value))
    except FlowaiError as exc:
        raise ReferenceValidationError(
            f"reference {spec.name!r}: the value does not match its schema: {exc.message}"
        ) from None


def define_reference(
    name: str,
    schema: Any,
    ttl_ms: int | None = None,
    glimpse: Callable[[Any], Any] | None = None,
) -> ReferenceSpec:
    """Declare a kind of referenced value.

    ``schema`` is a Pydantic model class, a type such as ``list[Product]``, or a JSON Schema
    dict. ``ttl_ms`` is how long a created reference stays resolvable (None or 0: as long
    as the store keeps it; the seed allows any ``ttl_ms >= 0``). ``glimpse`` turns a value
    into the short summary a model sees (it runs once, before the value is stored); without
    one a reference's glimpse is ``{}``, as in the seed (unless ``create_reference`` is
    given one); :func:`glimpse` is a helper to build one.
    """
    check_name("reference", name)
    if ttl_ms is not None and (isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int)):
        raise SpecError(f"reference {name!r}: ttl_ms must be an int of milliseconds or None")
    if ttl_ms is not None and ttl_ms < 0:
        raise SpecError(f"reference {name!r}: ttl_ms must be >= 0, got {ttl_ms}")
    if glimpse is not None and not callable(glimpse):
        raise SpecError(
            f"reference {name!r}: glimpse must be a function value -> summary, "
            f"got {type(glimpse).__name__}"
        )
    json_schema, adapter = _reference_schema(name, schema)
    return ReferenceSpec(
        name=name, schema=json_schema, ttl_ms=ttl_ms, glimpse=glimpse, adapter=adapter
    )


def _reference_schema(
    name: str, schema: Any
) -> tuple[dict[str, Any], pydantic.TypeAdapter[Any] | None]:
    if isinstance(schema, Mapping):
        copied = orjson.loads(_dumps_schema(name, schema))
        return copied, None
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(schema)
        return adapter.json_schema(), adapter
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError) as exc:
        raise InvalidSchemaError(
            f"reference {name!r}: schema must be a Pydantic model, a type such as "
            f"list[Product], or a JSON Schema dict; got {schema!r} "
            f"({str(exc).strip().splitlines()[0]})"
        ) from None


def _dumps_schema(name: str, schema: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(schema)
    except TypeError as exc:
        raise InvalidSchemaError(
            f"reference {name!r}: the JSON Schema is not JSON: {exc}"
        ) from None


# --- ids and handles ------------------------------------------------------------------------


def _canonical(json_value: Any) -> bytes:
    return orjson.dumps(json_value, option=orjson.OPT_SORT_KEYS)


def reference_id(tenant: str, kind: str, json_value: Any) -> str:
    """The content address of a value of ``kind`` for ``tenant``."""
    digest = hashlib.sha256(
        tenant.encode() + b"\0" + kind.encode() + b"\0" + _canonical(json_value)
    ).hexdigest()
    return f"ref_{digest[:32]}"


class ReferenceHandle(pydantic.BaseModel):
    """A handle to a referenced value, as returned when it was created."""

    # Type plan actions and tool arguments with it (``products: ReferenceHandle``); the
    # docstring above is the schema's description, which models read. No ``pattern`` on
    # ``id``: the engine's schema subset has none, and stores check ids themselves.

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    kind: str
    id: str
    glimpse: Any = None


def _parse_ref(ref: object) -> tuple[str | None, str]:
    """(kind or None, id) of a handle, a ReferenceHandle or a bare id."""
    if isinstance(ref, ReferenceHandle):
        kind: object = ref.kind
        ref_id: object = ref.id
    elif isinstance(ref, Mapping):
        kind, ref_id = ref.get("kind"), ref.get("id")
    else:
        kind, ref_id = None, ref
    # The id pattern also keeps paths out of FileReferenceStore.
    if not isinstance(ref_id, str) or not _ID.fullmatch(ref_id):
        raise ReferenceNotFoundError(
            f"{_short(ref)} is not a reference handle; pass {{'kind': ..., 'id': 'ref_...'}} "
            "as returned when the reference was created"
        )
    if kind is not None and not isinstance(kind, str):
        raise ReferenceNotFoundError(f"{_short(ref)} is not a reference handle: kind must be a str")
    return kind, ref_id


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _not_found(ref_id: str) -> ReferenceNotFoundError:
    # One message for unknown and another tenant's ids: nothing tells them apart.
    return ReferenceNotFoundError(
        f"reference {ref_id!r} was not found; create it again (references are per tenant and "
        "may expire)"
    )


# --- stores ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    created_at: int
    expires_at: int | None
    glimpse: Any
    payload: bytes  # the value's canonical JSON


class ReferenceStore(Protocol):
    """Where reference payloads live. Every method is scoped by ``tenant``."""

    def create(
        self, tenant: str, spec: ReferenceSpec, value: Any, glimpse: Any = None
    ) -> dict[str, Any]:
        """Validate and keep ``value``; return its handle ``{kind, id, glimpse}``."""

    def resolve(self, tenant: str, ref: object) -> Any:
        """The JSON value behind a handle (or id)."""

    def glimpse_of(self, tenant: str, ref: object) -> Any:
        """The glimpse kept with a handle (or id)."""

    def hydrate(self, tenant: str, handles: Iterable[object]) -> dict[str, dict[str, Any]]:
        """``{kind: {id: value}}`` for every handle."""


class _StoreBase:
    """The store logic; subclasses only put, get and delete entries."""

    __slots__ = ("_now_ms",)

    def __init__(self, *, now_ms: Clock | None = None) -> None:
        self._now_ms: Clock = now_ms or _wall_clock_ms

    def _put(self, tenant: str, ref_id: str, entry: _Entry) -> None:
        raise NotImplementedError

    def _get(self, tenant: str, ref_id: str) -> _Entry | None:
        raise NotImplementedError

    def _delete(self, tenant: str, ref_id: str) -> None:
        raise NotImplementedError

    def create(
        self, tenant: str, spec: ReferenceSpec, value: Any, glimpse: Any = None
    ) -> dict[str, Any]:
        _check_tenant(tenant)
        typed, json_value = spec.check(value)
        summary = (
            spec.summarize(typed, json_value)
            if glimpse is None
            else to_json_safe(glimpse, lenient=True)
        )
        ref_id = reference_id(tenant, spec.name, json_value)
        now = self._now_ms()
        # 0, like None, is no expiry.
        expires_at = now + spec.ttl_ms if spec.ttl_ms else None
        # Creating it again refreshes the time to live and the glimpse.
        self._put(
            tenant, ref_id, _Entry(spec.name, now, expires_at, summary, _canonical(json_value))
        )
        return {"kind": spec.name, "id": ref_id, "glimpse": summary}

    def _entry(self, tenant: str, ref: object) -> tuple[str, _Entry]:
        kind, ref_id = _parse_ref(ref)
        entry = self._get(tenant, ref_id) if isinstance(tenant, str) and tenant else None
        if entry is None or (kind is not None and kind != entry.kind):
            raise _not_found(ref_id)
        if entry.expires_at is not None and self._now_ms() >= entry.expires_at:
            self._delete(tenant, ref_id)
            raise ReferenceNotFoundError(
                f"reference {ref_id!r} ({entry.kind}) has expired; create it again"
            )
        return ref_id, entry

    def resolve(self, tenant: str, ref: object) -> Any:
        return orjson.loads(self._entry(tenant, ref)[1].payload)

    def glimpse_of(self, tenant: str, ref: object) -> Any:
        return self._entry(tenant, ref)[1].glimpse

    def hydrate(self, tenant: str, handles: Iterable[object]) -> dict[str, dict[str, Any]]:
        hydrated: dict[str, dict[str, Any]] = {}
        for handle in handles:
            ref_id, entry = self._entry(tenant, handle)
            by_id = hydrated.setdefault(entry.kind, {})
            if ref_id not in by_id:
                by_id[ref_id] = orjson.loads(entry.payload)
        return hydrated


def _check_tenant(tenant: object) -> None:
    if not isinstance(tenant, str) or not tenant:
        raise InvalidInputError(f"a reference needs the tenant's name, got {tenant!r}")


class MemoryReferenceStore(_StoreBase):
    """References held in this process; gone when it exits."""

    __slots__ = ("_entries",)

    def __init__(self, *, now_ms: Clock | None = None) -> None:
        super().__init__(now_ms=now_ms)
        self._entries: dict[tuple[str, str], _Entry] = {}

    def _put(self, tenant: str, ref_id: str, entry: _Entry) -> None:
        self._entries[tenant, ref_id] = entry

    def _get(self, tenant: str, ref_id: str) -> _Entry | None:
        return self._entries.get((tenant, ref_id))

    def _delete(self, tenant: str, ref_id: str) -> None:
        self._entries.pop((tenant, ref_id), None)


def _document(entry: _Entry) -> bytes:
    """The stored form of an entry: ``{"kind", "created_at", "expires_at", "glimpse",
    "value"}`` (times in ms since the epoch, ``expires_at`` null without a TTL)."""
    return (
        b'{"kind":'
        + orjson.dumps(entry.kind)
        + b',"created_at":'
        + orjson.dumps(entry.created_at)
        + b',"expires_at":'
        + orjson.dumps(entry.expires_at)
        + b',"glimpse":'
        + orjson.dumps(entry.glimpse)
        + b',"value":'
        + entry.payload
        + b"}\n"
    )


def _from_document(data: bytes | str) -> _Entry | None:
    """The entry a stored document holds; None when it cannot be read (it then reads as
    unknown: an unreadable payload cannot be resolved)."""
    try:
        document = orjson.loads(data)
        return _Entry(
            kind=document["kind"],
            created_at=document["created_at"],
            expires_at=document["expires_at"],
            glimpse=document["glimpse"],
            payload=_canonical(document["value"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


class FileReferenceStore(_StoreBase):
    """References as JSON files ``<root>/<tenant>/refs/<id>.json`` (next to the run logs).

    Each file holds ``{"kind", "created_at", "expires_at", "glimpse", "value"}`` (times in
    ms since the epoch, ``expires_at`` null without a TTL). Files are written whole and renamed
    into place, so a reader never sees half a payload; ids are content addresses, so two
    processes writing one id write the same value.
    """

    __slots__ = ("_root",)

    def __init__(self, root: str | os.PathLike[str], *, now_ms: Clock | None = None) -> None:
        super().__init__(now_ms=now_ms)
        self._root = Path(root)

    def path(self, tenant: str, ref_id: str) -> Path:
        """Where the payload of ``ref_id`` lives (the id must be a valid reference id)."""
        if not _ID.fullmatch(ref_id):
            raise ValueError(f"{ref_id!r} is not a reference id")
        return self._root / quote(tenant, safe="") / "refs" / f"{ref_id}.json"

    def _put(self, tenant: str, ref_id: str, entry: _Entry) -> None:
        path = self.path(tenant, ref_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        temporary.write_bytes(_document(entry))
        os.replace(temporary, path)

    def _get(self, tenant: str, ref_id: str) -> _Entry | None:
        try:
            return _from_document(self.path(tenant, ref_id).read_bytes())
        except OSError:  # not there (FileNotFoundError) or unreadable: unknown either way
            return None

    def _delete(self, tenant: str, ref_id: str) -> None:
        self.path(tenant, ref_id).unlink(missing_ok=True)


class RedisReferenceStore(_StoreBase):
    """References in Redis: the claim-check store the distributed services share.

    One string key per reference, ``<namespace>:<tenant>:<id>``, holding the same document as
    :class:`FileReferenceStore` (``{"kind", "created_at", "expires_at", "glimpse",
    "value"}``). A kind with a TTL sets the key's expiry, so Redis drops it when it lapses
    (and a read in between still reports it expired); a kind without one stays until
    ``default_ttl_ms`` (None: until deleted). Ids are content addresses, so tool workers
    writing one id at once write the same value.

    Synchronous, like every store: tool handlers call ``ctx.references`` from their own thread
    (async handlers from the event loop, one short round trip each). Give it a
    ``redis.Redis`` client (its pool is thread-safe) or use :meth:`from_url`.
    """

    __slots__ = ("_default_ttl_ms", "_redis", "namespace")

    def __init__(
        self,
        client: SyncRedis,
        *,
        namespace: str = "flowai:refs",
        default_ttl_ms: int | None = None,
        now_ms: Clock | None = None,
    ) -> None:
        super().__init__(now_ms=now_ms)
        if default_ttl_ms is not None and default_ttl_ms < 1:
            raise ValueError(f"default_ttl_ms must be >= 1 or None, got {default_ttl_ms}")
        self._redis = client
        self.namespace = namespace
        self._default_ttl_ms = default_ttl_ms

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "flowai:refs",
        default_ttl_ms: int | None = None,
        now_ms: Clock | None = None,
    ) -> RedisReferenceStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``); needs the ``redis``
        package (the ``kafka`` extra)."""
        import redis  # the kafka extra; the embedded runtime never needs it

        return cls(
            redis.Redis.from_url(url),
            namespace=namespace,
            default_ttl_ms=default_ttl_ms,
            now_ms=now_ms,
        )

    def key(self, tenant: str, ref_id: str) -> str:
        """The Redis key of ``ref_id`` (the id must be a valid reference id)."""
        if not _ID.fullmatch(ref_id):
            raise ValueError(f"{ref_id!r} is not a reference id")
        return f"{self.namespace}:{quote(tenant, safe='')}:{ref_id}"

    def _put(self, tenant: str, ref_id: str, entry: _Entry) -> None:
        ttl_ms = (
            self._default_ttl_ms
            if entry.expires_at is None
            else max(1, entry.expires_at - entry.created_at)
        )
        self._redis.set(self.key(tenant, ref_id), _document(entry), px=ttl_ms)

    def _get(self, tenant: str, ref_id: str) -> _Entry | None:
        data = self._redis.get(self.key(tenant, ref_id))
        if not isinstance(data, (bytes, str)):
            return None
        return _from_document(data)

    def _delete(self, tenant: str, ref_id: str) -> None:
        self._redis.delete(self.key(tenant, ref_id))

    def close(self) -> None:
        """Close the client's connections."""
        self._redis.close()


# --- what tool handlers get -----------------------------------------------------------------


class ReferenceAccess:
    """``ctx.references`` in a tool handler: one tenant's view of the store, with the
    reference kinds the runtime declares (by name)."""

    __slots__ = ("_specs", "_store", "tenant")

    def __init__(
        self,
        store: ReferenceStore,
        tenant: str,
        specs: Mapping[str, ReferenceSpec] | Iterable[ReferenceSpec] = (),
    ) -> None:
        self._store = store
        self.tenant = tenant
        self._specs: Mapping[str, ReferenceSpec] = (
            specs
            if isinstance(specs, types.MappingProxyType)
            else types.MappingProxyType(
                dict(specs) if isinstance(specs, Mapping) else {s.name: s for s in specs}
            )
        )

    def spec(self, reference: ReferenceSpec | str) -> ReferenceSpec:
        """The declared kind ``reference`` names (a name or the spec itself)."""
        name = reference.name if isinstance(reference, ReferenceSpec) else reference
        declared = self._specs.get(name) if isinstance(name, str) else None
        if declared is None or (isinstance(reference, ReferenceSpec) and declared != reference):
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownReferenceKindError(
                f"reference kind {name!r} is not declared by this runtime (declared: {known}); "
                "add it to define_runtime(references=[...])"
            )
        return declared

    def create(
        self, reference: ReferenceSpec | str, value: Any, glimpse: Any = None
    ) -> dict[str, Any]:
        """Keep ``value`` as a reference of that kind; returns ``{kind, id, glimpse}``."""
        return self._store.create(self.tenant, self.spec(reference), value, glimpse)

    def resolve(self, ref: object) -> Any:
        """The JSON value behind a handle; ReferenceNotFoundError when unknown or expired."""
        return self._store.resolve(self.tenant, ref)

    def glimpse(self, ref: object) -> Any:
        """The glimpse kept with a handle."""
        return self._store.glimpse_of(self.tenant, ref)

    def hydrate(self, handles: Iterable[object]) -> dict[str, dict[str, Any]]:
        """``{kind: {id: value}}`` for the handles, as the action dispatcher receives them."""
        return self._store.hydrate(self.tenant, handles)

    def __repr__(self) -> str:
        return f"ReferenceAccess(tenant={self.tenant!r}, kinds={sorted(self._specs)!r})"
