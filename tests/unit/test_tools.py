"""Tools: schema conversion, names, approval, binding, delivery levels, and the per-call
ToolContext (the seed's mapping, progress events, the event sink, idempotency keys)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

import pydantic
import pytest

from flowai_harness.errors import InvalidSchemaError, SpecError, ToolError
from flowai_harness.references import MemoryReferenceStore, ReferenceAccess
from flowai_harness.toolcall import run_tool_call
from flowai_harness.tools import ToolContext, ToolDefinition, define_tool, idempotency_key


class SearchArgs(pydantic.BaseModel):
    query: str
    limit: int = 10


def handler(args: Any, ctx: ToolContext) -> str:
    return "ok"


async def async_handler(args: Any, ctx: ToolContext) -> str:
    return "ok"


# --- schemas --------------------------------------------------------------------------------


def test_pydantic_model_becomes_its_json_schema() -> None:
    tool = define_tool("search", SearchArgs)

    assert tool.input_schema == SearchArgs.model_json_schema()
    assert tool.input_model is SearchArgs


def test_json_schema_is_used_as_given_and_copied() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"q": {"type": "string"}}}

    tool = define_tool("search", schema)
    schema["properties"]["q"]["type"] = "integer"

    assert tool.input_schema == {"type": "object", "properties": {"q": {"type": "string"}}}
    assert tool.input_model is None


def test_type_map_becomes_a_json_schema() -> None:
    tool = define_tool("lookup_docs", {"query": str, "limit": int | None})

    assert tool.input_schema == {
        "title": "LookupDocsInput",
        "type": "object",
        "properties": {
            "query": {"title": "Query", "type": "string"},
            "limit": {
                "anyOf": [{"type": "integer"}, {"type": "null"}],
                "default": None,
                "title": "Limit",
            },
        },
        "required": ["query"],
    }
    assert tool.input_model is not None
    assert tool.input_model(query="x").limit is None  # type: ignore[attr-defined]


def test_type_map_takes_type_default_pairs() -> None:
    tool = define_tool("t", {"limit": (int | None, ...), "mode": (Literal["a", "b"], "a")})

    assert tool.input_schema["required"] == ["limit"]
    assert tool.input_schema["properties"]["mode"] == {
        "default": "a",
        "enum": ["a", "b"],
        "title": "Mode",
        "type": "string",
    }


def test_type_map_keeps_names_pydantic_would_mangle() -> None:
    tool = define_tool("t", {"schema": str, "_private": int, "json": list[str]})

    assert list(tool.input_schema["properties"]) == ["schema", "_private", "json"]
    assert tool.input_schema["required"] == ["schema", "_private", "json"]


def test_empty_map_is_a_tool_without_arguments() -> None:
    tool = define_tool("ping", {})

    assert tool.input_schema["type"] == "object"
    assert tool.input_schema["properties"] == {}


def test_a_type_map_and_a_json_schema_are_told_apart_by_their_values() -> None:
    as_types = define_tool("t", {"type": str})
    as_schema = define_tool("t", {"type": "object"})

    assert as_types.input_schema["properties"] == {"type": {"title": "Type", "type": "string"}}
    assert as_schema.input_schema == {"type": "object"}


def test_mixed_map_is_rejected_naming_the_typed_keys() -> None:
    with pytest.raises(InvalidSchemaError, match=r"tool 'search'.*mixes Python types \(limit\)"):
        define_tool("search", {"limit": int, "query": {"type": "string"}})


@pytest.mark.parametrize(
    "schema",
    [{"type": "string"}, {"description": "no shape"}, {"type": "array", "items": {}}],
)
def test_input_json_schema_must_describe_an_object(schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidSchemaError, match="must describe an object"):
        define_tool("t", schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"properties": {"a": {"type": "string"}}},
        {"$ref": "#/$defs/A", "$defs": {"A": {"type": "object"}}},
        {"anyOf": [{"type": "object"}, {"type": "null"}]},
    ],
)
def test_object_schemas_are_accepted(schema: dict[str, Any]) -> None:
    assert define_tool("t", schema).input_schema == schema


def test_non_json_values_are_rejected_with_their_path() -> None:
    with pytest.raises(InvalidSchemaError, match=r"not JSON: set value at /properties/a"):
        define_tool("t", {"type": "object", "properties": {"a": {1, 2}}})


def test_unsupported_python_type_is_an_invalid_schema() -> None:
    with pytest.raises(InvalidSchemaError, match=r"tool 't': input type map is not valid"):
        define_tool("t", {"when": type(print)})


def test_schema_of_the_wrong_kind_is_rejected() -> None:
    with pytest.raises(InvalidSchemaError, match="got list"):
        define_tool("t", ["query"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (None, None),
        ({"type": "string"}, {"type": "string"}),
        (
            {"answer": str},
            {
                "title": "TOutput",
                "type": "object",
                "required": ["answer"],
                "properties": {"answer": {"title": "Answer", "type": "string"}},
            },
        ),
        (SearchArgs, SearchArgs.model_json_schema()),
    ],
)
def test_output_schema_takes_the_same_forms(output: Any, expected: Any) -> None:
    assert define_tool("t", {}, output_schema=output).output_schema == expected


# --- names and approval ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "1abc", "a b", "a.b", "x" * 65, "lookup\n", None])
def test_invalid_names_are_rejected(name: Any) -> None:
    with pytest.raises(SpecError, match="is not valid"):
        define_tool(name, {})


@pytest.mark.parametrize(
    "name", ["call_agent", "storePlan", "getPlan", "executePlan", "resolveRef", "glimpseRef"]
)
def test_reserved_names_are_rejected(name: str) -> None:
    with pytest.raises(SpecError, match="reserved"):
        define_tool(name, {})


@pytest.mark.parametrize("name", ["a", "_x", "web-search", "Lookup_2", "x" * 64])
def test_valid_names(name: str) -> None:
    assert define_tool(name, {}).name == name


def test_approval_rules() -> None:
    # "default": the tool has no rule of its own, so the agent's and the runtime's apply.
    assert define_tool("t", {}).approval == "default"
    assert define_tool("t", {}, approval="never").approval == "never"
    assert define_tool("t", {}, approval="always").approval == "always"


def test_a_predicate_approval_travels_as_its_id() -> None:
    def over_limit(args: Any, ctx: Any) -> bool:
        return bool(args["amount"] > 100)

    tool = define_tool("pay", {"amount": int}, approval=over_limit)

    assert tool.approval is over_limit
    assert tool.predicate_id == "pay_approval"
    assert tool.declaration()["approval"] == {"predicate": "pay_approval"}
    assert tool != define_tool("pay", {"amount": int}, approval=lambda args, ctx: True)


@pytest.mark.parametrize("rule", ["sometimes", "Always", None, 3, str])
def test_other_approvals_are_rejected(rule: Any) -> None:
    with pytest.raises(SpecError, match=r"tool 't': an approval rule must be 'default', 'never'"):
        define_tool("t", {}, approval=rule)


def test_description_must_be_a_string() -> None:
    with pytest.raises(SpecError, match="description must be a string"):
        define_tool("t", {}, description=3)  # type: ignore[arg-type]


# --- binding --------------------------------------------------------------------------------


def test_define_tool_as_a_decorator_binds_the_function() -> None:
    @define_tool("search", SearchArgs, description="Search the docs")
    def search(args: SearchArgs, ctx: ToolContext) -> str:
        return args.query

    assert isinstance(search, ToolDefinition)
    assert search.name == "search"
    assert search.description == "Search the docs"
    assert search.handler is not None
    assert search.handler.__name__ == "search"
    assert not search.is_async


def test_async_handlers_are_detected() -> None:
    class AsyncCallable:
        async def __call__(self, args: Any, ctx: ToolContext) -> None:
            return None

    assert define_tool("t", {}).bind(async_handler).is_async
    assert define_tool("t", {}).bind(AsyncCallable()).is_async
    assert not define_tool("t", {}).bind(handler).is_async
    assert not define_tool("t", {}).is_async


def test_bind_returns_a_bound_copy() -> None:
    unbound = define_tool("t", {"q": str})

    bound = unbound.bind(handler)

    assert unbound.handler is None
    assert bound.handler is handler
    assert bound.input_schema == unbound.input_schema
    assert bound.bind(async_handler).handler is async_handler


def test_calling_a_bound_tool_does_not_rebind_silently() -> None:
    bound = define_tool("t", {}).bind(handler)

    with pytest.raises(SpecError, match=r"already has a handler; use .bind"):
        bound(async_handler)
    with pytest.raises(TypeError, match="not a function"):
        bound({"q": "x"})  # type: ignore[arg-type]


def test_handler_must_be_callable() -> None:
    with pytest.raises(TypeError, match="handler must be a function"):
        define_tool("t", {}).bind(42)  # type: ignore[arg-type]


def test_definitions_are_frozen() -> None:
    tool = define_tool("t", {})

    with pytest.raises(dataclasses.FrozenInstanceError):
        tool.name = "other"  # type: ignore[misc]


def test_equality_covers_declaration_and_handler_and_hash_is_by_name() -> None:
    a = define_tool("t", {"q": str})

    assert a == define_tool("t", {"q": str})
    assert a != a.bind(handler)
    assert a != define_tool("t", {"q": int})
    assert hash(a) == hash(a.bind(handler))
    assert len({a, define_tool("t", {"q": str})}) == 1


def test_declaration_is_what_the_engine_sees() -> None:
    tool = define_tool("t", {"type": "object"}, description="d", approval="always").bind(handler)

    assert tool.declaration() == {
        "name": "t",
        "description": "d",
        "input_schema": {"type": "object"},
        "output_schema": None,
        "approval": "always",
    }


# --- ToolContext ----------------------------------------------------------------------------


def make_context(services: Any = None) -> ToolContext:
    if services is None:
        return ToolContext("tu-1", "lookup", "thread-1", "run-1", "greeter")
    return ToolContext("tu-1", "lookup", "thread-1", "run-1", "greeter", services)


def test_context_carries_the_call() -> None:
    ctx = make_context()

    assert (ctx.tool_use_id, ctx.tool_name, ctx.thread_id, ctx.run_id, ctx.agent) == (
        "tu-1",
        "lookup",
        "thread-1",
        "run-1",
        "greeter",
    )
    assert dict(ctx.services) == {}
    assert ctx.events == []
    assert not hasattr(ctx, "__dict__")


def test_services_are_a_read_only_live_view() -> None:
    services: dict[str, Any] = {"db": object()}
    ctx = make_context(services)

    with pytest.raises(TypeError):
        ctx.services["db"] = None  # type: ignore[index]
    services["cache"] = 1
    assert ctx.services["cache"] == 1


def test_a_prebuilt_proxy_is_used_as_is() -> None:
    proxy = MappingProxyType({"db": 1})

    assert make_context(proxy).services is proxy


def test_emit_records_a_custom_event() -> None:
    ctx = make_context()

    ctx.emit("rows", {"count": 3})

    assert ctx.events == [
        {"type": "custom", "name": "rows", "data": {"count": 3}, "toolInvocationId": "tu-1"}
    ]


def test_progress_records_the_seed_tool_progress_shape() -> None:
    ctx = make_context()

    ctx.progress("fetching")
    ctx.progress("half way", fraction=0.5)

    assert ctx.events == [
        {
            "type": "tool-progress",
            "toolName": "lookup",
            "toolCallId": "tu-1",
            "label": "fetching",
            "phaseIndex": 0,
            "totalPhases": 1,
            "toolInvocationId": "tu-1",
            "message": "fetching",
        },
        {
            "type": "tool-progress",
            "toolName": "lookup",
            "toolCallId": "tu-1",
            "label": "half way",
            "phaseIndex": 1,
            "totalPhases": 2,
            "toolInvocationId": "tu-1",
            "message": "half way",
            "fraction": 0.5,
        },
    ]


def test_progress_phases_milestones_and_the_older_message_keyword() -> None:
    ctx = make_context()

    ctx.progress("connect", total_phases=3)
    ctx.progress(message="query")
    ctx.progress("export", phase_index=2, milestone="exported")

    shapes = [
        (e["label"], e["phaseIndex"], e["totalPhases"], e.get("milestone")) for e in ctx.events
    ]
    assert shapes == [
        ("connect", 0, 3, None),
        ("query", 1, 3, None),
        ("export", 2, 3, "exported"),
    ]
    assert [e["message"] for e in ctx.events] == ["connect", "query", "export"]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"phase_index": -1}, "phase_index must be an integer >= 0"),
        ({"phase_index": True}, "phase_index must be an integer >= 0"),
        ({"total_phases": 0}, "total_phases must be an integer >= 1"),
        ({"phase_index": 3, "total_phases": 3}, "phase_index 3 is not below total_phases 3"),
        ({"milestone": 1}, "milestone must be a string"),
        ({"message": "y"}, "a label or a message, not both"),
    ],
)
def test_progress_refuses_bad_phases(options: dict[str, Any], problem: str) -> None:
    ctx = make_context()

    with pytest.raises(ToolError, match=re.escape(problem)):
        ctx.progress("x", **options)
    assert ctx.events == []


def test_progress_needs_a_string_label() -> None:
    with pytest.raises(ToolError, match=r"progress\(\) label must be a string, got NoneType"):
        make_context().progress()


def test_an_event_sink_gets_each_event_as_it_is_emitted() -> None:
    seen: list[tuple[int, str]] = []
    ctx = ToolContext(
        "tu-1",
        "lookup",
        "thread-1",
        "run-1",
        "greeter",
        on_event=lambda event: seen.append((len(ctx.events), event["type"])),
    )

    ctx.progress("one")
    assert seen == [(1, "tool-progress")]
    ctx.emit("rows", 3)

    assert seen == [(1, "tool-progress"), (2, "custom")]
    assert [e["type"] for e in ctx.events] == ["tool-progress", "custom"]


# --- ToolContext as the seed's mapping -------------------------------------------------------


def test_context_is_a_mapping_of_the_call_and_its_services() -> None:
    db = object()
    ctx = make_context({"db": db, "region": "eu"})

    assert isinstance(ctx, Mapping)
    assert ctx["tool_use_id"] == "tu-1"
    assert ctx["services"] is ctx.services
    assert ctx["db"] is ctx.db is db
    assert ctx.get("region") == "eu"
    assert ctx.get("missing", 7) == 7
    assert list(ctx.keys()) == ["tool_use_id", "services", "db", "region"]
    assert ctx.as_dict() == {
        "tool_use_id": "tu-1",
        "services": ctx.services,
        "db": db,
        "region": "eu",
    }
    assert "db" in ctx
    assert "references" not in ctx
    assert len(ctx) == 4
    with pytest.raises(KeyError, match="missing"):
        ctx["missing"]


def test_context_keeps_its_attributes_over_services_of_the_same_name() -> None:
    ctx = make_context({"agent": "a service", "services": "shadowed", "emit": 1})

    assert ctx.agent == "greeter"
    assert ctx["agent"] == "a service"
    assert ctx["services"]["services"] == "shadowed"
    assert callable(ctx.emit)
    assert list(ctx) == ["tool_use_id", "services", "agent", "emit"]


def test_unknown_attribute_names_the_services() -> None:
    ctx = make_context({"db": 1})

    with pytest.raises(AttributeError, match=r"no attribute 'cache'.*services: db"):
        _ = ctx.cache


def test_references_are_a_key_when_the_runtime_has_a_store() -> None:
    store = ReferenceAccess(MemoryReferenceStore(), "acme", [])
    ctx = ToolContext("tu-1", "lookup", "thread-1", "run-1", "greeter", references=store)

    assert ctx["references"] is ctx.references is store
    assert list(ctx) == ["tool_use_id", "services", "references"]
    with pytest.raises(KeyError, match="no reference store"):
        make_context()["references"]


def test_contexts_are_equal_only_to_themselves() -> None:
    first, second = make_context(), make_context()

    assert first == first
    assert first != second
    assert len({first, second}) == 2


# --- idempotency keys ------------------------------------------------------------------------


def test_idempotency_key_is_a_uuid_fixed_by_the_invocation_id() -> None:
    key = idempotency_key("acme/thread-1/run-1/call-1")

    assert uuid.UUID(key).version == 5
    assert key == idempotency_key("acme/thread-1/run-1/call-1")
    assert key != idempotency_key("acme/thread-1/run-1/call-2")
    ctx = ToolContext("c", "t", "th", "r", "a", idempotency_key=key)
    assert ctx.idempotency_key == key


def test_a_context_without_an_idempotency_key_says_how_to_get_one() -> None:
    with pytest.raises(ToolError, match="built without an idempotency key"):
        _ = make_context().idempotency_key


async def test_run_tool_call_gives_the_handler_the_invocation_key_and_streams_events() -> None:
    seen: list[Any] = []
    streamed: list[dict[str, Any]] = []

    def record(args: Any, ctx: ToolContext) -> str:
        seen.append((ctx.idempotency_key, ctx["tool_use_id"], ctx["db"]))
        ctx.progress("working")
        seen.append(len(streamed))
        return "ok"

    invocation = {
        "id": "acme/thread-1/run-1/call-1",
        "thread_id": "thread-1",
        "run_id": "run-1",
        "payload": {"tool": "t", "tool_invocation_id": "call-1", "args": {}, "agent": "a"},
    }
    tool = define_tool("t", {}).bind(record)

    first = await run_tool_call(tool, invocation, {"db": "pg"}, on_event=streamed.append)
    await run_tool_call(tool, invocation, {"db": "pg"})

    assert seen[0] == (idempotency_key("acme/thread-1/run-1/call-1"), "call-1", "pg")
    assert seen[1] == 1  # the progress event reached the sink while the handler ran
    assert seen[2] == seen[0]  # a second run of the same invocation: the same key
    assert streamed == first["events"]


# --- delivery levels -------------------------------------------------------------------------


def test_delivery_defaults_to_at_least_once_and_takes_at_most_once() -> None:
    assert define_tool("t", {}).delivery == "at_least_once"
    tool = define_tool("pay", {"amount": int}, delivery="at_most_once")

    assert tool.delivery == "at_most_once"
    assert tool.bind(handler).delivery == "at_most_once"
    # The engine does not see it: the declaration is unchanged.
    assert "delivery" not in tool.declaration()
    assert tool != define_tool("pay", {"amount": int})


def test_unknown_delivery_is_refused() -> None:
    with pytest.raises(SpecError, match="delivery must be one of at_least_once, at_most_once"):
        define_tool("t", {}, delivery="exactly_once")  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [-0.1, 1.5, True, "0.5"])
def test_progress_fraction_must_be_between_0_and_1(fraction: Any) -> None:
    with pytest.raises(ToolError, match=r"tool 'lookup': progress\(\) fraction"):
        make_context().progress("x", fraction=fraction)


def test_emit_needs_a_name() -> None:
    with pytest.raises(ToolError, match="non-empty event name"):
        make_context().emit("", 1)
