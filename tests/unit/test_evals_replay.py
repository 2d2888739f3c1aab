"""Replay-as-eval on the golden threads: recorded threads become test cases, and re-running
them against changed code reuses every recorded model answer whose request is unchanged.

The recordings are the committed golden logs (tests/golden/acme), copied; the re-runs use the
golden scenarios' spec, changed where a test says so, with its live providers pointed at the
fake provider server, so a changed request really goes out over HTTP and the tests count
what arrived there.
"""

from __future__ import annotations

import datetime
import re
import shutil
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

from flowai_harness import (
    create_runtime,
    define_coordinator,
    define_executor,
    define_plan,
    define_planner,
    define_runtime,
    define_tool,
)
from flowai_harness.errors import UsageError
from flowai_harness.evals import EvalArtifact
from flowai_harness.evals.replay import (
    RecordedThread,
    ReplayRuntime,
    first_divergence,
    recorded_threads,
    replay_suite,
)
from flowai_harness.testing import FakeProvider, ToolCall, Turn

GOLDEN = Path(__file__).parents[1] / "golden"
API_KEY = "replay-key"
ROUTER_TURNS = 3  # live-routing: router, calculator, router


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    shutil.copytree(GOLDEN / "acme", tmp_path / "logs" / "acme")
    return tmp_path / "logs"


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(api_key=API_KEY) as server:
        yield server


def suite_of(log_path: Path, thread_id: str) -> tuple[dict[str, RecordedThread], Any]:
    threads = recorded_threads(log_path, tenant="acme", threads=[thread_id])
    document = replay_suite(threads, tenant="acme")
    return {t.thread_id: t for t in threads}, document["request"]


async def replay(
    scenarios: types.ModuleType,
    fake: FakeProvider,
    log_path: Path,
    thread_id: str,
    **spec_changes: Any,
) -> tuple[EvalArtifact, dict[str, Any]]:
    threads, request = suite_of(log_path, thread_id)
    spec = scenarios.spec(fake.provider_settings(api_key=API_KEY), **spec_changes)
    runtime = ReplayRuntime(spec, threads)
    try:
        artifact = await runtime.run_eval(request)
    finally:
        await runtime.aclose()
    sample = artifact.test_cases[0].samples[0]
    assert sample.metadata is not None, sample.error
    return artifact, sample.metadata["replay"]


# --- from the log ---------------------------------------------------------------------------


def test_recorded_threads_become_cases_with_the_recorded_expectations(log_path: Path) -> None:
    threads = recorded_threads(log_path, tenant="acme", threads=["live"])
    document = replay_suite(threads, tenant="acme", tags=["nightly"])

    (case,) = document["request"]["testCases"]
    assert case["id"] == "live"
    assert case["input"] == "What are 1 + 2 and 3 + 4?"
    assert case["expectedTrajectory"] == ["add", "add"]
    assert case["trajectoryMode"] == "strict"
    assert case["tags"] == ["nightly", "replay"]
    assert case["finalResponse"]["scorers"][0]["expected"] == "Adding both.1 + 2 = 3 and 3 + 4 = 7."
    assert document["threads"]["live"]["entries"][0]["payload"]["type"] == "run-start"


def test_the_agent_filter_keeps_threads_with_a_run_of_that_agent(log_path: Path) -> None:
    by_agent = {t.thread_id for t in recorded_threads(log_path, tenant="acme", agent="router")}
    assert by_agent == {"hello", "conversation", "routing", "live-routing"}


def test_the_time_filter_uses_each_threads_first_entry(log_path: Path) -> None:
    everything = recorded_threads(log_path, tenant="acme")
    newest = max(everything, key=lambda t: t.started_ms)
    at = datetime.datetime.fromtimestamp(newest.started_ms / 1000, datetime.UTC).isoformat()
    after = recorded_threads(log_path, tenant="acme", since=at)
    before = recorded_threads(log_path, tenant="acme", until=at)

    assert newest.thread_id in {t.thread_id for t in after}
    assert newest.thread_id not in {t.thread_id for t in before}
    assert len(after) + len(before) == len(everything)


def test_an_unknown_tenant_is_a_usage_error_naming_where_it_looked(log_path: Path) -> None:
    with pytest.raises(UsageError, match="no run logs for tenant 'globex'"):
        recorded_threads(log_path, tenant="globex")


# --- re-running -----------------------------------------------------------------------------


async def test_an_unchanged_thread_replays_without_a_model_call_and_without_divergence(
    scenarios: types.ModuleType, fake: FakeProvider, log_path: Path
) -> None:
    artifact, report = await replay(scenarios, fake, log_path, "live-routing")

    assert fake.requests == []
    assert report["reRequested"] == []
    assert report["reusedModelResponses"] == ROUTER_TURNS
    assert report["divergence"] is None
    assert artifact.test_cases[0].samples[0].passed


async def test_recorded_failures_and_retries_replay_too(
    scenarios: types.ModuleType, fake: FakeProvider, log_path: Path
) -> None:
    # `live` was rate limited once, retried, then called two tools (run from the recording).
    artifact, report = await replay(scenarios, fake, log_path, "live")

    assert fake.requests == []
    assert report["divergence"] is None
    assert report["unrecordedToolCalls"] == []
    assert artifact.test_cases[0].samples[0].passed


async def test_a_prompt_change_re_requests_only_the_changed_turn(
    scenarios: types.ModuleType, fake: FakeProvider, log_path: Path
) -> None:
    fake.add(Turn(text="5"))  # the calculator answers as it did

    artifact, report = await replay(
        scenarios, fake, log_path, "live-routing", calculator_prompt="You add numbers. Be brief."
    )

    (sent,) = fake.requests
    assert sent.body["system"][0]["text"].startswith("You add numbers. Be brief.")
    assert [r["agent"] for r in report["reRequested"]] == ["calculator"]
    assert report["reRequested"][0]["requestId"] == "acme/live-routing/run-1/model-2/1"
    assert report["reusedModelResponses"] == ROUTER_TURNS - 1
    divergence = report["divergence"]
    assert divergence["seq"] == 7  # the calculator's model-response
    assert (divergence["recordedType"], divergence["newType"]) == (
        "model-response",
        "model-response",
    )
    assert divergence["recorded"]["agent"] == "calculator"
    assert "requestHash" in divergence["fields"]
    assert "content" not in divergence["fields"]
    assert artifact.test_cases[0].samples[0].passed  # same answer, same final response


async def test_a_changed_answer_changes_the_next_request_and_fails_the_recorded_response(
    scenarios: types.ModuleType, fake: FakeProvider, log_path: Path
) -> None:
    fake.add(Turn(text="five"), Turn(text="2 + 3 = five."))

    artifact, report = await replay(
        scenarios, fake, log_path, "live-routing", calculator_prompt="Spell numbers out."
    )

    # The router's second request carries the calculator's new answer: it changed too.
    assert [r["agent"] for r in report["reRequested"]] == ["calculator", "router"]
    assert len(fake.requests) == 2
    assert report["divergence"]["seq"] == 7
    assert "content" in report["divergence"]["fields"]
    sample = artifact.test_cases[0].samples[0]
    assert sample.response_text == "2 + 3 = five."
    assert not sample.passed
    scores = {c.scorer_name: c.score for c in sample.component_scores}
    assert scores["final_response"] == 0.0


async def test_a_recording_without_request_hashes_re_requests_every_turn(
    scenarios: types.ModuleType, fake: FakeProvider, log_path: Path
) -> None:
    path = log_path / "acme" / "live-routing.jsonl"
    path.write_text(re.sub(r',"requestHash":"[0-9a-f]+"', "", path.read_text()))
    fake.default = Turn(text="5")  # whatever is asked

    _, report = await replay(scenarios, fake, log_path, "live-routing")

    assert report["reusedModelResponses"] == 0
    assert len(report["reRequested"]) >= 1
    assert len(fake.requests) == len(report["reRequested"])


def test_first_divergence_ignores_times_and_reports_a_shorter_new_log() -> None:
    recorded = [
        {"type": "model-response", "latencyMs": 5, "content": []},
        {"type": "finish", "finishReason": "stop"},
    ]
    new = [{"type": "model-response", "latencyMs": 9, "content": []}]

    divergence = first_divergence(recorded, new)

    assert divergence is not None
    assert (divergence["seq"], divergence["recordedType"], divergence["newType"]) == (
        2,
        "finish",
        None,
    )
    assert first_divergence(recorded, recorded) is None


async def test_a_changed_request_without_a_usable_provider_fails_the_sample_saying_why(
    scenarios: types.ModuleType, log_path: Path
) -> None:
    threads, request = suite_of(log_path, "live-routing")
    # A testing placeholder: no key, so no live provider can be built for the changed turn.
    spec = scenarios.spec({"anthropic": {}}, calculator_prompt="Changed.")
    runtime = ReplayRuntime(spec, threads)
    try:
        artifact = await runtime.run_eval(request)
    finally:
        await runtime.aclose()

    sample = artifact.test_cases[0].samples[0]
    assert not sample.passed
    assert sample.metadata is not None
    assert sample.metadata["errorKind"] == "sample_agent_error"
    assert "a changed request has no live provider" in (sample.error or "")


# --- a recorded plan, gate and tool progress -------------------------------------------------


class Reprice(pydantic.BaseModel):
    kind: Literal["reprice"]
    sku: str
    price: float


class PricePlan(pydantic.BaseModel):
    actions: list[Reprice]


PRICES = define_plan("prices", PricePlan)


@define_tool("count_stock", {"sku": str}, description="Count a product's stock.")
def count_stock(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    ctx.progress("counting", total_phases=2)
    ctx.emit("shelf", {"sku": args["sku"]})
    ctx.progress("done", milestone="counted")
    return {"on_hand": 4}


def shop_spec(providers: dict[str, Any]) -> Any:
    return define_runtime(
        ("acme", "v1"),
        agents=[
            define_coordinator(
                "boss", model="claude-sonnet-4-6", prompt="Route.", routes=["planner", "executor"]
            ),
            define_planner(
                "planner",
                model="claude-sonnet-4-6",
                prompt="Plan prices.",
                plan=PRICES,
                tools=[count_stock],
            ),
            define_executor("executor", model="claude-haiku-4-5", prompt="Run.", plan=PRICES),
        ],
        providers=providers,
    )


PLAN_BODY = {"actions": [{"kind": "reprice", "sku": "A", "price": 2.5}]}
STORE = {"specName": "prices", "planId": "q1"}
SHOP_TURNS = (
    Turn(tool_calls=[ToolCall("call_agent", {"agent": "planner", "prompt": "Plan A."}, id="b1")]),
    Turn(tool_calls=[ToolCall("count_stock", {"sku": "A"}, id="p1")]),
    Turn(
        tool_calls=[
            ToolCall(
                "storePlan", {"specName": "prices", "planId": "q1", "body": PLAN_BODY}, id="p2"
            )
        ]
    ),
    Turn(text="Stored q1."),
    Turn(tool_calls=[ToolCall("call_agent", {"agent": "executor", "prompt": "Run q1."}, id="b2")]),
    Turn(tool_calls=[ToolCall("executePlan", {"planId": "q1"}, id="e1")]),
    Turn(text="Ran q1."),
    Turn(text="Repriced A."),
)


async def test_a_recorded_plan_its_gate_and_tool_progress_replay_without_divergence(
    tmp_path: Path, fake: FakeProvider
) -> None:
    dispatched: list[Any] = []

    def dispatch(actions: list[dict[str, Any]], ctx: Any) -> dict[str, Any]:
        dispatched.append(actions)
        return {"entitiesAffected": len(actions), "summary": "repriced", "details": {"job": 7}}

    fake.add(*SHOP_TURNS)
    spec = shop_spec(fake.provider_settings(api_key=API_KEY))
    async with create_runtime(
        spec, interpreter="live", log_path=tmp_path, action_dispatcher=dispatch
    ) as recording:
        async for event in recording.query("Reprice A to 2.5.", "shop"):
            if event["type"] == "approval-required":
                await recording.respond_to_approval(event["data"]["id"], "approve", approver="ann")
    assert len(dispatched) == 1
    calls = len(fake.requests)

    threads = recorded_threads(tmp_path, tenant="acme", threads=["shop"])
    document = replay_suite(threads, tenant="acme")
    (case,) = document["request"]["testCases"]
    truth = case["structuredGroundTruth"]["data"]
    assert [(a["type"], a["payload"]) for a in truth["executedActions"]] == [
        ("reprice", {"sku": "A", "price": 2.5})
    ]
    replay = ReplayRuntime(spec, {t.thread_id: t for t in threads})
    try:
        artifact = await replay.run_eval(document["request"])
    finally:
        await replay.aclose()

    sample = artifact.test_cases[0].samples[0]
    assert sample.metadata is not None
    report = sample.metadata["replay"]
    assert report["divergence"] is None  # the approver, the progress, the plan result agree
    assert report["reRequested"] == []
    assert len(fake.requests) == calls
    assert len(dispatched) == 1  # the dispatcher answered from the recording
    assert sample.passed
