"""Embedded-runtime benchmark: prints figures, asserts nothing.

    python bench/embedded.py [--runs 300]

- tool step: a scripted 10-step tool loop run end to end through ``Runtime.query`` (engine
  crossing, argument validation, the Python handler, event dicts, in-memory run log);
  microseconds per step, median and p95 over ``--runs`` runs (each run on a fresh thread).
- replay: ``Runtime.replay`` of a 50-step thread (156 logged events), in memory and from a
  ``log_path`` file (the file read is included), median and p95.
- approval: pause at a gated tool + decision + resume to the end of the run, through
  ``Runtime.query`` and ``Runtime.respond_to_approval`` (in memory, and with ``log_path``,
  where the gate is fsynced), minus the same one-call run without a gate.
- peak RSS of the process.

Figures depend on the machine and its load; compare runs on one machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import statistics
import tempfile
import time
from typing import Any

from flowai_harness import create_runtime, define_runtime, define_specialist, define_tenant
from flowai_harness import define_tool as tool
from flowai_harness.runtime import Runtime


@tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


@tool("gated_add", {"a": int, "b": int}, approval="always", description="Add, once approved.")
def gated_add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


def runtime(log_path: str | None = None) -> Runtime:
    worker = define_specialist(
        name="worker", model="claude-haiku-4-5", prompt="Add numbers.", tools=[add, gated_add]
    )
    spec = define_runtime(
        tenant=define_tenant("bench", "v1"), agents=[worker], providers={"anthropic": {}}
    )
    return create_runtime(spec, interpreter="scripted", log_path=log_path)


def script(steps: int) -> str:
    return json.dumps({"script": [{"tool": "add", "args": {"a": i, "b": 1}} for i in range(steps)]})


async def run(rt: Runtime, prompt: str, thread_id: str) -> int:
    events = 0
    async for _ in rt.query(prompt, thread_id=thread_id):
        events += 1
    return events


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered):8.1f} us   p95 {p95:8.1f} us   (n={len(ordered)})"


async def bench_tool_steps(runs: int) -> None:
    rt = runtime()
    prompt = script(10)
    for i in range(20):  # warm-up
        await run(rt, prompt, f"warm-{i}")
    per_step = []
    for i in range(runs):
        start = time.perf_counter_ns()
        await run(rt, prompt, f"t-{i}")
        per_step.append((time.perf_counter_ns() - start) / 10 / 1000)
    print(f"tool step (10-step scripted loop via Runtime.query): {summary(per_step)}")


async def bench_replay(runs: int) -> None:
    prompt = script(50)
    with tempfile.TemporaryDirectory() as tmp:
        for label, rt in (("in memory", runtime()), ("from file", runtime(tmp))):
            await run(rt, prompt, "fifty")
            replayed = rt.replay("fifty")
            assert replayed.status == "idle"  # a broken benchmark must not print figures
            samples = []
            for _ in range(runs):
                start = time.perf_counter_ns()
                rt.replay("fifty").status  # noqa: B018 - reading status forces the fold result
                samples.append((time.perf_counter_ns() - start) / 1000)
            print(f"replay 50-step thread ({replayed.lines} events, {label}): {summary(samples)}")
            rt.close()


async def approval_run(rt: Runtime, prompt: str, thread_id: str) -> None:
    async for event in rt.query(prompt, thread_id=thread_id):
        if event["type"] == "approval-required":
            await rt.respond_to_approval(event["data"]["id"], "approve", approver="bench")


async def bench_approval(runs: int) -> None:
    gated = json.dumps({"tool": "gated_add", "args": {"a": 1, "b": 2}})
    plain = json.dumps({"tool": "add", "args": {"a": 1, "b": 2}})
    with tempfile.TemporaryDirectory() as tmp:
        for label, rt in (("in memory", runtime()), ("with log_path", runtime(tmp))):
            for i in range(20):
                await approval_run(rt, gated, f"warm-{i}")
            with_gate, without = [], []
            for i in range(runs):
                start = time.perf_counter_ns()
                await approval_run(rt, gated, f"g-{i}")
                with_gate.append((time.perf_counter_ns() - start) / 1000)
                start = time.perf_counter_ns()
                await run(rt, plain, f"p-{i}")
                without.append((time.perf_counter_ns() - start) / 1000)
            extra = [g - p for g, p in zip(sorted(with_gate), sorted(without), strict=True)]
            print(f"approval pause + decision + resume ({label}): {summary(extra)}")
            print(f"    whole gated run ({label}): {summary(with_gate)}")
            rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, runs={args.runs}")
    asyncio.run(bench_tool_steps(args.runs))
    asyncio.run(bench_replay(args.runs))
    asyncio.run(bench_approval(args.runs))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {peak_kib / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
