"""Typed plans: TaggedUnion, define_plan, and the plan declaration the engine compiles."""

from __future__ import annotations

import copy
from typing import Any, Literal

import orjson
import pydantic
import pytest

from flowai_harness.errors import (
    DuplicateVariantError,
    InvalidPlanError,
    InvalidSchemaError,
    SpecError,
)
from flowai_harness.plans import PlanDisplayAlias, PlanSpec, TaggedUnion, define_plan
from flowai_harness.references import ReferenceHandle


class Reorder(pydantic.BaseModel):
    kind: Literal["reorder_products"]
    products: ReferenceHandle
    quantity: int


class Hold(pydantic.BaseModel):
    # A default makes Pydantic leave the discriminator out of "required"; define_plan puts it
    # back, because the engine reads every action's kind from it.
    kind: Literal["hold_inventory"] = "hold_inventory"
    products: ReferenceHandle


class ReorderPlan(pydantic.BaseModel):
    actions: list[TaggedUnion(Reorder, Hold)]  # type: ignore[valid-type]
    reason: str


HANDLE = {"kind": "product_set", "id": "ref_" + "0" * 32}


# --- TaggedUnion ----------------------------------------------------------------------------


def test_a_tagged_union_validates_each_action_by_its_kind() -> None:
    plan = ReorderPlan.model_validate(
        {
            "actions": [
                {"kind": "reorder_products", "products": HANDLE, "quantity": 5},
                {"kind": "hold_inventory", "products": HANDLE},
            ],
            "reason": "low stock",
        }
    )

    assert [type(action) for action in plan.actions] == [Reorder, Hold]


def test_an_unknown_kind_is_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError, match="does not match any of the expected tags"):
        ReorderPlan.model_validate(
            {"actions": [{"kind": "sell", "products": HANDLE}], "reason": ""}
        )


def test_a_custom_discriminator() -> None:
    class A(pydantic.BaseModel):
        op: Literal["a"]

    class B(pydantic.BaseModel):
        op: Literal["b", "bee"]

    class Plan(pydantic.BaseModel):
        actions: list[TaggedUnion(A, B, discriminator="op")]  # type: ignore[valid-type]

    plan = define_plan("ops", Plan)

    assert plan.discriminator == "op"
    assert type(Plan.model_validate({"actions": [{"op": "bee"}]}).actions[0]) is B


def test_a_tagged_union_needs_two_models() -> None:
    with pytest.raises(SpecError, match="at least 2 models, got 1"):
        TaggedUnion(Reorder)


def test_duplicate_discriminator_values_name_both_models() -> None:
    class Reorder2(pydantic.BaseModel):
        kind: Literal["reorder_products"]

    with pytest.raises(DuplicateVariantError, match="Reorder and Reorder2 both say") as caught:
        TaggedUnion(Reorder, Hold, Reorder2)
    assert caught.value.code == "SPEC_DUPLICATE_VARIANT"
    assert isinstance(caught.value, SpecError)


class NoKind(pydantic.BaseModel):
    products: ReferenceHandle


class StrKind(pydantic.BaseModel):
    kind: str


class IntKind(pydantic.BaseModel):
    kind: Literal[1]


@pytest.mark.parametrize(
    ("models", "match"),
    [
        ((Reorder, NoKind), r"NoKind needs a field kind: Literal"),
        ((Reorder, StrKind), r"StrKind needs a field kind: Literal"),
        ((Reorder, IntKind), r"IntKind.kind must be a Literal of strings"),
        ((Reorder, dict), r"is not a Pydantic model class"),
    ],
)
def test_every_variant_names_its_kind_with_a_literal(models: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        TaggedUnion(*models)


# --- define_plan ----------------------------------------------------------------------------


def test_declaration_matches_the_wire_doc() -> None:
    plan = define_plan(
        "reorder", ReorderPlan, display_aliases={"executed": "Ordered", "draft": "Proposed"}
    )

    declaration = plan.declaration()

    assert set(declaration) == {"name", "schema", "discriminator", "display_aliases"}
    assert declaration["name"] == "reorder"
    assert declaration["discriminator"] == "kind"
    assert declaration["display_aliases"] == {"draft": "Proposed", "executed": "Ordered"}
    assert declaration["schema"]["properties"]["actions"]["type"] == "array"
    assert plan.model is ReorderPlan
    orjson.dumps(declaration)  # JSON all the way down


def test_every_variant_requires_the_discriminator() -> None:
    schema = define_plan("reorder", ReorderPlan).schema

    for name in ("Reorder", "Hold"):
        assert "kind" in schema["$defs"][name]["required"]


def test_the_schema_has_no_keyword_the_engine_refuses() -> None:
    text = orjson.dumps(define_plan("reorder", ReorderPlan).schema).decode()

    assert '"pattern"' not in text


DICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "actions": {
            "type": "array",
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"type": {"const": "a"}, "n": {"type": "integer"}},
                    },
                    {"$ref": "#/$defs/B"},
                ],
                "discriminator": {"propertyName": "type"},
            },
        }
    },
    "$defs": {"B": {"type": "object", "properties": {"type": {"const": "b"}}}},
}


def test_a_json_schema_plan_takes_its_discriminator_from_the_schema() -> None:
    given = copy.deepcopy(DICT_SCHEMA)

    plan = define_plan("generic", given)

    assert plan.discriminator == "type"
    assert plan.model is None
    assert plan.schema["properties"]["actions"]["items"]["oneOf"][0]["required"] == ["type"]
    assert plan.schema["$defs"]["B"]["required"] == ["type"]
    assert given == DICT_SCHEMA, "the caller's dict is copied, not changed"


def test_a_json_schema_plan_defaults_to_kind() -> None:
    plan = define_plan("simple", {"type": "object", "properties": {"actions": {"type": "array"}}})

    assert plan.discriminator == "kind"


def test_a_single_action_model_plan() -> None:
    class Plan(pydantic.BaseModel):
        actions: list[Reorder]

    assert define_plan("only_reorders", Plan).discriminator == "kind"


class NoActions(pydantic.BaseModel):
    steps: list[Reorder]


class OptionalActions(pydantic.BaseModel):
    actions: list[Reorder] | None = None


class ActionsNotAList(pydantic.BaseModel):
    actions: Reorder


@pytest.mark.parametrize(
    "schema",
    [
        NoActions,
        OptionalActions,
        ActionsNotAList,
        {"type": "object"},
        {"type": "object", "properties": {"actions": {"type": "object"}}},
    ],
    ids=["no-actions", "optional", "not-a-list", "dict-without", "dict-object"],
)
def test_a_plan_needs_a_top_level_actions_array(schema: Any) -> None:
    with pytest.raises(InvalidPlanError, match="plan 'broken': the schema needs a top-level"):
        define_plan("broken", schema)


def test_an_action_without_the_discriminator_field_is_named() -> None:
    class Plan(pydantic.BaseModel):
        actions: list[NoKind]

    with pytest.raises(InvalidPlanError, match="plan 'p': action NoKind has no 'kind' field"):
        define_plan("p", Plan)


@pytest.mark.parametrize("schema", [None, "schema", ReorderPlan(actions=[], reason="")])
def test_a_schema_is_a_model_class_or_a_dict(schema: Any) -> None:
    with pytest.raises(InvalidPlanError, match="plan 'p': schema must be a Pydantic model class"):
        define_plan("p", schema)


def test_a_dict_schema_must_be_json() -> None:
    with pytest.raises(InvalidSchemaError, match="plan 'p': the JSON Schema is not JSON"):
        define_plan("p", {"type": "object", "properties": {"actions": {"default": object()}}})


@pytest.mark.parametrize("name", ["", "has space", "1st", None, "x" * 65])
def test_plan_names_are_identifiers(name: Any) -> None:
    with pytest.raises(SpecError, match="plan name"):
        define_plan(name, ReorderPlan)


@pytest.mark.parametrize(
    ("aliases", "match"),
    [
        ("Reorder plan", "must be a mapping of status to label"),
        (["Reorder plan"], r"'Reorder plan' is not \(status, label\)"),
        ({"draft": " "}, "the label of 'draft' must be a non-empty string"),
        ({"archived": "Old"}, "'archived', which is not a plan status"),
        ([("draft", "A"), PlanDisplayAlias("draft", "B")], "two display aliases"),
    ],
)
def test_display_aliases_label_the_plan_statuses(aliases: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        define_plan("reorder", ReorderPlan, display_aliases=aliases)


def test_display_aliases_take_the_seeds_forms() -> None:
    as_mapping = define_plan("reorder", ReorderPlan, display_aliases={"approved": "Signed off"})
    as_list = define_plan(
        "reorder", ReorderPlan, display_aliases=[PlanDisplayAlias("approved", "Signed off")]
    )

    assert as_mapping == as_list
    assert as_mapping.display_aliases == (PlanDisplayAlias("approved", "Signed off"),)


def test_plan_specs_are_frozen_values() -> None:
    plan = define_plan("reorder", ReorderPlan, display_aliases={"draft": "Proposed"})

    with pytest.raises(AttributeError):
        plan.name = "other"  # type: ignore[misc]
    assert plan == define_plan("reorder", ReorderPlan, display_aliases=[("draft", "Proposed")])
    assert plan != define_plan("reorder", ReorderPlan)
    assert hash(plan) == hash(define_plan("reorder", ReorderPlan))
    assert isinstance(plan, PlanSpec)
    assert "ReorderPlan" not in repr(plan)


# --- the engine accepts the schemas ---------------------------------------------------------


def test_the_engine_compiles_a_tagged_union_plan_schema() -> None:
    native = pytest.importorskip("flowai_harness._native")
    schema = define_plan("reorder", ReorderPlan).schema
    # A tool input schema goes through the same validator compile as a plan schema does.
    spec = {
        "tenant": {"resource_id": "acme", "version": "v1"},
        "agents": [
            {"name": "a", "role": "specialist", "model": "claude-x", "prompt": "p", "tools": ["t"]}
        ],
        "tools": [{"name": "t", "input_schema": schema}],
        "providers": ["anthropic"],
    }

    native.compile_spec(orjson.dumps(spec))
