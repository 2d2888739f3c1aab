"""References through the runtime: ``create_reference``/``resolve_reference``/
``reference_glimpse``, ``ctx.references`` in tool handlers, the executor's resolveRef and
glimpseRef, tenants, expiry, and payloads kept out of the run log (under log_path when given).

The stores themselves (ids, TTLs with an injected clock, the file layout) are tested in
test_references.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from streams import drain, finish, of_type

from flowai_harness import (
    Runtime,
    RuntimeSpec,
    define_coordinator,
    define_executor,
    define_plan,
    define_reference,
    define_runtime,
    define_specialist,
    define_tool,
)
from flowai_harness import references as references_module
from flowai_harness.errors import (
    InvalidInputError,
    ReferenceNotFoundError,
    ReferenceValidationError,
    UnknownReferenceKindError,
)

Event = dict[str, Any]
OpenRuntime = Callable[..., Runtime]


class Product(pydantic.BaseModel):
    sku: str
    name: str
    on_hand: int


SECRET = "supplier price 4.17 per kg"
STOCK = [
    {"sku": "A-100", "name": f"Espresso beans ({SECRET})", "on_hand": 4},
    {"sku": "C-007", "name": "Cold brew concentrate", "on_hand": 0},
]
PRODUCTS = define_reference(
    "product_set", list[Product], ttl_ms=1000, glimpse=lambda value: {"count": len(value)}
)
# A JSON Schema kind with the default glimpse.
NOTES = define_reference("notes", {"type": "array", "items": {"type": "string"}})
# The executor's plan kind (an executor needs one; these tests store no plan).
RECOUNT = define_plan(
    "recount",
    {
        "type": "object",
        "properties": {"actions": {"type": "array", "items": {"type": "object"}}},
        "required": ["actions"],
    },
)


@define_tool("find_products", {"warehouse": str}, description="Low-stock products, as a reference.")
def find_products(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    handle: dict[str, Any] = ctx.references.create(PRODUCTS, STOCK)
    return handle


@define_tool("count_products", {"ref": dict}, description="How many products a reference holds.")
def count_products(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"count": len(ctx.references.resolve(args["ref"]))}


def make_spec(tenant: str = "acme") -> RuntimeSpec:
    return define_runtime(
        (tenant, "v1"),
        agents=[
            define_coordinator(
                "boss",
                model="claude-sonnet-4-6",
                prompt="Route.",
                routes=["clerk", "executor", "auditor"],
            ),
            define_specialist(
                "clerk",
                model="claude-haiku-4-5",
                prompt="You look up stock.",
                tools=[find_products, count_products],
            ),
            define_executor("executor", model="claude-haiku-4-5", prompt="Execute.", plan=RECOUNT),
            # A specialist has no role tools; the references toolkit gives it the two.
            define_specialist(
                "auditor",
                model="claude-haiku-4-5",
                prompt="You check references.",
                toolkits=["references"],
            ),
        ],
        providers={"anthropic": {}},
        references=[PRODUCTS, NOTES],
    )


@pytest.fixture
def open_shop(open_runtime: OpenRuntime) -> Callable[..., Runtime]:
    def open_(log_path: Path | None = None, tenant: str = "acme") -> Runtime:
        return open_runtime(make_spec(tenant), interpreter="scripted", log_path=log_path)

    return open_


def tool_script(*calls: tuple[str, dict[str, Any]]) -> str:
    return json.dumps({"script": [{"tool": tool, "args": args} for tool, args in calls]})


def result_of(events: list[Event], tool: str) -> Any:
    return [e["result"] for e in of_type(events, "tool-invocation", toolName=tool, state="result")]


# --- the runtime's API ----------------------------------------------------------------------


async def test_create_resolve_and_glimpse(open_shop: Callable[..., Runtime]) -> None:
    runtime = open_shop()

    handle = await runtime.create_reference(PRODUCTS, STOCK)

    assert handle == {"kind": "product_set", "id": handle["id"], "glimpse": {"count": 2}}
    assert re.fullmatch(r"ref_[0-9a-f]{32}", handle["id"])
    assert await runtime.resolve_reference(handle) == STOCK
    assert await runtime.reference_glimpse(handle) == {"count": 2}
    # A bare id or a handle without its glimpse reads the same.
    assert await runtime.resolve_reference(handle["id"]) == STOCK
    assert await runtime.resolve_reference({"kind": "product_set", "id": handle["id"]}) == STOCK


async def test_kinds_by_name_default_and_given_glimpses(open_shop: Callable[..., Runtime]) -> None:
    runtime = open_shop()

    notes = await runtime.create_reference("notes", ["a", "b", "c", "d"])
    given = await runtime.create_reference("notes", ["x"], glimpse="one note")

    # Without a glimpse function or an explicit glimpse the model sees nothing (the seed's).
    assert notes["glimpse"] == {}
    assert await runtime.reference_glimpse(notes) == notes["glimpse"]
    assert given["glimpse"] == "one note"
    assert await runtime.resolve_reference(given) == ["x"]


async def test_ids_are_content_addresses(open_shop: Callable[..., Runtime]) -> None:
    runtime = open_shop()
    reordered = [{"on_hand": p["on_hand"], "name": p["name"], "sku": p["sku"]} for p in STOCK]

    first = await runtime.create_reference(PRODUCTS, STOCK)

    assert (await runtime.create_reference(PRODUCTS, reordered))["id"] == first["id"]
    as_models = [Product(**p) for p in STOCK]
    assert (await runtime.create_reference(PRODUCTS, as_models))["id"] == first["id"]
    assert (await runtime.create_reference(PRODUCTS, STOCK[:1]))["id"] != first["id"]
    # Another runtime of the tenant names the same value the same way.
    assert (await open_shop().create_reference(PRODUCTS, STOCK))["id"] == first["id"]


@pytest.mark.parametrize("on_disk", [True, False], ids=["log_path", "memory"])
async def test_references_are_per_tenant(
    tmp_path: Path, open_shop: Callable[..., Runtime], on_disk: bool
) -> None:
    log_path = tmp_path if on_disk else None
    acme, globex = open_shop(log_path), open_shop(log_path, tenant="globex")
    handle = await acme.create_reference(PRODUCTS, STOCK)
    unknown = {"kind": "product_set", "id": "ref_" + "f" * 32}

    with pytest.raises(ReferenceNotFoundError) as theirs:
        await globex.resolve_reference(handle)
    with pytest.raises(ReferenceNotFoundError) as nobodys:
        await globex.resolve_reference(unknown)
    with pytest.raises(ReferenceNotFoundError):
        await globex.reference_glimpse(handle)

    # Another tenant's id reads exactly like an unknown one.
    assert str(theirs.value).replace(handle["id"], unknown["id"]) == str(nobodys.value)
    assert (await globex.create_reference(PRODUCTS, STOCK))["id"] != handle["id"]
    assert await acme.resolve_reference(handle) == STOCK


@pytest.mark.parametrize(
    "ref",
    [
        {"kind": "product_set", "id": "ref_" + "0" * 32},
        "ref_" + "0" * 32,
        {"kind": "product_set", "id": "../../etc/passwd"},
        {"kind": "product_set"},
        None,
        42,
    ],
)
async def test_unknown_or_malformed_refs_are_not_found(
    tmp_path: Path, open_shop: Callable[..., Runtime], ref: Any
) -> None:
    runtime = open_shop(tmp_path)

    with pytest.raises(ReferenceNotFoundError) as caught:
        await runtime.resolve_reference(ref)

    assert isinstance(caught.value, LookupError)
    assert caught.value.code == "REFERENCE_NOT_FOUND"


async def test_a_handle_of_another_kind_is_not_found(open_shop: Callable[..., Runtime]) -> None:
    runtime = open_shop()
    handle = await runtime.create_reference(PRODUCTS, STOCK)

    with pytest.raises(ReferenceNotFoundError):
        await runtime.resolve_reference({"kind": "notes", "id": handle["id"]})


@pytest.mark.parametrize("on_disk", [True, False], ids=["log_path", "memory"])
async def test_references_expire_after_their_ttl(
    tmp_path: Path,
    open_shop: Callable[..., Runtime],
    monkeypatch: pytest.MonkeyPatch,
    on_disk: bool,
) -> None:
    now = [1_000_000]
    # The stores read the clock through this function; the runtime builds them with it.
    monkeypatch.setattr(references_module, "_wall_clock_ms", lambda: now[0])
    runtime = open_shop(tmp_path if on_disk else None)
    handle = await runtime.create_reference(PRODUCTS, STOCK)
    notes = await runtime.create_reference(NOTES, ["kept"])  # no ttl

    now[0] += PRODUCTS.ttl_ms - 1
    assert await runtime.resolve_reference(handle) == STOCK
    now[0] += 1

    with pytest.raises(ReferenceNotFoundError, match="expired"):
        await runtime.resolve_reference(handle)
    with pytest.raises(ReferenceNotFoundError):
        await runtime.reference_glimpse(handle)
    now[0] += 10**9
    assert await runtime.resolve_reference(notes) == ["kept"]
    # Creating it again starts a new time to live, under the same id.
    assert (await runtime.create_reference(PRODUCTS, STOCK))["id"] == handle["id"]
    assert await runtime.resolve_reference(handle) == STOCK


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (PRODUCTS, [{"sku": "A-100"}]),
        (PRODUCTS, {"sku": "A-100", "name": "x", "on_hand": 1}),
        (PRODUCTS, [{"sku": "A-100", "name": "x", "on_hand": "many"}]),
        (NOTES, ["fine", 3]),
        (NOTES, "not a list"),
        (NOTES, [object()]),
    ],
)
async def test_values_are_checked_against_the_kinds_schema(
    tmp_path: Path, open_shop: Callable[..., Runtime], kind: Any, value: Any
) -> None:
    runtime = open_shop(tmp_path)

    with pytest.raises(ReferenceValidationError, match=f"reference '{kind.name}'") as caught:
        await runtime.create_reference(kind, value)

    assert isinstance(caught.value, InvalidInputError)
    assert not (tmp_path / "acme" / "refs").exists()  # nothing kept


@pytest.mark.parametrize(
    "kind", ["orders", define_reference("product_set", list[str])], ids=["unknown", "redefined"]
)
async def test_only_the_runtimes_declared_kinds_are_accepted(
    open_shop: Callable[..., Runtime], kind: Any
) -> None:
    with pytest.raises(UnknownReferenceKindError, match="not declared by this runtime"):
        await open_shop().create_reference(kind, ["x"])


# --- payloads on disk, out of the log -------------------------------------------------------


async def test_payloads_live_under_log_path_and_another_runtime_resolves_them(
    tmp_path: Path, open_shop: Callable[..., Runtime]
) -> None:
    handle = await open_shop(tmp_path).create_reference(PRODUCTS, STOCK)

    stored = tmp_path / "acme" / "refs" / f"{handle['id']}.json"
    assert stored.exists()
    assert await open_shop(tmp_path).resolve_reference(handle) == STOCK
    assert await open_shop(tmp_path).reference_glimpse(handle) == {"count": 2}
    with pytest.raises(ReferenceNotFoundError):
        await open_shop().resolve_reference(handle)  # in memory: another store


async def test_tools_create_and_resolve_through_ctx_and_the_log_holds_only_handles(
    tmp_path: Path, open_shop: Callable[..., Runtime]
) -> None:
    runtime = open_shop(tmp_path)

    found = await drain(
        runtime.run_specialist("clerk", tool_script(("find_products", {"warehouse": "main"})), "t")
    )
    (handle,) = result_of(found, "find_products")
    counted = await drain(
        runtime.run_specialist("clerk", tool_script(("count_products", {"ref": handle})), "t")
    )

    assert handle == {"kind": "product_set", "id": handle["id"], "glimpse": {"count": 2}}
    assert result_of(counted, "count_products") == [{"count": 2}]
    assert await runtime.resolve_reference(handle) == STOCK
    assert handle["id"] == (await runtime.create_reference(PRODUCTS, STOCK))["id"]
    log = (tmp_path / "acme" / "t.jsonl").read_bytes()
    assert handle["id"].encode() in log
    assert b'"glimpse":{"count":2}' in log
    assert SECRET.encode() not in log
    assert b"A-100" not in log
    assert SECRET.encode() in (tmp_path / "acme" / "refs" / f"{handle['id']}.json").read_bytes()


async def test_the_executor_resolves_and_glimpses_from_the_store(
    open_shop: Callable[..., Runtime],
) -> None:
    runtime = open_shop()
    handle = await runtime.create_reference(PRODUCTS, STOCK)
    missing = {"kind": "product_set", "id": "ref_" + "0" * 32}
    nested = tool_script(
        ("glimpseRef", {"ref": handle}),
        ("resolveRef", {"ref": handle}),
        ("resolveRef", {"ref": missing}),
    )
    prompt = json.dumps({"tool": "call_agent", "args": {"agent": "executor", "prompt": nested}})

    events = await drain(runtime.query(prompt, "t"))

    assert result_of(events, "glimpseRef") == [{"count": 2}]
    found, not_found = result_of(events, "resolveRef")
    assert found == STOCK
    assert not_found["error"]["code"] == "REFERENCE_NOT_FOUND"
    assert missing["id"] in not_found["error"]["message"]
    assert finish(events)["finishReason"] == "stop"


@pytest.mark.parametrize(
    ("agent", "allowed"), [("auditor", True), ("clerk", False)], ids=["toolkit", "no toolkit"]
)
async def test_the_references_toolkit_gives_other_agents_the_reference_tools(
    open_shop: Callable[..., Runtime], agent: str, allowed: bool
) -> None:
    runtime = open_shop()
    handle = await runtime.create_reference(PRODUCTS, STOCK)
    nested = tool_script(("glimpseRef", {"ref": handle}), ("resolveRef", {"ref": handle}))
    prompt = json.dumps({"tool": "call_agent", "args": {"agent": agent, "prompt": nested}})

    events = await drain(runtime.query(prompt, "t"))

    results = result_of(events, "glimpseRef") + result_of(events, "resolveRef")
    if allowed:
        assert results == [{"count": 2}, STOCK]
    else:
        assert [r["error"]["code"] for r in results] == ["TOOL_NOT_ALLOWED_FOR_ROLE"] * 2
        assert all(SECRET not in json.dumps(r) for r in results)
