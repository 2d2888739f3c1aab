"""Provider adapter overhead per model call: prints figures, asserts nothing.

    python bench/provider_overhead.py [--calls 2000] [--in-process]

The fake provider server (a separate process unless ``--in-process``) answers every request at
zero model latency with one tool-step turn: a short text and one tool call, streamed as the
real APIs stream them. For each provider, three measurements run interleaved, call by call,
over one HTTP client (the SDK's default client, shared):

- bare HTTP: the same request bytes POSTed with that client and the whole SSE body read;
- SDK request, body raw: the request as the adapter sends it through the official SDK
  (``with_streaming_response``), the body read and not parsed;
- SDK typed stream: ``messages.create`` / ``chat.completions.create(stream=True)`` with every
  typed event iterated and dropped: what the SDKs' stream classes would cost (the adapter does
  not use them, see ``flowai_harness/providers/sse.py``);
- complete(): the adapter's whole call (request mapping, the SDK request, SSE decoding,
  folding the events into the ModelResult payload, deltas to an ``on_delta`` that keeps them).

Adapter overhead = complete() - bare HTTP, split into the SDK's request side and ours, as
medians of call-by-call differences. End-to-end times are noisy, so the adapter's own work is
also timed without I/O: mapping the request, decoding the SSE events of a recorded body and
folding them (a hot loop, so a lower bound of what the same work costs between I/O).
Medians and p95 in microseconds. The issue's target is <= 100 us of framework overhead per
tool step beyond the HTTP exchange. Figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anthropic
import httpx2
import openai
import orjson

from flowai_harness.providers import AnthropicProvider, OpenAIProvider
from flowai_harness.providers.anthropic_messages import messages_params
from flowai_harness.providers.base import Answer
from flowai_harness.providers.openai_chat import chat_params
from flowai_harness.providers.settings import parse_settings
from flowai_harness.providers.sse import SSEDecoder
from flowai_harness.testing import FakeProvider, turns_from_json

TURN = {
    "text": "Let me look that up for you.",
    "tool_calls": [{"name": "lookup", "args": {"q": "orders last quarter", "limit": 20}}],
    "usage": {"input_tokens": 900, "output_tokens": 40, "cache_read_input_tokens": 4000},
    "times": None,
}
REQUEST: dict[str, Any] = {
    "request_id": "bench/t1/run-1/model-1/1",
    "agent": "analyst",
    "attempt": 1,
    "turn": 1,
    "system": "You answer questions about orders. " * 20,
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "How many orders last quarter?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_call", "id": "toolu_01", "name": "lookup", "args": {"q": "x"}},
            ],
        },
        {
            "role": "tool",
            "content": [
                {
                    "type": "tool_result",
                    "tool_call_id": "toolu_01",
                    "content": {"n": 3},
                    "is_error": False,
                }
            ],
        },
    ],
    "tools": [
        {
            "name": "lookup",
            "description": "Look orders up.",
            "input_schema": {
                "type": "object",
                "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}},
            },
        }
    ],
    "max_tokens": 1024,
    "temperature": None,
    "thinking": None,
    "cache": True,
}


@contextlib.asynccontextmanager
async def fake_server(in_process: bool) -> AsyncIterator[str]:
    script = json.dumps({"default": TURN}).encode()
    if in_process:
        _, default = turns_from_json(script)
        async with FakeProvider(default=default) as fake:
            yield fake.url
        return
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(script)
        file.flush()
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


def summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"  {label:<34} median {statistics.median(ordered):8.1f} us   p95 {p95:8.1f} us"


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    # Each sample starts from a collected heap, so garbage one run leaves (the SDK's typed
    # stream leaves much) is not paid by the next.
    gc.collect()
    start = time.perf_counter_ns()
    await call()
    return (time.perf_counter_ns() - start) / 1000


async def bench_provider(name: str, url: str, calls: int) -> None:
    http: httpx2.AsyncClient
    provider: AnthropicProvider | OpenAIProvider
    if name == "anthropic":
        http = anthropic.DefaultAsyncHttpxClient()
        sdk_a = anthropic.AsyncAnthropic(
            api_key="bench", base_url=url, max_retries=0, http_client=http
        )
        settings = parse_settings("anthropic", {"apiKey": "bench", "baseUrl": url})
        provider = AnthropicProvider(settings, client=sdk_a)
        request = {**REQUEST, "provider": "anthropic", "model": "claude-sonnet-4-6"}
        endpoint = f"{url}/v1/messages"
        extra_headers = {"anthropic-version": "2023-06-01"}
        params = messages_params(request)

        async def sdk_typed() -> None:
            stream = await sdk_a.messages.create(**params, stream=True)
            async with stream:
                async for _ in stream:
                    pass
    else:
        http = openai.DefaultAsyncHttpxClient()
        sdk_o = openai.AsyncOpenAI(
            api_key="bench", base_url=f"{url}/v1", max_retries=0, http_client=http
        )
        settings = parse_settings("openai", {"apiKey": "bench", "baseUrl": f"{url}/v1"})
        provider = OpenAIProvider(settings, client=sdk_o)
        request = {**REQUEST, "provider": "openai", "model": "gpt-5"}
        endpoint = f"{url}/v1/chat/completions"
        extra_headers = {}
        params = chat_params(request)

        async def sdk_typed() -> None:
            stream = await sdk_o.chat.completions.create(**params)
            async with stream:
                async for _ in stream:
                    pass

    body = orjson.dumps({**params, "stream": True})
    headers = {"authorization": "Bearer bench", "content-type": "application/json", **extra_headers}

    async def bare() -> None:
        async with http.stream("POST", endpoint, content=body, headers=headers) as response:
            async for _ in response.aiter_raw():
                pass

    async def sdk_raw() -> None:
        # The adapter's own request path (its private hook), the body read and not parsed.
        async with provider._open(params) as response:
            async for _ in response.iter_bytes():
                pass

    deltas: list[dict[str, Any]] = []

    async def complete() -> None:
        deltas.clear()
        result = await provider.complete(request, on_delta=deltas.append)
        assert "response" in result, result

    runs = {"bare": bare, "sdk_raw": sdk_raw, "sdk_typed": sdk_typed, "complete": complete}
    for _ in range(100):  # warm-up: connections, imports, caches
        for run in runs.values():
            await run()
    # What exists now (modules, clients) is never garbage: keep it out of every collection.
    gc.collect()
    gc.freeze()
    samples: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(calls):
        for key, run in runs.items():
            samples[key].append(await timed(run))

    # The adapter's own work without I/O: mapping the request, decoding the recorded body's
    # SSE events and folding them.
    async with provider._open(params) as response:
        recorded = [chunk async for chunk in response.iter_bytes()]
    await provider.aclose()

    def adapter_work() -> None:
        mapped = provider._params(request)
        fold = provider._fold(Answer(time.perf_counter(), mapped["model"], [].append), request)
        decoder = SSEDecoder()
        for chunk in recorded:
            for event_name, data in decoder.feed(chunk):
                fold.event(event_name, data)
        fold.result(name)

    cpu = []
    gc.collect()
    for _ in range(calls * 5):
        start = time.perf_counter_ns()
        adapter_work()
        cpu.append((time.perf_counter_ns() - start) / 1000)

    def paired(minuend: str, subtrahend: str) -> float:
        # Median of the call-by-call differences: the runs of one round share the machine's
        # state of the moment, so this is steadier than a difference of medians.
        pairs = zip(samples[minuend], samples[subtrahend], strict=True)
        return statistics.median(a - b for a, b in pairs)

    print(f"{name} (n={calls}, {len(deltas)} text deltas and 1 tool call per answer)")
    print(summary("bare HTTP exchange", samples["bare"]))
    print(summary("SDK request, body read raw", samples["sdk_raw"]))
    print(summary("SDK typed stream (not used)", samples["sdk_typed"]))
    print(summary("provider.complete()", samples["complete"]))
    print(
        f"  over bare HTTP (paired medians): complete() {paired('complete', 'bare'):.1f} us;"
        f" SDK request side {paired('sdk_raw', 'bare'):.1f} us;"
        f" adapter {paired('complete', 'sdk_raw'):.1f} us;"
        f" the SDK's typed stream would cost {paired('sdk_typed', 'sdk_raw'):.1f} us more"
        " than the raw body"
    )
    print(summary("adapter's own work, no I/O", cpu))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the fake server in this process (shares the CPU with the client)",
    )
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, anthropic {anthropic.__version__}, "
        f"openai {openai.__version__}, fake server "
        f"{'in process' if args.in_process else 'in its own process'}"
    )
    async with fake_server(args.in_process) as url:
        for name in ("anthropic", "openai"):
            await bench_provider(name, url, args.calls)


if __name__ == "__main__":
    asyncio.run(main())
