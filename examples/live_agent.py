"""One agent on a live model: a tool loop whose answer streams as the model writes it.

    python examples/live_agent.py                 # against the fake provider server (make demo)
    ANTHROPIC_API_KEY=... python examples/live_agent.py --real          # the real Anthropic API
    OPENAI_API_KEY=... python examples/live_agent.py --real --provider openai

The code path is the same in both: create_runtime(spec, interpreter="live") and the official
SDK. Only the provider settings differ: the fake run points the SDK's base URL at a local
server (flowai_harness.testing.FakeProvider) that speaks the provider's wire protocol and
answers from a script; --real reads the key from the environment and calls the provider.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack
from typing import Any

from flowai_harness import (
    FlowaiError,
    create_runtime,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)

MODELS = {"anthropic": "claude-haiku-4-5", "openai": "gpt-5-mini"}
KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}

STOCK = {"SKU-1": 4, "SKU-2": 40, "SKU-3": 0}


@define_tool("stock_level", {"sku": str}, description="Units in stock for one SKU.")
def stock_level(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"sku": args["sku"], "units": STOCK.get(args["sku"], 0)}


def spec(provider: str, settings: dict[str, Any]) -> Any:
    analyst = define_specialist(
        name="stock_analyst",
        model=MODELS[provider],
        prompt="You answer stock questions. Look every SKU up with stock_level before you "
        "answer, and answer in one short sentence.",
        tools=[stock_level],
        max_tokens=512,
    )
    return define_runtime(
        tenant=define_tenant("acme", "v1"), agents=[analyst], providers={provider: settings}
    )


def fake_script() -> list[Any]:
    """What the fake model answers: two lookups in one turn, then a streamed sentence."""
    from flowai_harness.testing import ToolCall, Turn, Usage

    return [
        Turn(
            text="Let me check both.",
            tool_calls=[
                ToolCall("stock_level", {"sku": "SKU-1"}),
                ToolCall("stock_level", {"sku": "SKU-3"}),
            ],
            usage=Usage(input_tokens=310, output_tokens=48),
            ttft_s=0.2,
        ),
        Turn(
            text="SKU-1 is low at 4 units and SKU-3 is out of stock, so both need a reorder.",
            usage=Usage(input_tokens=402, output_tokens=22),
            ttft_s=0.3,
            chunk_delay_s=0.04,
        ),
    ]


async def run(provider: str, real: bool) -> None:
    async with AsyncExitStack() as stack:
        if real:
            settings: dict[str, Any] = {"apiKeyEnv": KEYS[provider]}
            where = f"the real {provider} API"
        else:
            from flowai_harness.testing import FakeProvider

            fake = await stack.enter_async_context(FakeProvider(fake_script()))
            settings = fake.provider_settings()[provider]
            where = f"the fake provider server at {settings['baseUrl']}"
        runtime = await stack.enter_async_context(
            create_runtime(spec(provider, settings), interpreter="live")
        )
        print(f"stock_analyst on {MODELS[provider]}, through {where}\n")
        question = "Which of SKU-1 and SKU-3 need a reorder?"
        print(f"> {question}")
        streaming = False
        async for event in runtime.run_specialist("stock_analyst", question, "demo-thread"):
            kind = event["type"]
            if kind == "text":
                print(event["text"], end="", flush=True)
                streaming = True
                continue
            if streaming:
                print()
                streaming = False
            if kind == "tool-invocation" and event["state"] == "result":
                print(f"  [{event['toolName']}({event['args']}) -> {event['result']}]")
            elif kind == "model-failure":
                print(f"  [{event['kind']}: {event['message']}; {event['recovery']['action']}]")
            elif kind == "data-latency-summary":
                data = event["data"]
                print(
                    f"  [total {data['totalDurationMs']} ms, {data['phases']['llmCalls']} model "
                    f"calls, first text after {data.get('firstTextMs')} ms]"
                )
            elif kind == "data-cost-summary":
                print(f"  [cost ${event['data']['totalCost']:.6f}]")
            elif kind == "finish":
                usage = event["usage"]
                print(f"  [finish: {usage['promptTokens']} in, {usage['completionTokens']} out]")
            elif kind == "error":
                print(f"  [error {event['error']['code']}: {event['error']['message']}]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="store_true", help="call the real provider API")
    parser.add_argument("--provider", choices=sorted(MODELS), default="anthropic")
    args = parser.parse_args()
    try:
        asyncio.run(run(args.provider, args.real))
    except FlowaiError as exc:
        print(f"live_agent: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
