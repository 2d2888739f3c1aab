"""Embedded snapshots and eviction: snapshot files beside the run logs (every N events and at
run ends), a reopened thread folds only the log after its snapshot, a snapshot that cannot be
trusted falls back to the whole log with a warning, and idle threads leave memory and come
back from their snapshot on their next input."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from streams import drain, finish

from flowai_harness import (
    Runtime,
    RuntimeSpec,
    _native,
    define_runtime,
    define_specialist,
    define_tool,
)
from flowai_harness.errors import SpecError

OpenRuntime = Callable[..., Runtime]
PAY_5 = json.dumps({"tool": "pay", "args": {"amount": 5}})
ADD = json.dumps({"script": [{"tool": "note", "args": {"text": "a"}}] * 3})


def clerk_spec() -> RuntimeSpec:
    clerk = define_specialist(
        "clerk",
        model="claude-haiku-4-5",
        prompt="You pay invoices.",
        tools=[
            define_tool("pay", {"amount": int}, description="Pay.", approval="always"),
            define_tool("note", {"text": str}, description="Note.", approval="never"),
        ],
    )
    return define_runtime(("acme", "v1"), agents=[clerk], providers={"anthropic": {}})


@pytest.fixture
def paid() -> list[int]:
    return []


@pytest.fixture
def open_clerk(open_runtime: OpenRuntime, paid: list[int]) -> Callable[..., Runtime]:
    def pay(args: dict[str, Any], ctx: Any) -> dict[str, bool]:
        paid.append(args["amount"])
        return {"paid": True}

    def open_(**options: Any) -> Runtime:
        return open_runtime(
            clerk_spec(),
            interpreter="scripted",
            tool_bindings={"pay": pay, "note": lambda args, ctx: {"ok": True}},
            **options,
        )

    return open_


def snapshot_file(root: Path, thread: str) -> tuple[int, dict[str, Any]]:
    head, _, body = (root / "acme" / f"{thread}.snapshot").read_bytes().partition(b"\n")
    return int(head), orjson.loads(body)


def log_file(root: Path, thread: str) -> Path:
    return root / "acme" / f"{thread}.jsonl"


async def paused(runtime: Runtime, thread: str) -> None:
    async for event in runtime.run_specialist("clerk", PAY_5, thread):
        if event["type"] == "approval-required":
            break


async def test_snapshots_are_written_every_n_events_and_at_run_ends(
    open_clerk: Callable[..., Runtime], tmp_path: Path
) -> None:
    runtime = open_clerk(log_path=tmp_path, snapshot_every=4)
    await drain(runtime.run_specialist("clerk", ADD, "t"))
    events = runtime.replay("t").lines
    position, snapshot = snapshot_file(tmp_path, "t")
    assert snapshot["seq"] == events, "the run's end is snapshotted"
    assert position == log_file(tmp_path, "t").stat().st_size
    assert snapshot["thread_id"] == "t"
    assert snapshot["tenant"] == "acme"

    await paused(runtime, "t")
    _, at_gate = snapshot_file(tmp_path, "t")
    assert events < at_gate["seq"] <= runtime.replay("t").lines, "every 4 events mid-run"
    assert runtime.replay("t").lines - at_gate["seq"] < 4


async def test_a_reopened_thread_folds_only_the_log_after_its_snapshot(
    open_clerk: Callable[..., Runtime], tmp_path: Path, paid: list[int]
) -> None:
    first = open_clerk(log_path=tmp_path)
    await drain(first.run_specialist("clerk", ADD, "t"))
    covered = snapshot_file(tmp_path, "t")[1]["seq"]
    await paused(first, "t")
    first.close()
    whole = log_file(tmp_path, "t").read_bytes()
    expected = _native.replay(whole).snapshot("t")

    # Blank out the covered part of the log, byte for byte: a full replay could not read it
    # any more, so a runtime that gets the thread right read only the tail.
    lines = whole.splitlines(keepends=True)
    blanked = b"".join(b" " * (len(line) - 1) + b"\n" for line in lines[:covered])
    log_file(tmp_path, "t").write_bytes(blanked + b"".join(lines[covered:]))

    second = open_clerk(log_path=tmp_path)
    assert second.replay("t").snapshot == orjson.loads(expected)
    gate = second.replay("t").snapshot["run"]["pending"]["approval"]["id"]
    stream = await second.respond_to_approval(gate, "approve")
    assert stream is not None
    events = [event async for event in stream]
    assert finish(events)["finishReason"] == "stop"
    assert paid == [5]


@pytest.mark.parametrize("damage", ["flipped", "ahead of the log", "another thread", "format"])
async def test_a_snapshot_that_cannot_be_trusted_falls_back_to_the_whole_log(
    open_clerk: Callable[..., Runtime],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    first = open_clerk(log_path=tmp_path)
    await drain(first.run_specialist("clerk", ADD, "t"))
    await drain(first.run_specialist("clerk", ADD, "u"))
    first.close()
    path = tmp_path / "acme" / "t.snapshot"
    head, _, body = path.read_bytes().partition(b"\n")
    if damage == "flipped":
        body = body.replace(b'"last_seq":', b'"last_seq":9')
    elif damage == "ahead of the log":
        head = str(int(head) + 10).encode()
    elif damage == "another thread":
        head, _, body = (tmp_path / "acme" / "u.snapshot").read_bytes().partition(b"\n")
    else:
        doc = orjson.loads(body)
        body = orjson.dumps({**doc, "snapshot": 99})
    path.write_bytes(head + b"\n" + body)
    expected = orjson.loads(_native.replay(log_file(tmp_path, "t").read_bytes()).snapshot("t"))

    second = open_clerk(log_path=tmp_path)
    with caplog.at_level(logging.WARNING, logger="flowai.runtime"):
        assert second.replay("t").snapshot == expected
        events = await drain(second.run_specialist("clerk", "and now?", "t"))
    assert finish(events)["finishReason"] == "stop"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert all("replaying its whole log" in w for w in warnings), warnings
    assert snapshot_file(tmp_path, "t")[1]["seq"] == second.replay("t").lines, "rewritten"


@pytest.mark.parametrize("with_files", [True, False])
async def test_idle_threads_leave_memory_and_come_back_from_their_snapshot(
    open_clerk: Callable[..., Runtime], tmp_path: Path, paid: list[int], with_files: bool
) -> None:
    options: dict[str, Any] = {"evict_after": 3600.0}
    if with_files:
        options["log_path"] = tmp_path
    runtime = open_clerk(**options)
    await drain(runtime.run_specialist("clerk", "first question", "a"))
    await paused(runtime, "b")
    assert runtime.evict_idle(idle_for=3600.0) == [], "both were used just now"
    assert sorted(runtime.evict_idle()) == ["a", "b"]
    assert runtime.evict_idle() == [], "nothing left to evict"

    await drain(runtime.run_specialist("clerk", "second question", "a"))
    prompts = [
        m["content"] for m in runtime.replay("a").snapshot["messages"] if m["role"] == "user"
    ]
    assert prompts == ["first question", "second question"], "the history came back"

    gate = runtime.replay("b").snapshot["run"]["pending"]["approval"]["id"]
    stream = await runtime.respond_to_approval(gate, "approve")
    assert stream is not None, "the evicted gate is decided from its snapshot"
    assert finish([event async for event in stream])["finishReason"] == "stop"
    assert paid == [5]


async def test_evict_after_evicts_on_its_own_as_the_runtime_works(
    open_clerk: Callable[..., Runtime], tmp_path: Path
) -> None:
    runtime = open_clerk(log_path=tmp_path, evict_after=0.0)
    await drain(runtime.run_specialist("clerk", "hello", "a"))
    await drain(runtime.run_specialist("clerk", "hello", "b"))
    # b's steps swept a, which no stream drove any more.
    assert runtime.evict_idle() == ["b"]
    events = await drain(runtime.run_specialist("clerk", "again", "a"))
    assert finish(events)["finishReason"] == "stop"


def test_bad_policies_are_spec_errors(open_clerk: Callable[..., Runtime], tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="snapshot_every"):
        open_clerk(log_path=tmp_path, snapshot_every=0)
    with pytest.raises(SpecError, match="evict_after"):
        open_clerk(evict_after=-1.0)
