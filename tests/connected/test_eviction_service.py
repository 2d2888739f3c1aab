"""Runtime-service eviction on the real Kafka (issue 12, bounded memory): a thread idle for
``--evict-after`` leaves memory for the instance's local store and comes back on its next
input with the same events as a thread never evicted; a thread evicted at an approval gate
can be decided; a runtime killed with SIGKILL after evicting is replaced by one that brings
the evicted threads back with nothing lost and nothing logged twice."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import HERE, PARTITIONS, RunLog, ToolResponder, runtime_args
from processes import Service, until
from services.runtime.store import ThreadStore, store_path

from flowai_harness import create_runtime
from flowai_harness.kafka import bus
from flowai_harness.kafka.client import Client

pytestmark = pytest.mark.connected

sys.path.insert(0, str(HERE))
from client_app import spec  # noqa: E402


def script(*steps: tuple[str, dict[str, Any]]) -> str:
    return json.dumps({"script": [{"tool": tool, "args": args} for tool, args in steps]})


def evicting_runtime(
    bootstrap: str, prefix: str, state_dir: Path, instance: str
) -> tuple[str, ...]:
    args = list(runtime_args(bootstrap, prefix))
    args[args.index("flowai_test_app:spec")] = "client_app:spec"
    return (
        *args, "--evict-after", "0.3", "--state-dir", str(state_dir), "--instance-id", instance,
        "--session-timeout-ms", "6000", "--snapshot-every", "3", "--checkpoint-every", "10",
    )  # fmt: skip


def without_latency(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] != "data-latency-summary"]


@pytest.fixture
async def responder(kafka_bootstrap: str, topics: bus.Topics) -> AsyncIterator[ToolResponder]:
    answers = ToolResponder(kafka_bootstrap, topics, spec)
    await answers.start()
    yield answers
    await answers.close()


class Evicted:
    """Whether the runtime evicted a thread at its latest seq: its snapshot is in the
    instance's store (written there only on eviction) and covers that seq."""

    def __init__(self, state_dir: Path, prefix: str, instance: str) -> None:
        self.path = store_path(state_dir, f"{prefix}.runtime", instance)

    def seq(self, thread_id: str) -> int | None:
        if not self.path.exists():
            return None
        store = ThreadStore(self.path)
        try:
            number = bus.partition_for(bus.thread_key("acme", thread_id), PARTITIONS)
            return store.covered(number, thread_id)
        finally:
            store.close()

    async def wait(self, thread_id: str, seq: int, runtime: Service) -> None:
        async def evicted() -> bool:
            return self.seq(thread_id) == seq

        await until(
            evicted, within=30, what=f"{thread_id} evicted at seq {seq}", services=[runtime]
        )


async def last_seq(client: Client, thread_id: str) -> int:
    return int((await client.replay(thread_id))[-1]["seq"])


async def test_an_evicted_thread_continues_as_if_never_evicted(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    responder: ToolResponder,
    tmp_path: Path,
) -> None:
    runtime = spawn("runtime", *evicting_runtime(kafka_bootstrap, topics.prefix, tmp_path, "ev"))
    evicted = Evicted(tmp_path, topics.prefix, "ev")
    prompts = [script(("add", {"a": n, "b": 1}), ("add", {"a": 1, "b": n})) for n in range(3)]
    embedded = create_runtime(spec, interpreter="scripted")
    for prompt in prompts:
        remote = await asyncio.wait_for(_collect(client.query(prompt, "conv")), 60)
        local = [event async for event in embedded.query(prompt, "conv")]
        assert without_latency(remote) == without_latency(local)
        # Out of memory before the next turn: that turn comes from the store.
        await evicted.wait("conv", await last_seq(client, "conv"), runtime)
    replayed = await client.replay("conv")
    assert [e["seq"] for e in replayed] == list(range(1, len(replayed) + 1))
    assert Counter(e["type"] for e in replayed)["finish"] == len(prompts)


async def test_a_thread_evicted_at_an_approval_gate_can_be_decided(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    responder: ToolResponder,
    tmp_path: Path,
) -> None:
    runtime = spawn("runtime", *evicting_runtime(kafka_bootstrap, topics.prefix, tmp_path, "gate"))
    evicted = Evicted(tmp_path, topics.prefix, "gate")
    events: list[dict[str, Any]] = []

    async def run() -> None:
        async for event in client.query(script(("wipe", {"table": "orders"})), "gated"):
            events.append(event)

    task = asyncio.create_task(run())
    try:

        async def gated() -> bool:
            return any(e["type"] == "approval-required" for e in events)

        await until(gated, within=60, what="the approval request", services=[runtime])
        await evicted.wait("gated", await last_seq(client, "gated"), runtime)
        [request] = [e for e in events if e["type"] == "approval-required"]
        await client.respond_to_approval(request["data"]["id"], "approve", approver="ana")
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
    [result] = [e for e in events if e["type"] == "tool-invocation" and e["state"] == "result"]
    assert result["result"] == {"wiped": "orders"}
    assert events[-2]["type"] == "finish"


async def test_a_runtime_killed_after_evicting_is_replaced_with_nothing_lost_or_doubled(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    client: Client,
    responder: ToolResponder,
    run_log: RunLog,
    tmp_path: Path,
) -> None:
    args = evicting_runtime(kafka_bootstrap, topics.prefix, tmp_path, "kill")
    first = spawn("runtime-first", *args)
    evicted = Evicted(tmp_path, topics.prefix, "kill")
    threads = [f"k-{n}" for n in range(12)]
    prompt = script(("add", {"a": 2, "b": 2}))
    await asyncio.wait_for(
        asyncio.gather(*(_collect(client.query(prompt, thread)) for thread in threads)), 90
    )
    for thread in threads:
        await evicted.wait(thread, await last_seq(client, thread), first)
    first.kill()
    # The same instance comes back over its store; a second over none (rebuilt from Kafka).
    second = spawn("runtime-second", *args)
    for thread in threads[:6]:
        await asyncio.wait_for(_collect(client.query(prompt, thread)), 60)
    second.kill()
    fresh_dir = tmp_path / "fresh"
    third = spawn(
        "runtime-third", *evicting_runtime(kafka_bootstrap, topics.prefix, fresh_dir, "kill")
    )
    for thread in threads:
        await asyncio.wait_for(_collect(client.query(prompt, thread)), 60)

    whole = await RunLog.read_whole(kafka_bootstrap, topics)
    ids = [entry["id"] for entry in whole.entries]
    assert len(ids) == len(set(ids)), "an event was logged twice"
    for n, thread in enumerate(threads):
        entries = whole.thread(thread)
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), thread
        kinds = Counter(e["payload"]["type"] for e in entries)
        runs = 3 if n < 6 else 2
        assert kinds["run-start"] == runs, thread
        assert kinds["finish"] == runs, thread
    assert third.alive()


async def _collect(stream: Any) -> list[dict[str, Any]]:
    return [event async for event in stream]
