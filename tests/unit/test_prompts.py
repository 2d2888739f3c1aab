"""Layered prompts: fixed sections, deterministic text, tool tables, and agents' tool tables."""

from __future__ import annotations

import hashlib
from typing import Any

import pydantic
import pytest

from flowai_harness.errors import SpecError
from flowai_harness.prompts import LayeredPrompt, layered_prompt, render_agent_prompt, tool_table
from flowai_harness.tools import define_tool


def over_100(args: Any, ctx: Any) -> bool:
    return bool(args["amount"] > 100)


LOOKUP = define_tool("lookup", {"sku": str}, description="Find a product by SKU.")
PAY = define_tool("pay", {"amount": int}, description="Pay | refund money.", approval=over_100)


def test_sections_come_in_their_fixed_order_and_empty_ones_are_left_out() -> None:
    prompt = layered_prompt(
        examples="User: hi\nAgent: hello",
        safety="Never delete data.",
        identity="You are Acme's planner.",
        communication="   ",
        operational_rules=None,
        domain_knowledge=[],
        output_format="Answer in one sentence.\n",
    )

    assert prompt.text == (
        "# Identity\nYou are Acme's planner.\n\n"
        "# Safety\nNever delete data.\n\n"
        "# Output Format\nAnswer in one sentence.\n\n"
        "# Examples\nUser: hi\nAgent: hello"
    )
    assert prompt.cache_key == hashlib.sha256(prompt.text.encode()).hexdigest()
    assert str(prompt) == prompt.text


def test_every_section_has_its_heading() -> None:
    prompt = layered_prompt(
        identity="i",
        communication="c",
        operational_rules="o",
        tools="t",
        domain_knowledge="d",
        safety="s",
        output_format="f",
        examples="e",
    )

    headings = [line for line in prompt.text.splitlines() if line.startswith("# ")]
    assert headings == [
        "# Identity",
        "# Communication",
        "# Operational Rules",
        "# Tools",
        "# Domain Knowledge",
        "# Safety",
        "# Output Format",
        "# Examples",
    ]


class Warehouse(pydantic.BaseModel):
    name: str
    capacity: int


def test_structured_values_are_sorted_indented_json() -> None:
    prompt = layered_prompt(
        identity="You plan.",
        domain_knowledge={"warehouses": [Warehouse(name="north", capacity=3)], "currency": "EUR"},
        operational_rules=["Check stock first.", "Ask before ordering."],
    )

    assert prompt.text == (
        "# Identity\nYou plan.\n\n"
        '# Operational Rules\n[\n  "Check stock first.",\n  "Ask before ordering."\n]\n\n'
        "# Domain Knowledge\n"
        '{\n  "currency": "EUR",\n  "warehouses": [\n    {\n      "capacity": 3,\n'
        '      "name": "north"\n    }\n  ]\n}'
    )


def test_equal_inputs_give_equal_cache_keys() -> None:
    one = layered_prompt(identity="x", domain_knowledge={"b": 1, "a": 2})
    two = layered_prompt(identity="x", domain_knowledge={"a": 2, "b": 1})

    assert one == two
    assert one.cache_key == two.cache_key
    assert one.cache_key != layered_prompt(identity="y").cache_key


def test_tools_become_a_name_sorted_table() -> None:
    prompt = layered_prompt(
        identity="You pay.",
        tools=[PAY, LOOKUP, {"name": "audit", "description": "Log it.", "approval": "always"}],
    )

    assert prompt.text == (
        "# Identity\nYou pay.\n\n"
        "# Tools\n"
        "| tool | description | approval |\n"
        "| --- | --- | --- |\n"
        "| audit | Log it. | always |\n"
        "| lookup | Find a product by SKU. | default |\n"
        "| pay | Pay \\| refund money. | dynamic |"
    )


@pytest.mark.parametrize("identity", [None, "", "  \n"])
def test_identity_is_required(identity: Any) -> None:
    with pytest.raises(SpecError, match="layered_prompt: identity must not be empty"):
        layered_prompt(identity=identity, safety="s")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"safety": object()}, "safety must be a string or JSON-like data"),
        ({"tools": LOOKUP}, "tools must be a list of ToolDefinitions"),
        ({"tools": [42]}, "expected a ToolDefinition or a mapping with a 'name'"),
    ],
)
def test_bad_section_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        layered_prompt(identity="i", **kwargs)


def test_layered_prompts_are_frozen() -> None:
    prompt = layered_prompt(identity="i")

    with pytest.raises(AttributeError):
        prompt.text = "other"  # type: ignore[misc]


# --- agents' tool tables --------------------------------------------------------------------


ROWS = [LOOKUP, {"name": "getPlan", "description": "Read a plan.", "approval": "never"}]
TABLE = (
    "| tool | description | approval |\n"
    "| --- | --- | --- |\n"
    "| getPlan | Read a plan. | never |\n"
    "| lookup | Find a product by SKU. | always |"
)


def test_a_layered_prompt_gets_the_table_at_its_place() -> None:
    prompt = layered_prompt(identity="i", operational_rules="o", safety="s")

    text = render_agent_prompt(prompt, ROWS, {"lookup": "always"})

    assert text == f"# Identity\ni\n\n# Operational Rules\no\n\n# Tools\n{TABLE}\n\n# Safety\ns"


def test_a_layered_prompts_own_tools_section_is_replaced() -> None:
    prompt = layered_prompt(identity="i", tools="whatever the author wrote", safety="s")

    text = render_agent_prompt(prompt, ROWS, {"lookup": "always"})

    assert text == f"# Identity\ni\n\n# Tools\n{TABLE}\n\n# Safety\ns"
    assert render_agent_prompt(prompt, []) == "# Identity\ni\n\n# Safety\ns"


def test_a_string_prompt_gets_the_table_appended() -> None:
    assert render_agent_prompt("Route work.\n", ROWS, {"lookup": "always"}) == (
        f"Route work.\n\n# Tools\n{TABLE}"
    )
    assert render_agent_prompt("Route work.", []) == "Route work."


def test_a_string_prompts_tools_section_is_replaced() -> None:
    prompt = "# Role\nRoute.\n\n# Tools\nold table\n\n# Style\nBe brief."

    assert render_agent_prompt(prompt, ROWS, {"lookup": "always"}) == (
        f"# Role\nRoute.\n\n# Tools\n{TABLE}\n\n# Style\nBe brief."
    )
    assert render_agent_prompt(prompt, []) == "# Role\nRoute.\n\n# Style\nBe brief."


def test_a_prompt_built_by_hand_is_treated_as_text() -> None:
    text = "# Identity\ni"
    bare = LayeredPrompt(text=text, cache_key=hashlib.sha256(text.encode()).hexdigest())

    assert render_agent_prompt(bare, ROWS, {"lookup": "always"}) == f"{text}\n\n# Tools\n{TABLE}"


def test_tool_table_shows_predicates_as_dynamic() -> None:
    assert tool_table([LOOKUP], {"lookup": over_100}).endswith("| dynamic |")
    assert tool_table([]) == ""
    assert tool_table(None) == ""
