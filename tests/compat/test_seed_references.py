"""The seed's references and glimpses, written as its users write them (SEED-REFERENCE §1.1,
§1.2, §5): ``await runtime.create_reference / resolve_reference / reference_glimpse``, tools
creating references through ``ctx.references``, the executor's ``resolveRef`` / ``glimpseRef``
and the ``references`` toolkit, and the ``glimpse`` helper.

Only the seed's names, call forms and event field paths are used. The scripted interpreter
stands in for the model. Hydration into the action dispatcher is in test_seed_plans.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from flowai_harness import (
    ToolkitSpec,
    create_runtime,
    define_coordinator,
    define_executor,
    define_plan,
    define_reference,
    define_runtime,
    define_specialist,
    define_tool,
    glimpse,
)

Event = dict[str, Any]


class Customer(BaseModel):
    id: str
    email: str
    lifetime_value: float


def cohort_glimpse(value: Any) -> dict[str, Any]:
    rows = [row if isinstance(row, dict) else row.model_dump() for row in value]
    return {"count": len(rows), "first_ids": [row["id"] for row in rows[:2]]}


COHORT = define_reference("customer_cohort", list[Customer], glimpse=cohort_glimpse)
NOTES = define_reference("notes", {"type": "object", "properties": {"text": {"type": "string"}}})
# The value the model must never see: only the glimpse goes into its context.
SECRET = "vip-only@example.com"
CUSTOMERS = [
    {"id": "c-1", "email": SECRET, "lifetime_value": 1200.5},
    {"id": "c-2", "email": "b@example.com", "lifetime_value": 40.0},
    {"id": "c-3", "email": "c@example.com", "lifetime_value": 310.0},
]


class Plan(BaseModel):
    actions: list[dict[str, Any]]


PLAN = define_plan("outreach", Plan)


@define_tool("find_cohort", {"segment": str}, description="Customers in a segment, as a handle.")
def find_cohort(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    handle: dict[str, Any] = ctx.references.create(COHORT, CUSTOMERS)
    return handle


def crm_spec(tenant: str = "acme", **analyst: Any) -> Any:
    agents = [
        define_coordinator(
            name="boss",
            model="claude-sonnet-4-6",
            prompt="Route.",
            routes=["executor", "analyst", "reader"],
        ),
        define_executor(name="executor", model="claude-haiku-4-5", prompt="Run.", plan=PLAN),
        define_specialist(
            name="analyst", model="claude-haiku-4-5", prompt="Find.", tools=[find_cohort]
        ),
        define_specialist(name="reader", model="claude-haiku-4-5", prompt="Read.", **analyst),
    ]
    return define_runtime(
        tenant=(tenant, "v1"),
        agents=agents,
        references=[COHORT, NOTES],
        providers={"anthropic": {"apiKey": "unused"}},
    )


def results(events: list[Event], tool: str) -> list[Any]:
    return [
        e["result"]
        for e in events
        if e["type"] == "tool-invocation" and e["toolName"] == tool and e["state"] == "result"
    ]


def agent_script(agent: str, *calls: dict[str, Any]) -> str:
    nested = json.dumps({"script": list(calls)})
    return json.dumps(
        {"script": [{"tool": "call_agent", "args": {"agent": agent, "prompt": nested}}]}
    )


# --- the runtime's awaitable methods ---------------------------------------------------------


async def test_create_resolve_and_glimpse_are_awaited() -> None:
    runtime = create_runtime(crm_spec())

    handle = await runtime.create_reference(COHORT, CUSTOMERS)

    assert handle["kind"] == "customer_cohort"
    assert isinstance(handle["id"], str)
    assert handle["glimpse"] == {"count": 3, "first_ids": ["c-1", "c-2"]}
    assert await runtime.resolve_reference(handle) == CUSTOMERS
    assert await runtime.reference_glimpse(handle) == {"count": 3, "first_ids": ["c-1", "c-2"]}
    bare = {"kind": handle["kind"], "id": handle["id"]}
    assert await runtime.resolve_reference(bare) == CUSTOMERS


async def test_ids_are_content_hashes_scoped_to_the_tenant() -> None:
    runtime = create_runtime(crm_spec())
    globex = create_runtime(crm_spec("globex"))

    first = await runtime.create_reference(COHORT, CUSTOMERS)
    again = await runtime.create_reference(COHORT, [dict(row) for row in CUSTOMERS])
    other = await runtime.create_reference(COHORT, CUSTOMERS[:2])

    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    # Another tenant's handle, an unknown id and an unknown kind all read as not found.
    unknown = {"kind": "customer_cohort", "id": "ref_" + "0" * 32}
    errors = []
    for reader, ref in ((globex, first), (runtime, unknown)):
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the seed names no type
            await reader.resolve_reference(ref)
        errors.append(raised.value)
        with pytest.raises(Exception) as raised:  # noqa: PT011
            await reader.reference_glimpse(ref)
        errors.append(raised.value)
    assert len({type(error) for error in errors}) == 1


async def test_an_explicit_glimpse_wins_over_the_callback() -> None:
    runtime = create_runtime(crm_spec())

    explicit = await runtime.create_reference(COHORT, CUSTOMERS, glimpse={"note": "3 vips"})

    assert explicit["glimpse"] == {"note": "3 vips"}
    assert await runtime.reference_glimpse(explicit) == {"note": "3 vips"}


async def test_without_a_callback_or_an_explicit_glimpse_the_glimpse_is_empty() -> None:
    runtime = create_runtime(crm_spec())

    plain = await runtime.create_reference(NOTES, {"text": "call back on Monday"})

    assert plain["glimpse"] == {}
    assert await runtime.reference_glimpse(plain) == {}
    assert await runtime.resolve_reference(plain) == {"text": "call back on Monday"}


async def test_the_value_is_validated_against_the_reference_schema() -> None:
    runtime = create_runtime(crm_spec())

    with pytest.raises(ValueError, match="lifetime_value"):
        await runtime.create_reference(COHORT, [{"id": "c-9", "email": "x@example.com"}])
    with pytest.raises(ValueError, match="text"):
        await runtime.create_reference(NOTES, {"text": 42})


def test_ttl_ms_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="ttl_ms"):
        define_reference("bad", {"type": "object"}, ttl_ms=-1)
    assert define_reference("short_lived", {"type": "object"}, ttl_ms=0).ttl_ms == 0


# --- references inside tools and agents ------------------------------------------------------


async def test_a_tool_returns_the_handle_and_the_model_never_sees_the_payload() -> None:
    runtime = create_runtime(crm_spec(), interpreter="scripted")
    prompt = agent_script("analyst", {"tool": "find_cohort", "args": {"segment": "vip"}})

    events = [e async for e in runtime.query(prompt, thread_id="t-tool")]

    (handle,) = results(events, "find_cohort")
    assert handle["glimpse"] == {"count": 3, "first_ids": ["c-1", "c-2"]}
    assert await runtime.resolve_reference(handle) == CUSTOMERS
    assert SECRET not in json.dumps(events)


async def test_ctx_references_resolve_and_glimpse_inside_a_tool() -> None:
    seen: dict[str, Any] = {}
    inspect_cohort = define_tool("inspect_cohort", {"ref": dict})

    @inspect_cohort
    def _inspect(args: dict[str, Any], ctx: Any) -> int:
        seen["glimpse"] = ctx.references.glimpse(args["ref"])
        seen["value"] = ctx.references.resolve(args["ref"])
        return len(seen["value"])

    spec = define_runtime(
        tenant=("acme", "v1"),
        agents=[
            define_specialist(name="reader", model="claude-haiku-4-5", prompt="r", tools=[_inspect])
        ],
        references=[COHORT],
        providers={"anthropic": {}},
    )
    runtime = create_runtime(spec, interpreter="scripted")
    handle = await runtime.create_reference(COHORT, CUSTOMERS)
    prompt = json.dumps(
        {"tool": "inspect_cohort", "args": {"ref": {"kind": handle["kind"], "id": handle["id"]}}}
    )

    events = [e async for e in runtime.run_specialist("reader", prompt, thread_id="t-ctx")]

    assert results(events, "inspect_cohort") == [3]
    assert seen == {"glimpse": handle["glimpse"], "value": CUSTOMERS}


def ref_calls(handle: dict[str, Any]) -> list[dict[str, Any]]:
    # The seed does not document these tools' argument names; `ref` is the literal reading
    # of resolve_reference(ref) / reference_glimpse(ref).
    ref = {"kind": handle["kind"], "id": handle["id"]}
    return [
        {"tool": "glimpseRef", "args": {"ref": ref}},
        {"tool": "resolveRef", "args": {"ref": ref}},
    ]


async def test_executors_have_resolve_ref_and_glimpse_ref() -> None:
    runtime = create_runtime(crm_spec(), interpreter="scripted")
    handle = await runtime.create_reference(COHORT, CUSTOMERS)

    events = [
        e
        async for e in runtime.query(
            agent_script("executor", *ref_calls(handle)), thread_id="t-exec"
        )
    ]

    assert results(events, "glimpseRef") == [handle["glimpse"]]
    assert results(events, "resolveRef") == [CUSTOMERS]


@pytest.mark.parametrize(
    ("toolkits", "glimpses", "resolves"),
    [
        ([], False, False),
        (["references"], True, True),
        ([ToolkitSpec("references")], True, True),
        ([ToolkitSpec("references", config={"tools": ["glimpseRef"]})], True, False),
    ],
    ids=["none", "by-name", "spec", "narrowed"],
)
async def test_other_agents_need_the_references_toolkit(
    toolkits: list[Any], glimpses: bool, resolves: bool
) -> None:
    runtime = create_runtime(crm_spec(toolkits=toolkits), interpreter="scripted")
    handle = await runtime.create_reference(COHORT, CUSTOMERS)

    events = [
        e
        async for e in runtime.query(
            agent_script("reader", *ref_calls(handle)), thread_id="t-reader"
        )
    ]

    glimpsed = results(events, "glimpseRef") == [handle["glimpse"]]
    resolved = results(events, "resolveRef") == [CUSTOMERS]
    assert (glimpsed, resolved) == (glimpses, resolves)


# --- the glimpse helper ----------------------------------------------------------------------


@dataclasses.dataclass
class Shipment:
    sku: str
    shipped: datetime.date


def test_the_glimpse_helper_is_schema_neutral() -> None:
    assert glimpse({"total": 3, "region": "north"}) == {"total": 3, "region": "north"}
    assert glimpse([1, 2, 3, 4, 5]) == {"count": 5, "sample": [1, 2, 3]}
    assert glimpse(["a", "b", "c"], max_items=2) == {"count": 3, "sample": ["a", "b"]}
    assert glimpse(42) == {"value": 42}
    converted = glimpse(
        [
            Decimal("4.17"),
            datetime.date(2025, 3, 1),
            Shipment("A-100", datetime.date(2025, 3, 2)),
            Customer(id="c-1", email="a@example.com", lifetime_value=1.5),
        ],
        max_items=4,
    )
    # Every value became JSON-compatible.
    assert json.loads(json.dumps(converted)) == converted
    assert converted["count"] == 4
    assert converted["sample"][3] == {"id": "c-1", "email": "a@example.com", "lifetime_value": 1.5}
