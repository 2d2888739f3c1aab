"""The runtime spec a user declares: tenant, agents, providers, and the testing interpreter.

Owns the frozen spec models (:class:`TenantIdentity`, :class:`AgentSpec`,
:class:`RuntimeSpec`), the ``define_*`` functions that build them, :class:`TestingConfig`, and
the spec JSON sent to the engine's ``compile_spec`` (docs/wire.md, "Runtime spec").

Every rejection is a :class:`~flowai_harness.errors.SpecError` naming the offender and the
field; a pydantic ``ValidationError`` never escapes. Rules that need the whole spec
(duplicate agents, routes, coordinators, providers) belong to the engine, not here; the one
exception is two different tools under one name, which the engine cannot see because it is
sent each tool once.

Must not import ``runtime`` or the native extension at module level: ``_native`` is imported
inside :func:`define_runtime`, so specs can be built and tested without a compiled engine.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Protocol

import orjson
import pydantic
from pydantic import AfterValidator, Field, StrictBytes, StrictInt, StrictStr

from .errors import CoordinatorWithoutRoutesError, DuplicateToolError, SpecError
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


_Text = Annotated[StrictStr, AfterValidator(_not_blank)]
_Name = Annotated[StrictStr, AfterValidator(_valid_name)]


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
    prompt: _Text
    routes: tuple[_Name, ...] = ()
    tools: tuple[pydantic.InstanceOf[ToolDefinition], ...] = ()
    max_turns: Annotated[StrictInt, Field(ge=1)] | None = None
    provider: _Text | None = None
    description: StrictStr = ""

    _hints: ClassVar[Mapping[str, str]] = {
        "name": "Give the agent a name such as 'greeter'.",
        "role": "Use define_coordinator, define_planner, define_executor or define_specialist.",
        "model": "Pass a model id, e.g. model='claude-sonnet-4-6'.",
        "prompt": "Pass the agent's instructions as a non-empty string.",
        "routes": "Pass a list of the names of the agents it may call.",
        "tools": "Pass a list of tools made with define_tool(...).",
        "max_turns": "Pass an int >= 1, or None for the engine default (100).",
        "provider": "Pass a provider declared in define_runtime(providers=...), or None to "
        "infer it from the model.",
        "description": "Pass a string.",
    }

    @classmethod
    def _subject(cls, data: Mapping[str, Any]) -> str:
        name = data.get("name")
        return f"agent {name!r}" if isinstance(name, str) else "agent"

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
        return self

    def declaration(self) -> dict[str, Any]:
        """The agent as the engine's runtime spec declares it (tools by name)."""
        return {
            "name": self.name,
            "role": self.role,
            "model": self.model,
            "provider": self.provider,
            "prompt": self.prompt,
            "routes": list(self.routes),
            "tools": [tool.name for tool in self.tools],
            "max_turns": self.max_turns,
            "description": self.description,
        }


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
    prompt: str,
    routes: Iterable[str],
    tools: Iterable[ToolDefinition],
    max_turns: int | None,
    provider: str | None,
    description: str,
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
    )


def define_coordinator(
    name: str,
    *,
    model: str,
    prompt: str,
    routes: Iterable[str],
    tools: Iterable[ToolDefinition] = (),
    max_turns: int | None = None,
    provider: str | None = None,
    description: str = "",
) -> AgentSpec:
    """Declare the coordinator: the agent a query goes to, handing work to its ``routes``."""
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
    )


class _DefineAgent(Protocol):
    def __call__(
        self,
        name: str,
        *,
        model: str,
        prompt: str,
        tools: Iterable[ToolDefinition] = (),
        max_turns: int | None = None,
        provider: str | None = None,
        description: str = "",
    ) -> AgentSpec: ...


def _agent_definer(role: Role, doc: str) -> _DefineAgent:
    # One body for the roles that take no routes; mypy checks it against _DefineAgent, so the
    # keywords cannot drift apart between the roles.
    def define(
        name: str,
        *,
        model: str,
        prompt: str,
        tools: Iterable[ToolDefinition] = (),
        max_turns: int | None = None,
        provider: str | None = None,
        description: str = "",
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
        )

    define.__name__ = define.__qualname__ = f"define_{role}"
    define.__doc__ = doc
    return define


define_planner = _agent_definer("planner", "Declare a planner agent.")
define_executor = _agent_definer("executor", "Declare an executor agent.")
define_specialist = _agent_definer("specialist", "Declare a specialist agent.")


# --- the runtime ----------------------------------------------------------------------------


class RuntimeSpec(_Spec):
    """A compiled runtime spec: what ``create_runtime`` runs. Build it with define_runtime."""

    tenant: TenantIdentity
    agents: tuple[AgentSpec, ...]
    # Provider settings may hold API keys: kept out of repr and out of the engine's JSON.
    providers: Mapping[str, Mapping[str, Any]] = Field(repr=False)
    tools: tuple[pydantic.InstanceOf[ToolDefinition], ...] = ()
    compiled: StrictBytes = Field(repr=False)

    _hints: ClassVar[Mapping[str, str]] = {
        "tenant": "Pass define_tenant(...).",
        "agents": "Pass a list of agents made with define_coordinator, define_specialist etc.",
        "providers": "Pass a mapping of provider name to its settings, e.g. {'anthropic': {}}.",
        "tools": "Pass the tools the agents use.",
        "compiled": "Build the spec with define_runtime(...).",
    }

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
            if kept.declaration() != tool.declaration():
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


def spec_document(
    tenant: TenantIdentity,
    agents: Iterable[AgentSpec],
    tools: Iterable[ToolDefinition],
    providers: Iterable[str],
) -> dict[str, Any]:
    """The runtime spec as docs/wire.md "Runtime spec" shows it (before orjson)."""
    return {
        "tenant": tenant.model_dump(),
        "agents": [agent.declaration() for agent in agents],
        "tools": [tool.declaration() for tool in tools],
        "providers": sorted(providers),
    }


def define_runtime(
    tenant: object,
    *,
    agents: Iterable[AgentSpec],
    providers: Mapping[str, Mapping[str, Any]],
) -> RuntimeSpec:
    """Declare and compile a runtime: the engine checks the whole spec and normalizes it.

    ``tenant`` is a :class:`TenantIdentity` or anything :func:`define_tenant` accepts
    (``("acme", "v1")``, ``{"name": "acme", "version": "v1"}``).
    """
    identity = _as_tenant(tenant)
    agent_specs = _as_agents(agents)
    provider_settings = _as_providers(providers)
    tools = _shared_tools(agent_specs)
    spec_json = orjson.dumps(spec_document(identity, agent_specs, tools, provider_settings))
    # Imported here, not at module level, so specs work without a compiled extension;
    # import_module (not ``from . import``) lets tests substitute the module.
    native = importlib.import_module("flowai_harness._native")
    compiled: bytes = native.compile_spec(spec_json)
    return RuntimeSpec(
        tenant=identity,
        agents=agent_specs,
        providers=provider_settings,
        tools=tools,
        compiled=compiled,
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
