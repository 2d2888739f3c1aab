"""Framework overhead per tool step on the embedded runtime with a live model: prints figures,
asserts nothing.

    python bench/live_embedded.py [--runs 40] [--steps 25] [--provider anthropic|openai]

The fake provider server (its own process, so its work is not on the runtime's core) answers
every model turn at zero model latency with one tool call, ``--steps`` times per run, then a
short text. Each tool step is one model call (request built from the thread's history, the
official SDK's HTTP exchange, the streamed answer folded) and one tool call (a trivial sync
handler). Measured per run, on the runtime's side:

- wall time of the whole run (``run_specialist`` until its stream ends);
- time inside ``provider.complete`` (the SDK and the adapter, HTTP exchange included), summed
  from a timing wrapper around each provider;
- time inside the tool handler;
- the bare HTTP exchange: the same request bytes POSTed with a plain client and the whole SSE
  body read, measured call by call in between the runs (same server, same sizes).

Per tool step: framework overhead = (wall - provider - tool) / steps (the engine deciding, the
driver, the log, the stream); adapter + SDK overhead = provider / calls - bare HTTP. A last
measurement runs the same loop with a provider that answers from memory (no HTTP, no SDK), so
the framework's share is timed alone, without the network's noise. The
issue's target is <= 100 us of framework overhead per tool step beyond the HTTP exchange
itself. Medians over runs (p90 in brackets), in microseconds. Figures depend on the machine
and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from flowai_harness import (
    create_runtime,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)

MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-5-mini"}
TOOL_TIME: list[float] = []


@define_tool("lookup", {"q": str}, description="Look something up.")
def lookup(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    started = time.perf_counter()
    result = {"q": args["q"], "rows": 3}
    TOOL_TIME.append(time.perf_counter() - started)
    return result


class Timed:
    """Wraps a provider; sums the time its ``complete`` takes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    async def complete(self, request: dict[str, Any], *, on_delta: Any = None) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            result: dict[str, Any] = await self.inner.complete(request, on_delta=on_delta)
            return result
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


@contextlib.asynccontextmanager
async def fake_server(steps: int) -> AsyncIterator[str]:
    """The fake provider as a process; yields its base URL. Its script repeats per run: a
    responder is not scriptable from a file, so the turns are queued for every run (see
    ``queue``)."""
    script = {
        "default": {
            "text": "Looking.",
            "tool_calls": [{"name": "lookup", "args": {"q": "orders"}}],
            "usage": {"input_tokens": 900, "output_tokens": 20},
            "times": None,
        }
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(script, file)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowai_harness.testing.fake_provider",
        "--script",
        file.name,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        yield line.decode().rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        await process.wait()
        os.unlink(file.name)


async def queue_answer(http: httpx2.AsyncClient, url: str, steps: int) -> None:
    """Ahead of one run: ``steps`` tool calls (the default), then one text answer."""
    turns = {
        "turns": [
            {"tool_calls": [{"name": "lookup", "args": {"q": "orders"}}], "times": steps},
            {"text": "Done.", "usage": {"input_tokens": 900, "output_tokens": 5}},
        ]
    }
    response = await http.post(f"{url}/_fake/turns", json=turns)
    response.raise_for_status()


async def bare_exchange(http: httpx2.AsyncClient, url: str, provider: str, body: bytes) -> float:
    if provider == "anthropic":
        endpoint = f"{url}/v1/messages"
        headers = {"x-api-key": "bench", "anthropic-version": "2023-06-01"}
    else:
        endpoint = f"{url}/v1/chat/completions"
        headers = {"authorization": "Bearer bench"}
    started = time.perf_counter()
    async with http.stream(
        "POST", endpoint, content=body, headers={"content-type": "application/json", **headers}
    ) as response:
        async for _ in response.aiter_raw():
            pass
    return time.perf_counter() - started


class FromMemory:
    """Answers like the fake server's script, without I/O: the framework's cost alone."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    async def complete(self, request: dict[str, Any], *, on_delta: Any = None) -> dict[str, Any]:
        turn = sum(m["role"] == "assistant" for m in request["messages"])
        content: list[dict[str, Any]] = [{"type": "text", "text": "Looking."}]
        if turn < self.steps:
            content.append(
                {"type": "tool_call", "id": f"toolu_{turn}", "name": "lookup", "args": {"q": "x"}}
            )
        if on_delta is not None:
            on_delta({"type": "text-delta", "index": 0, "text": "Looking."})
        usage = {
            "prompt_tokens": 900,
            "completion_tokens": 20,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
        response = {
            "content": content,
            "stop_reason": "tool-calls" if turn < self.steps else "stop",
            "raw_stop_reason": "tool_use" if turn < self.steps else "end_turn",
            "usage": usage,
            "provider": request["provider"],
            "model": request["model"],
            "latency_ms": 0,
            "ttft_ms": 0,
        }
        return {"request_id": request["request_id"], "response": response}


async def framework_alone(spec: Any, runs: int, steps: int) -> list[float]:
    """Per tool step, in microseconds, with the provider answering from memory."""
    runtime = create_runtime(spec, interpreter="live")
    runtime._providers = {name: FromMemory(steps) for name in runtime._providers}  # type: ignore[assignment]
    per_step: list[float] = []
    for n in range(runs + 1):
        gc.collect()
        started = time.perf_counter()
        async for _ in runtime.run_specialist("analyst", "How many orders?", f"mem-{n}"):
            pass
        if n:  # the first one warms up
            per_step.append((time.perf_counter() - started) / steps * 1e6)
    await runtime.aclose()
    return per_step


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def line(label: str, samples_us: list[float]) -> str:
    return (
        f"  {label:<46} {statistics.median(samples_us):9.1f} us   [p90 {p(samples_us, 0.9):9.1f}]"
    )


async def run(args: argparse.Namespace) -> None:
    provider = args.provider
    async with fake_server(args.steps) as url:
        base = url if provider == "anthropic" else f"{url}/v1"
        agent = define_specialist(
            name="analyst",
            model=MODELS[provider],
            prompt="Look things up. " * 30,
            tools=[lookup],
            max_turns=args.steps + 5,
        )
        spec = define_runtime(
            tenant=define_tenant("bench", "v1"),
            agents=[agent],
            providers={provider: {"apiKey": "bench", "baseUrl": base}},
        )
        async with (
            create_runtime(spec, interpreter="live") as runtime,
            httpx2.AsyncClient(timeout=30) as http,
        ):
            timed = {name: Timed(p) for name, p in runtime._providers.items()}
            runtime._providers = timed  # type: ignore[assignment]
            captured: list[bytes] = []
            # One run to warm up (connections, caches), and to capture a request body of the
            # size the runs send (the middle of a run's history) for the bare exchange.
            await queue_answer(http, url, args.steps)
            async for _ in runtime.run_specialist("analyst", "How many orders?", "warm"):
                pass
            recorded = (await http.get(f"{url}/_fake/requests")).json()
            middle = recorded[len(recorded) // 2]["body"]
            captured.append(json.dumps(middle).encode())

            framework: list[float] = []
            adapter: list[float] = []
            bare: list[float] = []
            per_call: list[float] = []
            for n in range(args.runs):
                await queue_answer(http, url, args.steps)
                for t in timed.values():
                    t.seconds, t.calls = 0.0, 0
                TOOL_TIME.clear()
                gc.collect()
                started = time.perf_counter()
                steps = 0
                async for event in runtime.run_specialist(
                    "analyst", "How many orders?", f"run-{n}"
                ):
                    if event["type"] == "tool-invocation" and event["state"] == "result":
                        steps += 1
                wall = time.perf_counter() - started
                calls = sum(t.calls for t in timed.values())
                in_provider = sum(t.seconds for t in timed.values())
                framework.append((wall - in_provider - sum(TOOL_TIME)) / steps * 1e6)
                per_call.append(in_provider / calls * 1e6)
                exchanges = [
                    await bare_exchange(http, url, provider, captured[0]) for _ in range(5)
                ]
                bare.append(statistics.median(exchanges) * 1e6)
                adapter.append(per_call[-1] - bare[-1])
        alone = await framework_alone(spec, args.runs, args.steps)

    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, load "
        f"{os.getloadavg()[0]:.2f}; provider {provider} ({MODELS[provider]}), "
        f"{args.runs} runs x {args.steps} tool steps (+1 final answer)"
    )
    print(line("framework per tool step (outside the provider)", framework))
    print(line("provider.complete per call (SDK+adapter+HTTP)", per_call))
    print(line("bare HTTP exchange (same request bytes)", bare))
    print(line("adapter + SDK beyond the bare exchange", adapter))
    total = [f + a for f, a in zip(framework, adapter, strict=True)]
    print(line("everything beyond the HTTP exchange, per step", total))
    print(line("framework per tool step, provider from memory", alone))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=25, help="tool steps per run")
    parser.add_argument("--provider", choices=sorted(MODELS), default="anthropic")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
