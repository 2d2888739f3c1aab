"""Typed plans: what a planner may store and an executor may run.

Owns :func:`define_plan` and :class:`PlanSpec` (a plan kind: its JSON Schema, whose top-level
``actions`` array holds the steps, and the discriminator that names each action's kind) and
:func:`TaggedUnion`, the discriminated union of Pydantic models used to type those actions::

    class Reorder(BaseModel):
        kind: Literal["reorder_products"]
        products: ReferenceHandle

    class ReorderPlan(BaseModel):
        actions: list[TaggedUnion(Reorder, Hold)]
        reason: str

The engine validates plan bodies (``storePlan``) against the schema and runs the lifecycle;
this module only declares. Schemas must stay in the engine's subset (docs/wire.md, "Schemas":
what compiles is fully enforced, what it could not enforce is refused); Pydantic's
``discriminator`` mapping is an annotation there, and the ``oneOf`` it comes with is what gets
enforced, which is why every variant's discriminator is made required. Must not import
specs, the runtime or the native extension.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, Literal

import orjson
import pydantic

from .errors import DuplicateVariantError, InvalidPlanError, InvalidSchemaError, SpecError
from .tools import check_name

__all__ = [
    "PLAN_STATUSES",
    "PlanDisplayAlias",
    "PlanSpec",
    "TaggedUnion",
    "TaggedUnionInfo",
    "define_plan",
]

DEFAULT_DISCRIMINATOR: Final = "kind"


@dataclasses.dataclass(frozen=True, slots=True)
class TaggedUnionInfo:
    """Carried in a TaggedUnion's ``Annotated`` metadata, so define_plan can find the
    discriminator and the variants again."""

    discriminator: str
    variants: tuple[type[pydantic.BaseModel], ...]
    tags: tuple[tuple[str, type[pydantic.BaseModel]], ...]


def TaggedUnion(
    *models: type[pydantic.BaseModel], discriminator: str = DEFAULT_DISCRIMINATOR
) -> Any:
    """A discriminated union of Pydantic models, for a plan's ``actions``.

    Every model needs a field named ``discriminator`` (``kind`` by default) that names its
    kind: a ``Literal`` of strings, or (the seed's shorthand) a ``str`` field whose default
    is a non-empty string, which stands for ``Literal[<default>]`` (the union then holds a
    subclass of the model with that field). No two models may share a value of it.
    """
    if not isinstance(discriminator, str) or not discriminator:
        raise SpecError(f"TaggedUnion: discriminator must be a field name, got {discriminator!r}")
    if len(models) < 2:
        raise SpecError(
            f"TaggedUnion needs at least 2 models, got {len(models)}; a plan with one kind "
            "of action can use list[ThatModel]"
        )
    models = tuple(_with_literal(model, discriminator) for model in models)
    owners: dict[str, type[pydantic.BaseModel]] = {}
    for model in models:
        for tag in _tags(model, discriminator):
            other = owners.get(tag)
            if other is not None:
                raise DuplicateVariantError(
                    f"TaggedUnion: {other.__name__} and {model.__name__} both say "
                    f"{discriminator}={tag!r}; give each model its own value"
                )
            owners[tag] = model
    info = TaggedUnionInfo(discriminator, tuple(models), tuple(owners.items()))
    union = typing.Union.__getitem__(models)
    return Annotated[union, pydantic.Field(discriminator=discriminator), info]


def _with_literal(model: object, discriminator: str) -> Any:
    """``model`` itself, or, for the shorthand ``kind: str = "x"``, a subclass of it (same
    name) whose ``kind`` is ``Literal["x"]`` with that default."""
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        return model  # _tags says what is wrong
    field = model.model_fields.get(discriminator)
    if (
        field is None
        or field.annotation is not str
        or not isinstance(field.default, str)
        or not field.default
    ):
        return model
    tag = field.default
    return pydantic.create_model(
        model.__name__,
        __base__=model,
        __module__=model.__module__,
        **{discriminator: (Literal[tag], tag)},  # type: ignore[call-overload]
    )


def _tags(model: object, discriminator: str) -> tuple[str, ...]:
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        raise SpecError(f"TaggedUnion: {model!r} is not a Pydantic model class")
    field = model.model_fields.get(discriminator)
    if field is None or typing.get_origin(field.annotation) is not Literal:
        raise SpecError(
            f"TaggedUnion: {model.__name__} needs a field {discriminator}: Literal['...'] (or "
            f"{discriminator}: str = '...') naming its kind of action"
        )
    tags = typing.get_args(field.annotation)
    if not all(isinstance(tag, str) for tag in tags):
        raise SpecError(
            f"TaggedUnion: {model.__name__}.{discriminator} must be a Literal of strings, "
            f"got {field.annotation}"
        )
    return tags


# The plan statuses (the seed's five, and a draft waiting at its gate).
PLAN_STATUSES: Final = ("draft", "pending_approval", "approved", "executing", "executed", "failed")


@dataclasses.dataclass(frozen=True, slots=True)
class PlanDisplayAlias:
    """A label people see for one plan status."""

    status: str
    alias: str


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class PlanSpec:
    """A kind of plan. Build it with :func:`define_plan`."""

    name: str
    schema: dict[str, Any] = dataclasses.field(repr=False)
    discriminator: str = DEFAULT_DISCRIMINATOR
    # Display labels of the plan statuses, as (status, label) pairs in status order.
    display_aliases: tuple[PlanDisplayAlias, ...] = ()
    # The Pydantic model the schema came from, for typed reading of plan bodies.
    model: type[pydantic.BaseModel] | None = dataclasses.field(default=None, repr=False)

    def declaration(self) -> dict[str, Any]:
        """The ``plans[]`` entry of the runtime spec (docs/wire.md)."""
        return {
            "name": self.name,
            "schema": self.schema,
            "discriminator": self.discriminator,
            "display_aliases": {a.status: a.alias for a in self.display_aliases},
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PlanSpec):
            return NotImplemented
        return self.declaration() == other.declaration() and self.model == other.model

    def __hash__(self) -> int:
        return hash(self.name)


def define_plan(name: str, schema: Any, display_aliases: Any = ()) -> PlanSpec:
    """Declare a kind of plan.

    ``schema`` is a Pydantic model class or a JSON Schema dict with a top-level ``actions``
    array; each action names its kind in the discriminator field (the TaggedUnion's, else
    ``kind``). ``display_aliases`` label the plan statuses for people (``{"draft":
    "Proposed", "approved": "Signed off"}``, or a list of :class:`PlanDisplayAlias` or
    ``(status, label)`` pairs); ``plan-status-change`` events carry them as ``fromAlias`` /
    ``toAlias``.
    """
    check_name("plan", name)
    aliases = _aliases(name, display_aliases)
    model: type[pydantic.BaseModel] | None = None
    if isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        model = schema
        json_schema = _model_schema(name, schema)
        discriminator = _model_discriminator(schema)
    elif isinstance(schema, Mapping):
        json_schema = _copy_schema(name, schema)
        discriminator = _schema_discriminator(json_schema)
    else:
        raise InvalidPlanError(
            f"plan {name!r}: schema must be a Pydantic model class or a JSON Schema dict, "
            f"got {type(schema).__name__}"
        )
    actions = json_schema.get("properties", {}).get("actions")
    if not isinstance(actions, dict) or actions.get("type") != "array":
        raise InvalidPlanError(
            f"plan {name!r}: the schema needs a top-level 'actions' array property; "
            "declare e.g. actions: list[TaggedUnion(Reorder, Hold)]"
        )
    _require_discriminator(name, json_schema, actions.get("items"), discriminator)
    return PlanSpec(
        name=name,
        schema=json_schema,
        discriminator=discriminator,
        display_aliases=aliases,
        model=model,
    )


def _aliases(plan: str, display_aliases: Any) -> tuple[PlanDisplayAlias, ...]:
    if isinstance(display_aliases, Mapping):
        pairs: list[Any] = list(display_aliases.items())
    elif isinstance(display_aliases, (str, bytes)) or not isinstance(display_aliases, Iterable):
        raise SpecError(
            f"plan {plan!r}: display_aliases must be a mapping of status to label (or a list "
            f"of PlanDisplayAlias), got {type(display_aliases).__name__}"
        )
    else:
        pairs = list(display_aliases)
    found: dict[str, str] = {}
    for pair in pairs:
        if isinstance(pair, PlanDisplayAlias):
            status, alias = pair.status, pair.alias
        elif isinstance(pair, tuple) and len(pair) == 2:
            status, alias = pair
        else:
            raise SpecError(
                f"plan {plan!r}: display alias {pair!r} is not (status, label); pass "
                "{'draft': 'Proposed', ...}"
            )
        if status not in PLAN_STATUSES:
            raise SpecError(
                f"plan {plan!r}: display alias for {status!r}, which is not a plan status; the "
                f"statuses are {', '.join(PLAN_STATUSES)}"
            )
        if not isinstance(alias, str) or not alias.strip():
            raise SpecError(f"plan {plan!r}: the label of {status!r} must be a non-empty string")
        if status in found:
            raise SpecError(f"plan {plan!r}: status {status!r} has two display aliases")
        found[status] = alias
    return tuple(
        PlanDisplayAlias(status, found[status]) for status in PLAN_STATUSES if status in found
    )


def _model_schema(plan: str, model: type[pydantic.BaseModel]) -> dict[str, Any]:
    try:
        return model.model_json_schema()
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        raise InvalidSchemaError(
            f"plan {plan!r}: cannot make a JSON Schema for {model.__name__}: "
            f"{str(exc).strip().splitlines()[0]}"
        ) from None


def _copy_schema(plan: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    # Copied so later edits to the caller's dict cannot change a frozen plan spec.
    try:
        copied = orjson.loads(orjson.dumps(schema))
    except TypeError as exc:
        raise InvalidSchemaError(f"plan {plan!r}: the JSON Schema is not JSON: {exc}") from None
    if not isinstance(copied, dict):  # pragma: no cover - a Mapping dumps to an object
        raise InvalidSchemaError(f"plan {plan!r}: the JSON Schema must be an object")
    return copied


def _model_discriminator(model: type[pydantic.BaseModel]) -> str:
    field = model.model_fields.get("actions")
    if field is None:
        return DEFAULT_DISCRIMINATOR
    for item in typing.get_args(field.annotation):
        for meta in getattr(item, "__metadata__", ()):
            if isinstance(meta, TaggedUnionInfo):
                return meta.discriminator
            discriminator = getattr(meta, "discriminator", None)
            if isinstance(discriminator, str):
                return discriminator
    return DEFAULT_DISCRIMINATOR


def _schema_discriminator(schema: Mapping[str, Any]) -> str:
    items = schema.get("properties", {}).get("actions", {}).get("items")
    found = items.get("discriminator") if isinstance(items, dict) else None
    if isinstance(found, dict) and isinstance(found.get("propertyName"), str):
        return str(found["propertyName"])
    return DEFAULT_DISCRIMINATOR


def _require_discriminator(
    plan: str, schema: dict[str, Any], items: object, discriminator: str
) -> None:
    """Every action variant must have the discriminator field, and must require it: the
    engine reads each action's kind from it."""
    if not isinstance(items, dict):
        return
    variants = items.get("oneOf") or items.get("anyOf") or [items]
    for variant in variants:
        resolved = _resolve(schema, variant)
        if resolved is None or "properties" not in resolved:
            continue  # not an object schema we can see into; the engine decides
        if discriminator not in resolved["properties"]:
            label = resolved.get("title") or variant.get("$ref") or "an action"
            raise InvalidPlanError(
                f"plan {plan!r}: action {label} has no {discriminator!r} field; every "
                f"action names its kind, e.g. {discriminator}: Literal['reorder_products']"
            )
        required = resolved.setdefault("required", [])
        if isinstance(required, list) and discriminator not in required:
            required.append(discriminator)


def _resolve(schema: dict[str, Any], node: object) -> dict[str, Any] | None:
    if not isinstance(node, dict):
        return None
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            target = schema.get(prefix[2:-1], {}).get(ref[len(prefix) :])
            return target if isinstance(target, dict) else None
    return None
