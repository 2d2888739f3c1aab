"""kill -9 soak: queries through the three services while they are killed, on three brokers.

    scripts/services/services start --brokers 3
    set -a; . var/services/env; set +a
    python bench/soak.py [--queries 1000] [--rate 20] [--kill-every 3] [--approval-every 10]
                         [--delivery at_least_once|at_most_once] [--tool-ms 0]

Prints figures, asserts nothing. What it does (a fresh topic prefix; its topics and Redis keys
are deleted at the end unless ``--keep``):

- starts the runtime service (static member ``soak-runtime``), two tool workers
  (``soak-tools-a`` / ``-b``) and the approvals service as separate processes, loading this
  module's app (``--app soak:runtime``, tenant ``soak``);
- publishes ``--queries`` queries at ``--rate`` per second, one thread each, each a scripted
  one-tool-step prompt: ``work`` (a side effect: HINCRBY ``<prefix>:runs`` <query> 1, then
  the effect applied once per ``ctx.idempotency_key``, as a downstream API that
  deduplicates by key would, then ``--tool-ms`` more before it returns), or every
  ``--approval-every``-th the same tool behind an approval gate (``gated_work``), approved
  through the approvals HTTP API by a decider loop here (which retries while the service is
  down); with ``--delivery at_most_once`` the tools are ``once`` / ``gated_once``, defined
  ``delivery="at_most_once"``;
- meanwhile every ``--kill-every`` seconds kills one service with SIGKILL, in turn runtime,
  tool worker a, approvals, tool worker b, and starts it again at once (same instance id);
- waits until every run finished (or ``--deadline`` seconds after the last query), then
  reads the whole run log again (read_committed) and counts:

  - lost: queries whose thread has no ``finish`` in the run log;
  - duplicated: run-log events logged twice (same id), threads with more than one
    ``run-start``, and threads whose ``seq`` is not 1..N;
  - tool run twice: handlers that ran more than once for one query (the crash window of an
    at-least-once tool: a worker killed after the side effect, before recording it), the
    ``TOOL_OUTCOME_UNKNOWN`` answers (at-most-once tools), and effects applied twice
    although deduplicated by ``ctx.idempotency_key``;

  plus the kills, the dead letters by reason, and how long the run log stood still after
  each kill of the runtime.

The module is also the app the services load: importing it runs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from flowai_harness import (
    ToolContext,
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
)
from flowai_harness.messages import Query

REPO = Path(__file__).resolve().parents[1]
TENANT = "soak"
PARTITIONS = 6

# --- the app the services load ----------------------------------------------------------------

_redis: redis.Redis | None = None


def _work(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """The side effect: count the run, then apply the effect the way a downstream API that
    deduplicates by idempotency key would (once per key)."""
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ["FLOWAI_REDIS_URL"])
    ns, key = args["ns"], args["key"]
    _redis.hincrby(f"{ns}:runs", key, 1)
    if _redis.set(f"{ns}:applied:{ctx.idempotency_key}", key, nx=True):
        _redis.hincrby(f"{ns}:effects", key, 1)
    # The rest of the call after the effect (an answer on its way back): the crash window.
    time.sleep(args["pause_ms"] / 1000)
    return {"key": key}


ARGS = {"ns": str, "key": str, "pause_ms": int}
TOOLS = {
    # (delivery, gated) -> tool
    ("at_least_once", False): define_tool("work", ARGS).bind(_work),
    ("at_least_once", True): define_tool("gated_work", ARGS, approval="always").bind(_work),
    ("at_most_once", False): define_tool("once", ARGS, delivery="at_most_once").bind(_work),
    ("at_most_once", True): define_tool(
        "gated_once", ARGS, approval="always", delivery="at_most_once"
    ).bind(_work),
}
worker = define_specialist(
    name="worker", model="claude-haiku-4-5", prompt="Work.", tools=list(TOOLS.values())
)
runtime = define_runtime(
    tenant=define_tenant(TENANT, "v1"), agents=[worker], providers={"anthropic": {}}
)


# --- processes --------------------------------------------------------------------------------


@dataclass
class Service:
    """One service process, restartable under the same name and arguments."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_dir / f"{self.name}.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *self.args],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- the soak ---------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the follower of the run log saw, as it happened."""

    target: int
    finished: set[str] = field(default_factory=set)
    events: int = 0
    newest_ms: int = 0  # the newest record's Kafka timestamp: when it was written
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    all_finished: asyncio.Event = field(default_factory=asyncio.Event)


def prompt(tool: str, ns: str, key: str, pause_ms: int) -> str:
    return json.dumps({"tool": tool, "args": {"ns": ns, "key": key, "pause_ms": pause_ms}})


def query(thread: str, text: str) -> bytes:
    return orjson.dumps(
        {
            "schema": Query.NAME,
            "id": f"q-{thread}",
            "tenant": TENANT,
            "thread_id": thread,
            "run_id": None,
            "causation_id": None,
            "ts": int(time.time() * 1000),
            "payload": {"prompt": text, "agent": None},
        }
    )


async def follow(bootstrap: str, topics: Any, progress: Progress, stop: asyncio.Event) -> None:
    from aiokafka import TopicPartition

    from flowai_harness.kafka import bus

    consumer = bus.consumer(bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topics.runtime_events, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    entry = orjson.loads(record.value)
                    progress.events += 1
                    progress.newest_ms = max(progress.newest_ms, record.timestamp)
                    if entry["payload"]["type"] in ("finish", "error"):
                        progress.finished.add(entry["thread_id"])
            if batch:
                progress.moved.set()
                if len(progress.finished) >= progress.target:
                    progress.all_finished.set()
    finally:
        await consumer.stop()


SECRET = "soak-tenant-secret-0123456789"


def write_keys(directory: Path) -> Path:
    """The decision key pair and the tenant's API secret, in ``directory/keys``."""
    from flowai_harness.kafka.decision_auth import generate_keys

    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keys()
    (keys / "decision-key.pem").write_bytes(private_pem)
    (keys / "decision-key.pub.pem").write_bytes(public_pem)
    (keys / "secrets.json").write_bytes(orjson.dumps({TENANT: SECRET}))
    (keys / "secrets.json").chmod(0o600)
    return keys


async def decide_approvals(base_url: str, stop: asyncio.Event, decided: Counter[str]) -> None:
    """A human who approves everything, through an approvals service that keeps dying."""
    import aiohttp

    from flowai_harness.errors import FlowaiError
    from flowai_harness.kafka import approvals_http

    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with asyncio.timeout(5):
                    waiting = await approvals_http.pending(
                        base_url, TENANT, secret=SECRET, session=session
                    )
            except (aiohttp.ClientError, TimeoutError, FlowaiError):
                decided["api unavailable"] += 1
                await asyncio.sleep(0.2)
                continue
            for approval in waiting:
                try:
                    async with asyncio.timeout(5):
                        await approvals_http.decide(
                            base_url,
                            TENANT,
                            approval["id"],
                            "approve",
                            approver="soak",
                            secret=SECRET,
                            session=session,
                        )
                    decided["approved"] += 1
                except FlowaiError as exc:
                    decided[exc.code] += 1
                except (aiohttp.ClientError, TimeoutError):
                    decided["api unavailable"] += 1
            await asyncio.sleep(0.1)


async def killer(
    victims: list[Service],
    every: float,
    stop: asyncio.Event,
    progress: Progress,
    kills: Counter[str],
    stalls: list[float],
) -> None:
    turn = 0
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()
        if stop.is_set():
            return
        victim = victims[turn % len(victims)]
        turn += 1
        await asyncio.to_thread(victim.kill)
        killed_ms = int(time.time() * 1000)
        kills[victim.name] += 1
        victim.start()
        if victim.name == "runtime":
            # How long the run log stands still: until a record written after the kill.
            while progress.newest_ms <= killed_ms and not stop.is_set():
                progress.moved.clear()
                await first_of(progress.moved, stop)
            if progress.newest_ms > killed_ms:
                stalls.append((progress.newest_ms - killed_ms) / 1000)


async def first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every committed record of ``topic`` (read_committed), from the beginning."""
    from aiokafka import TopicPartition

    from flowai_harness.kafka import bus

    consumer = bus.consumer(bootstrap)
    await consumer.start()
    entries: list[dict[str, Any]] = []
    try:
        count = await bus.partition_count(bootstrap, topic)
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                entries.extend(orjson.loads(record.value) for record in records)
    finally:
        await consumer.stop()
    return entries


def error_code(result: Any) -> str:
    """The code of a tool error result as the run log shows it (an object or a text)."""
    if isinstance(result, dict):
        return str(result.get("code") or (result.get("error") or {}).get("code") or "?")
    return str(result)[:40]


async def soak(args: argparse.Namespace) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from flowai_harness.kafka import bus

    bootstrap, redis_url = args.bootstrap, args.redis
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    brokers = len((await admin.describe_cluster())["brokers"])
    await admin.close()
    if brokers < 3 and not args.allow_unreplicated:
        raise SystemExit(
            f"soak: the cluster at {bootstrap} has {brokers} broker(s); start three with "
            "`scripts/services/services start --brokers 3` (or pass --allow-unreplicated)"
        )
    prefix, log_dir = args.prefix, args.log_dir
    topics = bus.Topics(prefix)
    http_port = free_port()
    keys = write_keys(Path(log_dir))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)]),
        "PYTHONUNBUFFERED": "1",
        "FLOWAI_REDIS_URL": redis_url,
        "FLOWAI_ALLOW_UNREPLICATED": "1" if args.allow_unreplicated else "0",
        # The approvals service signs decisions; the runtime checks them with the public key.
        "FLOWAI_DECISION_KEY": str(keys / "decision-key.pem"),
        "FLOWAI_DECISION_PUBLIC_KEYS": str(keys / "decision-key.pub.pem"),
        "FLOWAI_APPROVALS_TENANT_SECRETS": str(keys / "secrets.json"),
    }
    common = ("--app", "soak:runtime", "--bootstrap", bootstrap, "--prefix", prefix)
    common += ("--partitions", str(PARTITIONS))
    tools = ("-m", "services.tools", *common, "--redis", redis_url, "--claim-ttl", "5")
    commands = {
        "runtime": ("-m", "services.runtime", *common, "--instance-id", "soak-runtime"),
        "tools-a": (*tools, "--instance-id", "soak-tools-a", "--worker-id", "tools-a"),
        "tools-b": (*tools, "--instance-id", "soak-tools-b", "--worker-id", "tools-b"),
        "approvals": (
            *("-m", "services.approvals", *common, "--redis", redis_url),
            *("--http", f"127.0.0.1:{http_port}"),
        ),
    }
    services = {name: Service(name, command, env, log_dir) for name, command in commands.items()}
    # The runtime creates the topics first, so the others find them with their replication.
    services["runtime"].start()
    await bus.partition_counts(bootstrap, topics.all(), wait=60.0)
    for name in ("tools-a", "tools-b", "approvals"):
        services[name].start()

    store = redis.Redis.from_url(redis_url)
    progress, stop = Progress(target=args.queries), asyncio.Event()
    kills: Counter[str] = Counter()
    decided: Counter[str] = Counter()
    stalls: list[float] = []
    threads = [f"t{n:05d}" for n in range(args.queries)]
    gated = {
        t for n, t in enumerate(threads) if args.approval_every and n % args.approval_every == 0
    }
    follower = asyncio.create_task(follow(bootstrap, topics, progress, stop))
    decider = asyncio.create_task(decide_approvals(f"http://127.0.0.1:{http_port}", stop, decided))
    started = time.monotonic()
    try:
        victims = [services[n] for n in ("runtime", "tools-a", "approvals", "tools-b")]
        kill_loop = asyncio.create_task(
            killer(victims, args.kill_every, stop, progress, kills, stalls)
        )
        producer = bus.producer(bootstrap)
        await producer.start()
        try:
            for n, thread in enumerate(threads):
                tool = TOOLS[args.delivery, thread in gated].name
                await producer.send(
                    topics.queries,
                    query(thread, prompt(tool, prefix, thread, args.tool_ms)),
                    key=bus.thread_key(TENANT, thread),
                )
                # Paced from the start, so a slow send does not lower the rate after it.
                delay = started + (n + 1) / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.flush()
        finally:
            await producer.stop()
        published = time.monotonic()
        # Keep killing until every run finished (or the deadline): the kills are the point.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.all_finished.wait(), args.deadline)
        settled = time.monotonic()
        stop.set()
        await kill_loop
    finally:
        stop.set()
        for task in (follower, decider):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for service in services.values():
            service.stop()

    log = await read_all(bootstrap, topics.runtime_events)
    letters = await read_all(bootstrap, topics.dead_letters)
    runs = {key.decode(): int(count) for key, count in store.hgetall(f"{prefix}:runs").items()}
    effects = {
        key.decode(): int(count) for key, count in store.hgetall(f"{prefix}:effects").items()
    }

    by_thread: dict[str, list[dict[str, Any]]] = {}
    for entry in log:
        by_thread.setdefault(entry["thread_id"], []).append(entry)
    ids = Counter(entry["id"] for entry in log)
    lost = [t for t in threads if not any(
        e["payload"]["type"] == "finish" for e in by_thread.get(t, ()))]  # fmt: skip
    errors = Counter(e["payload"]["error"]["code"] for e in log if e["payload"]["type"] == "error")
    tool_errors = Counter(
        error_code(e["payload"].get("result"))
        for e in log
        if e["payload"]["type"] == "tool-invocation" and e["payload"].get("isError")
    )
    duplicated_events = sum(count - 1 for count in ids.values() if count > 1)
    many_starts = sum(
        1 for entries in by_thread.values()
        if sum(e["payload"]["type"] == "run-start" for e in entries) > 1
    )  # fmt: skip
    bad_seq = sum(
        1 for entries in by_thread.values()
        if [e["seq"] for e in entries] != list(range(1, len(entries) + 1))
    )  # fmt: skip
    twice = {key: count for key, count in runs.items() if count > 1}
    never = [t for t in threads if t not in runs]

    print(f"soak on {brokers} brokers ({bootstrap}), prefix {prefix}, logs in {log_dir}")
    print(
        f"queries: {len(threads)} ({len(gated)} behind an approval), published at "
        f"{args.rate}/s in {published - started:.1f} s; all settled "
        f"{settled - published:.1f} s after the last"
    )
    print(
        "kills (SIGKILL, restarted at once): "
        + ", ".join(
            f"{name} {kills[name]}" for name in ("runtime", "tools-a", "approvals", "tools-b")
        )
        + f" = {sum(kills.values())}"
    )
    if stalls:
        middle = sorted(stalls)[len(stalls) // 2]
        print(
            f"run log standing still after a runtime kill: median {middle:.2f} s, "
            f"max {max(stalls):.2f} s ({', '.join(f'{stall:.2f}' for stall in stalls)})"
        )
    reasons = Counter(letter["payload"]["reason"] for letter in letters)
    print(f"approvals decided: {dict(decided)}")
    print(f"run-log events: {len(log)}; dead letters: {dict(reasons)}")
    if errors or tool_errors:
        print(f"error events: {dict(errors)}; tool error results: {dict(tool_errors)}")
    example = f" e.g. {', '.join(lost[:5])}" if lost else ""
    print(f"LOST: {len(lost)} queries without a finish{example}")
    print(
        f"DUPLICATED: {duplicated_events} events logged twice, {many_starts} threads started "
        f"twice, {bad_seq} threads with a broken seq"
    )
    applied_twice = sum(1 for count in effects.values() if count > 1)
    print(
        f"TOOL RUN TWICE ({args.delivery} tools): {len(twice)} of {len(runs)} handlers ran "
        "twice" + (f" e.g. {dict(list(twice.items())[:5])}" if twice else "") + f"; never run: "
        f"{len(never)}; outcome unknown: {tool_errors.get('TOOL_OUTCOME_UNKNOWN', 0)}"
    )
    print(
        f"effects applied twice through ctx.idempotency_key (a downstream API deduplicating by "
        f"key): {applied_twice} of {len(effects)}"
    )

    if not args.keep:
        keys = list(store.scan_iter(match=f"{prefix}:*", count=10_000))
        if keys:
            store.delete(*keys)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(list(topics.all()))
        finally:
            await admin.close()
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("FLOWAI_KAFKA_BOOTSTRAP"))
    parser.add_argument("--redis", default=os.environ.get("FLOWAI_REDIS_URL"))
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="queries per second (20)")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills (3)")
    parser.add_argument(
        "--approval-every", type=int, default=10, help="every Nth query is gated (10; 0: none)"
    )
    parser.add_argument(
        "--deadline", type=float, default=180.0, help="seconds to wait after the last query"
    )
    parser.add_argument(
        "--delivery",
        choices=("at_least_once", "at_most_once"),
        default="at_least_once",
        help="the delivery level of the tool the queries call (at_least_once)",
    )
    parser.add_argument(
        "--tool-ms",
        type=int,
        default=0,
        help="ms each tool call takes after its side effect (0): widens the crash window",
    )
    parser.add_argument("--log-dir", help="service logs (default var/soak/<prefix>)")
    parser.add_argument("--keep", action="store_true", help="keep the topics and Redis keys")
    parser.add_argument(
        "--allow-unreplicated", action="store_true", help="run on fewer than three brokers"
    )
    args = parser.parse_args()
    if not args.bootstrap or not args.redis:
        raise SystemExit(
            "soak: set FLOWAI_KAFKA_BOOTSTRAP and FLOWAI_REDIS_URL (load var/services/env) "
            "or pass --bootstrap and --redis"
        )
    args.prefix = f"soak{uuid.uuid4().hex[:8]}"
    args.log_dir = Path(args.log_dir or REPO / "var" / "soak" / args.prefix)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(soak(args))


if __name__ == "__main__":
    main()
