"""Runtime-service memory with and without eviction (issue 12, bounded memory): prints
figures, asserts nothing.

    set -a; . var/services/env; set +a; export FLOWAI_ALLOW_UNREPLICATED=1
    python bench/service_memory.py [--threads 100000] [--evict-after 5] [--modes on,off]

For each mode a fresh topic prefix and ONE runtime service process (``python -m
services.runtime``, scripted app, one-step threads with no tool so no other service is
needed). The benchmark publishes ``--threads`` queries on new thread ids as fast as the
service takes them and prints the service's RSS (/proc, VmRSS) against the threads it has
logged so far (from the run log's end offsets), then the slope in bytes per thread over the
second half of the run. With eviction on, it then times a second query on 100 threads
still in memory and on 100 evicted ones (one at a time, through the client, from publish to
the run's end): the difference is the extra latency of an input to an evicted thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from flowai_harness import connect
from flowai_harness.kafka import bus
from flowai_harness.messages import Query

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "tests" / "connected"
PARTITIONS = 3
PROMPT = json.dumps({"script": []})


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def query(thread_id: str, n: int) -> bytes:
    return orjson.dumps(
        {
            "schema": Query.NAME, "id": f"mem-{thread_id}-{n}", "tenant": "acme",
            "thread_id": thread_id, "run_id": None, "causation_id": None,
            "ts": int(time.time() * 1000), "payload": {"prompt": PROMPT, "agent": None},
        }
    )  # fmt: skip


async def logged(bootstrap: str, topics: bus.Topics, per_thread: int) -> int:
    consumer = bus.consumer(bootstrap, client_id="mem-bench-offsets")
    await consumer.start()
    try:
        tps = [TopicPartition(topics.runtime_events, n) for n in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        # A transaction carries many threads' runs and one commit marker: counting by events
        # over-counts by at most one marker per transaction.
        return sum(ends.values()) // per_thread
    finally:
        await consumer.stop()


async def wait_logged(bootstrap: str, topics: bus.Topics, per_thread: int, at_least: int) -> int:
    """Polls the run log's end offsets (the service says nothing else) until ``at_least``."""
    while True:
        done = await logged(bootstrap, topics, per_thread)
        if done >= at_least:
            return done
        await asyncio.sleep(0.5)


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):.1f} ms, p99 {p99:.1f} ms"


async def timed_queries(client: object, threads: list[str]) -> list[float]:
    took = []
    for thread in threads:
        started = time.perf_counter()
        async for _ in client.query(PROMPT, thread):  # type: ignore[attr-defined]
            pass
        took.append((time.perf_counter() - started) * 1000)
    return took


def start_service(
    bootstrap: str, prefix: str, evict_after: float, state: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{APP_DIR}:{REPO}", "FLOWAI_ALLOW_UNREPLICATED": "1"}
    return subprocess.Popen(
        [
            sys.executable, "-m", "services.runtime", "--app", "flowai_test_app:spec",
            "--bootstrap", bootstrap, "--prefix", prefix, "--partitions", str(PARTITIONS),
            "--allow-unsigned-decisions", "--evict-after", str(evict_after),
            "--state-dir", state, "--instance-id", "mem", "--log-level", "warning",
        ],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip


async def run_mode(bootstrap: str, threads: int, evict_after: float) -> None:
    prefix = f"mem{uuid.uuid4().hex[:8]}"
    topics = bus.Topics(prefix)
    state = tempfile.mkdtemp(prefix="flowai-mem-")
    await bus.ensure_topics(bootstrap, topics, partitions=PARTITIONS, allow_unreplicated=True)
    service = start_service(bootstrap, prefix, evict_after, state)
    label = f"eviction after {evict_after:g} s" if evict_after else "eviction off"
    print(f"\n== {label}: {threads} one-step threads through one runtime (pid {service.pid})")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        async with connect(bootstrap, tenant="acme", topic_prefix=prefix) as client:
            # The first run makes the topics known and says how many events a thread logs.
            first = [e async for e in client.query(PROMPT, "warm-0")]
            per_thread = len(await client.replay("warm-0"))
            del first
            started = time.perf_counter()
            samples: list[tuple[int, float]] = []
            sent = 0
            batch = 2000
            while sent < threads:
                for n in range(sent, min(threads, sent + batch)):
                    thread = f"t-{n}"
                    await producer.send(
                        topics.queries, query(thread, 0), key=bus.thread_key("acme", thread)
                    )
                await producer.flush()
                sent = min(threads, sent + batch)
                # Keep the backlog near a few batches: RSS then reflects the threads handled.
                done = await wait_logged(bootstrap, topics, per_thread, sent - 4 * batch)
                samples.append((done, rss_mb(service.pid)))
                if len(samples) % 10 == 0:
                    elapsed = time.perf_counter() - started
                    print(f"  {done:>9} threads  RSS {samples[-1][1]:7.1f} MB  ({elapsed:.0f} s)")
            done = await wait_logged(bootstrap, topics, per_thread, threads)
            samples.append((done, rss_mb(service.pid)))
            elapsed = time.perf_counter() - started
            half = [s for s in samples if s[0] >= done // 2]
            slope = (half[-1][1] - half[0][1]) * 1024 * 1024 / max(1, half[-1][0] - half[0][0])
            print(
                f"  {done} threads in {elapsed:.0f} s ({done / elapsed:.0f}/s); RSS at the end "
                f"{samples[-1][1]:.1f} MB, max {max(r for _, r in samples):.1f} MB; slope over "
                f"the second half {slope:.0f} bytes/thread"
            )
            if evict_after:
                await asyncio.sleep(evict_after * 2 + 6)
                print(f"  RSS after the idle threads were evicted: {rss_mb(service.pid):.1f} MB")
                cold = await timed_queries(client, [f"t-{n}" for n in range(100)])
                hot = await timed_queries(client, [f"t-{n}" for n in range(100)])
                print(f"  second query, thread in memory: {percentiles(hot)}")
                print(f"  second query, thread evicted:   {percentiles(cold)}")
                extra = [c - h for c, h in zip(sorted(cold), sorted(hot), strict=True)]
                print(f"  extra latency of an evicted thread: {percentiles(extra)}")
    finally:
        await producer.stop()
        service.terminate()
        service.wait(30)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=100_000)
    p.add_argument("--evict-after", type=float, default=5.0)
    p.add_argument("--modes", default="on,off")
    args = p.parse_args()
    bootstrap = os.environ.get("FLOWAI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    for mode in args.modes.split(","):
        await run_mode(bootstrap, args.threads, args.evict_after if mode == "on" else 0.0)


if __name__ == "__main__":
    asyncio.run(main())
