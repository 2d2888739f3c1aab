"""Approval rules: policies, patches, overrides, their JSON, predicate ids and precedence."""

from __future__ import annotations

from typing import Any

import pytest

from flowai_harness.approvals import (
    ApprovalOverrides,
    ApprovalPatch,
    ApprovalPolicies,
    DynamicRule,
    PredicateRegistry,
    RequireApprovers,
    as_patch,
    check_rule,
    describe_rule,
    predicate_id,
    rule_from_json,
    rule_json,
)
from flowai_harness.errors import SpecError
from flowai_harness.plans import define_plan
from flowai_harness.specs import RuntimeSpec, define_executor, define_runtime, define_specialist
from flowai_harness.tools import define_tool


def over_100(args: Any, ctx: Any) -> bool:
    return bool(args["amount"] > 100)


def other_predicate(args: Any, ctx: Any) -> bool:
    return True


# --- rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["never", "always", over_100, lambda args, ctx: False])
def test_rules(rule: Any) -> None:
    assert check_rule(rule, "x") is rule


@pytest.mark.parametrize("rule", ["sometimes", "", None, 1, True, str, ["always"]])
def test_other_values_are_not_rules(rule: Any) -> None:
    with pytest.raises(SpecError, match=r"^\[SPEC_INVALID\] where: an approval rule must be"):
        check_rule(rule, "where")


def test_default_is_only_for_patches() -> None:
    assert check_rule("default", "x", allow_default=True) == "default"
    with pytest.raises(SpecError, match="'default' is for agents"):
        check_rule("default", "x")


def test_rule_json_and_description() -> None:
    assert rule_json("never", "p") == "never"
    assert rule_json("default", "p") == "default"
    assert rule_json(over_100, "tool:pay") == {"predicate": "tool:pay"}
    assert [describe_rule(r) for r in ("never", "always", "default", over_100)] == [
        "never",
        "always",
        "default",
        "dynamic",
    ]


# --- the two-person rule ---------------------------------------------------------------------


TWO = RequireApprovers(2)


@pytest.mark.parametrize(
    ("rule", "expected", "json"),
    [
        (TWO, TWO, {"approvers": 2}),
        (RequireApprovers(5), RequireApprovers(5), {"approvers": 5}),
        ({"kind": "always", "approvers_required": 3}, RequireApprovers(3), {"approvers": 3}),
        # A quorum of one is "always": one spelling per meaning reaches the engine.
        (RequireApprovers(1), "always", "always"),
        ({"kind": "always", "approvers_required": 1}, "always", "always"),
    ],
)
def test_a_quorum_rule_and_its_dict_form(rule: Any, expected: Any, json: Any) -> None:
    checked = check_rule(rule, "here")

    assert checked == expected
    assert rule_json(checked, "unused") == json
    assert check_rule(rule, "here", allow_default=True) == expected


def test_a_quorum_rule_describes_itself_and_is_no_predicate() -> None:
    assert describe_rule(TWO) == "always (2 approvers)"
    patch = ApprovalPatch(plans=TWO)
    assert patch.predicates("agent:a") == {}
    assert ApprovalPolicies(tools=TWO).predicates() == {}
    assert hash(TWO) == hash(RequireApprovers(2))


@pytest.mark.parametrize("n", [0, -2, True, 2.0, "2", None])
def test_a_quorum_needs_a_whole_number_of_approvers(n: Any) -> None:
    with pytest.raises(SpecError, match=r"whole number of approvers >= 1.*got"):
        RequireApprovers(n)


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        ({"kind": "never", "approvers_required": 2}, "approvers_required goes with kind 'always'"),
        (
            {"kind": "dynamic", "value": "x", "approvers_required": 2},
            "approvers_required goes with kind 'always'",
        ),
        ({"approvers_required": 2}, "approvers_required goes with kind 'always'"),
        (
            {"kind": "always", "approvers_required": 0},
            r"here: approvers_required: RequireApprovers needs a whole number",
        ),
        ({"kind": "always", "approvers_required": "two"}, "got 'two'"),
        ({"kind": "always", "approvers": 2}, "an approval rule must be"),
    ],
)
def test_bad_quorum_dicts_say_what_to_write(rule: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        check_rule(rule, "here")


def test_a_quorum_rule_goes_wherever_a_rule_goes() -> None:
    dict_form = {"kind": "always", "approvers_required": 2}
    patch = as_patch({"plans": dict_form, "tools": "never"}, "agent 'a'")
    overrides = ApprovalOverrides(
        agents={"a": {"tools": TWO}},
        tools={"pay": dict_form, "b": {"refund": RequireApprovers(3)}},
    )

    assert patch == ApprovalPatch(plans=TWO, tools="never")
    assert patch.to_json("agent:a") == {"plans": {"approvers": 2}, "tools": "never"}
    assert as_patch(TWO, "x") == ApprovalPatch(plans=TWO, tools=TWO)
    assert ApprovalPolicies(plans=TWO).to_json() == {"plans": {"approvers": 2}, "tools": "never"}
    assert overrides.to_json() == {
        "agents": {"a": {"plans": "default", "tools": {"approvers": 2}}},
        "tools": {"pay": {"approvers": 2}},
        "agent_tools": {"b": {"refund": {"approvers": 3}}},
    }
    # Precedence is unchanged: the most specific level wins, whatever its rule.
    assert tool_rule(policy=TWO) == TWO
    assert tool_rule(tool=TWO, agent_tool="never") == "never"
    assert tool_rule(agent_tool="never", override_tool=RequireApprovers(3)) == RequireApprovers(3)


def test_predicate_ids_join_where_they_were_declared() -> None:
    assert predicate_id("policy", "tools") == "policy:tools"
    assert predicate_id("agent", "executor", "tool", "pay") == "agent:executor:tool:pay"


# --- policies, patches, overrides -----------------------------------------------------------


def test_policies_default_to_plans_always_tools_never() -> None:
    policies = ApprovalPolicies()

    assert (policies.plans, policies.tools) == ("always", "never")
    assert policies.to_json() == {"plans": "always", "tools": "never"}
    assert policies.predicates() == {}


def test_policy_predicates_get_policy_ids() -> None:
    policies = ApprovalPolicies(tools=over_100)

    assert policies.to_json() == {"plans": "always", "tools": {"predicate": "policy:tools"}}
    assert policies.predicates() == {"policy:tools": over_100}


def test_policies_reject_default_and_junk() -> None:
    with pytest.raises(SpecError, match="approval policy plans"):
        ApprovalPolicies(plans="default")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="approval policy tools"):
        ApprovalPolicies(tools="maybe")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("default", ApprovalPatch()),
        ("always", ApprovalPatch(plans="always", tools="always")),
        ({"tools": "never"}, ApprovalPatch(tools="never")),
        ({"plans": "never", "tools": over_100}, ApprovalPatch(plans="never", tools=over_100)),
        (ApprovalPatch(plans="never"), ApprovalPatch(plans="never")),
    ],
)
def test_patch_forms(value: Any, expected: ApprovalPatch) -> None:
    assert as_patch(value, "agent 'a': approval") == expected


def test_patch_json_and_predicates() -> None:
    patch = as_patch({"plans": over_100}, "x")

    assert patch.to_json("agent:planner") == {
        "plans": {"predicate": "agent:planner:plans"},
        "tools": "default",
    }
    assert patch.predicates("agent:planner") == {"agent:planner:plans": over_100}
    assert not patch.is_default
    assert ApprovalPatch().is_default


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"plan": "always"}, "unknown approval channel 'plan'"),
        ({"tools": "maybe"}, "agent 'a' tools: an approval rule"),
        ("maybe", "agent 'a': an approval rule must be 'default', 'never', 'always'"),
    ],
)
def test_bad_patches(value: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        as_patch(value, "agent 'a'")


def test_overrides_json_matches_the_wire_doc() -> None:
    overrides = ApprovalOverrides(
        agents={"executor": {"tools": "always"}}, tools={"delete_rows": "always"}
    )

    assert overrides.to_json() == {
        "agents": {"executor": {"plans": "default", "tools": "always"}},
        "tools": {"delete_rows": "always"},
    }
    assert overrides.predicates() == {}
    assert not overrides.is_empty
    assert ApprovalOverrides().is_empty


def test_overrides_take_the_seeds_per_agent_tool_form() -> None:
    overrides = ApprovalOverrides(
        tools={"executor": {"pay": "always", "refund": over_100}, "delete_rows": "never"}
    )

    assert dict(overrides.tools) == {"delete_rows": "never"}
    assert {agent: dict(rules) for agent, rules in overrides.agent_tools.items()} == {
        "executor": {"pay": "always", "refund": over_100}
    }
    assert overrides.to_json()["agent_tools"] == {
        "executor": {
            "pay": "always",
            "refund": {"predicate": "override:agent:executor:tool:refund"},
        }
    }
    assert overrides.predicates() == {"override:agent:executor:tool:refund": over_100}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"kind": "dynamic", "value": "big_refund"}, DynamicRule("big_refund")),
        ({"kind": "always"}, "always"),
        ({"kind": "never"}, "never"),
    ],
)
def test_the_seeds_dict_rules_are_rules(rule: Any, expected: Any) -> None:
    assert check_rule(rule, "here") == expected
    assert rule_json(check_rule(rule, "here"), "unused") == (
        {"predicate": "big_refund"} if isinstance(expected, DynamicRule) else expected
    )


@pytest.mark.parametrize(
    "rule", [{"kind": "dynamic"}, {"kind": "dynamic", "value": ""}, {"kind": "sometimes"}]
)
def test_bad_dict_rules_say_what_a_rule_is(rule: Any) -> None:
    with pytest.raises(SpecError, match=r"approval rule|predicate id"):
        check_rule(rule, "here")


def test_override_predicates_get_override_ids() -> None:
    overrides = ApprovalOverrides(agents={"planner": over_100}, tools={"pay": other_predicate})

    assert overrides.to_json() == {
        "agents": {
            "planner": {
                "plans": {"predicate": "override:agent:planner:plans"},
                "tools": {"predicate": "override:agent:planner:tools"},
            }
        },
        "tools": {"pay": {"predicate": "override:tool:pay"}},
    }
    assert overrides.predicates() == {
        "override:agent:planner:plans": over_100,
        "override:agent:planner:tools": over_100,
        "override:tool:pay": other_predicate,
    }


def test_overrides_are_frozen_and_compare_by_value() -> None:
    overrides = ApprovalOverrides(tools={"pay": "always"})

    with pytest.raises(AttributeError, match="frozen"):
        overrides.tools = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        overrides.tools["pay"] = "never"  # type: ignore[index]
    assert overrides == ApprovalOverrides(tools={"pay": "always"})
    assert overrides != ApprovalOverrides(tools={"pay": "never"})
    assert "pay" in repr(overrides)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agents": ["executor"]}, "agents must be a mapping"),
        ({"tools": {"": "always"}}, "name '' must be a non-empty string"),
        ({"tools": {"pay": "default"}}, "approval override of tool 'pay'"),
        ({"agents": {"x": {"tool": "always"}}}, "unknown approval channel 'tool'"),
    ],
)
def test_bad_overrides(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        ApprovalOverrides(**kwargs)


# --- precedence -----------------------------------------------------------------------------


def engine_rule(spec: RuntimeSpec, tool: str) -> Any:
    """The rule the engine reports for agent ``a``'s calls of ``tool``, a predicate as the
    function the spec declared for it."""
    (reported,) = [t for t in spec.compiled_agents()["a"]["tools"] if t["name"] == tool]
    rule = rule_from_json(reported["approval"])
    return spec.predicates[rule.id] if isinstance(rule, DynamicRule) else rule


def runtime_of(
    *,
    policies: ApprovalPolicies,
    agent: Any,
    tool: Any = "default",
    agent_tool: Any = None,
    overrides: ApprovalOverrides,
) -> RuntimeSpec:
    """A runtime whose executor ``a`` calls tool ``t`` under the given levels (and whose
    specialist ``b`` calls tool ``u``)."""
    return define_runtime(
        ("acme", "v1"),
        agents=[
            define_executor(
                "a",
                model="claude-sonnet-4-6",
                prompt="p",
                plan=define_plan(
                    "reorder",
                    {"type": "object", "properties": {"actions": {"type": "array"}}},
                ),
                tools=[define_tool("t", {"amount": int}, approval=tool)],
                approval=agent,
                tool_approvals=None if agent_tool is None else {"t": agent_tool},
            ),
            # Another agent and tool, for overrides that name them.
            define_specialist(
                "b", model="claude-sonnet-4-6", prompt="p", tools=[define_tool("u", {})]
            ),
        ],
        providers={"anthropic": {}},
        approval_policies=policies,
        approval_overrides=overrides,
    )


def tool_rule(
    *,
    policy: Any = "never",
    agent: Any = "default",
    tool: Any = "default",
    agent_tool: Any = None,
    override_agent: Any = None,
    override_tool: Any = None,
) -> Any:
    overrides = ApprovalOverrides(
        agents={} if override_agent is None else {"a": {"tools": override_agent}},
        tools={} if override_tool is None else {"t": override_tool},
    )
    spec = runtime_of(
        policies=ApprovalPolicies(tools=policy),
        agent={"tools": agent},
        tool=tool,
        agent_tool=agent_tool,
        overrides=overrides,
    )
    return engine_rule(spec, "t")


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ({}, "never"),
        ({"policy": "always"}, "always"),
        ({"policy": "always", "agent": "never"}, "never"),
        ({"agent": "always", "tool": "never"}, "never"),
        ({"agent": "always", "tool": "default"}, "always"),
        ({"tool": "always", "agent_tool": "never"}, "never"),
        ({"agent_tool": "never", "override_agent": "always"}, "always"),
        ({"override_agent": "always", "override_tool": "never"}, "never"),
        ({"override_agent": "default", "agent_tool": "always"}, "always"),
        ({"policy": "always", "tool": over_100}, over_100),
    ],
)
def test_the_most_specific_tool_level_wins(levels: dict[str, Any], expected: Any) -> None:
    assert tool_rule(**levels) == expected


def test_an_override_for_another_agent_or_tool_does_not_apply() -> None:
    overrides = ApprovalOverrides(agents={"b": "always"}, tools={"u": "always"})

    rule = engine_rule(
        runtime_of(policies=ApprovalPolicies(), agent=ApprovalPatch(), overrides=overrides), "t"
    )

    assert rule == "never"


@pytest.mark.parametrize(
    ("policy", "agent", "override", "expected"),
    [
        ("always", "default", None, "always"),
        ("always", "never", None, "never"),
        ("never", "always", None, "always"),
        ("never", "always", "never", "never"),
        ("always", "never", "default", "never"),
    ],
)
def test_the_most_specific_plan_level_wins(
    policy: Any, agent: Any, override: Any, expected: str
) -> None:
    overrides = ApprovalOverrides(agents={} if override is None else {"a": {"plans": override}})

    rule = engine_rule(
        runtime_of(
            policies=ApprovalPolicies(plans=policy),
            agent=as_patch({"plans": agent}, "a"),
            overrides=overrides,
        ),
        "executePlan",
    )

    assert rule == expected


# --- predicates -----------------------------------------------------------------------------


def test_registry_evaluates_by_id() -> None:
    registry = PredicateRegistry({"tool:pay": over_100})

    assert registry.evaluate("tool:pay", {"amount": 500}, {}) is True
    assert registry.evaluate("tool:pay", {"amount": 5}, {}) is False
    assert "tool:pay" in registry
    assert len(registry) == 1
    assert registry.ids() == ["tool:pay"]
    assert registry["tool:pay"] is over_100


def test_registry_passes_args_and_ctx() -> None:
    seen: list[Any] = []

    def record(args: Any, ctx: Any) -> bool:
        seen.append((args, ctx))
        return False

    PredicateRegistry({"p": record}).evaluate("p", {"a": 1}, {"agent": "x"})

    assert seen == [({"a": 1}, {"agent": "x"})]


def boom(args: Any, ctx: Any) -> bool:
    raise KeyError("amount")


def not_a_bool(args: Any, ctx: Any) -> Any:
    return None


@pytest.mark.parametrize("predicate", [boom, not_a_bool])
def test_a_failing_or_vague_predicate_requires_approval(predicate: Any) -> None:
    assert PredicateRegistry({"p": predicate}).evaluate("p", {}, {}) is True


def test_an_unknown_id_requires_approval() -> None:
    assert PredicateRegistry().evaluate("tool:gone", {}, {}) is True


async def async_no(args: Any, ctx: Any) -> bool:
    return False


def test_an_async_predicate_called_synchronously_requires_approval() -> None:
    # Its coroutine is closed, so no "never awaited" warning (warnings are errors here).
    assert PredicateRegistry({"p": async_no}).evaluate("p", {}, {}) is True


async def test_aevaluate_awaits_async_predicates() -> None:
    registry = PredicateRegistry({"a": async_no, "s": over_100, "x": boom})

    assert await registry.aevaluate("a", {}, {}) is False
    assert await registry.aevaluate("s", {"amount": 101}, {}) is True
    assert await registry.aevaluate("x", {}, {}) is True
    assert await registry.aevaluate("missing", {}, {}) is True


def test_an_id_is_bound_to_one_function() -> None:
    registry = PredicateRegistry({"p": over_100})
    registry.register("p", over_100)  # the same function again is fine

    with pytest.raises(SpecError, match="'p' is declared twice with different functions"):
        registry.register("p", other_predicate)
    with pytest.raises(SpecError, match="must be a function"):
        registry.register("q", "always")  # type: ignore[arg-type]
