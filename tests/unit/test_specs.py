"""Specs: tenant, agents, the runtime spec sent to the engine, and TestingConfig."""

from __future__ import annotations

import pickle
import sys
import types
from typing import Any

import orjson
import pydantic
import pytest

from flowai_harness.errors import (
    CoordinatorWithoutRoutesError,
    DuplicateToolError,
    FlowaiError,
    SpecError,
)
from flowai_harness.specs import (
    AgentSpec,
    RuntimeSpec,
    TenantIdentity,
    TestingConfig,
    define_coordinator,
    define_executor,
    define_planner,
    define_runtime,
    define_specialist,
    define_tenant,
    spec_document,
)
from flowai_harness.tools import ToolContext, define_tool

MODEL = "claude-sonnet-4-6"


def handler(args: Any, ctx: ToolContext) -> str:
    return "ok"


def other_handler(args: Any, ctx: ToolContext) -> str:
    return "other"


# --- tenant ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("acme", "v1"), {}),
        ((), {"name": "acme", "version": "v1"}),
        ((), {"resource_id": "acme", "version": "v1"}),
        (({"name": "acme", "version": "v1"},), {}),
        (({"resource_id": "acme", "version": "v1"},), {}),
        (("acme",), {"version": "v1"}),
    ],
)
def test_define_tenant_forms(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    assert define_tenant(*args, **kwargs) == TenantIdentity(resource_id="acme", version="v1")


def test_a_tenant_identity_passes_through() -> None:
    tenant = define_tenant("acme", "v1")

    assert define_tenant(tenant) is tenant


@pytest.mark.parametrize(
    ("args", "field"),
    [(("", "v1"), "resource_id"), (("acme", "  "), "version"), (("acme",), "version")],
)
def test_empty_or_missing_tenant_fields_are_named(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(SpecError, match=rf"tenant: field '{field}'"):
        define_tenant(*args)


def test_unknown_tenant_keys_are_rejected() -> None:
    with pytest.raises(SpecError, match="unknown field 'region'"):
        define_tenant(name="acme", version="v1", region="eu")
    with pytest.raises(SpecError, match="unknown field 'tenant'"):
        define_tenant({"tenant": "acme", "version": "v1"})


def test_a_tenant_field_given_twice_is_rejected() -> None:
    with pytest.raises(SpecError, match="resource_id is given twice"):
        define_tenant("acme", "v1", resource_id="other")


def test_tenant_must_be_strings() -> None:
    with pytest.raises(SpecError, match="field 'version': input should be a valid string"):
        define_tenant("acme", 1)


def test_tenant_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        define_tenant("acme", "v1").version = "v2"


# --- agents ---------------------------------------------------------------------------------


def test_define_specialist_as_the_readme_calls_it() -> None:
    agent = define_specialist(name="greeter", model=MODEL, prompt="Greet the user.")

    assert agent == AgentSpec(
        name="greeter", role="specialist", model=MODEL, prompt="Greet the user."
    )
    assert (agent.routes, agent.tools, agent.max_turns, agent.provider, agent.description) == (
        (),
        (),
        None,
        None,
        "",
    )


@pytest.mark.parametrize(
    ("define", "role"),
    [(define_planner, "planner"), (define_executor, "executor"), (define_specialist, "specialist")],
)
def test_roles(define: Any, role: str) -> None:
    assert define("a", model=MODEL, prompt="p").role == role


def test_define_coordinator_keeps_everything() -> None:
    lookup = define_tool("lookup", {"q": str})

    agent = define_coordinator(
        "boss",
        model=MODEL,
        prompt="Route.",
        routes=["greeter", "writer"],
        tools=[lookup],
        max_turns=5,
        provider="anthropic",
        description="routes work",
    )

    assert agent.role == "coordinator"
    assert agent.routes == ("greeter", "writer")
    assert agent.tools[0] is lookup
    assert (agent.max_turns, agent.provider, agent.description) == (5, "anthropic", "routes work")


def test_coordinator_needs_routes() -> None:
    with pytest.raises(CoordinatorWithoutRoutesError, match="agent 'boss' is a coordinator"):
        define_coordinator("boss", model=MODEL, prompt="p", routes=[])


def test_routes_as_a_string_is_caught() -> None:
    with pytest.raises(SpecError, match=r"agent 'boss': field 'routes' must be a list, got str"):
        define_coordinator("boss", model=MODEL, prompt="p", routes="greeter")


def test_a_single_tool_instead_of_a_list_is_caught() -> None:
    lookup = define_tool("lookup", {})

    with pytest.raises(SpecError, match=r"field 'tools' must be a list, got ToolDefinition"):
        define_specialist("a", model=MODEL, prompt="p", tools=lookup)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field", "advice"),
    [
        ({"prompt": ""}, "prompt", "non-empty string"),
        ({"prompt": "   "}, "prompt", "non-empty string"),
        ({"model": ""}, "model", "model id"),
        ({"model": 4}, "model", "model id"),
        ({"max_turns": 0}, "max_turns", "int >= 1"),
        ({"max_turns": True}, "max_turns", "int >= 1"),
        ({"max_turns": "3"}, "max_turns", "int >= 1"),
        ({"provider": ""}, "provider", "provider declared"),
        ({"tools": ["lookup"]}, "tools[0]", "define_tool"),
        ({"description": None}, "description", "string"),
    ],
)
def test_bad_values_name_the_agent_the_field_and_the_fix(
    kwargs: dict[str, Any], field: str, advice: str
) -> None:
    values: dict[str, Any] = {"model": MODEL, "prompt": "p", **kwargs}

    with pytest.raises(SpecError) as caught:
        define_specialist("greeter", **values)

    message = str(caught.value)
    assert message.startswith("[SPEC_INVALID] agent 'greeter': ")
    assert f"field '{field}'" in message
    assert advice in message
    assert not isinstance(caught.value, pydantic.ValidationError)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize("name", ["", "has space", "1st", "x" * 65])
def test_agent_names_are_identifiers(name: str) -> None:
    with pytest.raises(SpecError, match="field 'name'"):
        define_specialist(name, model=MODEL, prompt="p")


def test_repeated_routes_and_tools_are_rejected() -> None:
    lookup = define_tool("lookup", {})

    with pytest.raises(SpecError, match="route 'a' is listed twice"):
        define_coordinator("boss", model=MODEL, prompt="p", routes=["a", "b", "a"])
    with pytest.raises(DuplicateToolError, match="agent 'x': tool 'lookup' is listed twice"):
        define_specialist("x", model=MODEL, prompt="p", tools=[lookup, lookup.bind(handler)])


def test_direct_construction_converts_errors_too() -> None:
    with pytest.raises(SpecError, match="agent 'a': field 'role'"):
        AgentSpec(name="a", role="boss", model=MODEL, prompt="p")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="field 'colour': extra inputs are not permitted"):
        AgentSpec(name="a", role="planner", model=MODEL, prompt="p", colour="red")  # type: ignore[call-arg]


def test_agents_are_frozen_and_hashable() -> None:
    agent = define_specialist("a", model=MODEL, prompt="p", tools=[define_tool("t", {})])

    with pytest.raises(pydantic.ValidationError):
        agent.prompt = "other"
    assert hash(agent) == hash(
        define_specialist("a", model=MODEL, prompt="p", tools=[define_tool("t", {})])
    )


# --- runtime spec ---------------------------------------------------------------------------


def test_spec_document_matches_the_wire_doc() -> None:
    lookup = define_tool("lookup", {"type": "object"})
    coordinator = define_coordinator(
        "hello_coordinator", model=MODEL, prompt="Route ...", routes=["greeter"], tools=[lookup]
    )

    document = spec_document(
        define_tenant("acme", "v1"), [coordinator], [lookup], {"anthropic": {"api_key": "k"}}
    )

    assert document == {
        "tenant": {"resource_id": "acme", "version": "v1"},
        "agents": [
            {
                "name": "hello_coordinator",
                "role": "coordinator",
                "model": MODEL,
                "provider": None,
                "prompt": "Route ...",
                "routes": ["greeter"],
                "tools": ["lookup"],
                "max_turns": None,
                "description": "",
            }
        ],
        "tools": [
            {
                "name": "lookup",
                "description": "",
                "input_schema": {"type": "object"},
                "output_schema": None,
                "approval": "default",
            }
        ],
        "providers": ["anthropic"],
    }


class FakeNative(types.ModuleType):
    """Stands in for flowai_harness._native: records what compile_spec was given."""

    def __init__(self) -> None:
        super().__init__("flowai_harness._native")
        self.sent: list[bytes] = []

    def compile_spec(self, spec_json: bytes) -> bytes:
        self.sent.append(spec_json)
        return b'{"compiled": true}'


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> FakeNative:
    fake = FakeNative()
    monkeypatch.setitem(sys.modules, "flowai_harness._native", fake)
    return fake


def two_agents(*tools: Any) -> list[AgentSpec]:
    return [
        define_coordinator(
            "boss", model=MODEL, prompt="Route.", routes=["greeter"], tools=tools[:1]
        ),
        define_specialist("greeter", model="gpt-4o", prompt="Greet.", tools=tools[1:]),
    ]


def test_define_runtime_sends_the_spec_and_keeps_the_compiled_result(native: FakeNative) -> None:
    lookup = define_tool("lookup", {"q": str}).bind(handler)
    agents = two_agents(lookup)

    runtime = define_runtime(
        ("acme", "v1"), agents=agents, providers={"openai": {}, "anthropic": {"api_key": "k"}}
    )

    (sent,) = native.sent
    assert isinstance(sent, bytes)
    assert orjson.loads(sent) == {
        "tenant": {"resource_id": "acme", "version": "v1"},
        "agents": [agent.declaration() for agent in agents],
        "tools": [lookup.declaration()],
        "providers": ["anthropic", "openai"],
    }
    assert isinstance(runtime, RuntimeSpec)
    assert runtime.compiled == b'{"compiled": true}'
    assert runtime.tenant == TenantIdentity(resource_id="acme", version="v1")
    assert runtime.agents == tuple(agents)
    assert runtime.tools == (lookup,)


@pytest.mark.parametrize(
    "tenant",
    [
        TenantIdentity(resource_id="acme", version="v1"),
        ("acme", "v1"),
        {"name": "acme", "version": "v1"},
    ],
)
def test_define_runtime_takes_any_tenant_form(native: FakeNative, tenant: Any) -> None:
    runtime = define_runtime(tenant, agents=two_agents(), providers={"anthropic": {}, "openai": {}})

    assert runtime.tenant == TenantIdentity(resource_id="acme", version="v1")


def test_a_shared_tool_is_sent_once_with_its_handler(native: FakeNative) -> None:
    lookup = define_tool("lookup", {"q": str})

    runtime = define_runtime(
        ("acme", "v1"), agents=two_agents(lookup, lookup.bind(handler)), providers={}
    )

    assert runtime.tools == (lookup.bind(handler),)
    assert [tool["name"] for tool in orjson.loads(native.sent[0])["tools"]] == ["lookup"]


def test_two_tools_with_one_name_are_rejected(native: FakeNative) -> None:
    with pytest.raises(
        DuplicateToolError,
        match=r"tool 'lookup' has two different definitions.*'boss' and 'greeter'",
    ):
        define_runtime(
            ("acme", "v1"),
            agents=two_agents(define_tool("lookup", {"q": str}), define_tool("lookup", {"q": int})),
            providers={},
        )
    lookup = define_tool("lookup", {})
    with pytest.raises(DuplicateToolError, match="two different handlers"):
        define_runtime(
            ("acme", "v1"),
            agents=two_agents(lookup.bind(handler), lookup.bind(other_handler)),
            providers={},
        )
    assert native.sent == []


def test_providers_are_frozen_and_kept_out_of_repr(native: FakeNative) -> None:
    runtime = define_runtime(
        ("acme", "v1"), agents=two_agents(), providers={"anthropic": {"api_key": "secret"}}
    )

    assert runtime.providers["anthropic"]["api_key"] == "secret"
    with pytest.raises(TypeError):
        runtime.providers["anthropic"]["api_key"] = "x"  # type: ignore[index]
    assert "secret" not in repr(runtime)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agents": "boss"}, "agents must be a list"),
        ({"agents": [{"name": "boss"}]}, "agents holds dict"),
        ({"providers": ["anthropic"]}, "providers must be a mapping"),
        ({"providers": {"anthropic": None}}, "settings of provider 'anthropic' must be a mapping"),
        ({"providers": {"": {}}}, "provider name '' must be a non-empty string"),
    ],
)
def test_define_runtime_rejects_bad_arguments(
    native: FakeNative, kwargs: dict[str, Any], match: str
) -> None:
    arguments: dict[str, Any] = {"agents": two_agents(), "providers": {}, **kwargs}

    with pytest.raises(SpecError, match=match):
        define_runtime(("acme", "v1"), **arguments)
    assert native.sent == []


def test_a_tenant_tuple_must_be_a_pair(native: FakeNative) -> None:
    with pytest.raises(SpecError, match=r"tenant: expected \(name, version\)"):
        define_runtime(("acme", "v1", "eu"), agents=two_agents(), providers={})


def test_engine_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    class Rejecting(FakeNative):
        def compile_spec(self, spec_json: bytes) -> bytes:
            raise SpecError("from the engine")

    monkeypatch.setitem(sys.modules, "flowai_harness._native", Rejecting())

    with pytest.raises(SpecError, match="from the engine"):
        define_runtime(("acme", "v1"), agents=two_agents(), providers={})


# --- define_runtime against the real engine -------------------------------------------------


@pytest.fixture
def engine() -> None:
    pytest.importorskip("flowai_harness._internal")


@pytest.mark.usefixtures("engine")
def test_engine_compiles_and_resolves_providers() -> None:
    runtime = define_runtime(
        ("acme", "v1"), agents=two_agents(), providers={"anthropic": {}, "openai": {}}
    )

    compiled = orjson.loads(runtime.compiled)
    providers = {agent["name"]: agent["provider"] for agent in compiled["agents"]}
    assert providers == {"boss": "anthropic", "greeter": "openai"}


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize(
    ("agents", "code"),
    [
        (
            [
                define_coordinator("boss", model=MODEL, prompt="p", routes=["a"]),
                define_specialist("a", model=MODEL, prompt="p"),
                define_specialist("a", model=MODEL, prompt="q"),
            ],
            "SPEC_DUPLICATE_AGENT",
        ),
        (
            [
                define_coordinator("boss", model=MODEL, prompt="p", routes=["b"]),
                define_coordinator("b", model=MODEL, prompt="p", routes=["boss"]),
            ],
            "SPEC_MULTIPLE_COORDINATORS",
        ),
        (
            [define_coordinator("boss", model=MODEL, prompt="p", routes=["ghost"])],
            "SPEC_UNKNOWN_ROUTE",
        ),
        ([define_coordinator("boss", model=MODEL, prompt="p", routes=["boss"])], "SPEC_SELF_ROUTE"),
        ([define_specialist("a", model="gpt-4o", prompt="p")], "SPEC_PROVIDER_NOT_DECLARED"),
    ],
)
def test_engine_rejects_whole_spec_mistakes(agents: list[AgentSpec], code: str) -> None:
    with pytest.raises(FlowaiError) as caught:
        define_runtime(("acme", "v1"), agents=agents, providers={"anthropic": {}})

    assert caught.value.code == code
    assert isinstance(caught.value, SpecError)


# --- TestingConfig --------------------------------------------------------------------------


def test_testing_config() -> None:
    config = TestingConfig(mock_response="Hello!")

    assert config.mock_response == "Hello!"
    assert config == TestingConfig(mock_response="Hello!")
    assert config != TestingConfig(mock_response="Bye")
    assert repr(config) == "TestingConfig(mock_response='Hello!')"
    assert hash(config) == hash(TestingConfig(mock_response="Hello!"))
    assert pickle.loads(pickle.dumps(config)) == config


def test_testing_config_rejects_other_keywords_by_name() -> None:
    with pytest.raises(ValueError, match="unknown keyword 'interpreter'") as caught:
        TestingConfig(mock_response="x", interpreter="scripted")  # type: ignore[call-arg]
    assert isinstance(caught.value, SpecError)
    with pytest.raises(SpecError, match="'mock_reponse'"):
        TestingConfig(mock_reponse="x")  # type: ignore[call-arg]


@pytest.mark.parametrize("value", [None, 1, b"bytes", ["x"]])
def test_testing_config_mock_response_must_be_a_str(value: Any) -> None:
    with pytest.raises(TypeError, match="mock_response must be a str"):
        TestingConfig(mock_response=value)


def test_testing_config_takes_only_keywords_and_is_frozen() -> None:
    with pytest.raises(TypeError):
        TestingConfig("x")  # type: ignore[call-arg]
    config = TestingConfig(mock_response="x")
    with pytest.raises(AttributeError, match="frozen"):
        config.mock_response = "y"
