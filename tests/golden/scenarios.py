"""The golden scenarios: the runtime spec and the runs whose logs are committed beside this file.

`python tests/golden/scenarios.py` regenerates `acme/*.jsonl` and `expected/*.json` (review the
diff: a changed golden log means the log format or the engine's decisions changed). The Rust
and Python golden tests replay the committed files and compare with the expected snapshots.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from flowai_harness import (
    RetryPolicy,
    TestingConfig,
    create_runtime,
    define_coordinator,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)
from flowai_harness.runtime import Runtime
from flowai_harness.specs import RuntimeSpec
from flowai_harness.testing import FakeProvider, ToolCall, Turn, Usage, rate_limited

HERE = Path(__file__).parent


@define_tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    ctx.emit("adding", {"a": args["a"], "b": args["b"]})
    return {"sum": args["a"] + args["b"]}


@define_tool("explode", {"reason": str}, description="Always fails.")
def explode(args: dict[str, Any], ctx: Any) -> None:
    raise RuntimeError(args["reason"])


CALCULATOR_PROMPT = "You add numbers with the add tool."


def spec(
    providers: dict[str, Any] | None = None, calculator_prompt: str = CALCULATOR_PROMPT
) -> RuntimeSpec:
    calculator = define_specialist(
        name="calculator",
        model="claude-haiku-4-5",
        prompt=calculator_prompt,
        tools=[add, explode],
        # The live scenario's rate limit is retried at once (the log records the wait).
        retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.05),
    )
    coordinator = define_coordinator(
        name="router",
        model="claude-sonnet-4-6",
        prompt="Route arithmetic to the calculator.",
        routes=["calculator"],
    )
    return define_runtime(
        tenant=define_tenant("acme", "v1"),
        agents=[coordinator, calculator],
        providers=providers or {"anthropic": {}},
    )


def script(*calls: tuple[str, dict[str, Any]]) -> str:
    return json.dumps({"script": [{"tool": tool, "args": args} for tool, args in calls]})


async def drain(runtime: Runtime, prompt: str, thread_id: str, agent: str | None = None) -> None:
    stream = (
        runtime.run_specialist(agent, prompt, thread_id)
        if agent
        else runtime.query(prompt, thread_id)
    )
    async for _ in stream:
        pass


async def generate(log_path: Path) -> None:
    mock = create_runtime(
        spec(),
        testing=TestingConfig(mock_response="hello from the Rust runtime"),
        log_path=log_path,
    )
    await drain(mock, "Say hello", "hello")

    scripted = create_runtime(spec(), interpreter="scripted", log_path=log_path)
    await drain(
        scripted,
        script(
            ("add", {"a": 1, "b": 2}),
            ("add", {"a": "one"}),
            ("explode", {"reason": "boom"}),
            ("add", {"a": 40, "b": 2}),
        ),
        "tools",
        agent="calculator",
    )
    nested = script(("add", {"a": 2, "b": 3}))
    await drain(
        scripted,
        json.dumps(
            {
                "script": [
                    {"tool": "call_agent", "args": {"agent": "calculator", "prompt": nested}},
                    {"tool": "call_agent", "args": {"agent": "router", "prompt": "loop"}},
                ]
            }
        ),
        "routing",
    )
    await drain(scripted, "first question", "conversation")
    await drain(scripted, script(("add", {"a": 5, "b": 5})), "conversation", agent="calculator")

    stream = scripted.run_specialist("calculator", script(("add", {"a": 1, "b": 1})), "cancelled")
    async for event in stream:
        if event["type"] == "tool-invocation" and event["state"] == "call":
            stream.cancel()

    await generate_live(log_path)
    await generate_live_routing(log_path)


# The router's hand-off to the calculator in the live-routing thread.
ROUTED_QUESTION = "What is 2 + 3?"


async def generate_live_routing(log_path: Path) -> None:
    """A live thread through two agents, one model turn each way: the router hands the
    question to the calculator, which answers, and the router answers. A prompt change to one
    agent changes one request of it (replay-as-eval re-requests that turn only)."""
    turns = [
        Turn(
            tool_calls=[
                ToolCall(
                    "call_agent",
                    {"agent": "calculator", "prompt": ROUTED_QUESTION},
                    id="toolu_route_1",
                )
            ],
            usage=Usage(input_tokens=300, output_tokens=20),
        ),
        Turn(text="5", usage=Usage(input_tokens=120, output_tokens=2)),
        Turn(text="2 + 3 = 5.", usage=Usage(input_tokens=340, output_tokens=9)),
    ]
    async with (
        FakeProvider(turns) as fake,
        create_runtime(
            spec(fake.provider_settings()), interpreter="live", log_path=log_path
        ) as live,
    ):
        await drain(live, ROUTED_QUESTION, "live-routing")


async def generate_live(log_path: Path) -> None:
    """A thread recorded from a live model (the fake provider server, through the official
    SDK): a rate limit retried, reasoning, two parallel tool calls, then the answer. Its log
    holds every model answer, so it replays with no provider at all."""
    turns = [
        Turn(fault=rate_limited(retry_after_ms=20)),
        Turn(
            reasoning="Two sums; both at once.",
            text="Adding both.",
            tool_calls=[
                ToolCall("add", {"a": 1, "b": 2}, id="toolu_live_1"),
                ToolCall("add", {"a": 3, "b": 4}, id="toolu_live_2"),
            ],
            usage=Usage(input_tokens=420, output_tokens=61, cache_read_input_tokens=300),
        ),
        Turn(text="1 + 2 = 3 and 3 + 4 = 7.", usage=Usage(input_tokens=510, output_tokens=14)),
    ]
    async with (
        FakeProvider(turns) as fake,
        create_runtime(
            spec(fake.provider_settings()), interpreter="live", log_path=log_path
        ) as live,
    ):
        await drain(live, "What are 1 + 2 and 3 + 4?", "live", agent="calculator")


def write_expected(log_path: Path) -> None:
    runtime = create_runtime(spec(), interpreter="scripted", log_path=log_path)
    expected = HERE / "expected"
    expected.mkdir(exist_ok=True)
    for thread_id in runtime.thread_ids():
        snapshot = runtime.replay(thread_id).snapshot
        (expected / f"{thread_id}.json").write_text(json.dumps(snapshot, indent=2) + "\n")


def write_broken(log_path: Path) -> None:
    """Two logs that must not replay: a truncated line, and a divergent (reordered) run."""
    lines = (log_path / "acme" / "tools.jsonl").read_bytes().splitlines()
    broken = HERE / "broken" / "acme"
    broken.mkdir(parents=True, exist_ok=True)
    # A crash mid-write: the last line is cut short.
    (broken / "truncated.jsonl").write_bytes(b"\n".join([*lines[:5], lines[5][:40]]) + b"\n")
    # A tool result logged before its call: the run table forbids it.
    (broken / "divergent.jsonl").write_bytes(
        b"\n".join([*lines[:2], lines[3], lines[2], *lines[4:]]) + b"\n"
    )


def main() -> None:
    for path in (HERE / "acme", HERE / "expected", HERE / "broken"):
        shutil.rmtree(path, ignore_errors=True)
    asyncio.run(generate(HERE))
    write_expected(HERE)
    write_broken(HERE)
    print(f"golden logs written under {HERE}", file=sys.stderr)


if __name__ == "__main__":
    main()
