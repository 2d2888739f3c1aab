"""Tool schemas users actually write: Pydantic models with patterns, Decimal, constrained dict
keys and enums, enforced by the engine end to end (define_tool, define_runtime, a scripted call).

Valid arguments reach the handler; invalid ones come back as a ``TOOL_ARGS_INVALID`` tool
result naming the field and the problem, and the handler never sees them. A pattern the
engine cannot enforce as ECMA-262 is refused when the runtime is defined. The schemas every
allowed Pydantic version emits are in fixtures/schemas (see capture.py there), checked here
through the engine's own validator as well as in core/engine/tests/schema.rs.
"""

from __future__ import annotations

import json
from decimal import Decimal
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field, StringConstraints, constr
from streams import drain, of_type

from flowai_harness import (
    Runtime,
    ToolContext,
    ToolDefinition,
    _native,
    create_runtime,
    define_runtime,
    define_specialist,
    define_tool,
)
from flowai_harness.errors import FlowaiError, InvalidSchemaError

FIXTURES = Path(__file__).parent / "fixtures" / "schemas"


class Currency(StrEnum):
    EUR = "EUR"
    USD = "USD"


class Priority(IntEnum):
    LOW = 1
    HIGH = 2


class Order(BaseModel):
    sku: str = Field(pattern=r"^[A-Z]{3}-\d{4}$")
    postcode: constr(pattern=r"^\d{5}(-\d{4})?$")
    amount: Decimal = Field(multiple_of=Decimal("0.01"))
    discount: float = Field(default=0, multiple_of=0.1)
    currency: Currency
    priority: Priority = Priority.LOW
    channel: Literal["web", "phone"] = "web"
    quantities: dict[Annotated[str, StringConstraints(pattern=r"^wh_[a-z]+$")], int] = {}
    notes: dict[constr(min_length=2, max_length=8, pattern=r"^[a-z]+$"), str] = {}


VALID: dict[str, Any] = {
    "sku": "ABC-1234",
    "postcode": "12345-6789",
    "amount": "19.99",
    "discount": 0.3,
    "currency": "EUR",
    "priority": 2,
    "channel": "phone",
    "quantities": {"wh_north": 3},
    "notes": {"gift": "wrap it"},
}

Seen = list[dict[str, Any]]


def order_runtime(seen: Seen, tool: ToolDefinition | None = None) -> Runtime:
    def place_order(args: dict[str, Any], ctx: ToolContext) -> dict[str, str]:
        seen.append(args)
        return {"placed": args["sku"]}

    tool = tool or define_tool("place_order", Order, description="Place an order.")
    clerk = define_specialist(
        name="clerk", model="claude-haiku-4-5", prompt="Place orders.", tools=[tool]
    )
    spec = define_runtime(tenant=("acme", "v1"), agents=[clerk], providers={"anthropic": {}})
    return create_runtime(spec, interpreter="scripted", tool_bindings={"place_order": place_order})


def script(*calls: dict[str, Any]) -> str:
    return json.dumps({"script": [{"tool": "place_order", "args": args} for args in calls]})


async def call(seen: Seen, *calls: dict[str, Any]) -> list[dict[str, Any]]:
    runtime = order_runtime(seen)
    events = await drain(runtime.run_specialist("clerk", script(*calls)))
    return of_type(events, "tool-invocation", state="result")


async def test_valid_arguments_reach_the_handler() -> None:
    seen: Seen = []
    other = {**VALID, "amount": 7, "currency": "USD", "discount": 1.7}
    defaults_only = {k: VALID[k] for k in ("sku", "postcode", "amount", "currency")}

    results = await call(seen, VALID, other, defaults_only)

    assert seen == [VALID, other, defaults_only]
    assert [r["result"] for r in results] == [{"placed": "ABC-1234"}] * 3
    assert not any(r.get("isError") for r in results)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"sku": "abc-1234"}, 'at /sku: expected a string matching the pattern "^[A-Z]{3}-'),
        # ECMA-262's \d is [0-9]: Arabic-Indic digits are not digits here.
        ({"sku": "ABC-\u0661\u0662\u0663\u0664"}, "at /sku: expected a string matching"),
        ({"sku": "ABC-1234\n"}, "at /sku: expected a string matching"),
        ({"postcode": "1234"}, 'at /postcode: expected a string matching the pattern "^\\\\d{5}'),
        ({"amount": 19.999}, "at /amount: expected a multiple of 0.01, got 19.999"),
        ({"amount": 0.30000000001}, "at /amount: expected a multiple of 0.01, got 0.30000000001"),
        ({"discount": 0.30000000001}, "at /discount: expected a multiple of 0.1, got 0.3000000000"),
        ({"discount": 0.35}, "at /discount: expected a multiple of 0.1, got 0.35"),
        ({"currency": "GBP"}, 'at /currency: expected one of "EUR", "USD", got "GBP"'),
        ({"priority": 3}, "at /priority: expected one of 1, 2, got 3"),
        ({"channel": "fax"}, 'at /channel: expected one of "web", "phone", got "fax"'),
        ({"quantities": {"wh_north": "three"}}, "at /quantities/wh_north: expected integer"),
        ({"notes": {"x": "short key"}}, 'at /notes: property name "x": expected at least 2'),
        ({"notes": {"gift": 5}}, "at /notes/gift: expected string, got integer 5"),
    ],
)
async def test_invalid_arguments_are_a_tool_args_invalid_result(
    change: dict[str, Any], problem: str
) -> None:
    seen: Seen = []

    refused, placed = await call(seen, {**VALID, **change}, VALID)

    assert seen == [VALID], "the handler only sees the valid call"
    assert refused["isError"] is True
    error = refused["result"]["error"]
    assert error["code"] == "TOOL_ARGS_INVALID"
    assert problem in error["message"], error["message"]
    assert placed["result"] == {"placed": "ABC-1234"}


async def test_decimal_strings_follow_the_emitted_schema() -> None:
    # Pydantic 2.12 and 2.13 put a pattern on a Decimal's string form, other versions do not;
    # the engine enforces whichever schema the installed version emits.
    seen: Seen = []
    schema = Order.model_json_schema()
    patterned = "pattern" in schema["properties"]["amount"]["anyOf"][1]

    results = await call(seen, {**VALID, "amount": "12.5.0"})

    assert bool(results[0].get("isError")) is patterned
    assert len(seen) == (0 if patterned else 1)


def test_a_pattern_the_engine_cannot_enforce_is_refused_at_definition() -> None:
    class Python(BaseModel):
        # Pydantic's own regex engine takes inline flags; ECMA-262 has none.
        code: str = Field(pattern=r"(?i)^[a-z]+$")

    tool = define_tool("place_order", Python, description="Place an order.")

    with pytest.raises(InvalidSchemaError) as caught:
        order_runtime([], tool)

    message = str(caught.value)
    assert caught.value.code == "SPEC_INVALID_SCHEMA"
    assert "tool `place_order` has an unusable input schema" in message
    assert '"(?i)^[a-z]+$"' in message
    assert "inline flags such as `(?i)` are not ECMA-262" in message
    assert "at /properties/code" in message


def fixture_cases() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("pydantic-*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for model in document["models"]:
            for i, case in enumerate(model["cases"]):
                name = f"{document['pydantic']}-{model['name']}-{i}"
                cases.append(pytest.param(model["schema"], case, id=name))
    return cases


@pytest.mark.parametrize(("schema", "case"), fixture_cases())
def test_every_allowed_pydantic_version_schema_is_enforced(
    schema: dict[str, Any], case: dict[str, Any]
) -> None:
    schema_bytes = json.dumps(schema).encode()
    value_bytes = json.dumps(case["value"]).encode()
    if case["schema"]:
        _native.validate_json(schema_bytes, value_bytes)
    else:
        with pytest.raises(FlowaiError, match="arguments do not match the schema"):
            _native.validate_json(schema_bytes, value_bytes)
