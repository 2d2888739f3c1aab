"""References: kinds, glimpses, content-addressed tenant-scoped stores, and ctx.references."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest
import redis

from flowai_harness.errors import (
    InvalidInputError,
    InvalidSchemaError,
    NotFoundError,
    ReferenceNotFoundError,
    ReferenceValidationError,
    SpecError,
    ToolError,
    UnknownReferenceKindError,
)
from flowai_harness.references import (
    FileReferenceStore,
    MemoryReferenceStore,
    RedisReferenceStore,
    ReferenceAccess,
    ReferenceHandle,
    ReferenceSpec,
    ReferenceStore,
    define_reference,
    glimpse,
    reference_id,
    to_json_safe,
)
from flowai_harness.tools import ToolContext


class Product(pydantic.BaseModel):
    sku: str
    price: Decimal


PRODUCTS = [
    {"sku": "a-1", "price": "1.50"},
    {"sku": "b-2", "price": "2"},
    {"sku": "c-3", "price": "3.25"},
    {"sku": "d-4", "price": "4"},
]
# A glimpse function, as the seed asks for: without one the glimpse is {}.
PRODUCT_SET = define_reference("product_set", list[Product], glimpse=glimpse)


class Clock:
    """An injectable clock: TTL tests move time instead of sleeping."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[ReferenceStore]:
    if request.param == "memory":
        yield MemoryReferenceStore(now_ms=clock)
    elif request.param == "file":
        yield FileReferenceStore(tmp_path, now_ms=clock)
    else:
        # The same laws on the real Redis (FLOWAI_REDIS_URL), in a namespace of its own.
        url = os.environ.get("FLOWAI_REDIS_URL")
        if not url:
            if os.environ.get("CI"):
                pytest.fail("FLOWAI_REDIS_URL is not set; start Redis with scripts/services")
            pytest.skip("needs Redis: scripts/services/services start; . var/services/env")
        namespace = f"test-{uuid.uuid4().hex[:12]}:refs"
        redis_store = RedisReferenceStore.from_url(url, namespace=namespace, now_ms=clock)
        yield redis_store
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{namespace}:*", count=10_000))
        if keys:
            client.delete(*keys)
        client.close()
        redis_store.close()


# --- JSON-safe values and glimpses ----------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    at: datetime.date


def test_to_json_safe_converts_the_usual_python_values() -> None:
    value = {
        "price": Decimal("1.10"),
        "when": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
        "day": datetime.date(2024, 5, 1),
        "id": uuid.UUID(int=1),
        "colour": Colour.RED,
        "point": Point(1, datetime.date(2024, 1, 2)),
        "product": Product(sku="a", price=Decimal("2.5")),
        "tags": {"b", "a"},
        "pair": (1, 2),
        "path": Path("/tmp/x"),
        "wait": datetime.timedelta(seconds=1.5),
        3: "int key",
    }

    assert to_json_safe(value) == {
        "price": "1.10",
        "when": "2024-05-01T12:30:00+00:00",
        "day": "2024-05-01",
        "id": "00000000-0000-0000-0000-000000000001",
        "colour": "red",
        "point": {"x": 1, "at": "2024-01-02"},
        "product": {"sku": "a", "price": "2.5"},
        "tags": ["a", "b"],
        "pair": [1, 2],
        "path": "/tmp/x",
        "wait": 1.5,
        "3": "int key",
    }


def test_to_json_safe_refuses_unknown_values_unless_lenient() -> None:
    with pytest.raises(TypeError, match="object is not JSON-serializable"):
        to_json_safe({"x": object()})
    assert to_json_safe(b"raw", lenient=True) == "b'raw'"


def test_a_mapping_glimpse_passes_through_json_safe() -> None:
    assert glimpse({"total": Decimal("9.99"), "on": datetime.date(2024, 1, 1)}) == {
        "total": "9.99",
        "on": "2024-01-01",
    }


def test_pydantic_values_and_dataclasses_glimpse_as_mappings() -> None:
    assert glimpse(Product(sku="a", price=Decimal(1))) == {"sku": "a", "price": "1"}
    assert glimpse(Point(1, datetime.date(2024, 1, 2))) == {"x": 1, "at": "2024-01-02"}


def test_a_sequence_glimpse_counts_and_samples() -> None:
    products = [Product(sku=str(n), price=Decimal(n)) for n in range(5)]

    assert glimpse(products) == {
        "count": 5,
        "sample": [
            {"sku": "0", "price": "0"},
            {"sku": "1", "price": "1"},
            {"sku": "2", "price": "2"},
        ],
    }
    assert glimpse((1, 2), max_items=1) == {"count": 2, "sample": [1]}
    assert glimpse([], max_items=0) == {"count": 0, "sample": []}
    assert glimpse({3, 1, 2}, max_items=2) == {"count": 3, "sample": [1, 2]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, 42),
        ("a string is a scalar", "a string is a scalar"),
        (Decimal("0.1"), "0.1"),
        (datetime.date(2024, 2, 29), "2024-02-29"),
        (None, None),
    ],
)
def test_a_scalar_glimpse_is_its_value(value: Any, expected: Any) -> None:
    assert glimpse(value) == {"value": expected}


@pytest.mark.parametrize("max_items", [-1, 1.5, True, "3"])
def test_max_items_is_a_count(max_items: Any) -> None:
    with pytest.raises(ValueError, match="max_items must be an int >= 0"):
        glimpse([1], max_items=max_items)


# --- define_reference -----------------------------------------------------------------------


def test_define_reference_from_a_type() -> None:
    assert PRODUCT_SET.declaration() == {
        "name": "product_set",
        "schema": {
            "$defs": {
                "Product": {
                    "properties": {
                        "sku": {"title": "Sku", "type": "string"},
                        "price": {
                            "anyOf": [{"type": "number"}, {"type": "string"}],
                            "title": "Price",
                        },
                    },
                    "required": ["sku", "price"],
                    "title": "Product",
                    "type": "object",
                }
            },
            "items": {"$ref": "#/$defs/Product"},
            "type": "array",
        },
        "ttl_ms": None,
    }


def test_define_reference_from_a_model_or_a_json_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}

    from_model = define_reference("product", Product, ttl_ms=60_000)
    from_dict = define_reference("counter", schema)
    schema["properties"] = {}

    assert from_model.schema["title"] == "Product"
    assert from_model.ttl_ms == 60_000
    assert from_dict.schema == {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert from_dict.adapter is None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "bad name"}, SpecError, "reference name 'bad name' is not valid"),
        ({"ttl_ms": -1}, SpecError, "ttl_ms must be >= 0"),
        ({"ttl_ms": 1.5}, SpecError, "ttl_ms must be an int"),
        ({"ttl_ms": True}, SpecError, "ttl_ms must be an int"),
        ({"glimpse": "summary"}, SpecError, "glimpse must be a function"),
        ({"schema": object()}, InvalidSchemaError, "schema must be a Pydantic model, a type"),
        ({"schema": {"default": object()}}, InvalidSchemaError, "is not JSON"),
    ],
)
def test_define_reference_rejects(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    arguments: dict[str, Any] = {"name": "product_set", "schema": list[Product], **kwargs}

    with pytest.raises(error, match=match):
        define_reference(**arguments)


def test_reference_specs_compare_by_declaration_and_glimpse() -> None:
    assert define_reference("p", Product) == define_reference("p", Product)
    assert define_reference("p", Product) != define_reference("p", Product, ttl_ms=5)
    assert define_reference("p", Product) != define_reference("p", Product, glimpse=len)
    assert hash(define_reference("p", Product)) == hash(define_reference("p", Product, ttl_ms=5))


# --- create, resolve, glimpse ---------------------------------------------------------------


def test_create_returns_a_handle_with_a_content_address(store: ReferenceStore) -> None:
    handle = store.create("acme", PRODUCT_SET, PRODUCTS)

    canonical = orjson.dumps(PRODUCT_SET.validate(PRODUCTS), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(b"acme\0product_set\0" + canonical).hexdigest()
    assert handle == {
        "kind": "product_set",
        "id": f"ref_{digest[:32]}",
        "glimpse": {
            "count": 4,
            "sample": [
                {"sku": "a-1", "price": "1.50"},
                {"sku": "b-2", "price": "2"},
                {"sku": "c-3", "price": "3.25"},
            ],
        },
    }


def test_ids_depend_on_content_kind_and_tenant_only() -> None:
    value = {"b": 1, "a": [1, 2]}

    same = reference_id("acme", "k", value)

    assert same == reference_id("acme", "k", {"a": [1, 2], "b": 1})  # key order is irrelevant
    assert same != reference_id("other", "k", value)
    assert same != reference_id("acme", "j", value)
    assert same != reference_id("acme", "k", {"b": 2, "a": [1, 2]})


def test_resolve_returns_the_validated_json_value(store: ReferenceStore) -> None:
    handle = store.create("acme", PRODUCT_SET, [Product(sku="x", price=Decimal("1.0"))])

    assert store.resolve("acme", handle) == [{"sku": "x", "price": "1.0"}]
    assert store.resolve("acme", handle["id"]) == [{"sku": "x", "price": "1.0"}]
    assert store.resolve("acme", ReferenceHandle(kind="product_set", id=handle["id"])) == [
        {"sku": "x", "price": "1.0"}
    ]


def test_an_invalid_value_is_a_typed_error(store: ReferenceStore) -> None:
    with pytest.raises(
        ReferenceValidationError, match=r"reference 'product_set'.*at 0/price"
    ) as caught:
        store.create("acme", PRODUCT_SET, [{"sku": "a", "price": "cheap"}])

    assert caught.value.code == "REFERENCE_INVALID"
    assert isinstance(caught.value, InvalidInputError)
    assert caught.value.details["errors"][0]["loc"] == (0, "price")


def test_a_json_schema_kind_needs_a_json_value(store: ReferenceStore) -> None:
    counter = define_reference("counter", {"type": "object"})

    handle = store.create("acme", counter, {"n": Decimal("1.5"), "at": datetime.date(2024, 1, 1)})
    assert store.resolve("acme", handle) == {"n": "1.5", "at": "2024-01-01"}
    with pytest.raises(ReferenceValidationError, match="the value is not JSON"):
        store.create("acme", counter, {"x": object()})


def test_a_json_schema_kind_is_checked_by_the_engines_validator(store: ReferenceStore) -> None:
    rows = define_reference("rows", {"type": "array", "items": {"type": "integer"}})

    assert store.resolve("acme", store.create("acme", rows, [1, 2])) == [1, 2]
    with pytest.raises(ReferenceValidationError, match=r"at /1: expected integer") as caught:
        store.create("acme", rows, [1, "two"])
    assert caught.value.code == "REFERENCE_INVALID"


def test_creating_again_gives_the_same_id(store: ReferenceStore) -> None:
    first = store.create("acme", PRODUCT_SET, PRODUCTS)
    again = store.create("acme", PRODUCT_SET, [dict(reversed(p.items())) for p in PRODUCTS])

    assert again["id"] == first["id"]


def test_another_tenants_id_reads_exactly_like_an_unknown_one(store: ReferenceStore) -> None:
    theirs = store.create("globex", PRODUCT_SET, PRODUCTS)["id"]
    unknown = reference_id("acme", "product_set", ["nothing", "here"])

    def error(ref_id: str) -> tuple[type[Exception], str]:
        with pytest.raises(ReferenceNotFoundError) as caught:
            store.resolve("acme", {"kind": "product_set", "id": ref_id})
        with pytest.raises(ReferenceNotFoundError):
            store.glimpse_of("acme", ref_id)
        return type(caught.value), str(caught.value).replace(ref_id, "<id>")

    assert error(theirs) == error(unknown)
    assert error(theirs) == (
        ReferenceNotFoundError,
        "[REFERENCE_NOT_FOUND] reference '<id>' was not found; create it again (references "
        "are per tenant and may expire)",
    )
    assert issubclass(ReferenceNotFoundError, NotFoundError)
    assert store.resolve("globex", theirs) == PRODUCT_SET.validate(PRODUCTS)


def test_a_handle_with_another_kind_is_not_found(store: ReferenceStore) -> None:
    handle = store.create("acme", PRODUCT_SET, PRODUCTS)

    with pytest.raises(ReferenceNotFoundError, match="was not found"):
        store.resolve("acme", {**handle, "kind": "customer_set"})


@pytest.mark.parametrize(
    "ref",
    [
        None,
        42,
        "ref_short",
        "../../../etc/passwd",
        {"kind": "product_set"},
        {"kind": "product_set", "id": "ref_" + "A" * 32},
        {"kind": 3, "id": "ref_" + "0" * 32},
    ],
)
def test_a_malformed_handle_is_not_found(store: ReferenceStore, ref: Any) -> None:
    with pytest.raises(ReferenceNotFoundError, match="is not a reference handle"):
        store.resolve("acme", ref)


def test_a_tenant_is_needed_to_create(store: ReferenceStore) -> None:
    with pytest.raises(InvalidInputError, match="needs the tenant's name"):
        store.create("", PRODUCT_SET, PRODUCTS)


def test_references_expire_after_their_ttl(store: ReferenceStore, clock: Clock) -> None:
    short = define_reference("quote", {"type": "number"}, ttl_ms=1_000)
    handle = store.create("acme", short, 9.5)

    clock.now += 999
    assert store.resolve("acme", handle) == 9.5
    clock.now += 1
    with pytest.raises(ReferenceNotFoundError, match=r"\(quote\) has expired; create it again"):
        store.resolve("acme", handle)
    with pytest.raises(ReferenceNotFoundError, match="was not found"):
        store.glimpse_of("acme", handle)  # gone once found expired


def test_creating_again_refreshes_the_ttl(store: ReferenceStore, clock: Clock) -> None:
    short = define_reference("quote", {"type": "number"}, ttl_ms=1_000)
    handle = store.create("acme", short, 9.5)

    clock.now += 900
    store.create("acme", short, 9.5)
    clock.now += 900

    assert store.resolve("acme", handle) == 9.5


def test_glimpses(store: ReferenceStore) -> None:
    seen: list[Any] = []

    def cheapest(products: list[Product]) -> dict[str, Any]:
        seen.append(products)
        return {
            "cheapest": min(products, key=lambda p: p.price).sku,
            "total": sum(p.price for p in products),
        }

    summarized = define_reference("product_set", list[Product], glimpse=cheapest)

    handle = store.create("acme", summarized, PRODUCTS)
    explicit = store.create("acme", PRODUCT_SET, PRODUCTS[:1], glimpse={"note": Decimal("1")})

    assert handle["glimpse"] == {"cheapest": "a-1", "total": "10.75"}
    assert isinstance(seen[0][0], Product), "the glimpse function gets the typed value"
    assert store.glimpse_of("acme", handle) == handle["glimpse"]
    assert explicit["glimpse"] == {"note": "1"}
    assert store.glimpse_of("acme", explicit["id"]) == {"note": "1"}


def test_hydrate_groups_values_by_kind_and_id(store: ReferenceStore) -> None:
    counter = define_reference("counter", {"type": "integer"})
    products = store.create("acme", PRODUCT_SET, PRODUCTS)
    one = store.create("acme", counter, 1)
    two = store.create("acme", counter, 2)

    hydrated = store.hydrate("acme", [products, one, two, one, two["id"]])

    assert hydrated == {
        "product_set": {products["id"]: PRODUCT_SET.validate(PRODUCTS)},
        "counter": {one["id"]: 1, two["id"]: 2},
    }
    assert store.hydrate("acme", []) == {}
    with pytest.raises(ReferenceNotFoundError):
        store.hydrate("globex", [products])


# --- the file store -------------------------------------------------------------------------


def test_the_file_store_layout(tmp_path: Path, clock: Clock) -> None:
    short = define_reference("product_set", list[Product], ttl_ms=5_000)
    handle = FileReferenceStore(tmp_path, now_ms=clock).create("acme", short, PRODUCTS)

    path = tmp_path / "acme" / "refs" / f"{handle['id']}.json"
    document = json.loads(path.read_text())
    assert document == {
        "kind": "product_set",
        "created_at": 1_000_000,
        "expires_at": 1_005_000,
        "glimpse": handle["glimpse"],
        "value": PRODUCT_SET.validate(PRODUCTS),
    }
    assert list(path.parent.iterdir()) == [path], "no temporary files left behind"


def test_another_process_resolves_from_the_same_root(tmp_path: Path) -> None:
    handle = FileReferenceStore(tmp_path).create("acme", PRODUCT_SET, PRODUCTS)

    reopened = FileReferenceStore(tmp_path)

    assert reopened.resolve("acme", handle) == PRODUCT_SET.validate(PRODUCTS)
    assert reopened.glimpse_of("acme", handle) == handle["glimpse"]


def test_the_file_store_keeps_tenants_apart_on_disk(tmp_path: Path) -> None:
    store = FileReferenceStore(tmp_path)

    handle = store.create("acme/eu", PRODUCT_SET, PRODUCTS)

    assert (tmp_path / "acme%2Feu" / "refs" / f"{handle['id']}.json").exists()
    with pytest.raises(ReferenceNotFoundError):
        store.resolve("acme", handle)


def test_an_expired_file_is_removed(tmp_path: Path, clock: Clock) -> None:
    store = FileReferenceStore(tmp_path, now_ms=clock)
    handle = store.create("acme", define_reference("quote", {"type": "number"}, ttl_ms=10), 1.0)
    path = store.path("acme", handle["id"])

    clock.now += 10
    with pytest.raises(ReferenceNotFoundError, match="expired"):
        store.resolve("acme", handle)

    assert not path.exists()


def test_an_unreadable_file_reads_as_unknown(tmp_path: Path) -> None:
    store = FileReferenceStore(tmp_path)
    handle = store.create("acme", PRODUCT_SET, PRODUCTS)
    store.path("acme", handle["id"]).write_text('{"kind": "product_set", "val')

    with pytest.raises(ReferenceNotFoundError, match="was not found"):
        store.resolve("acme", handle)


def test_the_file_store_path_refuses_other_ids(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a reference id"):
        FileReferenceStore(tmp_path).path("acme", "../x")


# --- ctx.references -------------------------------------------------------------------------


def access(store: ReferenceStore | None = None, tenant: str = "acme") -> ReferenceAccess:
    counter = define_reference("counter", {"type": "integer"})
    return ReferenceAccess(
        MemoryReferenceStore() if store is None else store, tenant, [PRODUCT_SET, counter]
    )


def test_reference_access_creates_by_name_or_spec() -> None:
    refs = access()

    by_name = refs.create("product_set", PRODUCTS)
    by_spec = refs.create(PRODUCT_SET, PRODUCTS, glimpse="four products")

    assert by_name["id"] == by_spec["id"]
    assert by_spec["glimpse"] == "four products"
    assert refs.resolve(by_name) == PRODUCT_SET.validate(PRODUCTS)
    assert refs.glimpse(by_name) == "four products"
    assert refs.hydrate([by_name]) == {
        "product_set": {by_name["id"]: PRODUCT_SET.validate(PRODUCTS)}
    }
    assert "product_set" in repr(refs)


def test_reference_access_is_one_tenants_view() -> None:
    shared = MemoryReferenceStore()
    handle = access(shared, "globex").create("counter", 7)

    with pytest.raises(ReferenceNotFoundError):
        access(shared, "acme").resolve(handle)
    assert access(shared, "globex").resolve(handle) == 7


@pytest.mark.parametrize(
    "reference",
    ["customer_set", define_reference("product_set", list[Product], ttl_ms=5), 3],
)
def test_undeclared_kinds_are_refused(reference: Any) -> None:
    with pytest.raises(
        UnknownReferenceKindError, match="is not declared by this runtime"
    ) as caught:
        access().create(reference, PRODUCTS)

    assert "declared: counter, product_set" in str(caught.value)
    assert caught.value.code == "UNKNOWN_REFERENCE_KIND"


def test_reference_access_takes_specs_as_a_mapping() -> None:
    refs = ReferenceAccess(MemoryReferenceStore(), "acme", {"product_set": PRODUCT_SET})

    assert refs.spec("product_set") is PRODUCT_SET


def test_tool_context_references() -> None:
    refs = access()

    ctx = ToolContext("call-1", "find", "thread-1", "run-1", "planner", references=refs)

    assert ctx.references is refs


def test_tool_context_without_references_says_what_to_declare() -> None:
    ctx = ToolContext("call-1", "find", "thread-1", "run-1", "planner")

    with pytest.raises(ToolError, match=r"define_runtime\(references=\[...\]\)"):
        ctx.references.create("product_set", [])


def test_reference_spec_validate_returns_json() -> None:
    assert isinstance(PRODUCT_SET, ReferenceSpec)
    assert PRODUCT_SET.validate([Product(sku="a", price=Decimal("1"))]) == [
        {"sku": "a", "price": "1"}
    ]


def test_the_handle_schema_is_in_the_engine_subset() -> None:
    schema = ReferenceHandle.model_json_schema()

    assert "pattern" not in orjson.dumps(schema).decode()
    assert schema["required"] == ["kind", "id"]
    assert schema["additionalProperties"] is False
