"""Tools: schema conversion, names, approval, binding, and the per-call ToolContext."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Literal

import pydantic
import pytest

from flowai_harness.errors import InvalidSchemaError, SpecError, ToolError
from flowai_harness.tools import ToolContext, ToolDefinition, define_tool


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
    assert tool.predicate_id == "tool:pay"
    assert tool.declaration()["approval"] == {"predicate": "tool:pay"}
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


def test_progress_records_tool_progress_events() -> None:
    ctx = make_context()

    ctx.progress("fetching")
    ctx.progress("half way", fraction=0.5)

    assert ctx.events == [
        {"type": "tool-progress", "message": "fetching", "toolInvocationId": "tu-1"},
        {
            "type": "tool-progress",
            "message": "half way",
            "toolInvocationId": "tu-1",
            "fraction": 0.5,
        },
    ]


@pytest.mark.parametrize("fraction", [-0.1, 1.5, True, "0.5"])
def test_progress_fraction_must_be_between_0_and_1(fraction: Any) -> None:
    with pytest.raises(ToolError, match=r"tool 'lookup': progress\(\) fraction"):
        make_context().progress("x", fraction=fraction)


def test_emit_needs_a_name() -> None:
    with pytest.raises(ToolError, match="non-empty event name"):
        make_context().emit("", 1)
