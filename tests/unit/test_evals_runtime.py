"""Evals on the embedded runtime: ``Runtime.run_eval`` / ``Runtime.stream_eval``.

Every sample is a real scripted run on a fresh thread (tools, plans, approval gates and the
dispatcher all run); what is under test is the wiring: modes, the eval approval policy,
cancellation by the stream, concurrency and the per-sample timeout. Waits are on events,
each with a deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

from flowai_harness import (
    RequireApprovers,
    Runtime,
    RuntimeSpec,
    create_runtime,
    define_coordinator,
    define_executor,
    define_plan,
    define_planner,
    define_runtime,
    define_specialist,
    define_tool,
)
from flowai_harness.errors import EvalError
from flowai_harness.evals import (
    EvalArtifact,
    EvalTestCase,
    define_eval_config,
    define_eval_request,
    define_expected_action,
    define_expected_actions,
    define_final_response_eval,
    define_test_case,
    define_trajectory_scorer_config,
    run_eval_sync,
)
from flowai_harness.evals.models import ResponseScorer

WAIT = 10  # seconds any awaited condition may take before the test fails

Event = dict[str, Any]


class PriceChange(pydantic.BaseModel):
    kind: str = "price_change"
    sku: str
    price: float


class PricePlan(pydantic.BaseModel):
    actions: list[PriceChange]


PRICES = define_plan("prices", PricePlan)


class Shop:
    """Tool handlers and a dispatcher that tests can hold and watch."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.started: asyncio.Queue[int] = asyncio.Queue()
        self.release: asyncio.Queue[None] = asyncio.Queue()
        self.hold = False
        self.dispatched: list[list[dict[str, Any]]] = []
        self.flips = 0

    def flip(self, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        self.flips += 1
        return {"heads": self.flips % 2 == 1}

    async def slow(self, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.started.put_nowait(args["n"])
            if self.hold:
                await self.release.get()
            return {"n": args["n"]}
        finally:
            self.in_flight -= 1

    def dispatch(self, actions: list[dict[str, Any]], ctx: Any) -> dict[str, Any]:
        self.dispatched.append(actions)
        return {"entitiesAffected": len(actions), "summary": "repriced"}


def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


def pay(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"paid": args["amount"]}


def make_spec() -> RuntimeSpec:
    return define_runtime(
        ("acme", "v1"),
        agents=[
            define_coordinator(
                "boss",
                model="claude-sonnet-4-6",
                prompt="Route work.",
                routes=["calculator", "planner", "executor", "clerk"],
            ),
            define_specialist(
                "calculator",
                model="claude-haiku-4-5",
                prompt="Add numbers.",
                tools=[
                    define_tool("add", {"a": int, "b": int}, description="Add.").bind(add),
                    define_tool("slow", {"n": int}, description="Wait."),
                    define_tool("flip", {}, description="Flip a coin."),
                ],
            ),
            define_specialist(
                "clerk",
                model="claude-haiku-4-5",
                prompt="Pay.",
                tools=[
                    define_tool(
                        "pay", {"amount": int}, description="Pay.", approval=RequireApprovers(2)
                    ).bind(pay)
                ],
            ),
            define_planner("planner", model="claude-sonnet-4-6", prompt="Plan.", plan=PRICES),
            define_executor("executor", model="claude-haiku-4-5", prompt="Run.", plan=PRICES),
        ],
        providers={"anthropic": {}},
    )


@pytest.fixture
def shop() -> Shop:
    return Shop()


@pytest.fixture
def runtime(open_runtime: Callable[..., Runtime], shop: Shop) -> Runtime:
    return open_runtime(
        make_spec(),
        interpreter="scripted",
        tool_bindings={"slow": shop.slow, "flip": shop.flip},
        action_dispatcher=shop.dispatch,
    )


def script(*calls: tuple[str, dict[str, Any]]) -> str:
    return json.dumps({"script": [{"tool": tool, "args": args} for tool, args in calls]})


def ask(agent: str, *calls: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return ("call_agent", {"agent": agent, "prompt": script(*calls)})


PLAN = {
    "specName": "prices",
    "planId": "p1",
    "body": {"actions": [{"kind": "price_change", "sku": "A", "price": 2.5}]},
}
PLANNED = [define_expected_action("price_change", {"sku": "A", "price": 2.5})]


def request(*cases: EvalTestCase, **config: Any) -> Any:
    config.setdefault("samples_per_case", 2)
    config.setdefault("k_values", [1, 2])
    # Sub-agents' tools count: a coordinator's own calls are agent hand-offs, not tools.
    config.setdefault("scorer_config", define_trajectory_scorer_config(include_sub_agents=True))
    return define_eval_request(
        None,
        workspace_id="w",
        tenant_id="acme",
        test_cases=list(cases),
        config=define_eval_config(**config),
    )


def sample_threads(runtime: Runtime, artifact: dict[str, Any]) -> list[str]:
    return sorted(t for t in runtime.thread_ids() if t.startswith(artifact["runId"]))


# --- modes ----------------------------------------------------------------------------------


async def test_sequential_eval_runs_each_sample_through_the_coordinator_on_a_fresh_thread(
    runtime: Runtime,
) -> None:
    case = define_test_case(
        "route",
        script(ask("calculator", ("add", {"a": 2, "b": 3}))),
        expected_trajectory=["add"],
        trajectory_mode="strict",
        final_response=define_final_response_eval(
            scorers=[ResponseScorer.contains(id="sum", text='"sum":5')]
        ),
    )

    raw = await runtime.run_eval(request(case, mode="sequential"))

    artifact = EvalArtifact.model_validate(raw)
    assert artifact.summary.passed == 1
    samples = artifact.test_cases[0].samples
    assert [s.actual_trajectory for s in samples] == [["add"]] * 2
    assert all(s.passed for s in samples)
    threads = sample_threads(runtime, raw)
    assert threads == [f"{raw['runId']}.route.0", f"{raw['runId']}.route.1"]
    for thread_id in threads:
        assert runtime.replay(thread_id).status == "idle"


async def test_specialist_eval_runs_the_target_agent_directly(runtime: Runtime) -> None:
    case = define_test_case("add", script(("add", {"a": 1, "b": 1})), expected_trajectory=["add"])

    raw = await runtime.run_eval(
        request(case, mode="specialist", target_agent_id="calculator", samples_per_case=1)
    )

    sample = raw["testCases"][0]["samples"][0]
    assert sample["actualTrajectory"] == ["add"]
    assert sample["passed"]
    # No coordinator wrapped the run: the first event of its log is the calculator's.
    events = runtime.replay(sample_threads(runtime, raw)[0]).events
    assert events[0]["agent"] == "calculator"


async def test_planner_eval_runs_the_runtimes_planner_and_scores_its_planned_actions(
    runtime: Runtime,
) -> None:
    case = define_test_case(
        "plan",
        script(("storePlan", PLAN)),
        expected_trajectory=["storePlan"],
        trajectory_mode="subsequence",
        expected_actions=define_expected_actions(planned_actions=PLANNED, payload_match="subset"),
    )

    raw = await runtime.run_eval(request(case, mode="planner", samples_per_case=1))

    sample = raw["testCases"][0]["samples"][0]
    assert sample["plannedActions"] == [
        {"type": "price_change", "payload": {"sku": "A", "price": 2.5}}
    ]
    assert {c["scorerName"]: c["score"] for c in sample["componentScores"]}["planned_actions"] == 1
    assert sample["passed"]


async def test_executor_eval_auto_approves_the_plan_gate_by_default(
    runtime: Runtime, shop: Shop
) -> None:
    case = define_test_case(
        "run-plan",
        script(
            ask("planner", ("storePlan", PLAN)), ask("executor", ("executePlan", {"planId": "p1"}))
        ),
        expected_trajectory=["storePlan", "executePlan"],
        trajectory_mode="subsequence",
        expected_actions=define_expected_actions(executed_actions=PLANNED, payload_match="subset"),
    )

    raw = await runtime.run_eval(request(case, mode="executor", samples_per_case=1))

    sample = raw["testCases"][0]["samples"][0]
    assert sample["passed"], sample
    assert len(shop.dispatched) == 1
    decisions = [
        e for e in runtime.replay(sample_threads(runtime, raw)[0]).events
        if e["type"] == "approval-decision"
    ]  # fmt: skip
    assert [d["data"]["outcome"]["outcome"] for d in decisions] == ["approve"]
    assert decisions[0]["data"]["approver"] == "flowai-eval-1"


def test_run_eval_sync_validates_the_runtimes_artifact(
    open_runtime: Callable[..., Runtime],
) -> None:
    runtime = open_runtime(
        make_spec(), interpreter="scripted", tool_bindings={"slow": add, "flip": add}
    )
    case = define_test_case("echo", "hello there", expected_trajectory=[])

    artifact = run_eval_sync(runtime, request(case, samples_per_case=1, pass_threshold=0.0))

    assert isinstance(artifact, EvalArtifact)
    assert artifact.test_cases[0].samples[0].response_text is not None


async def test_pass_at_k_over_real_runs_matches_the_hand_computed_estimate(
    runtime: Runtime,
) -> None:
    # Every other run flips heads: 2 of 4 samples pass.
    case = define_test_case(
        "coin",
        script(("flip", {})),
        final_response=define_final_response_eval(
            scorers=[ResponseScorer.contains(id="heads", text='"heads":true')]
        ),
    )

    raw = await runtime.run_eval(
        request(
            case,
            mode="specialist",
            target_agent_id="calculator",
            samples_per_case=4,
            k_values=[1, 2, 3],
        )
    )

    (tested,) = raw["testCases"]
    assert sorted(s["passed"] for s in tested["samples"]) == [False, False, True, True]
    unbiased = {p["k"]: p["unbiasedEstimate"] for p in tested["passAtK"]}
    # 1 - C(n - c, k) / C(n, k) with n = 4, c = 2: k=1: 1 - 2/4; k=2: 1 - 1/6; k=3: 1 - 0/4.
    assert unbiased == pytest.approx({1: 0.5, 2: 5 / 6, 3: 1.0})
    assert {p["numCorrect"] for p in tested["passAtK"]} == {2}
    assert tested["aggregateScore"] == 0.5  # passRate aggregation


# --- the eval approval policy ---------------------------------------------------------------

PAY = script(ask("clerk", ("pay", {"amount": 5})))


async def test_approve_policy_gives_a_two_person_gate_two_different_approvers(
    runtime: Runtime,
) -> None:
    case = define_test_case("pay", PAY, expected_trajectory=["pay"])

    raw = await runtime.run_eval(request(case, samples_per_case=1))

    events = runtime.replay(sample_threads(runtime, raw)[0]).events
    assert [e["data"]["approver"] for e in events if e["type"] == "approval-progress"] == [
        "flowai-eval-1"
    ]
    decision = next(e for e in events if e["type"] == "approval-decision")
    assert decision["data"]["outcome"]["outcome"] == "approve"
    assert decision["data"]["approver"] == "flowai-eval-2"
    result = next(
        e for e in events if e["type"] == "tool-invocation" and e["state"] == "result"
        and e["toolName"] == "pay"
    )  # fmt: skip
    assert result["result"] == {"paid": 5}


async def test_reject_policy_rejects_the_gate_and_the_run_goes_on(runtime: Runtime) -> None:
    case = define_test_case("pay", PAY, expected_trajectory=["pay"])

    raw = await runtime.run_eval(request(case, samples_per_case=1), approval_policy="reject")

    events = runtime.replay(sample_threads(runtime, raw)[0]).events
    decision = next(e for e in events if e["type"] == "approval-decision")
    assert decision["data"]["outcome"]["outcome"] == "reject"
    assert "approval policy" in decision["data"]["feedback"]
    assert events[-1]["type"] == "tool-agent"  # the run finished
    assert runtime.replay(sample_threads(runtime, raw)[0]).status == "idle"


async def test_fail_policy_fails_the_sample_and_leaves_no_gate_waiting(runtime: Runtime) -> None:
    case = define_test_case("pay", PAY, expected_trajectory=["pay"])
    eval_request = request(case, samples_per_case=1, request_overrides={"approvalPolicy": "fail"})

    raw = await runtime.run_eval(eval_request)

    sample = raw["testCases"][0]["samples"][0]
    assert not sample["passed"]
    assert sample["metadata"]["errorKind"] == "sample_approval_required"
    assert "approval gate" in sample["error"]
    replay = runtime.replay(sample_threads(runtime, raw)[0])
    assert replay.status == "idle"
    assert not [e for e in replay.events if e["type"] == "approval-decision"]


def test_an_unknown_approval_policy_is_refused_before_anything_runs(runtime: Runtime) -> None:
    case = define_test_case("pay", PAY)

    with pytest.raises(EvalError, match="approval_policy must be one of approve, reject, fail"):
        runtime.stream_eval(request(case), approval_policy="ignore")
    assert runtime.thread_ids() == []


def test_a_target_agent_the_runtime_does_not_have_is_refused(runtime: Runtime) -> None:
    case = define_test_case("x", "hi")

    with pytest.raises(EvalError, match="target_agent_id 'ghost' is not an agent"):
        runtime.stream_eval(request(case, mode="specialist", target_agent_id="ghost"))


# --- cancel, concurrency, timeout -----------------------------------------------------------

SLOW = script(ask("calculator", ("slow", {"n": 1})))


async def next_started(shop: Shop) -> int:
    return await asyncio.wait_for(shop.started.get(), WAIT)


async def test_leaving_the_stream_cancels_the_runs_in_flight(runtime: Runtime, shop: Shop) -> None:
    shop.hold = True
    stream = runtime.stream_eval(request(define_test_case("slow", SLOW), concurrency=2))
    seen: list[str] = []

    async for envelope in stream:
        seen.append(envelope.type)
        if envelope.type == "testCaseStarted":
            await next_started(shop)
            await next_started(shop)
            break
    await stream.aclose()

    assert seen == ["evalStarted", "testCaseStarted"]
    threads = [t for t in runtime.thread_ids() if t.startswith(stream.run_id)]
    assert len(threads) == 2
    for thread_id in threads:
        replay = runtime.replay(thread_id)
        assert replay.status == "idle"
        finish = [e for e in replay.events if e["type"] == "finish"]
        assert [f["finishReason"] for f in finish] == ["cancelled"]
    assert shop.in_flight == 0


async def test_dropping_the_stream_after_a_break_cancels_the_runs_in_flight(
    runtime: Runtime, shop: Shop
) -> None:
    shop.hold = True
    stream = runtime.stream_eval(request(define_test_case("slow", SLOW), concurrency=2))
    run_id = stream.run_id

    async for envelope in stream:
        if envelope.type == "testCaseStarted":
            await next_started(shop)
            await next_started(shop)
            break
    # The eval's own task, to know when it has stopped: it ends after its samples' runs.
    driver = stream._driver
    assert driver is not None
    del stream  # no aclose(): dropping the stream is enough

    await asyncio.wait_for(asyncio.gather(driver, return_exceptions=True), WAIT)
    assert shop.in_flight == 0
    threads = [t for t in runtime.thread_ids() if t.startswith(run_id)]
    assert len(threads) == 2
    for thread_id in threads:
        assert runtime.replay(thread_id).status == "idle"


async def test_cancel_ends_the_stream_with_eval_cancelled(runtime: Runtime, shop: Shop) -> None:
    shop.hold = True
    stream = runtime.stream_eval(request(define_test_case("slow", SLOW), samples_per_case=1))
    types: list[str] = []

    async for envelope in stream:
        types.append(envelope.type)
        if envelope.type == "testCaseStarted":
            await next_started(shop)
            stream.cancel("enough")

    assert types == ["evalStarted", "testCaseStarted", "evalCancelled"]
    (thread_id,) = [t for t in runtime.thread_ids() if t.startswith(stream.run_id)]
    assert runtime.replay(thread_id).status == "idle"


async def test_samples_run_at_most_concurrency_at_a_time(runtime: Runtime, shop: Shop) -> None:
    shop.hold = True
    eval_request = request(define_test_case("slow", SLOW), samples_per_case=5, concurrency=2)
    task = asyncio.ensure_future(runtime.run_eval(eval_request))

    # Each release lets one held sample finish, which frees a slot for the next.
    await next_started(shop)
    await next_started(shop)
    for _ in range(3):
        shop.release.put_nowait(None)
        await next_started(shop)
    shop.release.put_nowait(None)
    shop.release.put_nowait(None)
    raw = await asyncio.wait_for(task, WAIT)

    assert len(raw["testCases"][0]["samples"]) == 5
    assert shop.max_in_flight == 2


async def test_a_sample_past_its_timeout_fails_and_its_run_is_cancelled(
    runtime: Runtime, shop: Shop
) -> None:
    shop.hold = True  # never released
    eval_request = request(
        define_test_case("slow", SLOW), samples_per_case=1, timeout_per_sample_secs=1
    )

    raw = await runtime.run_eval(eval_request)

    sample = raw["testCases"][0]["samples"][0]
    assert sample["metadata"]["errorKind"] == "sample_timeout"
    assert not sample["passed"]
    (thread_id,) = sample_threads(runtime, raw)
    assert runtime.replay(thread_id).status == "idle"
    assert shop.in_flight == 0


def test_runtime_built_without_an_event_loop_can_stream_evals() -> None:
    runtime = create_runtime(
        make_spec(), interpreter="scripted", tool_bindings={"slow": add, "flip": add}
    )
    stream = runtime.stream_eval(request(define_test_case("x", "hi")))
    assert stream.run_id.startswith("eval-")
    runtime.close()
