"""Projecting a run's seed-shaped events into eval inputs (flowai_harness.evals.projection).

The event lists here are written by hand in the shapes of SEED-REFERENCE.md §2, the shapes
the runtime is moving to; :func:`coordinator_run` is also the run the runner tests replay.
"""

from __future__ import annotations

from typing import Any

from flowai_harness.evals import (
    SampleLatency,
    TokenUsageSummary,
    define_expected_action,
    define_expected_actions,
    define_test_case,
    define_trajectory_scorer_config,
    project_run,
    sample_output_from_events,
    score_sample,
)

PRICE_CHANGE = {"productId": "p-001", "newPrice": 6.49, "reason": "match competitor"}


def usage(
    prompt: int, completion: int, cache_read: int = 0, cache_write: int = 0
) -> dict[str, int]:
    return {
        "promptTokens": prompt,
        "completionTokens": completion,
        "totalTokens": prompt + completion,
        "cacheReadInputTokens": cache_read,
        "cacheCreationInputTokens": cache_write,
    }


def coordinator_run(reply: str = "Done: p-001 now costs 6.49.") -> list[dict[str, Any]]:
    """A coordinator routing to a planner (storePlan) and an executor (executePlan), as the
    seed streams it: the entry agent wrapped in a tool-agent pair, each sub-agent too."""
    store_args = {
        "specName": "CatalogActionPlan",
        "planId": "plan-1",
        "body": {
            "rationale": "competitor price",
            "actions": [{"kind": "price_change", **PRICE_CHANGE, "references": []}],
        },
    }
    executed = {"type": "price_change", "payload": PRICE_CHANGE}
    return [
        {"type": "tool-agent", "agentName": "coordinator", "toolInvocationId": "a-root",
         "state": "call"},
        {"type": "step-start"},
        {"type": "text", "text": "Planning the change. "},
        {"type": "tool-invocation", "toolInvocationId": "t-1", "toolName": "call_agent",
         "args": {"agent": "planner", "prompt": "plan it"}, "state": "call"},
        {"type": "tool-agent", "agentName": "planner", "toolInvocationId": "a-planner",
         "state": "call"},
        {"type": "text", "text": "(the planner thinks aloud)"},
        # The same tool id inside another agent frame is another call.
        {"type": "tool-invocation", "toolInvocationId": "t-1", "toolName": "storePlan",
         "args": store_args, "state": "call"},
        {"type": "tool-invocation", "toolInvocationId": "t-1", "toolName": "storePlan",
         "args": store_args, "state": "result", "result": {"planId": "plan-1"}},
        {"type": "data-cost-summary", "data": {
            "agents": [{"agentName": "planner", "model": "claude-opus-4-8", "usage": usage(1, 1)}],
            "totalPromptTokens": 1, "totalCompletionTokens": 1,
            "totalCacheReadInputTokens": 0, "totalCacheCreationInputTokens": 0,
            "totalTokens": 2}},
        {"type": "finish", "finishReason": "stop", "usage": usage(1, 1)},
        {"type": "tool-agent", "agentName": "planner", "toolInvocationId": "a-planner",
         "state": "result"},
        {"type": "tool-invocation", "toolInvocationId": "t-1", "toolName": "call_agent",
         "args": {"agent": "planner"}, "state": "result", "result": "plan-1 stored"},
        {"type": "tool-invocation", "toolInvocationId": "t-2", "toolName": "call_agent",
         "args": {"agent": "executor", "prompt": "run plan-1"}, "state": "call"},
        {"type": "tool-agent", "agentName": "executor", "toolInvocationId": "a-executor",
         "state": "call"},
        {"type": "tool-invocation", "toolInvocationId": "e-1", "toolName": "executePlan",
         "args": {"planId": "plan-1"}, "state": "call"},
        {"type": "plan-status-change", "data": {"planId": "plan-1", "from": "draft",
                                                "to": "approved"}},
        {"type": "tool-invocation", "toolInvocationId": "e-1", "toolName": "executePlan",
         "args": {"planId": "plan-1"}, "state": "result",
         "result": {"entitiesAffected": 1, "summary": "1 price changed",
                    "details": {"resolvedActions": [executed]}}},
        {"type": "tool-agent", "agentName": "executor", "toolInvocationId": "a-executor",
         "state": "result"},
        {"type": "tool-invocation", "toolInvocationId": "t-2", "toolName": "call_agent",
         "args": {"agent": "executor"}, "state": "result", "result": "executed"},
        {"type": "text", "text": reply},
        {"type": "data-latency-summary", "data": {
            "totalDurationMs": 1200,
            "phases": {"llmCalls": 3, "llmTimeMs": 900, "subAgentTimeMs": 500,
                       "toolTimeMs": 150},
            "toolTimings": [], "retryCount": 0, "hadTimeout": False, "ttftMs": 210}},
        {"type": "finish", "finishReason": "stop", "usage": usage(50, 25)},
        {"type": "data-cost-summary", "data": {
            "agents": [
                {"agentName": "coordinator", "model": "claude-sonnet-4-6",
                 "usage": usage(300, 60, 40, 10)},
                {"agentName": "planner", "model": "claude-opus-4-8", "usage": usage(200, 40)},
                {"agentName": "executor", "model": "claude-haiku-4-5", "usage": usage(100, 20)},
            ],
            "totalPromptTokens": 600, "totalCompletionTokens": 120,
            "totalCacheReadInputTokens": 40, "totalCacheCreationInputTokens": 10,
            "totalTokens": 770}},
        {"type": "tool-agent", "agentName": "coordinator", "toolInvocationId": "a-root",
         "state": "result"},
    ]  # fmt: skip


def test_trajectory_is_every_tool_call_and_the_events_keep_agents_and_depth() -> None:
    output = sample_output_from_events(coordinator_run())

    assert output.actual_trajectory == ["call_agent", "storePlan", "call_agent", "executePlan"]
    assert output.extra["trajectoryEvents"] == [
        {"kind": "agent", "name": "coordinator", "invocationId": "a-root", "depth": 1},
        {"kind": "tool", "name": "call_agent", "invocationId": "t-1", "depth": 1,
         "agent": "coordinator"},
        {"kind": "agent", "name": "planner", "invocationId": "a-planner", "depth": 2,
         "agent": "coordinator"},
        {"kind": "tool", "name": "storePlan", "invocationId": "t-1", "depth": 2,
         "agent": "planner"},
        {"kind": "tool", "name": "call_agent", "invocationId": "t-2", "depth": 1,
         "agent": "coordinator"},
        {"kind": "agent", "name": "executor", "invocationId": "a-executor", "depth": 2,
         "agent": "coordinator"},
        {"kind": "tool", "name": "executePlan", "invocationId": "e-1", "depth": 2,
         "agent": "executor"},
    ]  # fmt: skip


def test_planned_actions_come_from_store_plan_args_and_resolved_from_execute_plan() -> None:
    output = sample_output_from_events(coordinator_run())

    # `kind` becomes the type; `references` is not payload.
    assert output.extra["plannedActions"] == [{"type": "price_change", "payload": PRICE_CHANGE}]
    assert output.extra["resolvedActions"] == [{"type": "price_change", "payload": PRICE_CHANGE}]


def test_a_plan_with_another_discriminator_is_read_by_that_field() -> None:
    events = [
        {"type": "tool-invocation", "toolInvocationId": "s", "toolName": "storePlan",
         "state": "call",
         "args": {"planId": "p", "body": {"actions": [{"op": "hold", "units": 3}]}}},
    ]  # fmt: skip

    assert sample_output_from_events(events).extra["plannedActions"] == []
    assert sample_output_from_events(events, plan_discriminator="op").extra["plannedActions"] == [
        {"type": "hold", "payload": {"units": 3}}
    ]


def test_the_last_store_plan_and_execute_plan_win() -> None:
    def store(call_id: str, kind: str) -> dict[str, Any]:
        body = {"actions": [{"kind": kind}]}
        return {"type": "tool-invocation", "toolInvocationId": call_id, "toolName": "storePlan",
                "state": "call", "args": {"planId": "p", "body": body}}  # fmt: skip

    events = [store("s1", "first"), store("s2", "second")]

    assert sample_output_from_events(events).extra["plannedActions"] == [
        {"type": "second", "payload": {}}
    ]


def test_response_text_is_the_entry_agents_text_only() -> None:
    output = sample_output_from_events(coordinator_run(reply="All done."))

    assert output.response_text == "Planning the change. All done."


def test_usage_latency_and_invocations_come_from_the_entry_agents_summaries() -> None:
    projection = project_run(
        coordinator_run(), provider_for=lambda agent, model: "anthropic" if agent else None
    )

    assert projection.token_usage == TokenUsageSummary(
        input_tokens=600, output_tokens=120, cached_tokens=40, cache_creation_tokens=10
    )
    assert projection.latency == SampleLatency(
        total_ms=1200, first_token_ms=210, model_ms=900, tool_ms=150
    )
    assert [(inv.agent, inv.model, inv.input_tokens, inv.output_tokens, inv.cached_tokens,
             inv.cache_creation_tokens, inv.provider)
            for inv in projection.model_invocations] == [
        ("coordinator", "claude-sonnet-4-6", 300, 60, 40, 10, "anthropic"),
        ("planner", "claude-opus-4-8", 200, 40, 0, 0, "anthropic"),
        ("executor", "claude-haiku-4-5", 100, 20, 0, 0, "anthropic"),
    ]  # fmt: skip
    assert projection.error is None


def test_without_a_cost_summary_tokens_come_from_the_entry_finish() -> None:
    events = [
        {"type": "tool-agent", "agentName": "hello", "toolInvocationId": "a", "state": "call"},
        {"type": "step-start"},
        {"type": "text", "text": "Received: hi"},
        {"type": "text", "text": "mocked"},
        {"type": "finish", "finishReason": "stop", "usage": usage(50, 25, 5, 1)},
        {"type": "tool-agent", "agentName": "hello", "toolInvocationId": "a", "state": "result"},
    ]

    projection = project_run(events)

    assert projection.token_usage == TokenUsageSummary(
        input_tokens=50, output_tokens=25, cached_tokens=5, cache_creation_tokens=1
    )
    assert projection.model_invocations == []
    assert projection.latency is None
    assert projection.output.response_text == "Received: himocked"
    assert projection.output.extra == {
        "trajectoryEvents": [{"kind": "agent", "name": "hello", "invocationId": "a", "depth": 1}]
    }


def test_a_stream_without_an_entry_wrapper_and_an_error() -> None:
    events = [
        {"type": "step-start"},
        {"type": "text", "text": "partial"},
        {"type": "tool-invocation", "toolInvocationId": "1", "toolName": "lookup",
         "args": {}, "state": "call"},
        {"type": "error", "error": {"message": "provider overloaded", "code": "overloaded"}},
    ]  # fmt: skip

    projection = project_run(events)

    assert projection.error == "provider overloaded"
    assert projection.output.response_text == "partial"
    assert projection.output.actual_trajectory == ["lookup"]
    assert projection.output.extra["trajectoryEvents"][0]["depth"] == 0


def test_no_events_project_to_an_empty_sample() -> None:
    projection = project_run([])

    assert projection.output.actual_trajectory == []
    assert projection.output.response_text is None
    assert projection.output.extra == {}
    assert projection.token_usage == TokenUsageSummary()


def test_the_projection_scores_with_and_without_sub_agent_tools() -> None:
    case = define_test_case(
        "price-change",
        "Set p-001 to 6.49",
        expected_trajectory=["storePlan", "executePlan"],
        trajectory_mode="subsequence",
        expected_actions=define_expected_actions(
            planned_actions=[define_expected_action("price_change", PRICE_CHANGE)],
            executed_actions=[define_expected_action("price_change", PRICE_CHANGE)],
        ),
    )
    output = sample_output_from_events(coordinator_run())

    nested = score_sample(
        case,
        output,
        scorer_config=define_trajectory_scorer_config(
            include_sub_agents=True, ignore_tools=["call_agent"]
        ),
    )
    top_level = score_sample(case, output)

    assert nested.aggregate == 1.0
    trajectory = top_level.component_scores[0]
    assert trajectory.score == 0.0
    assert trajectory.details is not None
    assert trajectory.details["actual"] == ["call_agent", "call_agent"]
    assert trajectory.details["projection"]["observedTrajectory"] == output.actual_trajectory
    # Sequential defaults: trajectory 0.5, planned 0.25, executed 0.25.
    assert top_level.aggregate == 0.5
