"""The Redis reference store on the real Redis: what differs from the memory and file stores.

The laws every store keeps (content addresses, tenant scoping, TTL by the store's clock,
glimpses, hydration) run against Redis too, in tests/unit/test_references.py. Here: the key
layout, expiry handed to Redis itself, payloads shared between store instances (processes),
and unreadable keys.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
import redis

from flowai_harness import define_reference, glimpse
from flowai_harness.errors import ReferenceNotFoundError
from flowai_harness.references import RedisReferenceStore, ReferenceAccess

ITEMS = [{"sku": "a-1"}, {"sku": "b-2"}]
FOREVER = define_reference("items", {"type": "array"}, glimpse=glimpse)
BRIEF = define_reference("quote", {"type": "number"}, ttl_ms=60_000)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    url = os.environ.get("FLOWAI_REDIS_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("FLOWAI_REDIS_URL is not set; start Redis with scripts/services")
        pytest.skip("needs Redis: scripts/services/services start; . var/services/env")
    connection = redis.Redis.from_url(url)
    yield connection
    connection.close()


@pytest.fixture
def namespace(client: redis.Redis) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}:refs"
    yield name
    keys = list(client.scan_iter(match=f"{name}:*", count=10_000))
    if keys:
        client.delete(*keys)


def test_one_key_per_reference_holding_the_file_stores_document(
    client: redis.Redis, namespace: str
) -> None:
    store = RedisReferenceStore(client, namespace=namespace)

    handle = store.create("acme/eu", FOREVER, ITEMS)

    key = f"{namespace}:acme%2Feu:{handle['id']}"
    assert store.key("acme/eu", handle["id"]) == key
    document = orjson.loads(client.get(key) or b"")
    assert document["kind"] == "items"
    assert document["value"] == ITEMS
    assert document["glimpse"] == {"count": 2, "sample": ITEMS}
    assert document["expires_at"] is None
    assert client.pttl(key) == -1  # no TTL: kept until deleted


def test_a_kinds_ttl_becomes_the_keys_expiry(client: redis.Redis, namespace: str) -> None:
    store = RedisReferenceStore(client, namespace=namespace)

    handle = store.create("acme", BRIEF, 9.5)

    assert 0 < client.pttl(store.key("acme", handle["id"])) <= 60_000


def test_default_ttl_bounds_references_without_one(client: redis.Redis, namespace: str) -> None:
    store = RedisReferenceStore(client, namespace=namespace, default_ttl_ms=5_000)

    handle = store.create("acme", FOREVER, ITEMS)

    assert 0 < client.pttl(store.key("acme", handle["id"])) <= 5_000
    with pytest.raises(ValueError, match="default_ttl_ms"):
        RedisReferenceStore(client, namespace=namespace, default_ttl_ms=0)


def test_redis_drops_an_expired_reference(client: redis.Redis, namespace: str) -> None:
    fleeting = define_reference("tick", {"type": "integer"}, ttl_ms=30)
    store = RedisReferenceStore(client, namespace=namespace)
    handle = store.create("acme", fleeting, 1)
    key = store.key("acme", handle["id"])

    deadline = time.monotonic() + 5
    while client.exists(key):  # Redis itself removes it; nothing here deletes it
        assert time.monotonic() < deadline, "Redis kept an expired reference"
        time.sleep(0.01)

    with pytest.raises(ReferenceNotFoundError, match="was not found"):
        store.resolve("acme", handle)


def test_another_store_instance_resolves_the_same_payload(namespace: str) -> None:
    url = os.environ["FLOWAI_REDIS_URL"]
    writer = RedisReferenceStore.from_url(url, namespace=namespace)
    reader = RedisReferenceStore.from_url(url, namespace=namespace)
    elsewhere = RedisReferenceStore.from_url(url, namespace=f"{namespace}-other")
    try:
        handle = ReferenceAccess(writer, "acme", [FOREVER]).create("items", ITEMS)

        assert ReferenceAccess(reader, "acme", [FOREVER]).resolve(handle) == ITEMS
        assert reader.hydrate("acme", [handle]) == {"items": {handle["id"]: ITEMS}}
        with pytest.raises(ReferenceNotFoundError):
            reader.resolve("globex", handle)  # another tenant's id reads as unknown
        with pytest.raises(ReferenceNotFoundError):
            elsewhere.resolve("acme", handle)  # another namespace (topic prefix)
    finally:
        for store in (writer, reader, elsewhere):
            store.close()


def test_an_unreadable_key_reads_as_unknown(client: redis.Redis, namespace: str) -> None:
    store = RedisReferenceStore(client, namespace=namespace)
    handle = store.create("acme", FOREVER, ITEMS)
    client.set(store.key("acme", handle["id"]), b"{not json")

    with pytest.raises(ReferenceNotFoundError, match="was not found"):
        store.resolve("acme", handle)


def test_the_key_refuses_other_ids(client: redis.Redis, namespace: str) -> None:
    with pytest.raises(ValueError, match="is not a reference id"):
        RedisReferenceStore(client, namespace=namespace).key("acme", "*")
