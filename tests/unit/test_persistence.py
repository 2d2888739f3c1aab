"""Run logs on disk: another runtime, or another process, opening the same log_path sees the
same threads and continues them; damaged logs fail loudly, naming the file and the line."""

from __future__ import annotations

import asyncio
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streams import drain, finish, of_type, terminal

from flowai_harness import (
    CorruptedLogError,
    Runtime,
    SpecError,
    UnknownThreadError,
    create_runtime,
)
from flowai_harness.errors import NoActiveRunError

OpenRuntime = Callable[..., Runtime]


@pytest.fixture
def calls() -> list[dict[str, Any]]:
    """The args of every call of the add tool."""
    return []


@pytest.fixture
def open_scripted(
    open_runtime: OpenRuntime, scenarios: types.ModuleType, calls: list[dict[str, Any]]
) -> Callable[[Path], Runtime]:
    """A scripted runtime over the golden spec whose add tool records its calls."""

    def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
        calls.append(args)
        return {"sum": args["a"] + args["b"]}

    def open_(log_path: Path, **options: Any) -> Runtime:
        return open_runtime(
            scenarios.spec(),
            interpreter="scripted",
            tool_bindings={"add": add},
            log_path=log_path,
            **options,
        )

    return open_


def add_script(scenarios: types.ModuleType, a: int, b: int) -> str:
    script: str = scenarios.script(("add", {"a": a, "b": b}))
    return script


def log_files(root: Path) -> list[Path]:
    """Every file under ``root`` but the thread snapshots kept beside the logs."""
    return sorted(
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and path.suffix != ".snapshot"
    )


async def test_a_thread_is_logged_to_tenant_and_thread_file(
    tmp_path: Path, open_scripted: Callable[[Path], Runtime]
) -> None:
    runtime = open_scripted(tmp_path)

    await drain(runtime.query("hello", "t-1"))

    log = tmp_path / "acme" / "t-1.jsonl"
    assert log_files(tmp_path) == [Path("acme/t-1.jsonl")]
    lines = log.read_bytes().splitlines()
    assert len(lines) == runtime.replay("t-1").lines
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))


async def test_a_new_runtime_on_the_log_path_sees_and_continues_the_thread(
    tmp_path: Path,
    open_scripted: Callable[[Path], Runtime],
    scenarios: types.ModuleType,
    calls: list[dict[str, Any]],
) -> None:
    first = open_scripted(tmp_path)
    await drain(first.run_specialist("calculator", add_script(scenarios, 1, 2), "t"))
    before = first.replay("t").snapshot
    first.close()

    second = open_scripted(tmp_path)

    assert second.thread_ids() == ["t"]
    assert second.replay("t").snapshot == before
    assert calls == [{"a": 1, "b": 2}]  # the history was read, not run again
    events = await drain(second.run_specialist("calculator", add_script(scenarios, 3, 4), "t"))
    assert finish(events)["finishReason"] == "stop"
    assert calls == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    replay = second.replay("t")
    assert replay.snapshot["runs"] == 2
    assert [e["runId"] for e in of_type(replay.events, "run-start")] == ["run-1", "run-2"]
    assert [e["seq"] for e in replay.entries] == list(range(1, replay.lines + 1))


CONTINUE_IN_A_CHILD = """
import asyncio, json, sys

sys.path.insert(0, sys.argv[1])
import scenarios
from flowai_harness import create_runtime


async def main():
    runtime = create_runtime(scenarios.spec(), interpreter="scripted", log_path=sys.argv[2])
    before = runtime.replay(sys.argv[3]).snapshot
    events = [event async for event in runtime.query("and now?", sys.argv[3])]
    runtime.close()
    print(json.dumps({"before": before, "events": events}))


asyncio.run(main())
"""


async def test_another_process_on_the_log_path_sees_and_continues_the_thread(
    tmp_path: Path,
    open_scripted: Callable[[Path], Runtime],
    scenarios: types.ModuleType,
    golden_dir: Path,
) -> None:
    runtime = open_scripted(tmp_path)
    await drain(runtime.run_specialist("calculator", add_script(scenarios, 1, 2), "shared"))
    before = runtime.replay("shared").snapshot

    child = await asyncio.create_subprocess_exec(
        *[sys.executable, "-c", CONTINUE_IN_A_CHILD, str(golden_dir), str(tmp_path), "shared"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()

    assert child.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen["before"] == before
    assert finish(seen["events"])["finishReason"] == "stop"
    # And back: this process, opening the log again, sees the child's run.
    after = open_scripted(tmp_path).replay("shared").snapshot
    assert after["runs"] == 2
    assert after["lastRun"] == {"runId": "run-2", "outcome": "stop"}
    # The child's prompt, and the scripted model's echo of it (a prompt that is not a script).
    asked, answered = after["messages"][-2:]
    assert (asked["role"], asked["content"]) == ("user", "and now?")
    assert (answered["role"], answered["content"]) == (
        "assistant",
        [{"type": "text", "text": "and now?"}],
    )


@pytest.mark.parametrize(
    "thread_id",
    ["orders/2024/42", "with spaces", "ünïcødé ✓ スレッド", "../outside", "50%"],
)
async def test_any_thread_id_round_trips_through_its_file(
    tmp_path: Path, open_scripted: Callable[[Path], Runtime], thread_id: str
) -> None:
    runtime = open_scripted(tmp_path)
    await drain(runtime.query("hello", thread_id))
    before = runtime.replay(thread_id).snapshot

    again = open_scripted(tmp_path)

    assert again.thread_ids() == [thread_id]
    assert again.replay(thread_id).snapshot == before
    # One file per thread, directly in the tenant's directory, whatever the id holds.
    assert [path.parent for path in log_files(tmp_path)] == [Path("acme")]


@pytest.mark.parametrize("reopen_with", ["replay", "query"])
async def test_a_truncated_last_line_names_the_file_and_the_line(
    tmp_path: Path,
    open_scripted: Callable[[Path], Runtime],
    scenarios: types.ModuleType,
    reopen_with: str,
) -> None:
    runtime = open_scripted(tmp_path)
    await drain(runtime.run_specialist("calculator", add_script(scenarios, 1, 2), "t"))
    runtime.close()
    log = tmp_path / "acme" / "t.jsonl"
    lines = log.read_bytes().splitlines()
    log.write_bytes(b"\n".join([*lines[:-1], lines[-1][: len(lines[-1]) // 2]]) + b"\n")

    again = open_scripted(tmp_path)

    async def reopen() -> None:
        if reopen_with == "replay":
            again.replay("t")
        else:
            await drain(again.query("hello", "t"))

    with pytest.raises(CorruptedLogError) as caught:
        await reopen()

    assert caught.value.line == len(lines)
    assert caught.value.path == str(log)
    assert str(log) in str(caught.value)
    assert f"line {len(lines)}" in str(caught.value)


@pytest.mark.parametrize("fsync", ["always", "boundary", "never"])
async def test_every_fsync_policy_keeps_the_log(
    tmp_path: Path, open_scripted: Callable[[Path], Runtime], fsync: str
) -> None:
    runtime = open_scripted(tmp_path, fsync=fsync)
    await drain(runtime.query("hello", "t"))

    assert open_scripted(tmp_path).replay("t").snapshot == runtime.replay("t").snapshot


def test_an_unknown_fsync_policy_is_refused(tmp_path: Path, scenarios: types.ModuleType) -> None:
    with pytest.raises(SpecError, match="always, boundary, never"):
        create_runtime(
            scenarios.spec(), interpreter="scripted", log_path=tmp_path, fsync="sometimes"
        )


@pytest.mark.parametrize("on_disk", [True, False], ids=["file", "memory"])
async def test_replay_of_an_unknown_thread_is_refused(
    tmp_path: Path, open_runtime: OpenRuntime, scenarios: types.ModuleType, on_disk: bool
) -> None:
    runtime = open_runtime(
        scenarios.spec(), interpreter="scripted", log_path=tmp_path if on_disk else None
    )
    await drain(runtime.query("hello", "known"))

    with pytest.raises(UnknownThreadError, match="'unknown'"):
        runtime.replay("unknown")


async def test_cancel_ends_a_run_a_dead_process_left_waiting_for_a_tool(
    tmp_path: Path,
    open_runtime: OpenRuntime,
    open_scripted: Callable[[Path], Runtime],
    scenarios: types.ModuleType,
    calls: list[dict[str, Any]],
) -> None:
    # A process that died after logging a tool call: its log up to that call.
    elsewhere = open_runtime(scenarios.spec(), interpreter="scripted", log_path=tmp_path / "ran")
    await drain(elsewhere.run_specialist("calculator", add_script(scenarios, 1, 2), "tools"))
    lines = (tmp_path / "ran" / "acme" / "tools.jsonl").read_bytes().splitlines()
    payloads = [json.loads(line)["payload"] for line in lines]
    called = next(
        i
        for i, event in enumerate(payloads)
        if event["type"] == "tool-invocation" and event["state"] == "call"
    )
    (tmp_path / "dead" / "acme").mkdir(parents=True)
    (tmp_path / "dead" / "acme" / "tools.jsonl").write_bytes(
        b"\n".join(lines[: called + 1]) + b"\n"
    )
    runtime = open_scripted(tmp_path / "dead")
    assert runtime.replay("tools").status == "awaiting-tool"
    (busy,) = await drain(runtime.query("hello", "tools"))
    assert busy["error"]["code"] == "THREAD_BUSY"

    cancelled = await runtime.cancel("tools")

    assert terminal(cancelled)["type"] == "finish"
    assert finish(cancelled)["finishReason"] == "cancelled"
    # The entry agent's wrapper closes after finish, with no final text.
    assert cancelled[-1] == {
        "type": "tool-agent",
        "agentName": "calculator",
        "toolInvocationId": "run-1",
        "state": "result",
        "result": None,
    }
    replay = runtime.replay("tools")
    assert replay.status == "idle"
    assert replay.snapshot["lastRun"] == {"runId": "run-1", "outcome": "cancelled"}
    with pytest.raises(NoActiveRunError):
        await runtime.cancel("tools")
    events = await drain(runtime.query("hello", "tools"))
    assert finish(events)["finishReason"] == "stop"
    assert runtime.replay("tools").snapshot["runs"] == 2
    assert calls == []  # the dead process's pending tool call is not run again
