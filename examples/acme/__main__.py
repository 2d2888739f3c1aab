"""Run the Acme restocking demo: `python -m examples.acme [--reject | --revise]`.

Prints the event stream readably and decides at the approval gate (approve by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from .app import build_runtime, restock_prompt


def describe(event: dict[str, Any]) -> str | None:
    kind = event["type"]
    agent = event.get("agent", "")
    if kind == "step-start":
        return None
    if kind == "text":
        return f"  [{agent}] says: {event['text'][:100]}"
    if kind == "tool-agent":
        if "targetAgent" not in event:
            return None  # the entry agent's own wrapping call
        if event["state"] == "call":
            return f"  [{agent}] -> hands over to {event['agentName']}"
        return f"  [{agent}] <- {event['agentName']} is done"
    if kind == "tool-invocation":
        if event["state"] == "call":
            args = json.dumps(event["args"])
            return f"  [{agent}] calls {event['toolName']}({args[:80]})"
        mark = "failed" if event.get("isError") else "returned"
        return f"  [{agent}] {event['toolName']} {mark}: {json.dumps(event['result'])[:110]}"
    if kind == "plan-status-change":
        data = event["data"]
        before = data.get("fromAlias") or data["from"] or "new"
        return f"  plan {data['planId']}: {before} -> {data.get('toAlias') or data['to']}"
    if kind == "approval-required":
        data = event["data"]
        n = len(data["payload"].get("actions", []))
        return f"  ** approval required for {data['kind']} {data['target']} ({n} actions)"
    if kind == "approval-decision":
        data = event["data"]
        who = data.get("approver", "?")
        return f"  ** {data['outcome']['outcome']} by {who}: {data.get('feedback') or ''}"
    if kind == "data-cost-summary":
        return f"  cost: ${event['data']['totalCost']:.6f} (estimated)"
    if kind == "finish":
        return f"  finished ({event['finishReason']}), {event['usage']['totalTokens']} tokens"
    if kind == "error":
        return f"  ERROR {event['error']['code']}: {event['error']['message']}"
    return None


async def main(outcome: str) -> None:
    orders: list[dict[str, Any]] = []
    runtime = build_runtime(orders)
    print("Acme restocking demo (scripted model, embedded runtime)\n")
    async for event in runtime.query(restock_prompt(), thread_id="restock-demo"):
        line = describe(event)
        if line:
            print(line)
        if event["type"] == "approval-required":
            feedback = {
                "approve": "looks right",
                "reject": "not this week",
                "revise": "order 20, not 50",
            }[outcome]
            partial = {"quantity": 20} if outcome == "revise" else None
            await runtime.respond_to_approval(
                event["data"]["id"], outcome, feedback, partial, approver="demo-user"
            )
    print(f"\norders placed by the dispatcher: {len(orders)}")
    for order in orders:
        print(f"  {order}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--reject", action="store_const", const="reject", dest="outcome")
    group.add_argument("--revise", action="store_const", const="revise", dest="outcome")
    asyncio.run(main(parser.parse_args().outcome or "approve"))
