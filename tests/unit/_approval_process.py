"""Process A of the durable-approval tests, and the runtime both processes open.

Run as a script (``python _approval_process.py LOG_PATH CALLS_FILE exit|hang``) it starts a
clerk whose scripted turn writes a note, pays an invoice (gated) and writes another note; at
the gate it prints the approval id, then exits (``exit``) or waits to be killed (``hang``).
Tool handlers append every call to CALLS_FILE, so a test can count them across processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from flowai_harness import Runtime, create_runtime, define_runtime, define_specialist, define_tool

THREAD = "invoice-7"
SCRIPT = json.dumps(
    {
        "script": [
            {"tool": "note", "args": {"text": "checked"}},
            {"tool": "pay", "args": {"amount": 120}},
            {"tool": "note", "args": {"text": "paid"}},
        ]
    }
)
PAY = define_tool("pay", {"amount": int}, description="Pay an invoice.", approval="always")
NOTE = define_tool("note", {"text": str}, description="Write a note.")
SPEC = define_runtime(
    ("acme", "v1"),
    agents=[
        define_specialist(
            "clerk", model="claude-haiku-4-5", prompt="You pay invoices.", tools=[PAY, NOTE]
        )
    ],
    providers={"anthropic": {}},
)


def open_runtime(log_path: str | os.PathLike[str], calls_file: Path) -> Runtime:
    """The clerk's runtime on ``log_path``; its handlers record their calls in calls_file."""

    def recorder(name: str, answer: str) -> Any:
        def handler(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
            with calls_file.open("a") as calls:
                calls.write(json.dumps([name, args]) + "\n")
            return {answer: next(iter(args.values()))}

        return handler

    return create_runtime(
        SPEC,
        interpreter="scripted",
        tool_bindings={"pay": recorder("pay", "paid"), "note": recorder("note", "noted")},
        log_path=log_path,
    )


def read_calls(calls_file: Path) -> list[list[Any]]:
    """Every recorded [tool, args], in call order, from every process."""
    if not calls_file.exists():
        return []
    return [json.loads(line) for line in calls_file.read_text().splitlines()]


async def main(log_path: str, calls_file: str, mode: str) -> None:
    runtime = open_runtime(log_path, Path(calls_file))
    async for event in runtime.run_specialist("clerk", SCRIPT, THREAD):
        if event["type"] == "approval-required":
            print(event["data"]["id"], flush=True)
            if mode == "hang":
                await asyncio.Event().wait()  # until the test kills this process
            break
    runtime.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
