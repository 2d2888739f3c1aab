"""What the runtime-service connected tests share: the run-log follower, the in-test tool
responder and the runtime's command line (the fixtures in conftest.py build on these)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from flowai_harness.kafka import bus
from flowai_harness.specs import RuntimeSpec
from flowai_harness.toolcall import run_tool_call, tool_result

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PARTITIONS = 3


def runtime_args(bootstrap: str, prefix: str, *extra: str) -> tuple[str, ...]:
    """``python`` arguments of a runtime service on the test app."""
    return (
        "-m",
        "services.runtime",
        "--app",
        "flowai_test_app:spec",
        "--bootstrap",
        bootstrap,
        "--prefix",
        prefix,
        "--partitions",
        str(PARTITIONS),
        *extra,
    )


def live_runtime_args(bootstrap: str, prefix: str, *extra: str) -> tuple[str, ...]:
    """``python`` arguments of a runtime service on the live-model app (live_app.py)."""
    return (
        "-m", "services.runtime", "--app", "live_app:spec", "--interpreter", "live",
        "--bootstrap", bootstrap, "--prefix", prefix, "--partitions", str(PARTITIONS), *extra,
    )  # fmt: skip


def live_worker_args(
    bootstrap: str, redis_url: str, prefix: str, role: str, *extra: str
) -> tuple[str, ...]:
    """``python`` arguments of workers (``--role tools|models|all``) on the live-model app."""
    return (
        "-m", "services.tools", "--app", "live_app:spec", "--role", role,
        "--bootstrap", bootstrap, "--redis", redis_url, "--prefix", prefix, *extra,
    )  # fmt: skip


class RunLog:
    """Follows every partition of the run log (read_committed) from the beginning."""

    def __init__(self, bootstrap: str, topics: bus.Topics) -> None:
        self.topics = topics
        self.consumer = bus.consumer(bootstrap)
        self.entries: list[dict[str, Any]] = []
        self.letters: list[dict[str, Any]] = []
        self.invocations: list[dict[str, Any]] = []

    @classmethod
    async def read_whole(cls, bootstrap: str, topics: bus.Topics) -> RunLog:
        """A follower that read every partition to its end as of now, then stopped."""
        log = cls(bootstrap, topics)
        await log.start()
        try:
            ends = await log.consumer.end_offsets(list(log.consumer.assignment()))

            async def behind() -> bool:
                return any([await log.consumer.position(tp) < end for tp, end in ends.items()])

            while await behind():
                await log.poll()
        finally:
            await log.close()
        return log

    async def start(self) -> None:
        await self.consumer.start()
        tps = [
            TopicPartition(topic, p)
            for topic in (
                self.topics.runtime_events,
                self.topics.dead_letters,
                self.topics.tool_invocations,
            )
            for p in range(PARTITIONS)
        ]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=50)
        for tp, records in batch.items():
            target = {
                self.topics.runtime_events: self.entries,
                self.topics.dead_letters: self.letters,
                self.topics.tool_invocations: self.invocations,
            }[tp.topic]
            target.extend(orjson.loads(record.value) for record in records)

    async def wait(self, condition: Callable[[], bool], within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {within} s; {len(self.entries)} events, "
                    f"{len(self.letters)} dead letters"
                )
            await self.poll()

    def thread(self, thread_id: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry["thread_id"] == thread_id]

    def finished(self, thread_id: str) -> bool:
        return any(
            entry["payload"]["type"] in ("finish", "error") for entry in self.thread(thread_id)
        )

    async def close(self) -> None:
        await self.consumer.stop()


class ToolResponder:
    """A minimal tool worker: runs each tool invocation of the test app (concurrently) and
    publishes its ToolResult, keyed by thread, through the same code the tool workers use."""

    def __init__(self, bootstrap: str, topics: bus.Topics, spec: RuntimeSpec) -> None:
        self.topics = topics
        self.tools = {tool.name: tool for tool in spec.tools}
        self.consumer = bus.consumer(bootstrap)
        self.producer = bus.producer(bootstrap)
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop_task: asyncio.Task[None] | None = None
        self.handled = 0

    async def start(self) -> None:
        await self.consumer.start()
        await self.producer.start()
        tps = [TopicPartition(self.topics.tool_invocations, p) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self.loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    task = asyncio.get_running_loop().create_task(self._answer(record.value))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)

    async def _answer(self, value: bytes) -> None:
        invocation = orjson.loads(value)
        tool = self.tools[invocation["payload"]["tool"]]
        payload = await run_tool_call(tool, invocation, {})
        result = tool_result(invocation, payload, id=f"result/{invocation['id']}", ts=bus.now_ms())
        await self.producer.send_and_wait(
            self.topics.tool_results,
            result,
            key=bus.thread_key(invocation["tenant"], invocation["thread_id"]),
        )
        self.handled += 1

    async def close(self) -> None:
        if self.loop_task is not None:
            self.loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.loop_task
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.consumer.stop()
        await self.producer.stop()
