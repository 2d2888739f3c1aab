"""Specs: tenant, agents, the runtime spec sent to the engine, and TestingConfig."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import pickle
import sys
import types
from typing import Any, Literal

import orjson
import pydantic
import pytest

import flowai_harness._native as REAL_NATIVE
from flowai_harness.approvals import ApprovalOverrides, ApprovalPatch, ApprovalPolicies
from flowai_harness.errors import (
    CoordinatorWithoutRoutesError,
    DuplicateToolError,
    FlowaiError,
    InvalidSchemaError,
    SpecError,
    UnknownApprovalTargetError,
)
from flowai_harness.plans import TaggedUnion, define_plan
from flowai_harness.prompts import layered_prompt
from flowai_harness.references import ReferenceHandle, define_reference
from flowai_harness.specs import (
    AgentSpec,
    ModelSpec,
    RuntimeSpec,
    TenantIdentity,
    TestingConfig,
    agent_tool_rows,
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
    plan = {"plan": REORDER} if role in ("planner", "executor") else {}
    assert define("a", model=MODEL, prompt="p", **plan).role == role


@pytest.mark.parametrize("define", [define_planner, define_executor])
def test_planners_and_executors_need_their_plan(define: Any) -> None:
    with pytest.raises(TypeError, match="plan"):
        define("a", model=MODEL, prompt="p")
    with pytest.raises(SpecError, match="plan must be a plan made with define_plan"):
        define("a", model=MODEL, prompt="p", plan="reorder")


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
        ({"max_tokens": 0}, "max_tokens", "int >= 1"),
        ({"temperature": "hot"}, "temperature", "number"),
        ({"max_turns": 0}, "max_turns", "int >= 1"),
        ({"max_turns": True}, "max_turns", "int >= 1"),
        ({"max_turns": "3"}, "max_turns", "int >= 1"),
        ({"thinking_budget": -1}, "thinking_budget", "int >= 1"),
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


@pytest.mark.parametrize(
    ("model", "match"),
    [("", "non-empty model id"), (4, "a model is a model id such as"), (None, "got NoneType")],
)
def test_a_model_is_an_id_or_a_model_spec(model: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        define_specialist("greeter", model=model, prompt="p")


def test_a_model_spec_names_its_provider() -> None:
    agent = define_specialist("g", model=ModelSpec("my-model", provider="openai"), prompt="p")

    assert (agent.model, agent.provider) == ("my-model", "openai")
    with pytest.raises(SpecError, match="disagrees"):
        define_specialist(
            "g", model=ModelSpec("x", provider="openai"), prompt="p", provider="anthropic"
        )


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


def engine_knowledge(agents: list[AgentSpec], tools: list[Any]) -> Any:
    """What the engine reports of ``agents`` when it compiles them (``compiled``)."""
    skeleton = spec_document(define_tenant("acme", "v1"), agents, tools, {"anthropic": {}})
    return orjson.loads(REAL_NATIVE.compile_spec(orjson.dumps(skeleton)))["compiled"]


def test_spec_document_matches_the_wire_doc() -> None:
    lookup = define_tool("lookup", {"type": "object"})
    coordinator = define_coordinator(
        "hello_coordinator", model=MODEL, prompt="Route ...", routes=["greeter"], tools=[lookup]
    )
    greeter = define_specialist("greeter", model=MODEL, prompt="Greet.")

    document = spec_document(
        define_tenant("acme", "v1"),
        [coordinator],
        [lookup],
        {"anthropic": {"api_key": "k"}},
        compiled=engine_knowledge([coordinator, greeter], [lookup]),
    )

    prompt = document["agents"][0].pop("prompt")
    assert prompt.startswith("Route ...\n\n# Tools\n| tool | description | approval |\n")
    assert "| call_agent |" in prompt
    assert "| lookup |  | never |" in prompt
    assert document == {
        "tenant": {"resource_id": "acme", "version": "v1"},
        "agents": [
            {
                "name": "hello_coordinator",
                "role": "coordinator",
                "model": MODEL,
                "provider": None,
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
    """Stands in for flowai_harness._native: records each spec the engine compiled, and
    answers as the engine does. define_runtime compiles twice (the engine says which
    built-in tools each agent has, then the prompts show them): ``final`` is what it keeps."""

    def __init__(self) -> None:
        super().__init__("flowai_harness._native")
        self.sent: list[bytes] = []

    def compile_spec(self, spec_json: bytes) -> bytes:
        compiled: bytes = REAL_NATIVE.compile_spec(spec_json)
        self.sent.append(spec_json)
        return compiled

    @property
    def final(self) -> bytes:
        assert len(self.sent) == 2, "define_runtime compiles a skeleton, then the spec"
        return self.sent[-1]


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

    sent = native.final
    assert isinstance(sent, bytes)
    document = orjson.loads(sent)
    for declared, agent in zip(document["agents"], agents, strict=True):
        # Each prompt gains the agent's tool table (tested above); the rest is as declared.
        assert declared.pop("prompt").startswith(agent.declaration().pop("prompt"))
    assert document == {
        "tenant": {"resource_id": "acme", "version": "v1"},
        "agents": [
            {k: v for k, v in agent.declaration().items() if k != "prompt"} for agent in agents
        ],
        "tools": [lookup.declaration()],
        "providers": ["anthropic", "openai"],
    }
    assert isinstance(runtime, RuntimeSpec)
    compiled = orjson.loads(runtime.compiled)
    assert compiled["compiled"]["boss"]["builtin_tools"] == ["call_agent"]
    assert compiled["agents"][1]["provider"] == "openai", "the engine resolved the provider"
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
        ("acme", "v1"),
        agents=two_agents(lookup, lookup.bind(handler)),
        providers={"anthropic": {}, "openai": {}},
    )

    assert runtime.tools == (lookup.bind(handler),)
    assert [tool["name"] for tool in orjson.loads(native.final)["tools"]] == ["lookup"]


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
        ("acme", "v1"),
        agents=two_agents(),
        providers={"anthropic": {"api_key": "secret"}, "openai": {}},
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


# --- approvals, prompts, plans and references in the spec ----------------------------------


def over_100(args: Any, ctx: Any) -> bool:
    return bool(args["amount"] > 100)


def is_weekend(args: Any, ctx: Any) -> bool:
    return False


def test_agent_approval_keywords() -> None:
    pay = define_tool("pay", {"amount": int})

    agent = define_executor(
        "executor",
        model=MODEL,
        prompt="Run plans.",
        plan=REORDER,
        tools=[pay],
        approval={"tools": "always"},
        tool_approvals={"pay": over_100, "resolveRef": "never"},
        approval_timeout=datetime.timedelta(minutes=5),
    )

    assert agent.approval == ApprovalPatch(tools="always")
    assert agent.tool_approvals == (("pay", over_100), ("resolveRef", "never"))
    assert agent.approval_timeout_ms == 300_000
    declaration = agent.declaration()
    assert {
        key: declaration[key] for key in ("approval", "tool_approvals", "approval_timeout_ms")
    } == {
        "approval": {"plans": "default", "tools": "always"},
        "tool_approvals": {"pay": {"predicate": "agent:executor:tool:pay"}, "resolveRef": "never"},
        "approval_timeout_ms": 300_000,
    }
    assert agent.predicates() == {"agent:executor:tool:pay": over_100}


def test_default_approvals_leave_the_agent_declaration_as_it_was() -> None:
    agent = define_planner("planner", model=MODEL, prompt="Plan.", plan=REORDER, approval="default")

    assert set(agent.declaration()) == {
        "name",
        "role",
        "model",
        "provider",
        "prompt",
        "routes",
        "tools",
        "max_turns",
        "description",
    }
    assert agent.predicates() == {}


@pytest.mark.parametrize(
    ("approval", "expected"),
    [
        ("always", {"plans": "always", "tools": "always"}),
        (
            over_100,
            {"plans": {"predicate": "agent:a:plans"}, "tools": {"predicate": "agent:a:tools"}},
        ),
        ({"plans": "never"}, {"plans": "never", "tools": "default"}),
    ],
)
def test_agent_approval_forms(approval: Any, expected: dict[str, Any]) -> None:
    agent = define_specialist("a", model=MODEL, prompt="p", approval=approval)

    assert agent.declaration()["approval"] == expected


@pytest.mark.parametrize(
    ("seconds", "ms"),
    [(30, 30_000), (0.25, 250), (0.0001, 1), (datetime.timedelta(hours=1), 3_600_000)],
)
def test_approval_timeouts_are_milliseconds(seconds: Any, ms: int) -> None:
    agent = define_specialist("a", model=MODEL, prompt="p", approval_timeout=seconds)

    assert agent.approval_timeout_ms == ms


@pytest.mark.parametrize(
    "timeout", [0, -1, float("inf"), float("nan"), True, "30", datetime.timedelta()]
)
def test_bad_approval_timeouts(timeout: Any) -> None:
    with pytest.raises(SpecError, match="agent 'a': approval_timeout must be"):
        define_specialist("a", model=MODEL, prompt="p", approval_timeout=timeout)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"approval": "sometimes"}, SpecError, "agent 'a': approval: an approval rule"),
        ({"approval": {"tool": "always"}}, SpecError, "unknown approval channel 'tool'"),
        ({"tool_approvals": ["pay"]}, SpecError, "tool_approvals must be a mapping"),
        ({"tool_approvals": {"pay": "default"}}, SpecError, r"tool_approvals\['pay'\]"),
        (
            {"tool_approvals": {"refund": "always", "storePlan": "always"}},
            UnknownApprovalTargetError,
            r"tool_approvals names 'refund', not one of its tools \(pay\)",
        ),
    ],
)
def test_bad_agent_approvals(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    pay = define_tool("pay", {"amount": int})

    with pytest.raises(error, match=match):
        define_specialist("a", model=MODEL, prompt="p", tools=[pay], **kwargs)


def test_tool_approvals_may_name_only_the_agents_own_built_in_tools() -> None:
    pay = define_tool("pay", {"amount": int}).bind(handler)
    specialist = define_specialist(
        "a", model=MODEL, prompt="p", tools=[pay], tool_approvals={"storePlan": "always"}
    )

    with pytest.raises(
        UnknownApprovalTargetError,
        match=r"agent `a` sets tool_approvals for `storePlan`, which is not one of its "
        r"tools \(pay\)",
    ):
        define_runtime(("acme", "v1"), agents=[specialist], providers={"anthropic": {}})


def test_unknown_approval_targets_are_spec_errors() -> None:
    assert issubclass(UnknownApprovalTargetError, SpecError)
    assert UnknownApprovalTargetError.code == "SPEC_UNKNOWN_APPROVAL_TARGET"


def test_a_layered_prompt_is_an_agent_prompt() -> None:
    prompt = layered_prompt(identity="You plan restocks.")

    agent = define_planner("planner", model=MODEL, prompt=prompt, plan=REORDER)

    assert agent.prompt is prompt
    assert agent.prompt_text == "# Identity\nYou plan restocks."
    assert agent.declaration()["prompt"] == "# Identity\nYou plan restocks."
    assert agent.declaration(prompt="rendered")["prompt"] == "rendered"


class Reorder(pydantic.BaseModel):
    kind: Literal["reorder_products"]
    products: ReferenceHandle


class Hold(pydantic.BaseModel):
    kind: Literal["hold_inventory"]
    products: ReferenceHandle


class ReorderPlan(pydantic.BaseModel):
    actions: list[TaggedUnion(Reorder, Hold)]  # type: ignore[valid-type]


REORDER = define_plan("reorder", ReorderPlan, display_aliases={"draft": "Proposed"})
PRODUCT_SET = define_reference("product_set", {"type": "array"}, ttl_ms=60_000)


def acme_agents(**executor: Any) -> list[AgentSpec]:
    pay = define_tool("pay", {"amount": int}, approval=over_100)
    delete_rows = define_tool("delete_rows", {"table": str})
    return [
        define_coordinator("boss", model=MODEL, prompt="Route.", routes=["planner", "executor"]),
        define_planner(
            "planner",
            model=MODEL,
            prompt=layered_prompt(identity="You plan.", safety="Ask first."),
            plan=REORDER,
            tools=[delete_rows],
        ),
        define_executor(
            "executor",
            model=MODEL,
            prompt="Execute.",
            plan=REORDER,
            tools=[pay, delete_rows],
            **executor,
        ),
    ]


def test_define_runtime_sends_plans_references_and_approvals(native: FakeNative) -> None:
    runtime = define_runtime(
        ("acme", "v1"),
        agents=acme_agents(tool_approvals={"pay": "always"}),
        providers={"anthropic": {}},
        plans=[REORDER],
        references=[PRODUCT_SET],
        approval_policies=ApprovalPolicies(tools=is_weekend),
        approval_overrides=ApprovalOverrides(
            agents={"executor": {"tools": "always"}}, tools={"delete_rows": "always"}
        ),
        approval_timeout=120,
    )

    sent = orjson.loads(native.final)
    assert sent["plans"] == [REORDER.declaration()]
    assert sent["references"] == [
        {"name": "product_set", "schema": {"type": "array"}, "ttl_ms": 60_000}
    ]
    assert sent["approvals"] == {
        "policies": {"plans": "always", "tools": {"predicate": "policy:tools"}},
        "overrides": {
            "agents": {"executor": {"plans": "default", "tools": "always"}},
            "tools": {"delete_rows": "always"},
        },
    }
    assert sent["approval_timeout_ms"] == 120_000
    assert sent["tools"][0] == {
        "name": "delete_rows",
        "description": "",
        "input_schema": sent["tools"][0]["input_schema"],
        "output_schema": None,
        "approval": "default",
    }
    assert sent["tools"][1]["approval"] == {"predicate": "pay_approval"}
    assert runtime.plans == (REORDER,)
    assert runtime.references == (PRODUCT_SET,)
    assert runtime.plan("reorder") is REORDER
    assert runtime.reference("product_set") is PRODUCT_SET
    assert runtime.plan("other") is None
    assert runtime.predicates.ids() == ["pay_approval", "policy:tools"]
    assert runtime.predicates.evaluate("pay_approval", {"amount": 101}, {}) is True


def test_a_spec_without_the_new_features_sends_no_new_keys(native: FakeNative) -> None:
    runtime = define_runtime(
        ("acme", "v1"), agents=two_agents(), providers={"anthropic": {}, "openai": {}}
    )

    assert set(orjson.loads(native.final)) == {"tenant", "agents", "tools", "providers"}
    assert (runtime.plans, runtime.references, len(runtime.predicates)) == ((), (), 0)


def test_a_layered_prompt_gets_the_agents_tools_and_their_rules(native: FakeNative) -> None:
    define_runtime(
        ("acme", "v1"),
        agents=acme_agents(),
        providers={"anthropic": {}},
        approval_overrides=ApprovalOverrides(tools={"delete_rows": over_100}),
    )

    planner = orjson.loads(native.final)["agents"][1]
    assert planner["prompt"] == (
        "# Identity\nYou plan.\n\n"
        "# Tools\n"
        "| tool | description | approval |\n"
        "| --- | --- | --- |\n"
        "| delete_rows |  | dynamic |\n"
        "| getPlan | Read a stored plan and its status (planId). | never |\n"
        "| storePlan | Store a plan (specName, planId, body) as a draft. | never |\n\n"
        "# Safety\nAsk first."
    )
    executor = orjson.loads(native.final)["agents"][2]["prompt"]
    assert executor.startswith("Execute.\n\n# Tools\n| tool | description | approval |")
    assert "| executePlan |" in executor


def test_agent_tool_rows_follow_the_engines_precedence() -> None:
    agents = acme_agents(
        approval={"tools": "always", "plans": "never"}, tool_approvals={"pay": "never"}
    )
    executor = agents[2]

    compiled = define_runtime(
        ("acme", "v1"),
        agents=agents,
        providers={"anthropic": {}},
        approval_overrides=ApprovalOverrides(tools={"getPlan": "always"}),
    ).compiled_agents()
    rows = {row["name"]: row["approval"] for row in agent_tool_rows(compiled[executor.name])}

    assert rows == {
        "pay": "never",  # the agent's tool_approvals beat the tool's predicate
        "delete_rows": "always",  # the agent's tools channel
        "getPlan": "never",  # answered by the engine, never gated
        "executePlan": "never",  # the plans channel: the agent's plans rule
        "resolveRef": "always",
        "glimpseRef": "always",
    }
    coordinator = acme_agents()[0]
    compiled = define_runtime(
        ("acme", "v1"), agents=acme_agents(), providers={"anthropic": {}}
    ).compiled_agents()
    assert [row["name"] for row in agent_tool_rows(compiled[coordinator.name])] == ["call_agent"]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            ApprovalOverrides(agents={"ghost": "always"}),
            r"unknown agents 'ghost' \(the agents are boss",
        ),
        (ApprovalOverrides(tools={"refund": "always", "pay": "never"}), r"unknown tools 'refund'"),
        (
            ApprovalOverrides(agents={"a1": "always"}, tools={"t1": "always"}),
            "unknown agents 'a1'.* and tools 't1'",
        ),
    ],
)
def test_overrides_must_name_declared_agents_and_tools(
    native: FakeNative, overrides: ApprovalOverrides, match: str
) -> None:
    with pytest.raises(UnknownApprovalTargetError, match=match):
        define_runtime(
            ("acme", "v1"), agents=acme_agents(), providers={}, approval_overrides=overrides
        )
    assert native.sent == []


def test_overrides_may_name_built_in_tools(native: FakeNative) -> None:
    define_runtime(
        ("acme", "v1"),
        agents=acme_agents(),
        providers={"anthropic": {}},
        approval_overrides=ApprovalOverrides(tools={"resolveRef": "always"}),
    )

    assert orjson.loads(native.final)["approvals"]["overrides"]["tools"] == {"resolveRef": "always"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"plans": REORDER}, "plans must be a list, got PlanSpec"),
        ({"plans": [ReorderPlan]}, r"plans holds ModelMetaclass .*define_plan"),
        ({"plans": [REORDER, REORDER]}, "two plans are named 'reorder'"),
        ({"references": [PRODUCT_SET, PRODUCT_SET]}, "two references are named 'product_set'"),
        ({"references": ["product_set"]}, "references holds str"),
        ({"approval_policies": {"plans": "never"}}, "approval_policies must be ApprovalPolicies"),
        ({"approval_overrides": {"tools": {}}}, "approval_overrides must be ApprovalOverrides"),
        ({"approval_timeout": -5}, "runtime: approval_timeout must be a finite time > 0"),
    ],
)
def test_define_runtime_rejects_bad_new_arguments(
    native: FakeNative, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(SpecError, match=match):
        define_runtime(("acme", "v1"), agents=two_agents(), providers={}, **kwargs)
    assert native.sent == []


def test_one_tool_with_two_predicates_is_two_definitions(native: FakeNative) -> None:
    first = define_tool("pay", {"amount": int}, approval=over_100)
    second = define_tool("pay", {"amount": int}, approval=is_weekend)

    with pytest.raises(DuplicateToolError, match="tool 'pay' has two different definitions"):
        define_runtime(("acme", "v1"), agents=two_agents(first, second), providers={})


# --- the same, against the real engine ------------------------------------------------------


@pytest.fixture
def issue3_engine() -> Any:
    """The real engine, once it accepts the plan, reference and approval fields."""
    native = pytest.importorskip("flowai_harness._native")
    probe = {
        "tenant": {"resource_id": "acme", "version": "v1"},
        "agents": [{"name": "a", "role": "specialist", "model": MODEL, "prompt": "p"}],
        "providers": ["anthropic"],
        "plans": [],
        "references": [],
        "approvals": {"policies": {"plans": "always", "tools": "never"}},
        "approval_timeout_ms": None,
    }
    try:
        native.compile_spec(orjson.dumps(probe))
    except SpecError as exc:
        pytest.skip(f"this build of the engine does not take issue-3 spec fields yet: {exc}")
    return native


@pytest.mark.usefixtures("issue3_engine")
def test_engine_compiles_plans_references_and_approvals() -> None:
    runtime = define_runtime(
        ("acme", "v1"),
        agents=acme_agents(tool_approvals={"pay": "always"}, approval_timeout=30),
        providers={"anthropic": {}},
        plans=[REORDER],
        references=[PRODUCT_SET, define_reference("product", ReferenceHandle)],
        approval_policies=ApprovalPolicies(tools=is_weekend),
        approval_overrides=ApprovalOverrides(agents={"executor": {"tools": "always"}}),
        approval_timeout=120,
    )

    compiled = orjson.loads(runtime.compiled)
    assert [plan["name"] for plan in compiled["plans"]] == ["reorder"]
    assert compiled["approval_timeout_ms"] == 120_000
    executor = next(agent for agent in compiled["agents"] if agent["name"] == "executor")
    assert executor["approval_timeout_ms"] == 30_000
    assert executor["tool_approvals"] == {"pay": "always"}


@pytest.mark.usefixtures("issue3_engine")
def test_engine_rejects_a_plan_without_actions_too() -> None:
    spec = spec_document(
        define_tenant("acme", "v1"),
        [define_specialist("a", model=MODEL, prompt="p")],
        [],
        ["anthropic"],
        plans=[dataclasses.replace(REORDER, schema={"type": "object"})],
    )
    native = importlib.import_module("flowai_harness._native")

    with pytest.raises(InvalidSchemaError, match="plan `reorder` has no top-level `actions` array"):
        native.compile_spec(orjson.dumps(spec))
