"""Scale-out benchmark on the local Kafka: prints figures, asserts nothing.

    set -a; . var/services/env; set +a
    python bench/scale.py [--runtimes 1,2,3] [--workers 1,2,3,4] [--seconds 8]
                          [--concurrency 128] [--tools worker|inline]

For every pair (runtime instances, tool workers), on fresh topics (6 partitions, spread by
the consumer groups over the instances): start the processes, wait until every one of them
is in its consumer group, warm up, then run a closed loop of ``--concurrency`` clients, each
sending its next one-tool-step query as soon as the last one finished, for ``--seconds``.
Throughput is the queries finished per second (every one of them checked finished: zero
loss); with it the p50/p99 latency under that load and the CPU each query took per process
kind (from /proc: on a shared machine the CPU per query moves much less than the rates).

Then the efficiency of each step: adding a runtime instance (the same workers) or a worker
(the same runtimes) multiplies the throughput by some factor; efficiency is that factor over
the ideal one ((n+1)/n). All processes, the broker, Redis and the client share one machine,
so past its cores nothing scales: the figures say where that is.

Must not import the services (it starts them as processes, like kafka_e2e.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from flowai_harness import connect
from flowai_harness.kafka import bus
from kafka_e2e import (
    PARTITIONS,
    TENANT,
    CpuMeter,
    Processes,
    delete_topics,
    one_query,
    percentile,
    wait_ready,
)


async def group_members(bootstrap: str, group: str) -> int:
    """How many members a stable consumer group has (0 while it rebalances)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    except GroupCoordinatorNotAvailableError:
        return 0
    finally:
        await admin.close()
    [described] = response.to_object()["groups"]
    return len(described["members"]) if described["state"] == "Stable" else 0


async def wait_groups(bootstrap: str, wanted: dict[str, int], within: float = 90) -> None:
    deadline = time.monotonic() + within
    while True:
        counts = {group: await group_members(bootstrap, group) for group in wanted}
        if counts == wanted:
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"consumer groups not settled in {within:g} s: {counts}, want {wanted}"
            )
        await asyncio.sleep(0.2)


async def closed_loop(client: Any, concurrency: int, seconds: float, tag: str) -> dict[str, Any]:
    """``concurrency`` clients, each sending its next query when the last one finished."""
    latencies: list[float] = []
    lost = 0
    stop_at = time.perf_counter() + seconds

    async def one_client(n: int) -> None:
        nonlocal lost
        k = 0
        while time.perf_counter() < stop_at:
            try:
                latency, ok = await asyncio.wait_for(one_query(client, f"{tag}-{n}-{k}"), 30)
            except TimeoutError:
                ok, latency = False, 0.0
            if ok:
                latencies.append(latency)
            else:
                lost += 1
            k += 1

    begin = time.perf_counter()
    await asyncio.gather(*(one_client(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - begin
    return {"latencies": latencies, "lost": lost, "elapsed": elapsed}


async def measure(args: argparse.Namespace, runtimes: int, workers: int) -> float:
    bootstrap = args.bootstrap
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    topics = bus.Topics(prefix)
    await bus.ensure_topics(bootstrap, topics, partitions=PARTITIONS)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / prefix
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = Processes(bootstrap, prefix, log_dir)
    procs.inline = args.tools == "inline"
    try:
        for n in range(runtimes):
            procs.runtime(f"runtime-{n}")
        groups = {f"{prefix}.runtime": runtimes}
        if args.tools == "worker":
            for n in range(workers):
                procs.tools("worker", name=f"tools-{n}")
            groups[f"{prefix}.tools"] = workers
        async with connect(bootstrap, tenant=TENANT, topic_prefix=prefix) as client:
            await wait_groups(bootstrap, groups)
            await wait_ready(client)
            await closed_loop(client, args.concurrency, 2.0, "warm")
            meter = CpuMeter(procs)
            before = meter.snapshot()
            result = await closed_loop(client, args.concurrency, args.seconds, "run")
            cpu = CpuMeter.per_query(before, meter.snapshot(), len(result["latencies"]))
    finally:
        procs.stop()
        await delete_topics(bootstrap, topics.all())
    ms = [x * 1000 for x in result["latencies"]]
    rate = len(ms) / result["elapsed"]
    label = f"{runtimes} runtime{'s' if runtimes > 1 else ''}"
    if args.tools == "worker":
        label += f", {workers} worker{'s' if workers > 1 else ''}"
    print(
        f"  {label:<24} {rate:7.0f} queries/s  p50 {statistics.median(ms):6.0f} ms  "
        f"p99 {percentile(ms, 0.99):6.0f} ms  lost {result['lost']}  {cpu}",
        flush=True,
    )
    return rate


def efficiency(table: dict[tuple[int, int], float]) -> None:
    print("efficiency of each step (measured factor / ideal factor):")
    for (r, w), rate in sorted(table.items()):
        steps = [((r + 1, w), f"runtimes {r} -> {r + 1}", (r + 1) / r)]
        if w:  # 0: the tool is placed inline, there are no workers
            steps.append(((r, w + 1), f"workers {w} -> {w + 1}", (w + 1) / w))
        for (r2, w2), what, ideal in steps:
            if (r2, w2) in table and rate > 0:
                factor = table[(r2, w2)] / rate
                print(
                    f"  at {r} runtime(s), {w} worker(s): {what}: x{factor:.2f} of "
                    f"x{ideal:.2f} = {factor / ideal:.0%}"
                )


async def run(args: argparse.Namespace) -> None:
    runtimes = [int(n) for n in args.runtimes.split(",")]
    workers = [int(n) for n in args.workers.split(",")] if args.tools == "worker" else [0]
    print(
        f"{os.cpu_count()} cpus, broker {args.bootstrap}, {PARTITIONS} partitions, tools: "
        f"{args.tools}, closed loop of {args.concurrency} clients for {args.seconds:g} s each"
    )
    table: dict[tuple[int, int], float] = {}
    for r in runtimes:
        for w in workers:
            table[(r, w)] = await measure(args, r, w)
    efficiency(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("FLOWAI_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    )
    parser.add_argument("--runtimes", default="1,2,3")
    parser.add_argument("--workers", default="1,2,3,4")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--tools", choices=("worker", "inline"), default="worker")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
