"""The runtime spec a user declares: tenant, agents, providers, and the testing interpreter.

Owns the frozen spec models (:class:`TenantIdentity`, :class:`AgentSpec`,
:class:`RuntimeSpec`), the ``define_*`` functions that build them, :class:`TestingConfig`, and
the spec JSON sent to the engine's ``compile_spec`` (docs/wire.md, "Runtime spec" and "Plans,
approval gates, references"): plans, reference kinds and approval rules ride along, and each
agent with a :class:`~flowai_harness.prompts.LayeredPrompt` gets its tool table rendered in.
Keys of the issue-3 additions are left out while they hold their defaults, so a spec that uses
none of them is byte-for-byte what it was before.

Every rejection is a :class:`~flowai_harness.errors.SpecError` naming the offender and the
field; a pydantic ``ValidationError`` never escapes. Rules that need the whole spec
(duplicate agents, routes, coordinators, providers) belong to the engine, not here; the one
exception is two different tools under one name, which the engine cannot see because it is
sent each tool once.

Must not import ``runtime`` or the native extension at module level: ``_native`` is imported
inside :func:`define_runtime`, so specs can be built and tested without a compiled engine.
"""

from __future__ import annotations

import datetime
import importlib
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, Protocol, TypeVar

import orjson
import pydantic
from pydantic import AfterValidator, Field, PlainValidator, StrictBytes, StrictInt, StrictStr

from .approvals import (
    NO_OVERRIDES,
    ApprovalOverrides,
    ApprovalPatch,
    ApprovalPolicies,
    Predicate,
    PredicateRegistry,
    Rule,
    RuleOrDefault,
    as_patch,
    check_rule,
    effective_plan_rule,
    effective_tool_rule,
    predicate_id,
    rule_json,
)
from .errors import (
    CoordinatorWithoutRoutesError,
    DuplicateToolError,
    SpecError,
    UnknownApprovalTargetError,
)
from .plans import PlanSpec
from .prompts import LayeredPrompt, render_agent_prompt
from .references import ReferenceSpec
from .tools import NAME_PATTERN, ToolDefinition

__all__ = [
    "AgentSpec",
    "Role",
    "RuntimeSpec",
    "TenantIdentity",
    "TestingConfig",
    "define_coordinator",
    "define_executor",
    "define_planner",
    "define_runtime",
    "define_specialist",
    "define_tenant",
]

Role = Literal["coordinator", "planner", "executor", "specialist"]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or whitespace-only")
    return value


def _valid_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or '_'"
        )
    return value


def _prompt(value: object) -> str | LayeredPrompt:
    if isinstance(value, LayeredPrompt):
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string or a layered_prompt(...)")
    return value


_Text = Annotated[StrictStr, AfterValidator(_not_blank)]
_Name = Annotated[StrictStr, AfterValidator(_valid_name)]
_Prompt = Annotated[str | LayeredPrompt, PlainValidator(_prompt)]


class _Spec(pydantic.BaseModel):
    """Frozen, closed models whose validation errors surface as SpecError."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    # Per-field advice appended to validation messages: what to pass instead.
    _hints: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise type(self)._spec_error(data, exc) from None

    @classmethod
    def _subject(cls, data: Mapping[str, Any]) -> str:
        raise NotImplementedError

    @classmethod
    def _spec_error(cls, data: Mapping[str, Any], exc: pydantic.ValidationError) -> SpecError:
        errors = exc.errors(include_url=False)
        # Validators raise specific SpecError subclasses; pydantic wraps them (they are
        # ValueErrors), so unwrap the first one rather than flatten it into SPEC_INVALID.
        for error in errors:
            original = error.get("ctx", {}).get("error")
            if isinstance(original, SpecError):
                return original
        problems = []
        for error in errors:
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                hint = "Remove it."
            else:
                hint = cls._hints.get(str(error["loc"][0]) if error["loc"] else "", "")
            problems.append(
                {
                    "field": _field_path(error["loc"]),
                    "message": message[:1].lower() + message[1:],
                    "hint": hint,
                }
            )
        text = " ".join(f"field {p['field']!r}: {p['message']}. {p['hint']}" for p in problems)
        return SpecError(f"{cls._subject(data)}: {text.strip()}", details={"errors": problems})


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


# --- tenant ---------------------------------------------------------------------------------


class TenantIdentity(_Spec):
    """Who a runtime serves: the tenant's ``resource_id`` and the spec ``version``."""

    resource_id: _Text
    version: _Text

    _hints: ClassVar[Mapping[str, str]] = {
        "resource_id": "Pass the tenant name, e.g. define_tenant('acme', 'v1').",
        "version": "Pass the spec version, e.g. define_tenant('acme', 'v1').",
    }

    @classmethod
    def _subject(cls, data: Mapping[str, Any]) -> str:
        return "tenant"


_TENANT_KEYS: Mapping[str, str] = {
    "name": "resource_id",
    "resource_id": "resource_id",
    "version": "version",
}


def define_tenant(
    name: object = None, version: object = None, /, **fields: object
) -> TenantIdentity:
    """Declare the tenant a runtime serves and the version of its spec.

    Accepts ``define_tenant("acme", "v1")``, ``define_tenant(name="acme", version="v1")``
    (``resource_id=`` works too) or ``define_tenant({"name": "acme", "version": "v1"})``.
    A :class:`TenantIdentity` is returned as it is.
    """
    if isinstance(name, TenantIdentity) and version is None and not fields:
        return name
    given: list[tuple[str, object]] = []
    if isinstance(name, Mapping):
        given.extend(name.items())
    elif name is not None:
        given.append(("name", name))
    if version is not None:
        given.append(("version", version))
    given.extend(fields.items())
    values: dict[str, Any] = {}
    for key, value in given:
        target = _TENANT_KEYS.get(key) if isinstance(key, str) else None
        if target is None:
            raise SpecError(
                f"tenant: unknown field {key!r}; a tenant has a name (or resource_id) and a version"
            )
        if target in values:
            raise SpecError(f"tenant: {target} is given twice; give it once")
        values[target] = value
    return TenantIdentity(**values)


def _as_tenant(tenant: object) -> TenantIdentity:
    if isinstance(tenant, (tuple, list)):
        if len(tenant) != 2:
            raise SpecError(
                f"tenant: expected (name, version), got {tenant!r}; "
                "pass e.g. ('acme', 'v1') or define_tenant(...)"
            )
        return define_tenant(*tenant)
    return define_tenant(tenant)


# --- agents ---------------------------------------------------------------------------------


class AgentSpec(_Spec):
    """One agent. Build it with ``define_coordinator``/``planner``/``executor``/``specialist``."""

    name: _Name
    role: Role
    model: _Text
    prompt: _Prompt
    routes: tuple[_Name, ...] = ()
    tools: tuple[pydantic.InstanceOf[ToolDefinition], ...] = ()
    max_turns: Annotated[StrictInt, Field(ge=1)] | None = None
    provider: _Text | None = None
    description: StrictStr = ""
    # Its rules per channel ("default" inherits the runtime's), its rules per tool (sorted
    # by tool name, so equal agents hash equal) and how long its approvals may wait.
    approval: pydantic.InstanceOf[ApprovalPatch] = ApprovalPatch()
    tool_approvals: tuple[tuple[_Name, Any], ...] = ()
    approval_timeout_ms: Annotated[StrictInt, Field(ge=1)] | None = None

    _hints: ClassVar[Mapping[str, str]] = {
        "name": "Give the agent a name such as 'greeter'.",
        "role": "Use define_coordinator, define_planner, define_executor or define_specialist.",
        "model": "Pass a model id, e.g. model='claude-sonnet-4-6'.",
        "prompt": "Pass the agent's instructions as a non-empty string or a layered_prompt(...).",
        "routes": "Pass a list of the names of the agents it may call.",
        "tools": "Pass a list of tools made with define_tool(...).",
        "max_turns": "Pass an int >= 1, or None for the engine default (100).",
        "provider": "Pass a provider declared in define_runtime(providers=...), or None to "
        "infer it from the model.",
        "description": "Pass a string.",
        "approval": "Pass 'default', 'never', 'always', a function (args, ctx) -> bool, or "
        "{'plans': ..., 'tools': ...}.",
        "tool_approvals": "Pass a mapping of tool name to 'never', 'always' or a function.",
        "approval_timeout_ms": "Pass approval_timeout= in seconds (> 0), or None.",
    }

    @classmethod
    def _subject(cls, data: Mapping[str, Any]) -> str:
        name = data.get("name")
        return f"agent {name!r}" if isinstance(name, str) else "agent"

    @property
    def prompt_text(self) -> str:
        """The prompt as written (a LayeredPrompt's text, before its tool table)."""
        return self.prompt.text if isinstance(self.prompt, LayeredPrompt) else self.prompt

    @property
    def builtin_tools(self) -> tuple[str, ...]:
        """The engine's tools this agent gets for its role (docs/wire.md)."""
        return BUILTIN_TOOLS[self.role]

    @pydantic.model_validator(mode="after")
    def _check_lists(self) -> AgentSpec:
        if self.role == "coordinator" and not self.routes:
            raise CoordinatorWithoutRoutesError(
                f"agent {self.name!r} is a coordinator without routes; pass routes=[...] "
                "naming the agents it may hand work to"
            )
        if routes := _repeats(self.routes):
            raise SpecError(
                f"agent {self.name!r}: route {routes[0]!r} is listed twice; list it once"
            )
        if tools := _repeats(tool.name for tool in self.tools):
            raise DuplicateToolError(
                f"agent {self.name!r}: tool {tools[0]!r} is listed twice; list it once"
            )
        own = {tool.name for tool in self.tools} | set(_PLAN_TOOLS[self.role])
        unknown = sorted(name for name, _ in self.tool_approvals if name not in own)
        if unknown:
            raise UnknownApprovalTargetError(
                f"agent {self.name!r}: tool_approvals names {', '.join(map(repr, unknown))}, "
                f"not one of its tools ({', '.join(sorted(own)) or 'none'}); add the tool to "
                "tools=[...] or remove the rule"
            )
        for name, rule in self.tool_approvals:
            check_rule(rule, f"agent {self.name!r}: tool_approvals[{name!r}]")
        return self

    def declaration(self, prompt: str | None = None) -> dict[str, Any]:
        """The agent as the engine's runtime spec declares it (tools by name).

        ``prompt`` replaces the prompt text (define_runtime passes it with the agent's tool
        table rendered in). The approval keys appear only when they differ from the default.
        """
        declared: dict[str, Any] = {
            "name": self.name,
            "role": self.role,
            "model": self.model,
            "provider": self.provider,
            "prompt": self.prompt_text if prompt is None else prompt,
            "routes": list(self.routes),
            "tools": [tool.name for tool in self.tools],
            "max_turns": self.max_turns,
            "description": self.description,
        }
        if not self.approval.is_default:
            declared["approval"] = self.approval.to_json(predicate_id("agent", self.name))
        if self.tool_approvals:
            declared["tool_approvals"] = {
                tool: rule_json(rule, predicate_id("agent", self.name, "tool", tool))
                for tool, rule in self.tool_approvals
            }
        if self.approval_timeout_ms is not None:
            declared["approval_timeout_ms"] = self.approval_timeout_ms
        return declared

    def predicates(self) -> dict[str, Predicate]:
        """The agent's predicate rules by id (see approvals.predicate_id)."""
        found = self.approval.predicates(predicate_id("agent", self.name))
        for tool, rule in self.tool_approvals:
            if not isinstance(rule, str):
                found[predicate_id("agent", self.name, "tool", tool)] = rule
        return found


# The engine's own tools per role (spec.rs ``builtin_tools``): plan tools for everyone,
# call_agent for the coordinator. tool_approvals may name the plan tools of the agent's role.
_PLAN_TOOLS: Final[Mapping[Role, tuple[str, ...]]] = types.MappingProxyType(
    {
        "coordinator": ("getPlan",),
        "planner": ("storePlan", "getPlan"),
        "executor": ("getPlan", "executePlan", "resolveRef", "glimpseRef"),
        "specialist": ("getPlan",),
    }
)
BUILTIN_TOOLS: Final[Mapping[Role, tuple[str, ...]]] = types.MappingProxyType(
    {
        role: ("call_agent", *tools) if role == "coordinator" else tools
        for role, tools in _PLAN_TOOLS.items()
    }
)
_BUILTIN_DESCRIPTIONS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "call_agent": "Hand a task to another agent and get its answer.",
        "storePlan": "Store a plan (specName, planId, body); it waits for approval if needed.",
        "getPlan": "Read a stored plan and its status (planId).",
        "executePlan": "Execute an approved plan (planId).",
        "resolveRef": "Read the full value behind a reference handle (ref: {kind, id}).",
        "glimpseRef": "Read the short summary of a reference handle (ref: {kind, id}).",
    }
)
# Built-in tools that no gate stops (the engine answers them, or hands work on).
_UNGATED: Final = frozenset({"call_agent", "getPlan", "executePlan"})


def _repeats(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated = []
    for name in names:
        if name in seen:
            repeated.append(name)
        seen.add(name)
    return repeated


def _as_list(agent: object, field: str, value: object, example: str) -> tuple[Any, ...]:
    # A str is iterable, so routes="greeter" would silently become ("g", "r", ...).
    if isinstance(value, (str, bytes, Mapping, ToolDefinition)) or not isinstance(value, Iterable):
        raise SpecError(
            f"agent {agent!r}: field {field!r} must be a list, got {type(value).__name__}; "
            f"pass e.g. {field}={example}"
        )
    return tuple(value)


def _define_agent(
    role: Role,
    name: str,
    *,
    model: str,
    prompt: str | LayeredPrompt,
    routes: Iterable[str],
    tools: Iterable[ToolDefinition],
    max_turns: int | None,
    provider: str | None,
    description: str,
    approval: object,
    tool_approvals: Mapping[str, Rule] | None,
    approval_timeout: float | datetime.timedelta | None,
) -> AgentSpec:
    return AgentSpec(
        name=name,
        role=role,
        model=model,
        prompt=prompt,
        routes=_as_list(name, "routes", routes, "['greeter']"),
        tools=_as_list(name, "tools", tools, "[lookup]"),
        max_turns=max_turns,
        provider=provider,
        description=description,
        approval=as_patch(approval, f"agent {name!r}: approval"),
        tool_approvals=_as_tool_approvals(name, tool_approvals),
        approval_timeout_ms=timeout_ms(approval_timeout, f"agent {name!r}"),
    )


def _as_tool_approvals(agent: object, rules: object) -> tuple[tuple[Any, Any], ...]:
    if rules is None:
        return ()
    if not isinstance(rules, Mapping):
        raise SpecError(
            f"agent {agent!r}: tool_approvals must be a mapping of tool name to rule, got "
            f"{type(rules).__name__}; pass e.g. tool_approvals={{'delete_rows': 'always'}}"
        )
    return tuple(sorted(rules.items(), key=lambda item: str(item[0])))


def timeout_ms(value: object, where: str) -> int | None:
    """An approval timeout (seconds as int or float, or a timedelta) in whole milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise SpecError(
            f"{where}: approval_timeout must be seconds (int or float) or a timedelta, got "
            f"{type(value).__name__}"
        )
    if not seconds > 0 or seconds == float("inf"):
        raise SpecError(f"{where}: approval_timeout must be a finite time > 0, got {value!r}")
    return max(1, round(seconds * 1000))


# What approval= takes: "default", a rule, or {"plans": ..., "tools": ...}.
ApprovalInput = RuleOrDefault | Mapping[str, RuleOrDefault] | ApprovalPatch


def define_coordinator(
    name: str,
    *,
    model: str,
    prompt: str | LayeredPrompt,
    routes: Iterable[str],
    tools: Iterable[ToolDefinition] = (),
    max_turns: int | None = None,
    provider: str | None = None,
    description: str = "",
    approval: ApprovalInput = "default",
    tool_approvals: Mapping[str, Rule] | None = None,
    approval_timeout: float | datetime.timedelta | None = None,
) -> AgentSpec:
    """Declare the coordinator: the agent a query goes to, handing work to its ``routes``.

    Every ``define_*`` agent takes the same approval keywords: ``approval`` (``"default"``
    inherits the runtime's policies; a rule sets both channels; ``{"plans": ...,
    "tools": ...}`` sets them apart), ``tool_approvals`` (a rule per tool of this agent) and
    ``approval_timeout`` (seconds or a timedelta; a gate left waiting that long is rejected).
    ``prompt`` is a string or a :func:`~flowai_harness.layered_prompt`.
    """
    return _define_agent(
        "coordinator",
        name,
        model=model,
        prompt=prompt,
        routes=routes,
        tools=tools,
        max_turns=max_turns,
        provider=provider,
        description=description,
        approval=approval,
        tool_approvals=tool_approvals,
        approval_timeout=approval_timeout,
    )


class _DefineAgent(Protocol):
    def __call__(
        self,
        name: str,
        *,
        model: str,
        prompt: str | LayeredPrompt,
        tools: Iterable[ToolDefinition] = (),
        max_turns: int | None = None,
        provider: str | None = None,
        description: str = "",
        approval: ApprovalInput = "default",
        tool_approvals: Mapping[str, Rule] | None = None,
        approval_timeout: float | datetime.timedelta | None = None,
    ) -> AgentSpec: ...


def _agent_definer(role: Role, doc: str) -> _DefineAgent:
    # One body for the roles that take no routes; mypy checks it against _DefineAgent, so the
    # keywords cannot drift apart between the roles.
    def define(
        name: str,
        *,
        model: str,
        prompt: str | LayeredPrompt,
        tools: Iterable[ToolDefinition] = (),
        max_turns: int | None = None,
        provider: str | None = None,
        description: str = "",
        approval: ApprovalInput = "default",
        tool_approvals: Mapping[str, Rule] | None = None,
        approval_timeout: float | datetime.timedelta | None = None,
    ) -> AgentSpec:
        return _define_agent(
            role,
            name,
            model=model,
            prompt=prompt,
            routes=(),
            tools=tools,
            max_turns=max_turns,
            provider=provider,
            description=description,
            approval=approval,
            tool_approvals=tool_approvals,
            approval_timeout=approval_timeout,
        )

    define.__name__ = define.__qualname__ = f"define_{role}"
    define.__doc__ = doc
    return define


_SEE: Final = " Takes the approval keywords of define_coordinator."
define_planner = _agent_definer("planner", "Declare a planner agent (it stores plans)." + _SEE)
define_executor = _agent_definer(
    "executor", "Declare an executor agent (it executes approved plans)." + _SEE
)
define_specialist = _agent_definer("specialist", "Declare a specialist agent." + _SEE)


# --- the runtime ----------------------------------------------------------------------------


class RuntimeSpec(_Spec):
    """A compiled runtime spec: what ``create_runtime`` runs. Build it with define_runtime."""

    tenant: TenantIdentity
    agents: tuple[AgentSpec, ...]
    # Provider settings may hold API keys: kept out of repr and out of the engine's JSON.
    providers: Mapping[str, Mapping[str, Any]] = Field(repr=False)
    tools: tuple[pydantic.InstanceOf[ToolDefinition], ...] = ()
    compiled: StrictBytes = Field(repr=False)
    plans: tuple[pydantic.InstanceOf[PlanSpec], ...] = ()
    references: tuple[pydantic.InstanceOf[ReferenceSpec], ...] = ()
    # Every predicate rule of the spec by its id, for the engine's ApprovalCheck effects.
    predicates: pydantic.InstanceOf[PredicateRegistry] = Field(
        default_factory=PredicateRegistry, repr=False
    )

    _hints: ClassVar[Mapping[str, str]] = {
        "tenant": "Pass define_tenant(...).",
        "agents": "Pass a list of agents made with define_coordinator, define_specialist etc.",
        "providers": "Pass a mapping of provider name to its settings, e.g. {'anthropic': {}}.",
        "tools": "Pass the tools the agents use.",
        "compiled": "Build the spec with define_runtime(...).",
        "plans": "Pass plans made with define_plan(...).",
        "references": "Pass reference kinds made with define_reference(...).",
        "predicates": "Build the spec with define_runtime(...).",
    }

    def plan(self, name: str) -> PlanSpec | None:
        """The plan kind named ``name``, if declared."""
        return next((plan for plan in self.plans if plan.name == name), None)

    def reference(self, name: str) -> ReferenceSpec | None:
        """The reference kind named ``name``, if declared."""
        return next((ref for ref in self.references if ref.name == name), None)

    @classmethod
    def _subject(cls, data: Mapping[str, Any]) -> str:
        return "runtime"

    @pydantic.model_validator(mode="after")
    def _freeze_providers(self) -> RuntimeSpec:
        # The model is frozen, but a plain dict inside it would not be.
        frozen = types.MappingProxyType(
            {name: types.MappingProxyType(dict(conf)) for name, conf in self.providers.items()}
        )
        object.__setattr__(self, "providers", frozen)
        return self


def _as_providers(providers: object) -> dict[str, dict[str, Any]]:
    if not isinstance(providers, Mapping):
        raise SpecError(
            f"runtime: providers must be a mapping of provider name to settings, got "
            f"{type(providers).__name__}; pass e.g. providers={{'anthropic': {{}}}}"
        )
    result: dict[str, dict[str, Any]] = {}
    for name, conf in providers.items():
        if not isinstance(name, str) or not name.strip():
            raise SpecError(
                f"runtime: provider name {name!r} must be a non-empty string, e.g. 'anthropic'"
            )
        if not isinstance(conf, Mapping):
            raise SpecError(
                f"runtime: settings of provider {name!r} must be a mapping, got "
                f"{type(conf).__name__}; pass {{}} when it needs none"
            )
        result[name] = dict(conf)
    return result


def _as_agents(agents: object) -> tuple[AgentSpec, ...]:
    if isinstance(agents, (str, bytes, Mapping, AgentSpec)) or not isinstance(agents, Iterable):
        raise SpecError(
            f"runtime: agents must be a list of agents, got {type(agents).__name__}; "
            "pass e.g. agents=[coordinator, greeter]"
        )
    result = tuple(agents)
    for agent in result:
        if not isinstance(agent, AgentSpec):
            raise SpecError(
                f"runtime: agents holds {type(agent).__name__} {agent!r}; pass agents made "
                "with define_coordinator, define_planner, define_executor or define_specialist"
            )
    return result


def _shared_tools(agents: Iterable[AgentSpec]) -> tuple[ToolDefinition, ...]:
    """Every tool the agents use, once, in first-use order.

    Agents may share one tool; two different tools under one name are rejected because the
    engine and the tool workers address tools by name. An unbound copy of a bound tool is
    the same tool (the handler is taken from whichever copy has it).
    """
    chosen: dict[str, tuple[ToolDefinition, str]] = {}
    for agent in agents:
        for tool in agent.tools:
            if tool.name not in chosen:
                chosen[tool.name] = (tool, agent.name)
                continue
            kept, owner = chosen[tool.name]
            if kept.declaration() != tool.declaration() or kept.approval != tool.approval:
                raise DuplicateToolError(
                    f"tool {tool.name!r} has two different definitions (used by agents "
                    f"{owner!r} and {agent.name!r}); define it once and share it, or "
                    "rename one"
                )
            if kept.handler is not None and tool.handler is not None:
                if kept.handler != tool.handler:
                    raise DuplicateToolError(
                        f"tool {tool.name!r} is bound to two different handlers (used by "
                        f"agents {owner!r} and {agent.name!r}); bind it once and share it"
                    )
            elif tool.handler is not None:
                chosen[tool.name] = (tool, owner)
    return tuple(tool for tool, _ in chosen.values())


_Item = TypeVar("_Item", PlanSpec, ReferenceSpec)


def _as_named(items: object, cls: type[_Item], field: str, maker: str) -> tuple[_Item, ...]:
    if isinstance(items, (str, bytes, Mapping, cls)) or not isinstance(items, Iterable):
        raise SpecError(
            f"runtime: {field} must be a list, got {type(items).__name__}; pass e.g. "
            f"{field}=[{maker}(...)]"
        )
    result = tuple(items)
    for item in result:
        if not isinstance(item, cls):
            raise SpecError(
                f"runtime: {field} holds {type(item).__name__} {item!r}; pass values made "
                f"with {maker}(...)"
            )
    if repeated := _repeats(item.name for item in result):
        raise SpecError(
            f"runtime: two {field} are named {repeated[0]!r}; {field} names must be unique"
        )
    return result


def _check_approval_names(
    overrides: ApprovalOverrides, agents: Iterable[AgentSpec], tools: Iterable[ToolDefinition]
) -> None:
    agent_names = {agent.name for agent in agents}
    tool_names = {tool.name for tool in tools} | set(_BUILTIN_DESCRIPTIONS)
    problems = []
    if unknown := sorted(set(overrides.agents) - agent_names):
        problems.append(
            f"agents {', '.join(map(repr, unknown))} (the agents are "
            f"{', '.join(sorted(agent_names))})"
        )
    if unknown := sorted(set(overrides.tools) - tool_names):
        problems.append(
            f"tools {', '.join(map(repr, unknown))} (no agent uses a tool of that name)"
        )
    if problems:
        raise UnknownApprovalTargetError(
            f"runtime: approval_overrides name unknown {' and '.join(problems)}; fix or remove "
            "those entries"
        )


def collect_predicates(
    policies: ApprovalPolicies,
    overrides: ApprovalOverrides,
    agents: Iterable[AgentSpec],
    tools: Iterable[ToolDefinition],
) -> PredicateRegistry:
    """Every predicate rule of a spec under the id its JSON names."""
    registry = PredicateRegistry(policies.predicates())
    registry.update(overrides.predicates())
    for agent in agents:
        registry.update(agent.predicates())
    for tool in tools:
        if not isinstance(tool.approval, str):
            registry.register(tool.predicate_id, tool.approval)
    return registry


def agent_tool_rows(
    agent: AgentSpec,
    policies: ApprovalPolicies = ApprovalPolicies(),  # noqa: B008 - frozen, shared on purpose
    overrides: ApprovalOverrides = NO_OVERRIDES,
) -> list[dict[str, Any]]:
    """The agent's tools (its own and its role's built-ins) with the rule each call runs
    under, as rows for its prompt's tool table."""
    own_rules = dict(agent.tool_approvals)

    def tools_rule(name: str, rule: RuleOrDefault) -> Rule:
        return effective_tool_rule(
            policies=policies,
            agent=agent.approval,
            tool=rule,
            agent_tool=own_rules.get(name),
            overrides=overrides,
            agent_name=agent.name,
            tool_name=name,
        )

    rows = [
        {"name": t.name, "description": t.description, "approval": tools_rule(t.name, t.approval)}
        for t in agent.tools
    ]
    for name in agent.builtin_tools:
        rule: Rule
        if name == "storePlan":
            rule = effective_plan_rule(
                policies=policies, agent=agent.approval, overrides=overrides, agent_name=agent.name
            )
        elif name in _UNGATED:
            rule = "never"
        else:
            rule = tools_rule(name, "default")
        rows.append({"name": name, "description": _BUILTIN_DESCRIPTIONS[name], "approval": rule})
    return rows


def spec_document(
    tenant: TenantIdentity,
    agents: Iterable[AgentSpec],
    tools: Iterable[ToolDefinition],
    providers: Iterable[str],
    *,
    plans: Iterable[PlanSpec] = (),
    references: Iterable[ReferenceSpec] = (),
    approval_policies: ApprovalPolicies = ApprovalPolicies(),  # noqa: B008 - frozen
    approval_overrides: ApprovalOverrides = NO_OVERRIDES,
    approval_timeout_ms: int | None = None,
) -> dict[str, Any]:
    """The runtime spec as docs/wire.md shows it (before orjson).

    Keys added for plans, references and approvals are left out at their defaults; an agent
    whose prompt is a LayeredPrompt has its ``# Tools`` section rendered from its tools.
    """
    declared_agents = []
    for agent in agents:
        # Every agent's prompt carries its tool table (its tools, its built-in role tools,
        # and their effective approval rules), so a model knows what it may call and what
        # will stop for a human.
        rows = agent_tool_rows(agent, approval_policies, approval_overrides)
        declared_agents.append(agent.declaration(render_agent_prompt(agent.prompt, rows)))
    document: dict[str, Any] = {
        "tenant": tenant.model_dump(),
        "agents": declared_agents,
        "tools": [tool.declaration() for tool in tools],
        "providers": sorted(providers),
    }
    if plan_list := [plan.declaration() for plan in plans]:
        document["plans"] = plan_list
    if reference_list := [reference.declaration() for reference in references]:
        document["references"] = reference_list
    if approval_policies != ApprovalPolicies() or not approval_overrides.is_empty:
        document["approvals"] = {
            "policies": approval_policies.to_json(),
            "overrides": approval_overrides.to_json(),
        }
    if approval_timeout_ms is not None:
        document["approval_timeout_ms"] = approval_timeout_ms
    return document


def define_runtime(
    tenant: object,
    *,
    agents: Iterable[AgentSpec],
    providers: Mapping[str, Mapping[str, Any]],
    plans: Iterable[PlanSpec] = (),
    references: Iterable[ReferenceSpec] = (),
    approval_policies: ApprovalPolicies = ApprovalPolicies(),  # noqa: B008 - frozen
    approval_overrides: ApprovalOverrides | None = None,
    approval_timeout: float | datetime.timedelta | None = None,
) -> RuntimeSpec:
    """Declare and compile a runtime: the engine checks the whole spec and normalizes it.

    ``tenant`` is a :class:`TenantIdentity` or anything :func:`define_tenant` accepts
    (``("acme", "v1")``, ``{"name": "acme", "version": "v1"}``). ``plans`` and
    ``references`` declare the plan and reference kinds; ``approval_policies`` is the floor
    every gate starts from (plans need approval, tools do not), ``approval_overrides`` wins
    over everything agents and tools declare, and ``approval_timeout`` (seconds or a
    timedelta) rejects a gate left waiting that long unless its agent says otherwise.
    """
    identity = _as_tenant(tenant)
    agent_specs = _as_agents(agents)
    provider_settings = _as_providers(providers)
    tools = _shared_tools(agent_specs)
    plan_specs = _as_named(plans, PlanSpec, "plans", "define_plan")
    reference_specs = _as_named(references, ReferenceSpec, "references", "define_reference")
    if not isinstance(approval_policies, ApprovalPolicies):
        raise SpecError(
            f"runtime: approval_policies must be ApprovalPolicies(...), got "
            f"{type(approval_policies).__name__}"
        )
    overrides = NO_OVERRIDES if approval_overrides is None else approval_overrides
    if not isinstance(overrides, ApprovalOverrides):
        raise SpecError(
            f"runtime: approval_overrides must be ApprovalOverrides(...), got "
            f"{type(overrides).__name__}"
        )
    _check_approval_names(overrides, agent_specs, tools)
    predicates = collect_predicates(approval_policies, overrides, agent_specs, tools)
    document = spec_document(
        identity,
        agent_specs,
        tools,
        provider_settings,
        plans=plan_specs,
        references=reference_specs,
        approval_policies=approval_policies,
        approval_overrides=overrides,
        approval_timeout_ms=timeout_ms(approval_timeout, "runtime"),
    )
    # Imported here, not at module level, so specs work without a compiled extension;
    # import_module (not ``from . import``) lets tests substitute the module.
    native = importlib.import_module("flowai_harness._native")
    compiled: bytes = native.compile_spec(orjson.dumps(document))
    return RuntimeSpec(
        tenant=identity,
        agents=agent_specs,
        providers=provider_settings,
        tools=tools,
        compiled=compiled,
        plans=plan_specs,
        references=reference_specs,
        predicates=predicates,
    )


# --- testing --------------------------------------------------------------------------------

_MISSING: Any = object()


class TestingConfig:
    """Run agents against a mock model that always answers ``mock_response``.

    A plain class, not a pydantic model: a wrong type must stay a TypeError.
    """

    __slots__ = ("mock_response",)
    __test__ = False  # not a pytest test class, despite the name

    mock_response: str

    if TYPE_CHECKING:

        def __init__(self, *, mock_response: str) -> None: ...

    else:
        # Unknown keywords are a SpecError (ValueError) naming them rather than Python's
        # TypeError, so a typo reads as a spec mistake; type checkers see the strict form.
        def __init__(self, *, mock_response=_MISSING, **unknown):
            if unknown:
                names = ", ".join(repr(key) for key in sorted(unknown))
                raise SpecError(
                    f"TestingConfig got unknown keyword {names}; it takes only mock_response="
                )
            if mock_response is _MISSING:
                raise TypeError(
                    "TestingConfig needs mock_response=, the text the mock model answers"
                )
            if not isinstance(mock_response, str):
                raise TypeError(
                    f"TestingConfig mock_response must be a str, got {type(mock_response).__name__}"
                )
            object.__setattr__(self, "mock_response", mock_response)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("TestingConfig is frozen; build a new one")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("TestingConfig is frozen; build a new one")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TestingConfig):
            return NotImplemented
        return self.mock_response == other.mock_response

    def __hash__(self) -> int:
        return hash((TestingConfig, self.mock_response))

    def __repr__(self) -> str:
        return f"TestingConfig(mock_response={self.mock_response!r})"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # The default pickling restores slots through __setattr__, which is closed.
        return (_testing_config, (self.mock_response,))


def _testing_config(mock_response: str) -> TestingConfig:
    return TestingConfig(mock_response=mock_response)
