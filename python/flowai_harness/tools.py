"""Tools: what an agent may call, and the context a tool handler runs with.

Owns :class:`ToolDefinition` (name, JSON Schemas, approval rule, delivery level, optional
handler), :func:`define_tool` (which turns a Pydantic model, a JSON Schema or a ``{field:
type}`` map into a JSON Schema), :class:`ToolContext`, built by the runtime for every tool
call, and :func:`idempotency_key` (the key a call hands to downstream APIs).

Delivery levels, from what every tool gets to what a tool may ask for:

1. Effectively once for recorded results: a tool worker records each result under the
   invocation id before publishing it, so a redelivered invocation gets the recorded result
   and the handler does not run again.
2. The crash window: a worker that dies after the side effect and before recording it leaves
   nothing recorded, so the next worker runs the handler again. ``ctx.idempotency_key`` is
   the same on every run of one invocation; a handler that passes it to a downstream API
   which deduplicates by key (payments, e-mail, ticketing) makes the repeat harmless.
3. ``delivery="at_most_once"`` for a tool that must never repeat: after a worker died while
   the handler ran, the model gets an error result with code ``TOOL_OUTCOME_UNKNOWN``
   instead of a second run.

Placement (distributed mode only; the embedded runtime runs every tool in its process):
``placement="worker"`` (the default) sends the call to the tool workers over Kafka;
``placement="inline"`` runs it inside the runtime service, in the flow of the transaction
that logs the step consuming it (no worker hop), for cheap, trusted tools. Both go through
the same ledger (claim, recorded result by invocation id), so the delivery levels above hold
either way.

Must not import the runtime or ``specs``, nor the native engine but for the names of its
built-in tools: the engine only ever sees a tool's :meth:`ToolDefinition.declaration`, and
serializing tool results is the runtime's job.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Literal, get_args

import pydantic
from pydantic.errors import PydanticUserError

from ._native import BUILTIN_TOOL_NAMES
from .approvals import DynamicRule, RuleOrDefault, check_rule, rule_json
from .errors import InvalidSchemaError, ResultCode, SpecError, ToolError

if typing.TYPE_CHECKING:
    from .references import ReferenceAccess

__all__ = [
    "NAME_PATTERN",
    "RESERVED_TOOL_NAMES",
    "TOOL_OUTCOME_UNKNOWN",
    "Approval",
    "Delivery",
    "EventSink",
    "Placement",
    "SchemaInput",
    "ToolContext",
    "ToolDefinition",
    "ToolSpec",
    "check_name",
    "define_tool",
    "idempotency_key",
    "normalize_schema",
]

# "default" (no rule of its own: the agent's and the runtime's rules apply), "never",
# "always" or a predicate (args, ctx) -> bool.
Approval = RuleOrDefault
# Shared by tool and agent names: both travel as identifiers in model tool calls.
NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
# Built into the engine (routing, plans, references), which names them; a user tool with one
# of these names would shadow it.
RESERVED_TOOL_NAMES: Final = BUILTIN_TOOL_NAMES
_OBJECT_SCHEMA_KEYS: Final = ("properties", "$ref", "anyOf")
# How often a tool may run for one invocation when a worker crashes (see the module docstring).
Delivery = Literal["at_least_once", "at_most_once"]
_DELIVERIES: Final = frozenset(get_args(Delivery))
# Where the runtime service runs a tool (see the module docstring).
Placement = Literal["worker", "inline"]
_PLACEMENTS: Final = frozenset(get_args(Placement))
# The error code of the result an at-most-once tool gets instead of a second run.
TOOL_OUTCOME_UNKNOWN: Final = ResultCode.TOOL_OUTCOME_UNKNOWN.value


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class ToolDefinition:
    """A tool an agent may call. Build it with :func:`define_tool`.

    Equal when the declaration and the handler are equal; hashed by name, so a set of tools
    collapses repeats of one definition.
    """

    name: str
    input_schema: dict[str, Any]
    description: str = ""
    output_schema: dict[str, Any] | None = None
    approval: Approval = "default"
    handler: Callable[..., Any] | None = None
    # "at_most_once": never run twice, even when a worker died mid-call (the model is told
    # the outcome is unknown instead); see the module docstring.
    delivery: Delivery = "at_least_once"
    # The id a predicate approval is registered under (the seed's ``binding_id``).
    binding_id: str | None = None
    # The Pydantic model behind ``input_schema`` when there is one, so the runtime can
    # validate arguments into it; None for a plain JSON Schema.
    input_model: type[pydantic.BaseModel] | None = dataclasses.field(default=None, repr=False)
    output_model: type[pydantic.BaseModel] | None = dataclasses.field(default=None, repr=False)
    # "inline": the runtime service runs it (no worker hop); see the module docstring.
    placement: Placement = "worker"
    # Read on every tool call, so worked out once.
    _is_async: bool = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.description, str):
            raise SpecError(
                f"tool {self.name!r}: description must be a string, "
                f"got {type(self.description).__name__}"
            )
        object.__setattr__(
            self, "approval", check_rule(self.approval, f"tool {self.name!r}", allow_default=True)
        )
        if self.delivery not in _DELIVERIES:
            raise SpecError(
                f"tool {self.name!r}: delivery must be one of {', '.join(sorted(_DELIVERIES))}, "
                f"got {self.delivery!r}"
            )
        if self.placement not in _PLACEMENTS:
            raise SpecError(
                f"tool {self.name!r}: placement must be one of "
                f"{', '.join(sorted(_PLACEMENTS))}, got {self.placement!r}"
            )
        _check_schema(self.name, "input_schema", self.input_schema, need_object=True)
        if self.output_schema is not None:
            _check_schema(self.name, "output_schema", self.output_schema, need_object=False)
        if self.handler is not None and not callable(self.handler):
            raise TypeError(
                f"tool {self.name!r}: handler must be a function, got {type(self.handler).__name__}"
            )
        object.__setattr__(self, "_is_async", _is_coroutine_function(self.handler))

    @property
    def is_async(self) -> bool:
        """True when the handler is ``async def`` (the runtime awaits it instead of calling)."""
        return self._is_async

    def bind(self, handler: Callable[..., Any]) -> ToolDefinition:
        """Return a copy of this definition that calls ``handler``."""
        return dataclasses.replace(self, handler=handler)

    def __call__(self, handler: Callable[..., Any]) -> ToolDefinition:
        # Makes ``@define_tool(...)`` work as a decorator; re-binding goes through ``bind``
        # so that a decorated tool called like a function fails loudly instead.
        if not callable(handler):
            raise TypeError(
                f"tool {self.name!r} is a ToolDefinition, not a function: "
                "call its .handler, or use define_tool(...) as a decorator"
            )
        if self.handler is not None:
            raise SpecError(
                f"tool {self.name!r} already has a handler; "
                "use .bind(handler) to get a copy with another one"
            )
        return self.bind(handler)

    def declaration(self) -> dict[str, Any]:
        """The tool as the engine's runtime spec declares it (docs/wire.md "Runtime spec")."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "approval": rule_json(self.approval, self.predicate_id),
        }

    @property
    def predicate_id(self) -> str:
        """The id a predicate ``approval`` is registered under, as in the seed: its
        ``binding_id`` when given, else ``<name>_approval`` (other rules may name it as
        ``{"kind": "dynamic", "value": id}``)."""
        return self.binding_id or f"{self.name}_approval"

    @property
    def approval_handler(self) -> Callable[..., Any] | None:
        """The function behind a predicate ``approval`` (the seed's field), else None."""
        approval = self.approval
        if callable(approval) and not isinstance(approval, (str, DynamicRule)):
            return approval
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ToolDefinition):
            return NotImplemented
        return (
            self.declaration() == other.declaration()
            and self.handler == other.handler
            and self.approval == other.approval
            and self.delivery == other.delivery
            and self.placement == other.placement
        )

    def __hash__(self) -> int:
        return hash(self.name)


# The seed's name for a tool definition.
ToolSpec = ToolDefinition


# What define_tool takes for a schema: a Pydantic model class, a JSON Schema dict or a
# {field: type} map.
SchemaInput = type[pydantic.BaseModel] | Mapping[str, Any]


def define_tool(
    name: str,
    input_schema: SchemaInput,
    description: str = "",
    approval: Approval = "default",
    output_schema: SchemaInput | None = None,
    binding_id: str | None = None,
    *,
    delivery: Delivery = "at_least_once",
    placement: Placement = "worker",
) -> ToolDefinition:
    """Define a tool.

    ``input_schema`` (and ``output_schema``) is a Pydantic model class, a JSON Schema dict,
    or a ``{field: type}`` map such as ``{"query": str, "limit": int | None}``. In a type map
    a bare optional type (``int | None``) defaults to None; give ``(type, default)`` to say
    otherwise, e.g. ``(int | None, ...)`` for a required, nullable field.

    ``approval`` is the tool's own rule: ``"never"``, ``"always"``,
    ``RequireApprovers(2)`` (two different people must approve; also ``{"kind": "always",
    "approvers_required": 2}``), the seed's ``{"kind": "dynamic", "value": id}``, or a
    predicate ``(args, ctx) -> bool`` (raising means approval is required; ``binding_id``
    names it, as in the seed). The default, ``"default"``, lets the agent's and the runtime's
    rules decide.

    ``delivery`` is ``"at_least_once"`` (the default: a handler interrupted by a crash runs
    again; pass ``ctx.idempotency_key`` to downstream APIs to make that harmless) or
    ``"at_most_once"`` (never run again: after a crash mid-call the model gets an error
    result with code ``TOOL_OUTCOME_UNKNOWN``).

    ``placement`` is ``"worker"`` (the default: the runtime service sends the call to the tool
    workers) or ``"inline"`` (the runtime service runs it itself, within the flow of the
    transaction that logs its result; for cheap, trusted tools). The embedded runtime ignores
    it.

    The result has no handler; bind one with ``.bind(fn)`` or use the definition as a
    decorator::

        @define_tool("lookup", {"query": str})
        def lookup(args, ctx): ...
    """
    _check_name(name)
    in_schema, in_model = _to_json_schema(name, "input", input_schema)
    out_schema: dict[str, Any] | None = None
    out_model: type[pydantic.BaseModel] | None = None
    if output_schema is not None:
        out_schema, out_model = _to_json_schema(name, "output", output_schema)
    return ToolDefinition(
        name=name,
        input_schema=in_schema,
        description=description,
        output_schema=out_schema,
        approval=approval,
        delivery=delivery,
        placement=placement,
        binding_id=_binding_id(name, binding_id),
        input_model=in_model,
        output_model=out_model,
    )


def _binding_id(tool: str, binding_id: object) -> str | None:
    if binding_id is None:
        return None
    if not isinstance(binding_id, str) or not binding_id.strip():
        raise SpecError(f"tool {tool!r}: binding_id must be a non-empty string, got {binding_id!r}")
    return binding_id


def check_name(what: str, name: object) -> str:
    """``name`` if it is a valid tool, plan or reference name, else a SpecError."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise SpecError(
            f"{what} name {name!r} is not valid: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or '_'"
        )
    return name


def _check_name(name: object) -> None:
    check_name("tool", name)
    if name in RESERVED_TOOL_NAMES:
        raise SpecError(f"tool name {name!r} is reserved for a built-in tool; choose another name")


def _to_json_schema(
    tool: str, which: str, value: object
) -> tuple[dict[str, Any], type[pydantic.BaseModel] | None]:
    if isinstance(value, type) and issubclass(value, pydantic.BaseModel):
        return _model_schema(tool, which, value), value
    if not isinstance(value, Mapping):
        raise InvalidSchemaError(
            f"tool {tool!r}: {which} schema must be a Pydantic model class, a JSON Schema "
            f"dict or a {{field: type}} map, got {type(value).__name__}"
        )
    if _is_type_map(tool, which, value):
        model = _model_from_type_map(tool, which, value)
        return _model_schema(tool, which, model), model
    # Copied so that later edits to the caller's dict cannot change a frozen definition.
    return copy.deepcopy(dict(value)), None


def _is_type_map(tool: str, which: str, schema: Mapping[str, Any]) -> bool:
    # A JSON Schema's values are JSON (dicts, strings, bools, ...); a type map's values are
    # Python types or typing constructs. An empty map is a tool without arguments.
    kinds = {key: _is_type_like(value) for key, value in schema.items()}
    if all(kinds.values()):
        return True
    if not any(kinds.values()):
        return False
    typed = sorted(str(key) for key, is_type in kinds.items() if is_type)
    raise InvalidSchemaError(
        f"tool {tool!r}: {which} schema mixes Python types ({', '.join(typed)}) with JSON "
        "Schema values; give either a {field: type} map or a JSON Schema dict"
    )


def _is_type_like(value: object) -> bool:
    if isinstance(value, tuple):
        return len(value) == 2 and _is_type_like(value[0])
    return (
        isinstance(value, (type, types.UnionType, typing.TypeVar))
        or typing.get_origin(value) is not None
    )


def _is_optional(annotation: object) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(annotation)


def _model_from_type_map(
    tool: str, which: str, type_map: Mapping[str, Any]
) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    for index, (key, spec) in enumerate(type_map.items()):
        if not isinstance(key, str) or not key:
            raise InvalidSchemaError(
                f"tool {tool!r}: {which} field names must be non-empty strings, got {key!r}"
            )
        if isinstance(spec, tuple):
            annotation, default = spec
        else:
            annotation, default = spec, (None if _is_optional(spec) else ...)
        # Pydantic drops names starting with '_' and warns on names that shadow BaseModel
        # attributes ("schema", "json", "copy"); an alias keeps the user's name in the schema.
        if key.isidentifier() and not key.startswith("_") and not hasattr(pydantic.BaseModel, key):
            fields[key] = (annotation, default)
        else:
            fields[f"field_{index}"] = (annotation, pydantic.Field(default, alias=key))
    title = "".join(part.capitalize() for part in re.split(r"[_-]+", tool)) + which.capitalize()
    try:
        return pydantic.create_model(
            title,
            __config__=pydantic.ConfigDict(protected_namespaces=()),
            **fields,
        )
    except (PydanticUserError, TypeError, ValueError, NameError) as exc:
        raise InvalidSchemaError(
            f"tool {tool!r}: {which} type map is not valid: {_first_sentence(exc)}; use JSON "
            "types (str, int, float, bool, None, list[...], dict[str, ...]) or Pydantic models"
        ) from exc


def _model_schema(tool: str, which: str, model: type[pydantic.BaseModel]) -> dict[str, Any]:
    try:
        return model.model_json_schema()
    except (PydanticUserError, TypeError, ValueError) as exc:
        raise InvalidSchemaError(
            f"tool {tool!r}: cannot make a JSON Schema for the {which} model "
            f"{model.__name__}: {_first_sentence(exc)}"
        ) from exc


def _first_sentence(exc: Exception) -> str:
    # Pydantic's messages go on with advice about model_config and a URL, which does not
    # apply to a tool schema.
    return str(exc).strip().splitlines()[0].split(". ", 1)[0].rstrip(".")


def _check_schema(tool: str, field: str, schema: object, *, need_object: bool) -> None:
    if not isinstance(schema, dict):
        raise InvalidSchemaError(
            f"tool {tool!r}: {field} must be a JSON Schema dict, got {type(schema).__name__}"
        )
    problem = _json_problem(schema, "")
    if problem is not None:
        raise InvalidSchemaError(f"tool {tool!r}: {field} is not JSON: {problem}")
    if need_object:
        declared = schema.get("type")
        is_object = declared == "object" or (
            declared is None and any(key in schema for key in _OBJECT_SCHEMA_KEYS)
        )
        if not is_object:
            raise InvalidSchemaError(
                f"tool {tool!r}: {field} must describe an object (tool arguments are named), "
                f'got {schema!r}; use {{"type": "object", "properties": {{...}}}}'
            )


def _json_problem(value: object, where: str) -> str | None:
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {key!r} at {where or '/'} is not a string"
            problem = _json_problem(item, f"{where}/{key}")
            if problem is not None:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{where}/{index}")
            if problem is not None:
                return problem
        return None
    return f"{type(value).__name__} value at {where or '/'}"


def _is_coroutine_function(handler: object) -> bool:
    if handler is None:
        return False
    # Callable objects with ``async def __call__`` count too.
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - the method itself, not callable()
    )


_NO_SERVICES: Final[Mapping[str, Any]] = types.MappingProxyType({})
# Fixed, so that one invocation id gives one key in every process and every version.
_IDEMPOTENCY_NAMESPACE: Final = uuid.UUID("5b3c0f1e-6a43-4c5e-9d0a-0f1a1e2d3c4b")
# The keys of the seed's ctx mapping (services follow, each under its own name).
_CONTEXT_KEYS: Final = ("tool_use_id", "services", "references")

# Receives each event a handler emits, at once (a runtime streams progress with it).
EventSink = Callable[[dict[str, Any]], None]


def idempotency_key(invocation_id: str) -> str:
    """The idempotency key of the tool call ``invocation_id`` names: a UUID (version 5)
    string, the same for every run of that call (redeliveries, retries, both runtimes), and
    accepted by downstream APIs that want a UUID or a short opaque string."""
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, invocation_id))


class ToolContext(Mapping[str, Any]):
    """What a tool handler knows about its call, and how it reports progress.

    A mapping, as in the seed: ``ctx["tool_use_id"]``, ``ctx["services"]``,
    ``ctx["references"]`` (when the runtime has a reference store) and each service under its
    own name, by key or attribute (``ctx["db"]``, ``ctx.db``); ``get``, ``keys`` and
    :meth:`as_dict` work as on a dict. A service named like one of those keys or like an
    attribute below is reached through ``ctx.services``.

    Attributes: ``tool_use_id``, ``tool_name``, ``thread_id``, ``run_id``, ``agent``,
    ``services``, ``references``, :attr:`idempotency_key`, ``events``; methods :meth:`emit`
    and :meth:`progress`.

    Built by the runtime for every tool call, so construction stays a handful of slot
    stores: no validation and no copy of ``services``. ``emit`` and ``progress`` append
    event payloads to ``events``, which the runtime drains into the run log, and hand each one
    to ``on_event`` at once when one is given; misusing them raises
    :class:`~flowai_harness.errors.ToolError`, which fails the tool call.
    """

    __slots__ = (
        "_idempotency_key",
        "_on_event",
        "_phases",
        "_references",
        "agent",
        "events",
        "run_id",
        "services",
        "thread_id",
        "tool_name",
        "tool_use_id",
    )

    def __init__(
        self,
        tool_use_id: str,
        tool_name: str,
        thread_id: str,
        run_id: str,
        agent: str,
        services: Mapping[str, Any] = _NO_SERVICES,
        references: ReferenceAccess | None = None,
        *,
        idempotency_key: str | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.tool_use_id = tool_use_id
        self.tool_name = tool_name
        self.thread_id = thread_id
        self.run_id = run_id
        self.agent = agent
        # A proxy is only a view, so wrapping is cheap; the runtime can pass one it built
        # once at create_runtime to skip even that.
        self.services: Mapping[str, Any] = (
            services
            if type(services) is types.MappingProxyType
            else types.MappingProxyType(services)
        )
        self.events: list[dict[str, Any]] = []
        self._references = references
        self._idempotency_key = idempotency_key
        self._on_event = on_event
        # (progress events so far, the last total_phases given)
        self._phases: tuple[int, int | None] = (0, None)

    @property
    def references(self) -> ReferenceAccess:
        """Create and resolve references for this call's tenant
        (:class:`~flowai_harness.references.ReferenceAccess`)."""
        if self._references is None:
            raise ToolError(
                f"tool {self.tool_name!r}: this runtime gives tools no reference store; "
                "declare reference kinds with define_runtime(references=[...])"
            )
        return self._references

    @property
    def idempotency_key(self) -> str:
        """A key that is the same on every run of this tool call (redeliveries after a
        crash, retries): pass it to downstream APIs that deduplicate requests by key, so a
        run repeated after a crash does not repeat the side effect."""
        if self._idempotency_key is None:
            raise ToolError(
                f"tool {self.tool_name!r}: this context was built without an idempotency key; "
                "the runtimes give one to every call (build it with idempotency_key="
                "flowai_harness.tools.idempotency_key(invocation_id) in a test)"
            )
        return self._idempotency_key

    # --- the mapping -----------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if key == "tool_use_id":
            return self.tool_use_id
        if key == "services":
            return self.services
        if key == "references":
            if self._references is None:
                raise KeyError(
                    "references: this runtime gives tools no reference store; declare "
                    "reference kinds with define_runtime(references=[...])"
                )
            return self._references
        return self.services[key]

    def __iter__(self) -> Iterator[str]:
        yield "tool_use_id"
        yield "services"
        if self._references is not None:
            yield "references"
        for name in self.services:
            if name not in _CONTEXT_KEYS:
                yield name

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if key in _CONTEXT_KEYS:
            return key != "references" or self._references is not None
        return key in self.services

    # A context is one call's, not a value: equal only to itself, hashable like any object.
    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__

    def __getattr__(self, name: str) -> Any:
        # Only reached when no attribute has the name: a service, by attribute.
        if not name.startswith("_"):
            try:
                services = object.__getattribute__(self, "services")
            except AttributeError:
                services = _NO_SERVICES
            if name in services:
                return services[name]
            raise AttributeError(
                f"ToolContext has no attribute {name!r}, and no service is called that "
                f"(services: {', '.join(sorted(services)) or 'none'})"
            )
        raise AttributeError(name)

    def as_dict(self) -> dict[str, Any]:
        """The mapping as a plain dict (``tool_use_id``, ``services``, ``references`` when
        there is a store, and each service)."""
        return {key: self[key] for key in self}

    # --- events ----------------------------------------------------------------------------

    def _record(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def emit(self, name: str, data: Any) -> None:
        """Record a ``custom`` event for the stream (``data`` must be JSON-serializable)."""
        if not isinstance(name, str) or not name:
            raise ToolError(
                f"tool {self.tool_name!r}: emit() needs a non-empty event name, got {name!r}"
            )
        self._record(
            {"type": "custom", "name": name, "data": data, "toolInvocationId": self.tool_use_id}
        )

    def progress(
        self,
        label: str | None = None,
        *,
        phase_index: int | None = None,
        total_phases: int | None = None,
        milestone: str | None = None,
        fraction: float | None = None,
        message: str | None = None,
    ) -> None:
        """Record a ``tool-progress`` event: ``{type, toolName, toolCallId, label,
        phaseIndex, totalPhases, milestone?}`` (the seed's shape), plus ``toolInvocationId``,
        ``message`` (= label) and ``fraction`` when given.

        ``phase_index`` counts from 0; without it each call is the next phase.
        ``total_phases`` is remembered for later calls; until one is given the total is the
        phases seen so far. ``fraction`` is the share done, 0.0 to 1.0. ``message`` is the
        older name of ``label`` (``progress(message, fraction=...)`` still works).
        """
        if label is None:
            label = message
        elif message is not None:
            raise ToolError(
                f"tool {self.tool_name!r}: progress() takes a label or a message, not both"
            )
        if not isinstance(label, str):
            raise ToolError(
                f"tool {self.tool_name!r}: progress() label must be a string, "
                f"got {type(label).__name__}"
            )
        seen, total = self._phases
        index = seen if phase_index is None else phase_index
        if not _is_count(index, 0):
            raise ToolError(
                f"tool {self.tool_name!r}: progress() phase_index must be an integer >= 0, "
                f"got {phase_index!r}"
            )
        if total_phases is not None:
            if not _is_count(total_phases, 1):
                raise ToolError(
                    f"tool {self.tool_name!r}: progress() total_phases must be an integer >= 1, "
                    f"got {total_phases!r}"
                )
            total = total_phases
        if total is not None and index >= total:
            raise ToolError(
                f"tool {self.tool_name!r}: progress() phase_index {index} is not below "
                f"total_phases {total} (phases count from 0)"
            )
        if milestone is not None and not isinstance(milestone, str):
            raise ToolError(
                f"tool {self.tool_name!r}: progress() milestone must be a string, "
                f"got {type(milestone).__name__}"
            )
        if fraction is not None and (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0.0 <= fraction <= 1.0
        ):
            raise ToolError(
                f"tool {self.tool_name!r}: progress() fraction must be a number from "
                f"0.0 to 1.0, got {fraction!r}"
            )
        self._phases = (index + 1, total)
        event: dict[str, Any] = {
            "type": "tool-progress",
            "toolName": self.tool_name,
            "toolCallId": self.tool_use_id,
            "label": label,
            "phaseIndex": index,
            "totalPhases": index + 1 if total is None else total,
        }
        if milestone is not None:
            event["milestone"] = milestone
        event["toolInvocationId"] = self.tool_use_id
        # Readers written against the first shape (docs/wire.md, messages.ToolProgressEvent).
        event["message"] = label
        if fraction is not None:
            event["fraction"] = float(fraction)
        self._record(event)

    def __repr__(self) -> str:
        return (
            f"ToolContext(tool_name={self.tool_name!r}, tool_use_id={self.tool_use_id!r}, "
            f"agent={self.agent!r}, thread_id={self.thread_id!r}, run_id={self.run_id!r})"
        )


def _is_count(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def normalize_schema(schema: object) -> dict[str, Any]:
    """A JSON Schema from what ``define_tool`` takes, or a type hint (``list[int]``, a
    TypedDict...): the seed's helper. ``$defs`` are inlined, except those that refer to
    themselves (a recursive model keeps its ``$defs`` and ``$ref``s)."""
    if isinstance(schema, Mapping) or (
        isinstance(schema, type) and issubclass(schema, pydantic.BaseModel)
    ):
        converted, _ = _to_json_schema("schema", "input", schema)
    else:
        try:
            adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(schema)  # type: ignore[arg-type]
            converted = adapter.json_schema()
        except (PydanticUserError, TypeError, ValueError) as exc:
            raise InvalidSchemaError(
                f"normalize_schema: {schema!r} is not a JSON Schema dict, a Pydantic model, a "
                f"{{name: type}} map or a type: {_first_sentence(exc)}"
            ) from exc
    return _inline_defs(converted)


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    if not defs:
        return schema

    def refs_in(value: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                found.add(ref.removeprefix("#/$defs/"))
            for item in value.values():
                found |= refs_in(item)
        elif isinstance(value, list):
            for item in value:
                found |= refs_in(item)
        return found

    direct = {name: refs_in(body) for name, body in defs.items()}

    def reaches(start: str, target: str) -> bool:
        seen: set[str] = set()
        todo = list(direct.get(start, ()))
        while todo:
            name = todo.pop()
            if name == target:
                return True
            if name not in seen:
                seen.add(name)
                todo.extend(direct.get(name, ()))
        return False

    recursive = {name for name in defs if reaches(name, name)}

    def inline(value: Any) -> Any:
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name in defs and name not in recursive:
                    rest = {k: inline(v) for k, v in value.items() if k != "$ref"}
                    return {**inline(defs[name]), **rest}
            return {k: inline(v) for k, v in value.items() if k != "$defs"}
        if isinstance(value, list):
            return [inline(item) for item in value]
        return value

    result: dict[str, Any] = inline(schema)
    if recursive:
        result["$defs"] = {name: inline(defs[name]) for name in sorted(recursive)}
    return result
