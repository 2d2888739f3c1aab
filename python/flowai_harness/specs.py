"""The runtime spec a user declares: tenant, agents, providers, and the testing interpreter.

Owns the frozen spec models (:class:`TenantIdentity`, :class:`AgentSpec`,
:class:`RuntimeSpec`), the ``define_*`` functions that build them, :class:`TestingConfig`, and
the spec JSON sent to the engine's ``compile_spec`` (docs/wire.md, "Runtime spec" and "Plans,
approval gates, references"): plans, reference kinds and approval rules ride along, and each
agent's prompt gets its tool table rendered in from what the engine reports of it (the tools
it is offered and the rule each call runs under: this module keeps no copy of either).
Keys of the issue-3 additions are left out while they hold their defaults, so a spec that uses
none of them is byte-for-byte what it was before.

Every rejection is a :class:`~flowai_harness.errors.SpecError` naming the offender and the
field; a pydantic ``ValidationError`` never escapes. Rules that need the whole spec
(duplicate agents, routes, coordinators, providers, names in approval overrides) belong to
the engine, not here; the one exception is two different tools under one name, which the
engine cannot see because it is sent each tool once.

Must not import ``runtime`` or ``_native`` at module level: :func:`define_runtime` imports
``_native`` when it compiles (through ``importlib``, so a test can stand in for it).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import types
from collections.abc import Iterable, Mapping
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Final,
    Literal,
    Protocol,
    TypeVar,
    runtime_checkable,
)

import orjson
import pydantic
from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    StrictBool,
    StrictBytes,
    StrictInt,
    StrictStr,
)

from .approvals import (
    NO_OVERRIDES,
    ApprovalOverrides,
    ApprovalPatch,
    ApprovalPolicies,
    DynamicRule,
    Predicate,
    PredicateRegistry,
    Rule,
    RuleOrDefault,
    as_patch,
    check_rule,
    dynamic_ids,
    predicate_id,
    rule_from_json,
    rule_json,
)
from .errors import (
    CoordinatorWithoutRoutesError,
    DuplicateToolError,
    SpecError,
    UnknownApprovalTargetError,
)
from .messages import FAILURE_KINDS, FailureKind
from .plans import PlanSpec
from .prompts import LayeredPrompt, render_agent_prompt
from .references import ReferenceSpec
from .tools import NAME_PATTERN, RESERVED_TOOL_NAMES, ToolDefinition

if TYPE_CHECKING:
    from ._native import AgentKnowledge

__all__ = [
    "AgentSpec",
    "ModelSpec",
    "RetryPolicy",
    "Role",
    "RuntimeSpec",
    "StorageFactories",
    "StorageFactorySpec",
    "TenantIdentity",
    "TestingConfig",
    "ToolSource",
    "ToolkitSpec",
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


# --- models, toolkits, retries ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model an agent uses, and the provider it goes to (None: routed by its id:
    ``claude-...`` to Anthropic, ``gpt-...``/``o1-``/``o3-...`` to OpenAI, anything else to
    Anthropic). A plain string is coerced to it wherever a model goes."""

    id: str
    provider: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise SpecError(f"ModelSpec: id must be a non-empty model id, got {self.id!r}")
        if self.provider is not None and (
            not isinstance(self.provider, str) or not self.provider.strip()
        ):
            raise SpecError(
                f"ModelSpec {self.id!r}: provider must be a non-empty string or None, "
                f"got {self.provider!r}"
            )

    def declaration(self) -> dict[str, Any]:
        return {"model": self.id, "provider": self.provider}


def as_model(value: object, where: str) -> ModelSpec:
    """``value`` (a model id or a :class:`ModelSpec`) as a ModelSpec."""
    if isinstance(value, ModelSpec):
        return value
    if isinstance(value, str):
        return ModelSpec(value)
    raise SpecError(
        f"{where}: a model is a model id such as 'claude-sonnet-4-6' or ModelSpec(id, "
        f"provider=...), got {type(value).__name__}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ToolkitSpec:
    """A built-in toolkit an agent opts into (``agents``, ``plans``, ``references``; the seed's
    ``catalog`` needs a data catalog this build does not have). ``config={"tools": [...]}``
    narrows which of its tools the agent gets."""

    id: str
    config: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        from ._native import TOOLKIT_NAMES  # the engine's list (see the module docstring)

        if self.id not in TOOLKIT_NAMES:
            raise SpecError(
                f"unknown toolkit {self.id!r}; the toolkits are {', '.join(TOOLKIT_NAMES)}"
            )
        if self.config is not None:
            if not isinstance(self.config, Mapping) or set(self.config) - {"tools"}:
                raise SpecError(
                    f"toolkit {self.id!r}: config takes only 'tools' (a list of tool names), "
                    f"got {self.config!r}"
                )
            object.__setattr__(self, "config", types.MappingProxyType(dict(self.config)))

    def declaration(self) -> dict[str, Any]:
        tools = None if self.config is None else self.config.get("tools")
        return {"id": self.id, "config": None if tools is None else {"tools": list(tools)}}


@runtime_checkable
class ToolSource(Protocol):
    """A toolkit whose tools come from elsewhere (an MCP server: ``define_mcp_toolset``);
    ``define_runtime`` asks it for them once, and they become the agent's own tools."""

    name: str

    def tool_definitions(self) -> tuple[ToolDefinition, ...]: ...


def _as_toolkits(agent: object, toolkits: object) -> tuple[ToolkitSpec, ...]:
    return _split_toolkits(agent, toolkits)[0]


def _split_toolkits(
    agent: object, toolkits: object
) -> tuple[tuple[ToolkitSpec, ...], tuple[ToolSource, ...]]:
    """The built-in toolkits and the tool sources among ``toolkits``."""
    if toolkits is None:
        return (), ()
    items = _as_list(agent, "toolkits", toolkits, "['references']")
    sources = tuple(t for t in items if isinstance(t, ToolSource))
    builtin = tuple(
        t if isinstance(t, ToolkitSpec) else ToolkitSpec(t)
        for t in items
        if not isinstance(t, ToolSource)
    )
    return builtin, sources


TRANSIENT_FAILURES: Final[tuple[FailureKind, ...]] = (
    "rate_limited",
    "overloaded",
    "server",
    "timeout",
    "connection",
)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed model call is tried again: the engine decides from it, and the log
    records every attempt, so a replay retries nothing.

    ``max_attempts`` counts attempts per model of the fallback chain (the first included);
    the wait before attempt ``n + 1`` is ``initial_backoff * multiplier**(n - 1)`` capped at
    ``max_backoff``, and at least the provider's ``retry-after`` (up to
    ``max_retry_after``) when ``honor_retry_after``. Only failures in ``retry_on`` are
    retried. A request with no answer after ``request_timeout`` seconds counts as a
    ``timeout`` failure (None: no limit). Times are seconds.
    """

    max_attempts: int = 3
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    multiplier: float = 2.0
    honor_retry_after: bool = True
    max_retry_after: float = 60.0
    retry_on: tuple[FailureKind, ...] = TRANSIENT_FAILURES
    request_timeout: float | None = 300.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry_on", _failure_kinds(self.retry_on, "retry_on"))
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise SpecError("RetryPolicy: max_attempts must be an int >= 1")
        if self.max_attempts < 1:
            raise SpecError("RetryPolicy: max_attempts must be >= 1")

    def declaration(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "initial_backoff_ms": _ms(self.initial_backoff, "initial_backoff"),
            "max_backoff_ms": _ms(self.max_backoff, "max_backoff"),
            "multiplier": self.multiplier,
            "honor_retry_after": self.honor_retry_after,
            "max_retry_after_ms": _ms(self.max_retry_after, "max_retry_after"),
            "retry_on": list(self.retry_on),
            "request_timeout_ms": None
            if self.request_timeout is None
            else max(1, _ms(self.request_timeout, "request_timeout")),
        }


def _ms(seconds: object, field: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise SpecError(f"RetryPolicy: {field} must be seconds >= 0, got {seconds!r}")
    return round(float(seconds) * 1000)


def _failure_kinds(kinds: object, field: str) -> tuple[FailureKind, ...]:
    if isinstance(kinds, (str, bytes)) or not isinstance(kinds, Iterable):
        raise SpecError(f"{field} must be a list of failure kinds ({', '.join(FAILURE_KINDS)})")
    found = tuple(kinds)
    unknown = [kind for kind in found if kind not in FAILURE_KINDS]
    if unknown:
        raise SpecError(
            f"{field}: unknown failure kind {', '.join(map(repr, unknown))}; the kinds are "
            f"{', '.join(FAILURE_KINDS)}"
        )
    return found


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
    # None: the role's default (coordinators and planners keep their conversation).
    stateful: StrictBool | None = None
    toolkits: tuple[pydantic.InstanceOf[ToolkitSpec], ...] = ()
    # Toolkits of tools from elsewhere (MCP servers), until define_runtime makes their tools
    # the agent's own.
    tool_sources: tuple[pydantic.InstanceOf[ToolSource], ...] = ()
    # The plan kind a planner stores or an executor runs (attached to the runtime).
    plan: pydantic.InstanceOf[PlanSpec] | None = None
    fallback: tuple[pydantic.InstanceOf[ModelSpec], ...] = ()
    fallback_on: tuple[str, ...] | None = None
    retry: pydantic.InstanceOf[RetryPolicy] | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    thinking_budget: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: float | None = None
    prompt_cache: StrictBool | None = None

    _hints: ClassVar[Mapping[str, str]] = {
        "name": "Give the agent a name such as 'greeter'.",
        "role": "Use define_coordinator, define_planner, define_executor or define_specialist.",
        "model": "Pass a model id, e.g. model='claude-sonnet-4-6', or ModelSpec(id, provider).",
        "prompt": "Pass the agent's instructions as a non-empty string or a layered_prompt(...).",
        "routes": "Pass a list of the names of the agents it may call.",
        "tools": "Pass a list of tools made with define_tool(...).",
        "max_turns": "Pass an int >= 1, or None for the interpreter default (16 live).",
        "provider": "Pass a provider declared in define_runtime(providers=...), or None to "
        "infer it from the model.",
        "description": "Pass a string.",
        "approval": "Pass 'default', 'never', 'always', RequireApprovers(n), a function "
        "(args, ctx) -> bool, or {'plans': ..., 'tools': ...}.",
        "tool_approvals": "Pass a mapping of tool name to 'never', 'always', "
        "RequireApprovers(n) or a function.",
        "approval_timeout_ms": "Pass approval_timeout= in seconds (> 0), or None.",
        "stateful": "Pass True, False, or None for the role's default.",
        "max_tokens": "Pass an int >= 1 (output tokens per model turn), or None.",
        "thinking_budget": "Pass an int >= 1 (extended thinking tokens), or None.",
        "temperature": "Pass a number, or None for the provider's default.",
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
    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.model, self.provider)

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
        own = {tool.name for tool in self.tools} | set(RESERVED_TOOL_NAMES)
        unknown = sorted(name for name, _ in self.tool_approvals if name not in own)
        # A tool source's tools are known only at define_runtime, which checks again.
        if unknown and not self.tool_sources:
            names = ", ".join(sorted(t.name for t in self.tools)) or "none"
            raise UnknownApprovalTargetError(
                f"agent {self.name!r}: tool_approvals names {', '.join(map(repr, unknown))}, "
                f"not one of its tools ({names}); add the tool to tools=[...] or remove the rule"
            )
        for name, rule in self.tool_approvals:
            check_rule(rule, f"agent {self.name!r}: tool_approvals[{name!r}]")
        if self.fallback_on is not None:
            _failure_kinds(self.fallback_on, f"agent {self.name!r}: fallback_on")
        return self

    def declaration(self, prompt: str | None = None) -> dict[str, Any]:
        """The agent as the engine's runtime spec declares it (tools by name).

        ``prompt`` replaces the prompt text (define_runtime passes it with the agent's tool
        table rendered in). Keys beyond the first version's appear only when they differ
        from their default.
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
        optional = {
            "approval_timeout_ms": self.approval_timeout_ms,
            "stateful": self.stateful,
            "toolkits": [t.declaration() for t in self.toolkits] or None,
            "fallback": [m.declaration() for m in self.fallback] or None,
            "fallback_on": None if self.fallback_on is None else list(self.fallback_on),
            "retry": None if self.retry is None else self.retry.declaration(),
            "max_tokens": self.max_tokens,
            "thinking_budget": self.thinking_budget,
            "temperature": self.temperature,
            "prompt_cache": self.prompt_cache,
        }
        declared.update({key: value for key, value in optional.items() if value is not None})
        return declared

    def predicates(self) -> dict[str, Predicate]:
        """The agent's predicate rules by id (see approvals.predicate_id)."""
        found = self.approval.predicates(predicate_id("agent", self.name))
        for tool, rule in self.tool_approvals:
            if callable(rule) and not isinstance(rule, (str, DynamicRule)):
                found[predicate_id("agent", self.name, "tool", tool)] = rule
        return found

    def rules(self) -> list[object]:
        """Every rule the agent declares (for collecting dynamic ids)."""
        return [self.approval.plans, self.approval.tools, *(r for _, r in self.tool_approvals)]


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
    model: str | ModelSpec,
    prompt: str | LayeredPrompt,
    routes: Iterable[str],
    tools: Iterable[ToolDefinition] | None,
    stateful: bool | None,
    max_turns: int | None,
    approval: object,
    tool_approvals: Mapping[str, Rule] | None,
    toolkits: Iterable[str | ToolkitSpec | ToolSource] | None,
    plan: PlanSpec | None,
    options: Mapping[str, Any],
) -> AgentSpec:
    chosen = as_model(model, f"agent {name!r}: model")
    provider = options.get("provider")
    if provider is not None and chosen.provider is not None and provider != chosen.provider:
        raise SpecError(
            f"agent {name!r}: provider={provider!r} disagrees with the ModelSpec's provider "
            f"{chosen.provider!r}; give it once"
        )
    fallback = options.get("fallback") or ()
    builtin_toolkits, tool_sources = _split_toolkits(name, toolkits)
    return AgentSpec(
        name=name,
        role=role,
        model=chosen.id,
        prompt=prompt,
        routes=_as_list(name, "routes", routes, "['greeter']"),
        tools=_as_list(name, "tools", tools if tools is not None else (), "[lookup]"),
        max_turns=max_turns,
        provider=provider if provider is not None else chosen.provider,
        description=options.get("description", ""),
        approval=as_patch("default" if approval is None else approval, f"agent {name!r}: approval"),
        tool_approvals=_as_tool_approvals(name, tool_approvals),
        approval_timeout_ms=timeout_ms(options.get("approval_timeout"), f"agent {name!r}"),
        stateful=stateful,
        toolkits=builtin_toolkits,
        tool_sources=tool_sources,
        plan=_as_plan(name, role, plan),
        fallback=tuple(
            as_model(m, f"agent {name!r}: fallback")
            for m in _as_list(name, "fallback", fallback, "['gpt-5']")
        ),
        fallback_on=None
        if options.get("fallback_on") is None
        else tuple(_failure_kinds(options["fallback_on"], f"agent {name!r}: fallback_on")),
        retry=options.get("retry"),
        max_tokens=options.get("max_tokens"),
        thinking_budget=options.get("thinking_budget"),
        temperature=options.get("temperature"),
        prompt_cache=options.get("prompt_cache"),
    )


def _as_plan(agent: str, role: Role, plan: object) -> PlanSpec | None:
    if plan is None:
        if role in ("planner", "executor"):
            raise SpecError(
                f"agent {agent!r}: a {role} needs plan=define_plan(...), the plan kind it "
                f"{'stores' if role == 'planner' else 'executes'}"
            )
        return None
    if not isinstance(plan, PlanSpec):
        raise SpecError(
            f"agent {agent!r}: plan must be a plan made with define_plan(...), got "
            f"{type(plan).__name__}"
        )
    return plan


def _as_tool_approvals(agent: object, rules: object) -> tuple[tuple[Any, Any], ...]:
    if rules is None:
        return ()
    if not isinstance(rules, Mapping):
        raise SpecError(
            f"agent {agent!r}: tool_approvals must be a mapping of tool name to rule, got "
            f"{type(rules).__name__}; pass e.g. tool_approvals={{'delete_rows': 'always'}}"
        )
    return tuple(
        sorted(
            (
                (name, check_rule(rule, f"agent {agent!r}: tool_approvals[{name!r}]"))
                for name, rule in rules.items()
            ),
            key=lambda item: str(item[0]),
        )
    )


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


# What approval= takes: "default" (or None), a rule, or {"plans": ..., "tools": ...}.
ApprovalInput = RuleOrDefault | Mapping[str, RuleOrDefault] | ApprovalPatch | None


class _DefineAgent(Protocol):
    def __call__(
        self,
        name: str,
        *,
        model: str | ModelSpec,
        prompt: str | LayeredPrompt,
        tools: Iterable[ToolDefinition] | None = (),
        stateful: bool | None = None,
        max_turns: int | None = None,
        approval: ApprovalInput = None,
        tool_approvals: Mapping[str, Rule] | None = None,
        toolkits: Iterable[str | ToolkitSpec | ToolSource] | None = None,
        provider: str | None = None,
        description: str = "",
        approval_timeout: float | datetime.timedelta | None = None,
        fallback: Iterable[str | ModelSpec] = (),
        fallback_on: Iterable[FailureKind] | None = None,
        retry: RetryPolicy | None = None,
        max_tokens: int | None = None,
        thinking_budget: int | None = None,
        temperature: float | None = None,
        prompt_cache: bool | None = None,
    ) -> AgentSpec: ...


def define_coordinator(
    name: str,
    *,
    model: str | ModelSpec,
    prompt: str | LayeredPrompt,
    routes: Iterable[str],
    tools: Iterable[ToolDefinition] | None = (),
    stateful: bool | None = None,
    max_turns: int | None = None,
    approval: ApprovalInput = None,
    tool_approvals: Mapping[str, Rule] | None = None,
    toolkits: Iterable[str | ToolkitSpec | ToolSource] | None = None,
    provider: str | None = None,
    description: str = "",
    approval_timeout: float | datetime.timedelta | None = None,
    fallback: Iterable[str | ModelSpec] = (),
    fallback_on: Iterable[FailureKind] | None = None,
    retry: RetryPolicy | None = None,
    max_tokens: int | None = None,
    thinking_budget: int | None = None,
    temperature: float | None = None,
    prompt_cache: bool | None = None,
) -> AgentSpec:
    """Declare the coordinator: the agent a query goes to, handing work to its ``routes``
    through ``call_agent`` (stateful by default).

    Every ``define_*`` agent takes the seed's keywords (``model`` as an id or
    :class:`ModelSpec`, ``tools``, ``stateful``, ``max_turns``, ``approval`` — ``"default"`` /
    None inherits the runtime's policies; a rule sets both channels; ``{"plans": ...,
    "tools": ...}`` sets them apart —, ``tool_approvals``, ``toolkits``) and these:

    - ``approval_timeout``: seconds or a timedelta; a gate left waiting that long is rejected;
    - ``fallback``: models to try, in order, when this one keeps failing (across providers,
      e.g. ``["gpt-5"]``), on the failure kinds in ``fallback_on`` (default: the transient
      ones and bad responses);
    - ``retry``: a :class:`RetryPolicy` (default: the runtime's);
    - ``max_tokens``, ``thinking_budget`` (extended thinking), ``temperature``,
      ``prompt_cache`` (mark prompt and tools cacheable; default True), ``provider``.
    """
    return _define_agent(
        "coordinator",
        name,
        model=model,
        prompt=prompt,
        routes=routes,
        tools=tools,
        stateful=stateful,
        max_turns=max_turns,
        approval=approval,
        tool_approvals=tool_approvals,
        toolkits=toolkits,
        plan=None,
        options=_options(locals()),
    )


_OPTION_KEYS: Final = (
    "provider",
    "description",
    "approval_timeout",
    "fallback",
    "fallback_on",
    "retry",
    "max_tokens",
    "thinking_budget",
    "temperature",
    "prompt_cache",
)


def _options(given: Mapping[str, Any]) -> dict[str, Any]:
    return {key: given[key] for key in _OPTION_KEYS}


def define_planner(
    name: str,
    *,
    model: str | ModelSpec,
    prompt: str | LayeredPrompt,
    plan: PlanSpec,
    tools: Iterable[ToolDefinition] | None = (),
    stateful: bool | None = None,
    max_turns: int | None = None,
    approval: ApprovalInput = None,
    tool_approvals: Mapping[str, Rule] | None = None,
    toolkits: Iterable[str | ToolkitSpec | ToolSource] | None = None,
    provider: str | None = None,
    description: str = "",
    approval_timeout: float | datetime.timedelta | None = None,
    fallback: Iterable[str | ModelSpec] = (),
    fallback_on: Iterable[FailureKind] | None = None,
    retry: RetryPolicy | None = None,
    max_tokens: int | None = None,
    thinking_budget: int | None = None,
    temperature: float | None = None,
    prompt_cache: bool | None = None,
) -> AgentSpec:
    """Declare a planner: it stores plans of kind ``plan`` with ``storePlan`` (as drafts) and
    reads them with ``getPlan``. Stateful by default. Takes define_coordinator's keywords."""
    return _define_agent(
        "planner",
        name,
        model=model,
        prompt=prompt,
        routes=(),
        tools=tools,
        stateful=stateful,
        max_turns=max_turns,
        approval=approval,
        tool_approvals=tool_approvals,
        toolkits=toolkits,
        plan=plan,
        options=_options(locals()),
    )


def define_executor(
    name: str,
    *,
    model: str | ModelSpec,
    prompt: str | LayeredPrompt,
    plan: PlanSpec,
    tools: Iterable[ToolDefinition] | None = (),
    stateful: bool | None = None,
    max_turns: int | None = None,
    approval: ApprovalInput = None,
    tool_approvals: Mapping[str, Rule] | None = None,
    toolkits: Iterable[str | ToolkitSpec | ToolSource] | None = None,
    provider: str | None = None,
    description: str = "",
    approval_timeout: float | datetime.timedelta | None = None,
    fallback: Iterable[str | ModelSpec] = (),
    fallback_on: Iterable[FailureKind] | None = None,
    retry: RetryPolicy | None = None,
    max_tokens: int | None = None,
    thinking_budget: int | None = None,
    temperature: float | None = None,
    prompt_cache: bool | None = None,
) -> AgentSpec:
    """Declare an executor: it runs plans of kind ``plan`` with ``executePlan`` (through the
    plans gate) and reads references with ``resolveRef`` / ``glimpseRef``. Stateless by
    default. Takes define_coordinator's keywords."""
    return _define_agent(
        "executor",
        name,
        model=model,
        prompt=prompt,
        routes=(),
        tools=tools,
        stateful=stateful,
        max_turns=max_turns,
        approval=approval,
        tool_approvals=tool_approvals,
        toolkits=toolkits,
        plan=plan,
        options=_options(locals()),
    )


def define_specialist(
    name: str,
    *,
    model: str | ModelSpec,
    prompt: str | LayeredPrompt,
    tools: Iterable[ToolDefinition] | None = (),
    stateful: bool | None = None,
    max_turns: int | None = None,
    approval: ApprovalInput = None,
    tool_approvals: Mapping[str, Rule] | None = None,
    toolkits: Iterable[str | ToolkitSpec | ToolSource] | None = None,
    provider: str | None = None,
    description: str = "",
    approval_timeout: float | datetime.timedelta | None = None,
    fallback: Iterable[str | ModelSpec] = (),
    fallback_on: Iterable[FailureKind] | None = None,
    retry: RetryPolicy | None = None,
    max_tokens: int | None = None,
    thinking_budget: int | None = None,
    temperature: float | None = None,
    prompt_cache: bool | None = None,
) -> AgentSpec:
    """Declare a specialist: a focused agent with no role tools, reached through a
    coordinator's route or ``run_specialist``. Stateless by default. Takes
    define_coordinator's keywords."""
    return _define_agent(
        "specialist",
        name,
        model=model,
        prompt=prompt,
        routes=(),
        tools=tools,
        stateful=stateful,
        max_turns=max_turns,
        approval=approval,
        tool_approvals=tool_approvals,
        toolkits=toolkits,
        plan=None,
        options=_options(locals()),
    )


# --- the runtime ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StorageFactorySpec:
    """The seed's storage factory: a kind and its config, carried as metadata only."""

    kind: str
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class StorageFactories:
    """The seed's ``kv`` / ``plans`` / ``memory`` factories: metadata only (this runtime keeps
    its state in the run log, and references in its reference store)."""

    kv: StorageFactorySpec | None = None
    plans: StorageFactorySpec | None = None
    memory: StorageFactorySpec | None = None


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
    # Predicate ids of the seed's dynamic rules: their functions come with create_runtime.
    dynamic_ids: frozenset[str] = frozenset()
    toolkits: tuple[pydantic.InstanceOf[ToolkitSpec], ...] = ()
    storage_factories: pydantic.InstanceOf[StorageFactories] | None = None
    # Python-only: handlers create_runtime binds unless it is given others.
    tool_bindings: Mapping[str, Any] = Field(default_factory=dict, repr=False)
    # The agents' tool sources (MCP toolsets), each once: their tools are in ``tools``; the
    # runtime closes their connections.
    tool_sources: tuple[pydantic.InstanceOf[ToolSource], ...] = Field(default=(), repr=False)

    _hints: ClassVar[Mapping[str, str]] = {
        "tenant": "Pass define_tenant(...), a (name, version) pair or a mapping.",
        "providers": "Pass a mapping of provider name to settings.",
    }

    def plan(self, name: str) -> PlanSpec | None:
        """The plan kind named ``name``, if declared."""
        return next((plan for plan in self.plans if plan.name == name), None)

    def reference(self, name: str) -> ReferenceSpec | None:
        """The reference kind named ``name``, if declared."""
        return next((ref for ref in self.references if ref.name == name), None)

    def compiled_agents(self) -> Mapping[str, AgentKnowledge]:
        """What the engine knows of each agent: its built-in tools, whether it is stateful,
        and every tool its model is offered with the rule its calls run under."""
        agents: Mapping[str, AgentKnowledge] = orjson.loads(self.compiled)["compiled"]
        return agents

    def with_predicates(self, approval_predicates: Mapping[str, Predicate]) -> PredicateRegistry:
        """The predicates a runtime of this spec evaluates: the spec's own functions and
        ``approval_predicates`` for its dynamic rules; every dynamic id must be given."""
        if not isinstance(approval_predicates, Mapping):
            raise SpecError(
                "approval_predicates must be a mapping of predicate id to function "
                f"(args, ctx) -> bool, got {type(approval_predicates).__name__}"
            )
        missing = sorted(self.dynamic_ids - set(approval_predicates) - set(self.predicates.ids()))
        if missing:
            raise UnknownApprovalTargetError(
                f"the spec's dynamic approval rules name predicate "
                f"{', '.join(map(repr, missing))}, which create_runtime was not given; pass "
                "approval_predicates={id: fn(args, ctx) -> bool}"
            )
        registry = PredicateRegistry({pid: self.predicates[pid] for pid in self.predicates.ids()})
        registry.update(approval_predicates)
        return registry

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
        object.__setattr__(self, "tool_bindings", types.MappingProxyType(dict(self.tool_bindings)))
        return self


def _as_providers(providers: object) -> dict[str, dict[str, Any]]:
    if providers is None:
        return {}
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


def _with_source_tools(
    agents: tuple[AgentSpec, ...],
) -> tuple[tuple[AgentSpec, ...], tuple[ToolSource, ...]]:
    """The agents with their tool sources' tools made their own (each source asked once), and
    every source once."""
    sources: dict[int, ToolSource] = {}
    expanded = []
    for agent in agents:
        if not agent.tool_sources:
            expanded.append(agent)
            continue
        tools = list(agent.tools)
        for source in agent.tool_sources:
            sources.setdefault(id(source), source)
            tools.extend(source.tool_definitions())
        fields = {name: getattr(agent, name) for name in AgentSpec.model_fields}
        expanded.append(AgentSpec(**{**fields, "tools": tuple(tools), "tool_sources": ()}))
    return tuple(expanded), tuple(sources.values())


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
            if (
                kept.declaration() != tool.declaration()
                or kept.approval != tool.approval
                or kept.placement != tool.placement
            ):
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


def _attach_plans(
    explicit: tuple[PlanSpec, ...], agents: Iterable[AgentSpec]
) -> tuple[PlanSpec, ...]:
    """The runtime's plans: those given, then each agent's own (the seed attaches them)."""
    plans = list(explicit)
    for agent in agents:
        if agent.plan is None:
            continue
        same = next((p for p in plans if p.name == agent.plan.name), None)
        if same is None:
            plans.append(agent.plan)
        elif same != agent.plan:
            raise SpecError(
                f"agent {agent.name!r} uses plan {agent.plan.name!r}, but another plan of that "
                "name is declared; define the plan once and share it"
            )
    return tuple(plans)


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
        if callable(tool.approval) and not isinstance(tool.approval, (str, DynamicRule)):
            registry.register(tool.predicate_id, tool.approval)
    return registry


def _floor(policies: ApprovalPolicies | None, agents: Iterable[AgentSpec]) -> ApprovalPolicies:
    """The runtime floor: the given policies, else (as in the seed) the coordinator's
    approval patch over the defaults (plans always, tools never)."""
    if policies is not None:
        if not isinstance(policies, ApprovalPolicies):
            raise SpecError(
                f"runtime: approval_policies must be ApprovalPolicies(...), got "
                f"{type(policies).__name__}"
            )
        return policies
    coordinator = next((a for a in agents if a.role == "coordinator"), None)
    if coordinator is None or coordinator.approval.is_default:
        return ApprovalPolicies()
    patch = coordinator.approval
    return ApprovalPolicies(
        plans=patch.plans if patch.plans != "default" else "always",
        tools=patch.tools if patch.tools != "default" else "never",
    )


def agent_tool_rows(knowledge: AgentKnowledge) -> list[dict[str, Any]]:
    """Rows for an agent's prompt tool table from the engine's knowledge of it (``compiled``
    in the compiled spec): every tool its model is offered, with the rule its calls run under
    once every level and override applies."""
    return [
        {
            "name": tool["name"],
            "description": tool["description"],
            "approval": rule_from_json(tool["approval"]),
        }
        for tool in knowledge["tools"]
    ]


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
    retry: RetryPolicy | None = None,
    compiled: Mapping[str, AgentKnowledge] | None = None,
) -> dict[str, Any]:
    """The runtime spec as docs/wire.md shows it (before orjson).

    Keys beyond the first version are left out at their defaults. With ``compiled`` (the
    engine's knowledge of each agent, from compiling this spec once), every agent's prompt
    gets its ``# Tools`` section rendered from the tools it is offered and their rules.
    """
    declared_agents = []
    for agent in agents:
        if compiled is None:
            declared_agents.append(agent.declaration())
            continue
        # Every agent's prompt carries its tool table, so a model knows what it may call and
        # what will stop for a human.
        rows = agent_tool_rows(compiled[agent.name])
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
    if retry is not None:
        document["retry"] = retry.declaration()
    return document


def define_runtime(
    tenant: object,
    *,
    agents: Iterable[AgentSpec],
    references: Iterable[ReferenceSpec] = (),
    plans: Iterable[PlanSpec] = (),
    toolkits: Iterable[str | ToolkitSpec] | None = None,
    approval_policies: ApprovalPolicies | None = None,
    approval_overrides: ApprovalOverrides | None = None,
    storage_factories: StorageFactories | None = None,
    providers: Mapping[str, Mapping[str, Any]] | None = None,
    tool_bindings: Mapping[str, Any] | None = None,
    approval_timeout: float | datetime.timedelta | None = None,
    retry: RetryPolicy | None = None,
) -> RuntimeSpec:
    """Declare and compile a runtime: the engine checks the whole spec and normalizes it.

    ``tenant`` is a :class:`TenantIdentity` or anything :func:`define_tenant` accepts
    (``("acme", "v1")``, ``{"name": "acme", "version": "v1"}``). ``plans`` and
    ``references`` declare the plan and reference kinds (an agent's ``plan=`` is attached
    too); ``approval_policies`` is the floor every gate starts from (when not given, the
    coordinator's ``approval`` over plans-always / tools-never, as in the seed),
    ``approval_overrides`` wins over everything agents and tools declare, and
    ``approval_timeout`` (seconds or a timedelta) rejects a gate left waiting that long unless
    its agent says otherwise. ``providers`` maps each provider the agents' models route to
    onto its settings (``{"apiKey": ...}`` or ``{"apiKeyEnv": "ANTHROPIC_API_KEY"}``, and
    ``baseUrl``...; a placeholder is fine under the deterministic interpreters). ``retry`` is
    the default :class:`RetryPolicy` of every agent's model calls. ``toolkits`` and
    ``storage_factories`` are the seed's metadata; ``tool_bindings`` are handlers
    ``create_runtime`` uses unless it is given others.
    """
    identity = _as_tenant(tenant)
    agent_specs, tool_sources = _with_source_tools(_as_agents(agents))
    provider_settings = _as_providers(providers)
    tools = _shared_tools(agent_specs)
    plan_specs = _attach_plans(_as_named(plans, PlanSpec, "plans", "define_plan"), agent_specs)
    reference_specs = _as_named(references, ReferenceSpec, "references", "define_reference")
    policies = _floor(approval_policies, agent_specs)
    overrides = NO_OVERRIDES if approval_overrides is None else approval_overrides
    if not isinstance(overrides, ApprovalOverrides):
        raise SpecError(
            f"runtime: approval_overrides must be ApprovalOverrides(...), got "
            f"{type(overrides).__name__}"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise SpecError(f"runtime: retry must be RetryPolicy(...), got {type(retry).__name__}")
    if storage_factories is not None and not isinstance(storage_factories, StorageFactories):
        raise SpecError(
            "runtime: storage_factories must be StorageFactories(...), got "
            f"{type(storage_factories).__name__}"
        )
    predicates = collect_predicates(policies, overrides, agent_specs, tools)
    rules: list[object] = [policies.plans, policies.tools, *overrides.rules()]
    for agent in agent_specs:
        rules.extend(agent.rules())
    rules.extend(tool.approval for tool in tools)
    bindings = dict(tool_bindings or {})
    for name, handler in bindings.items():
        if not callable(handler):
            raise SpecError(f"runtime: tool_bindings[{name!r}] must be callable, got {handler!r}")
    document_args: dict[str, Any] = {
        "plans": plan_specs,
        "references": reference_specs,
        "approval_policies": policies,
        "approval_overrides": overrides,
        "approval_timeout_ms": timeout_ms(approval_timeout, "runtime"),
        "retry": retry,
    }
    # Imported here, not at module level, so specs work without a compiled extension;
    # import_module (not ``from . import``) lets tests substitute the module.
    native = importlib.import_module("flowai_harness._native")
    # Twice: the engine checks the spec and says which tools each agent is offered under
    # which rules, and the prompts' tool tables are rendered from that, not from a copy of
    # the engine's tables.
    skeleton = spec_document(identity, agent_specs, tools, provider_settings, **document_args)
    knowledge = orjson.loads(native.compile_spec(orjson.dumps(skeleton)))["compiled"]
    document = spec_document(
        identity, agent_specs, tools, provider_settings, compiled=knowledge, **document_args
    )
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
        dynamic_ids=frozenset(dynamic_ids(rules)),
        toolkits=tuple(
            t if isinstance(t, ToolkitSpec) else ToolkitSpec(t)
            for t in _as_list("runtime", "toolkits", toolkits or (), "['references']")
        ),
        storage_factories=storage_factories,
        tool_bindings=bindings,
        tool_sources=tool_sources,
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
