"""Distributed benchmark on the local Kafka: prints figures, asserts nothing.

    set -a; . var/services/env; set +a
    python bench/kafka_e2e.py [--rate 50] [--seconds 10] [--runs 1] [--warmup 5]
                              [--tools worker|responder] [--replay-events 100000]
                              [--skip latency,ramp,replay,raw]

What it measures (a fresh topic prefix each run; its topics are deleted at the end):

- start-up: the first 20 queries after the services answered, one at a time.
- warm-up: ``--warmup`` seconds at the offered rate right after start-up, printed apart.
- latency (steady state): end-to-end time of a one-tool-step query at a fixed offered rate:
  from just before the client publishes the Query to the moment it reads the run's end from
  the run log (runtime service -> tool -> runtime service, two transactions, read_committed
  at every hop); p50 / p99 / max, ``--runs`` times, with the spread of p99 across runs.
  For the warm-up and the steady state apart: where the time goes, phase by phase (client
  produce, runtime poll, engine, transaction + markers + read_committed fetch, the tool
  worker's Redis calls and tool, result back, client read), from the per-hop timestamps the
  services put in a ``flowai-timing`` header when ``FLOWAI_TIMING=1`` (set here); the
  runtime's own transaction phases (engine, records + offsets sent, commit), which it logs
  on SIGUSR1; and Redis round trips per query (INFO commandstats, steady state).
- ramp: offered rates rising step by step, each for a few seconds; the highest rate at which
  every query finished (zero loss), the last within 0.5 s of the offer ending, with p99 under
  a second (so the service kept up instead of queueing).
- replay: a fresh runtime service rebuilding 100,000 logged events (10-event threads spread
  over the partitions) on assignment: the figure is from its own log line (read from Kafka +
  ``Engine.load``).
- raw: aiokafka produce and consume of 300-byte records on the same broker, for scale.

The services run as separate processes (``python -m services.runtime`` and, with ``--tools
worker``, ``python -m services.tools`` with Redis; ``--tools responder`` uses a minimal
in-benchmark tool process instead). Figures depend on the machine and its load (client,
services and broker share it); compare runs on one machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from flowai_harness import (
    connect,
    create_runtime,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)
from flowai_harness.kafka import bus
from flowai_harness.toolcall import run_tool_call, tool_result

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 6
TENANT = "bench"


@define_tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


worker = define_specialist(name="worker", model="claude-haiku-4-5", prompt="Add.", tools=[add])
spec = define_runtime(
    tenant=define_tenant(TENANT, "v1"), agents=[worker], providers={"anthropic": {}}
)
# The same tool placed inline (``--tools inline``): the runtime service runs it.
add_inline = define_tool(
    "add", {"a": int, "b": int}, description="Add two integers.", placement="inline"
).bind(add.handler)
spec_inline = define_runtime(
    tenant=define_tenant(TENANT, "v1"),
    agents=[
        define_specialist(
            name="worker", model="claude-haiku-4-5", prompt="Add.", tools=[add_inline]
        )
    ],
    providers={"anthropic": {}},
)

ONE_TOOL = json.dumps({"tool": "add", "args": {"a": 1, "b": 2}})


class CpuMeter:
    """CPU seconds used by the benchmark's services, the broker, Redis and the client
    (from /proc), so the cost of a query can be told apart from how busy the machine is:
    on a shared machine the CPU a query takes moves much less than its latency."""

    def __init__(self, procs: Processes) -> None:
        self.procs = procs
        folder = Path(os.environ.get("FLOWAI_SERVICES_DIR", REPO / "var" / "services"))
        self.fixed: dict[str, int] = {}
        for name, pid_file in (("broker", "kafka/kafka.pid"), ("redis", "redis/redis.pid")):
            with contextlib.suppress(OSError, ValueError):
                self.fixed[name] = int((folder / pid_file).read_text().split()[0])

    def snapshot(self) -> dict[str, float]:
        used: dict[str, float] = {"client": time.process_time()}
        pids = {
            log.stem.split("-")[0]: process.pid
            for process, log in self.procs.started
            if process.poll() is None
        }
        for name, pid in [*self.fixed.items(), *pids.items()]:
            used[name] = used.get(name, 0.0) + _cpu_seconds(pid)
        return used

    @staticmethod
    def per_query(before: dict[str, float], after: dict[str, float], queries: int) -> str:
        if not queries:
            return "no queries"
        parts = {
            name: (after[name] - before.get(name, 0.0)) * 1000 / queries
            for name in after
            if name in before
        }
        total = sum(parts.values())
        listed = ", ".join(f"{name} {ms:.2f}" for name, ms in parts.items())
        return f"CPU per query {total:.2f} ms ({listed})"


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime: fields 14 and 15 of stat, counted after the command's ")".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_url() -> str:
    return os.environ.get("FLOWAI_REDIS_URL", "redis://127.0.0.1:16379/0")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# --- processes -------------------------------------------------------------------------------


class Processes:
    def __init__(self, bootstrap: str, prefix: str, log_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.log_dir = log_dir
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []
        # Tools placed inline (--tools inline): the runtime needs the ledger's Redis.
        self.inline = False

    def spawn(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.log_dir / f"{name}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)]),
            "PYTHONUNBUFFERED": "1",
            # No approval gates here: the runtime need not check decision signatures.
            "FLOWAI_ALLOW_UNSIGNED_DECISIONS": "1",
            # Per-hop timestamps in headers and the runtime's transaction phases on SIGUSR1
            # (FLOWAI_TIMING=0 in the benchmark's environment: without, to measure its cost).
            bus.TIMING_ENV: os.environ.get(bus.TIMING_ENV, "1"),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.started.append((process, log))
        return process, log

    def runtime(
        self, name: str = "runtime", log_level: str = "WARNING", *extra: str
    ) -> tuple[subprocess.Popen[bytes], Path]:
        inline = self.inline
        return self.spawn(
            name,
            "-m",
            "services.runtime",
            "--app",
            "kafka_e2e:spec_inline" if inline else "kafka_e2e:spec",
            *(("--redis", redis_url()) if inline else ()),
            *extra,
            "--bootstrap",
            self.bootstrap,
            "--prefix",
            self.prefix,
            "--partitions",
            str(PARTITIONS),
            "--log-level",
            log_level,
        )

    def tools(self, kind: str, name: str = "tools") -> None:
        if kind == "inline":
            return  # the runtime service runs the tool
        if kind == "worker":
            redis = redis_url()
            self.spawn(
                name,
                "-m",
                "services.tools",
                "--app",
                "kafka_e2e:spec",
                "--bootstrap",
                self.bootstrap,
                "--redis",
                redis,
                "--prefix",
                self.prefix,
                "--concurrency",
                "64",
                "--log-level",
                "WARNING",
            )
        else:
            self.spawn(
                "responder",
                str(REPO / "bench" / "kafka_e2e.py"),
                "--responder",
                "--bootstrap",
                self.bootstrap,
                "--prefix",
                self.prefix,
            )

    def stop(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.terminate()
        for process, _ in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.started.clear()


async def responder(bootstrap: str, prefix: str) -> None:
    """A minimal tool process (``--tools responder``): runs each invocation through
    flowai_harness.toolcall and publishes the result; no Redis, no retries."""
    topics = bus.Topics(prefix)
    tools = {tool.name: tool for tool in spec.tools}
    consumer = bus.consumer(bootstrap, topics.tool_invocations, group_id=f"{prefix}.responder")
    producer = bus.producer(bootstrap)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    invocation = orjson.loads(record.value)
                    payload = await run_tool_call(
                        tools[invocation["payload"]["tool"]], invocation, {}
                    )
                    data = tool_result(
                        invocation, payload, id=f"r/{invocation['id']}", ts=bus.now_ms()
                    )
                    await producer.send(
                        topics.tool_results,
                        data,
                        key=bus.thread_key(invocation["tenant"], invocation["thread_id"]),
                    )
    finally:
        await consumer.stop()
        await producer.stop()


# --- latency and ramp ------------------------------------------------------------------------


# When each query started and ended (wall clock, seconds), for the hop breakdown.
WALL: dict[str, tuple[float, float]] = {}


async def one_query(client: Any, thread_id: str) -> tuple[float, bool]:
    wall = time.time()
    start = time.perf_counter()
    finished = False
    async for event in client.query(ONE_TOOL, thread_id):
        # A run ends with finish, then the entry agent's wrapping tool-agent result.
        finished = finished or event["type"] == "finish"
        if event["type"] == "error":
            finished = False
    elapsed = time.perf_counter() - start
    WALL[thread_id] = (wall, wall + elapsed)
    return elapsed, finished


async def offered(
    client: Any, rate: float, seconds: float, tag: str, within: float
) -> dict[str, Any]:
    """Start ``rate`` queries per second for ``seconds``; wait for all (up to ``within`` s)."""
    count = int(rate * seconds)
    tasks: list[asyncio.Task[tuple[float, bool]]] = []
    begin = time.perf_counter()
    for n in range(count):
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_query(client, f"{tag}-{n}")))
    sent = time.perf_counter() - begin
    done, pending = await asyncio.wait(tasks, timeout=within)
    for task in pending:
        task.cancel()
    results = [task.result() for task in done if not task.cancelled() and task.exception() is None]
    latencies = [latency for latency, ok in results if ok]
    elapsed = time.perf_counter() - begin
    return {
        "offered": rate,
        "count": count,
        "finished": len(latencies),
        "lost": count - len(latencies),
        "send_seconds": sent,
        "elapsed": elapsed,
        "latencies": latencies,
    }


async def warm_up(client: Any) -> None:
    """The first queries after start-up, one at a time: connections, caches, the broker's
    first transactions. Printed apart from the steady state."""
    ms = []
    for n in range(20):
        latency, _ = await one_query(client, f"warm-{n}")
        ms.append(latency * 1000)
    print(
        f"start-up: the first 20 queries, one at a time: first {ms[0]:.1f} ms, "
        f"p50 {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms"
    )


def print_latency(label: str, rate: float, seconds: float, result: dict[str, Any]) -> float:
    ms = [x * 1000 for x in result["latencies"]]
    if not ms:
        print(f"latency at {rate:g}/s ({label}): no query finished")
        return float("nan")
    p99 = percentile(ms, 0.99)
    print(
        f"latency, one-tool-step query at {rate:g}/s for {seconds:g} s ({label}): p50 "
        f"{statistics.median(ms):.1f} ms  p99 {p99:.1f} ms  max {max(ms):.1f} ms  "
        f"(n={len(ms)}, lost {result['lost']})"
    )
    return p99


async def bench_latency(
    client: Any, procs: Processes, topics: bus.Topics, args: argparse.Namespace
) -> None:
    """Warm-up at the offered rate (printed apart), then ``--runs`` steady-state runs."""
    rate, seconds, bootstrap = args.rate, args.seconds, procs.bootstrap
    log_at = 0
    # Services from before the timing headers would take SIGUSR1 as the end.
    timed = True
    if args.warmup > 0:
        result = await offered(client, rate, args.warmup, "warm", within=args.warmup + 30)
        print_latency("warm-up, right after start-up", rate, args.warmup, result)
        timed = await print_breakdown(
            bootstrap, topics, {f"warm-{n}" for n in range(result["count"])}, "warm-up"
        )
        if timed:
            log_at = await runtime_timings(procs, log_at, "warm-up")
    ledger = redis_url() if args.tools in ("worker", "inline") else None
    calls_before = await redis_calls(ledger)
    meter = CpuMeter(procs)
    cpu_before = meter.snapshot()
    p99s = []
    steady: set[str] = set()
    finished = 0
    for run in range(1, args.runs + 1):
        tag = f"lat{run}"
        result = await offered(client, rate, seconds, tag, within=seconds + 30)
        p99s.append(print_latency(f"steady state, run {run}", rate, seconds, result))
        steady |= {f"{tag}-{n}" for n in range(result["count"])}
        finished += result["finished"]
    print(f"  {CpuMeter.per_query(cpu_before, meter.snapshot(), finished)}")
    print_redis_calls(calls_before, await redis_calls(ledger), finished)
    if await print_breakdown(bootstrap, topics, steady, "steady state") and timed:
        await runtime_timings(procs, log_at, "steady state")
    p99s = [p for p in p99s if p == p]
    if len(p99s) > 1:
        print(
            f"p99 over {len(p99s)} runs: {min(p99s):.1f} .. {max(p99s):.1f} ms "
            f"(spread {max(p99s) / min(p99s):.2f}x)"
        )


def parse_timing(header: bytes) -> list[dict[str, float]]:
    """The hops of a timing header (see services.runtime.service.TIMING), in order: each
    hop starts with ``in`` (its input record's timestamp)."""
    hops: list[dict[str, float]] = []
    for pair in header.decode().split(","):
        name, _, value = pair.partition("=")
        if name == "in":
            hops.append({})
        hops[-1][name] = float(value)
    return hops


# The phases of one query, in order: (name, from, to); a mark is "start"/"end" (the client's
# clock) or (hop, stamp) from the timing header of the run's last logged event (hops: 0 the
# runtime on the query, 1 the tool worker, 2 the runtime on the result).
PHASES: list[tuple[str, Any, Any]] = [
    ("client: query built and handed to the producer", "start", (0, "in")),
    ("query produced -> runtime polled it", (0, "in"), (0, "p")),
    ("runtime: engine on the query (+ earlier inputs of the poll)", (0, "p"), (0, "e")),
    ("transaction 1 sent + committed -> tool worker fetched", (0, "e"), (1, "f")),
    ("tool worker: Redis claim+check (begin)", (1, "f"), (1, "b")),
    ("tool worker: tool ran", (1, "b"), (1, "r")),
    ("tool worker: Redis record", (1, "r"), (1, "l")),
    ("tool worker: result handed to the producer", (1, "l"), (2, "in")),
    ("result produced -> runtime polled it", (2, "in"), (2, "p")),
    ("runtime: engine on the result", (2, "p"), (2, "e")),
    ("transaction 2 sent + committed -> client read the run's end", (2, "e"), "end"),
]
INLINE_PHASES: list[tuple[str, Any, Any]] = [
    ("client: query built and handed to the producer", "start", (0, "in")),
    ("query produced -> runtime polled it", (0, "in"), (0, "p")),
    ("runtime: engine + inline tool (+ earlier inputs of the poll)", (0, "p"), (0, "e")),
    ("transaction sent + committed -> client read the run's end", (0, "e"), "end"),
]


async def print_breakdown(
    bootstrap: str, topics: bus.Topics, threads: set[str], label: str
) -> bool:
    """Where one query's time goes: each phase's p50/p99 over the queries ``threads``, from
    the timing headers of their run logs (wall clocks of one machine, 0.01 ms)."""
    counts = await bus.partition_counts(bootstrap, [topics.runtime_events])
    tps = [TopicPartition(topics.runtime_events, p) for p in range(counts[topics.runtime_events])]
    consumer = bus.consumer(bootstrap, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    chains: dict[str, list[dict[str, float]]] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    header = next((v for k, v in record.headers if k == bus.TIMING), None)
                    if header is None:
                        continue
                    thread = orjson.loads(record.value).get("thread_id")
                    if thread in threads:
                        hops = parse_timing(header)
                        if len(hops) > len(chains.get(thread, [])):
                            chains[thread] = hops
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    phases = PHASES if any(len(c) == 3 for c in chains.values()) else INLINE_PHASES
    want = 3 if phases is PHASES else 1
    values: dict[str, list[float]] = {name: [] for name, _, _ in phases}
    for thread, hops in chains.items():
        if thread not in WALL or len(hops) != want:
            continue
        start, end = WALL[thread]

        def mark(
            at: Any, hops: list[dict[str, float]] = hops, start: float = start, end: float = end
        ) -> float:
            if at == "start":
                return start * 1000
            if at == "end":
                return end * 1000
            return hops[at[0]][at[1]]

        for name, before, after in phases:
            values[name].append(mark(after) - mark(before))
    n = len(next(iter(values.values())))
    if not n:
        print(f"  {label}: no timing headers found (services without FLOWAI_TIMING?)")
        return False
    print(
        f"  where the time goes, {label} ({n} queries; p50s add up to about the p50; a "
        "record's own timestamp is a whole ms, so phases next to one are +-1 ms):"
    )
    for name, samples in values.items():
        print(
            f"    {name:<64} p50 {statistics.median(samples):6.2f}  "
            f"p99 {percentile(samples, 0.99):6.2f} ms"
        )
    return True


def transaction_timings(log: Path, since: int) -> tuple[list[str], int]:
    """The runtime's transaction phases it logged on SIGUSR1 after byte ``since`` of its log."""
    text = log.read_bytes()[since:].decode(errors="replace")
    lines = []
    for match in re.finditer(r"timing (.+?): n=(\d+) p50=([0-9.]+) p99=([0-9.]+)", text):
        name, n, p50, p99 = match.groups()
        lines.append(
            f"    runtime {name:<56} p50 {float(p50):6.2f}  p99 {float(p99):6.2f}  (n={n})"
        )
    return lines, since + len(text.encode())


async def runtime_timings(procs: Processes, since: int, label: str) -> int:
    """Ask the runtime for its transaction phases since the last ask and print them."""
    process, log = procs.started[0]
    size = log.stat().st_size
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if b"timing end" in log.read_bytes()[size:]:
            break
        await asyncio.sleep(0.05)
    lines, end = transaction_timings(log, since)
    if lines:
        print(f"  the runtime's transactions, {label}:")
        print("\n".join(lines))
    return end


async def redis_calls(url: str | None) -> dict[str, int]:
    """Redis's command counters (INFO commandstats), to count round trips per query."""
    if url is None:
        return {}
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        stats = await redis.info("commandstats")
    finally:
        await redis.aclose()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def print_redis_calls(before: dict[str, int], after: dict[str, int], queries: int) -> None:
    """Round trips are the script calls (EVALSHA/EVAL: the ledger talks only through
    scripts); Redis counts the commands those scripts run as calls too, shown apart."""
    if not after or not queries:
        return
    delta = {name: after[name] - before.get(name, 0) for name in after}
    # The benchmark's own INFO calls are not the services'.
    delta.pop("info", None)
    scripts = {n: c for n, c in delta.items() if n.startswith(("evalsha", "eval")) and c > 0}
    inner = {n: c for n, c in delta.items() if n not in scripts and c > 0}
    trips = sum(scripts.values()) / queries
    parts = ", ".join(f"{name} {count / queries:.2f}" for name, count in sorted(inner.items()))
    print(
        f"  Redis per query: {trips:.2f} round trips (script calls), running {parts or 'nothing'} "
        "(other users of this Redis count too)"
    )


async def bench_ramp(
    client: Any, rates: list[float], seconds: float, procs: Processes | None = None
) -> float:
    best = 0.0
    meter = CpuMeter(procs) if procs is not None else None
    for rate in rates:
        cpu_before = meter.snapshot() if meter is not None else {}
        result = await offered(client, rate, seconds, f"ramp{int(rate)}", within=seconds + 20)
        ms = [x * 1000 for x in result["latencies"]]
        p99 = percentile(ms, 0.99) if ms else float("nan")
        # Sustained: every query finished, the last one within half a second of the offer
        # ending, and queueing did not push p99 past a second.
        kept_up = result["lost"] == 0 and result["elapsed"] <= seconds + 0.5 and p99 <= 1000
        achieved = result["finished"] / result["elapsed"]
        print(
            f"  offered {rate:6.0f}/s: finished {result['finished']}/{result['count']} "
            f"in {result['elapsed']:.1f} s ({achieved:.0f}/s), p50 "
            f"{statistics.median(ms) if ms else float('nan'):.0f} ms, p99 {p99:.0f} ms"
            f"{'' if kept_up else '  <- did not keep up'}"
        )
        if meter is not None:
            print(f"      {CpuMeter.per_query(cpu_before, meter.snapshot(), result['finished'])}")
        if not kept_up:
            break
        best = rate
    print(f"highest sustained rate with zero loss: {best:g} queries/s")
    return best


# --- replay ----------------------------------------------------------------------------------


async def fill_run_log(bootstrap: str, topics: bus.Topics, events: int) -> int:
    """Write ``events`` run-log lines (copies of one real 10-event thread) to the run log."""
    embedded = create_runtime(spec, interpreter="scripted")
    async for _ in embedded.query(ONE_TOOL, "template"):
        pass
    template = embedded.replay("template").entries
    lines = [orjson.dumps(entry) for entry in template]
    per_thread = len(lines)
    producer = bus.producer(bootstrap, linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    written = 0
    try:
        n = 0
        while written < events:
            thread = f"replay-{n}"
            key = bus.thread_key(TENANT, thread)
            partition = bus.partition_for(key, PARTITIONS)
            for line in lines:
                data = line.replace(b'"thread_id":"template"', f'"thread_id":"{thread}"'.encode())
                data = data.replace(b'"bench/template/', f'"bench/{thread}/'.encode())
                # With the trace header the runtime service puts on every event.
                headers = [(bus.TRACEPARENT, bus.new_traceparent().encode())]
                await producer.send(
                    topics.runtime_events, data, key=key, partition=partition, headers=headers
                )
            written += per_thread
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return written


async def bench_replay(procs: Processes, topics: bus.Topics, events: int) -> None:
    written = await fill_run_log(procs.bootstrap, topics, events)
    process, log = procs.runtime("runtime-replay", log_level="INFO")
    pattern = re.compile(r"replayed (\d+) run-log events of partitions .* in ([0-9.]+) s")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        text = log.read_text(errors="replace")
        match = pattern.search(text)
        if match:
            count, seconds = int(match.group(1)), float(match.group(2))
            print(
                f"replay: a fresh runtime rebuilt {count} events ({written} written) in "
                f"{seconds:.3f} s = {count / seconds:,.0f} events/s"
            )
            break
        await asyncio.sleep(0.1)
    else:
        print(f"replay: no figure (runtime log: {log})")
    process.terminate()


# --- raw aiokafka ----------------------------------------------------------------------------


async def bench_raw(bootstrap: str, topic: str, count: int = 100_000) -> None:
    value = b"x" * 300
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024, acks="all"
    )
    await producer.start()
    start = time.perf_counter()
    for n in range(count):
        await producer.send(topic, value, key=b"%d" % (n % 64))
    await producer.flush()
    produce = time.perf_counter() - start
    await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        enable_auto_commit=False,
    )
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    start = time.perf_counter()
    seen = 0
    while seen < count:
        batch = await consumer.getmany(timeout_ms=500)
        seen += sum(len(records) for records in batch.values())
    consume = time.perf_counter() - start
    await consumer.stop()
    print(
        f"raw aiokafka, {count} x 300 B: produce {count / produce:,.0f}/s (linger 5 ms), "
        f"consume {count / consume:,.0f}/s (read_committed)"
    )


# --- main ------------------------------------------------------------------------------------


async def wait_ready(client: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _, ok = await asyncio.wait_for(one_query(client, f"ready-{uuid.uuid4().hex}"), 15)
            if ok:
                return
        except TimeoutError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the services did not answer a query in time")


async def run(args: argparse.Namespace) -> None:
    bootstrap = args.bootstrap
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topics = bus.Topics(prefix)
    await bus.ensure_topics(bootstrap, topics, partitions=PARTITIONS)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / prefix
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = Processes(bootstrap, prefix, log_dir)
    procs.inline = args.tools == "inline"
    skip = set(args.skip.split(",")) if args.skip else set()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, broker {bootstrap}, "
        f"{PARTITIONS} partitions, tools: {args.tools}, logs in {log_dir}"
    )
    try:
        if not {"latency", "ramp"} <= skip:
            procs.runtime()
            procs.tools(args.tools)
            async with connect(bootstrap, tenant=TENANT, topic_prefix=prefix) as client:
                await wait_ready(client)
                await warm_up(client)
                if "latency" not in skip:
                    await bench_latency(client, procs, topics, args)
                if "ramp" not in skip:
                    rates = [float(r) for r in args.ramp.split(",")]
                    await bench_ramp(client, rates, args.ramp_seconds, procs)
            procs.stop()
        if "replay" not in skip:
            replay_topics = bus.Topics(prefix + "r")
            await bus.ensure_topics(bootstrap, replay_topics, partitions=PARTITIONS)
            replay_procs = Processes(bootstrap, replay_topics.prefix, log_dir)
            try:
                await bench_replay(replay_procs, replay_topics, args.replay_events)
            finally:
                replay_procs.stop()
                await delete_topics(bootstrap, replay_topics.all())
        if "raw" not in skip:
            raw = f"{prefix}.raw"
            await bus.ensure_topics(bootstrap, [raw], partitions=PARTITIONS)
            try:
                await bench_raw(bootstrap, raw)
            finally:
                await delete_topics(bootstrap, [raw])
    finally:
        procs.stop()
        await delete_topics(bootstrap, topics.all())


async def delete_topics(bootstrap: str, names: Any) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    with contextlib.suppress(Exception):
        await admin.delete_topics(list(names))
    await admin.close()


def main() -> None:
    global PARTITIONS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("FLOWAI_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds at the offered rate before the steady state, reported apart (5)",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="latency measurements, one after another (1)"
    )
    parser.add_argument("--ramp", default="100,200,300,400,500,600,800,1000")
    parser.add_argument("--ramp-seconds", type=float, default=5.0)
    parser.add_argument("--replay-events", type=int, default=100_000)
    parser.add_argument(
        "--tools",
        choices=("worker", "inline", "responder"),
        default="worker",
        help="worker: the tool workers (Redis); inline: the tool placed inline, run by the "
        "runtime service; responder: a minimal tool process without Redis (worker)",
    )
    parser.add_argument(
        "--partitions", type=int, default=PARTITIONS, help="partitions per topic (%(default)s)"
    )
    parser.add_argument("--skip", default="", help="comma-separated: latency,ramp,replay,raw")
    parser.add_argument("--responder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    PARTITIONS = args.partitions
    if args.responder:
        asyncio.run(responder(args.bootstrap, args.prefix))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
