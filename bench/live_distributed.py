"""Distributed runtime with live models, on the local Kafka: prints figures, asserts nothing.

    set -a; . var/services/env; set +a; export FLOWAI_ALLOW_UNREPLICATED=1
    .venv/bin/python bench/live_distributed.py [--skip step,threads] [--repeat 1]
        [--rate 20] [--seconds 15] [--step-ttft 0.2]
        [--levels 50,100,250,500,1000,2000,3000] [--hold 0] [--spread 1.0] [--wait-ttft 1.0]
        [--model-workers N] [--model-concurrency N] [--no-hops] [--profile]
        [--models workers|responder]

Everything runs as separate processes on one machine: the fake provider server
(``python -m flowai_harness.testing.fake_provider``), the runtime service with
``--interpreter live``, a tool worker (``services.tools --role tools``) and model workers
(``--role models``), with this module's ``spec`` as their app; its provider base URL is the
fake server's (``FLOWAI_BENCH_FAKE_URL``). Queries go through one ``flowai_harness.connect``
client in this process. Each run uses a fresh topic prefix (also the workers' Redis
namespace); its topics and Redis keys are deleted at the end, the services' logs (and with
``--profile`` their cProfile output) are left in ``$TMPDIR/<prefix>``.

What it measures:

- idle: before each measurement, what every process costs in 5 s with nothing to do
  (consumers polling, heartbeats): the floor under the CPU figures below.
- step: a one-tool-step query at ``--rate`` queries/s for ``--seconds``, with one model
  worker: the model (agent ``stepper``) answers turn 1 with one ``add`` tool call and turn 2
  with a short text, each after ``--step-ttft`` to first token. Total = from just before the
  client publishes to the moment its stream ends. Model time = what the fake server measured
  for the query's model requests (from a request's arrival to the end of its response,
  summed). Overhead = total - model time. Prints p50 / p99 / max of both (the issue's
  target: p99 overhead <= 30 ms).
- threads: how many concurrent threads one runtime service carries while each waits
  ``--wait-ttft`` on its model (agent ``waiter``, text only, no tool). For each level N of
  ``--levels``, N slots start staggered over ``--spread`` seconds; each runs one query on a
  fresh thread, then (while ``--hold`` seconds have not passed) another. With ``--hold 0``
  (the default) a level is one wave of N threads, each with one query, all in flight
  together if the services keep up; with ``--hold S`` the N threads stay in flight for S
  seconds, which needs N queries/s. Prints queries completed and lost, p50 / p99 overhead,
  the queries/s achieved and how many model calls the fake server had in flight (peak, and
  the mean over the level) (the issue's target: >= 2,000 concurrent threads with p99
  overhead <= 50 ms). Model workers: ``--model-workers`` (default: one per 1,000 calls of
  the largest level, the SDK's connection pool per client) with ``--model-concurrency``
  each (default: the largest level shared among them).

``--models responder`` replaces the fake provider server and the model workers with one
lean process here (``--responder``) that consumes ``model-requests`` and, after the same
time to first token, publishes each ``ModelResult`` itself: no HTTP, no SDK. That isolates
what the runtime service sustains from what the provider SDKs cost on this 2-core machine
(with ``workers``, most of the CPU goes to the SDKs' HTTP stack in the model workers, which
a deployment runs on machines of their own). Model time is then the responder's, from the
request's arrival to its result's publication.

With each measurement: every process's CPU share and CPU milliseconds per query, its RSS
and peak RSS (from /proc; Kafka and Redis are found by their listening port and are shared
with whatever else runs on the machine), how busy the whole machine was, and SYNs dropped by
full accept queues. Where the time goes: the run log and the model/tool result topics are
read back, and each query's timeline (client publish, run-log events, provider request
arrival and end, results published, client end; Kafka record timestamps, so millisecond
steps) is cut into hops; the median and p99 of every hop are printed. Figures depend on the
machine and its load (the client, the services, the fake server, Kafka and Redis share it);
the load average is printed with them. Compare runs on one machine only.

Must not be imported by the package or the services, except as the services' ``--app``
(importing it defines the app and starts nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from flowai_harness import define_runtime, define_specialist, define_tenant, define_tool

REPO: Final = Path(__file__).resolve().parents[1]
TENANT: Final = "bench"
PARTITIONS: Final = 6
STEP_MODEL: Final = "claude-sonnet-4-6"
WAIT_MODEL: Final = "claude-haiku-4-5"
FAKE_URL_ENV: Final = "FLOWAI_BENCH_FAKE_URL"
# The SDK's connection pool holds at most this many connections per client (the anthropic
# SDK's default limits); calls beyond it wait for a connection inside the worker.
SDK_POOL: Final = 1000
TAG: Final = re.compile(r"\[q:([^\]]+)\]")


# --- the app the services load (``--app live_distributed:spec``) -----------------------------


@define_tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


stepper = define_specialist(
    name="stepper", model=STEP_MODEL, prompt="Add with the add tool.", tools=[add]
)
waiter = define_specialist(name="waiter", model=WAIT_MODEL, prompt="Answer briefly.")
spec = define_runtime(
    tenant=define_tenant(TENANT, "v1"),
    agents=[stepper, waiter],
    providers={
        "anthropic": {
            "apiKey": "fake-key",
            "baseUrl": os.environ.get(FAKE_URL_ENV, "http://127.0.0.1:9"),
        }
    },
)


def fake_script(step_ttft: float, wait_ttft: float) -> dict[str, Any]:
    """The fake server's turns: the waiter's text after ``wait_ttft``; the stepper's answer
    to a tool result, else its tool call, after ``step_ttft``; for every request."""
    return {
        "turns": [
            {
                "name": "wait-text",
                "for_model": WAIT_MODEL,
                "text": "Done waiting.",
                "ttft_s": wait_ttft,
                "times": None,
            },
            {
                "name": "step-answer",
                "contains": "tool_result",
                "text": "The sum is 3.",
                "ttft_s": step_ttft,
                "times": None,
            },
        ],
        "default": {
            "name": "step-call",
            "tool_calls": [{"name": "add", "args": {"a": 1, "b": 2}}],
            "ttft_s": step_ttft,
        },
    }


# --- figures ---------------------------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def spread_ms(samples: Sequence[float]) -> str:
    """p50 / p99 / max of seconds, in milliseconds."""
    if not samples:
        return "no samples"
    ms = [x * 1000 for x in samples]
    return (
        f"p50 {statistics.median(ms):7.1f}  p99 {percentile(ms, 0.99):7.1f}  max {max(ms):7.1f} ms"
    )


def indented(text: str, indent: str) -> str:
    return "\n".join(indent + line for line in text.splitlines())


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


# --- processes -------------------------------------------------------------------------------


class ProcStat:
    """CPU seconds and resident memory of one process, from /proc."""

    TICK: Final = os.sysconf("SC_CLK_TCK")

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid = pid

    def cpu_seconds(self) -> float:
        try:
            text = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return math.nan
        # Fields after the command name (which may hold spaces) start at field 3.
        after = text[text.rindex(")") + 2 :].split()
        return (int(after[11]) + int(after[12])) / self.TICK

    def waited_seconds(self) -> float:
        """Seconds its threads were ready to run but waited for a CPU (run-queue delay),
        summed over its threads, from /proc/<pid>/task/*/schedstat."""
        total = 0
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.pid}/task").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    total += int((task / "schedstat").read_text().split()[1])
        return total / 1e9

    def memory_mb(self) -> tuple[float, float]:
        """(resident now, peak resident) in MiB."""
        values = {"VmRSS": math.nan, "VmHWM": math.nan}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def cpu_pressure() -> float:
    """Seconds since boot during which some runnable task waited for a CPU (the kernel's
    pressure stall information, /proc/pressure/cpu), NaN where the kernel has none."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(first.rsplit("total=", 1)[1]) / 1e6
    return math.nan


def listen_drops() -> int:
    """SYNs the machine's listening sockets dropped since boot (a full accept backlog: the
    client retries the connection a second later), from /proc/net/netstat."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenDrops", 0))
    return 0


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` of this machine (read only: the
    socket's inode from /proc/net/tcp, then the process holding it), or None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local address "ADDR:PORT" in hex; state 0A is LISTEN
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(entry.name)
    return None


def port_of(address: str) -> int | None:
    match = re.search(r":(\d+)(?:/|$)", address.split(",")[0])
    return int(match.group(1)) if match else None


class Usage:
    """CPU share and memory of the processes over one measurement."""

    def __init__(self, stats: Iterable[ProcStat]) -> None:
        self.stats = list(stats)
        self._cpu = [s.cpu_seconds() for s in self.stats]
        self._waited = [s.waited_seconds() for s in self.stats]
        self._busy = machine_busy()
        self._pressure = cpu_pressure()
        self._drops = listen_drops()
        self._started = time.perf_counter()

    def shares(self) -> dict[str, float]:
        """Each process's CPU seconds per second since this was made."""
        elapsed = time.perf_counter() - self._started
        return {
            stat.name: (stat.cpu_seconds() - before) / elapsed
            for stat, before in zip(self.stats, self._cpu, strict=True)
        }

    def report(self, queries: int, idle: Mapping[str, float] | None = None) -> str:
        """CPU share (of one core) and memory of each process since this was made, the CPU
        milliseconds each spent per query (``queries`` completed meanwhile) and, given the
        ``idle`` shares, what it spent beyond idling."""
        elapsed = time.perf_counter() - self._started
        busy, total = machine_busy()
        machine = (busy - self._busy[0]) / max(1, total - self._busy[1])
        drops = listen_drops() - self._drops
        stalled = (cpu_pressure() - self._pressure) / elapsed
        lines = [
            f"machine {machine * 100:.0f}% busy, some task waiting for a CPU "
            f"{stalled * 100:.0f}% of the time"
            + (f"; {drops} connection attempts dropped by full accept queues" if drops else "")
        ]
        idle = idle or {}
        per_query = beyond = floor = 0.0
        waits = {
            s.name: (s.waited_seconds() - before) / elapsed
            for s, before in zip(self.stats, self._waited, strict=True)
        }
        for stat, share in self.shares().items():
            rss, peak = next(s for s in self.stats if s.name == stat).memory_mb()
            memory = f", RSS {rss:.0f} MiB (peak {peak:.0f})" if not math.isnan(rss) else ""
            per = ""
            if queries:
                cost = share * elapsed * 1000 / queries
                per_query += cost
                per = f", {cost:5.2f} CPU ms/query"
                if stat in idle:
                    extra = max(0.0, share - idle[stat]) * elapsed * 1000 / queries
                    beyond += extra
                    floor += idle[stat]
                    per += f" ({extra:5.2f} beyond idle)"
            # Ready to run but no CPU free: a machine short of cores, not a slow service.
            waited = f", waited {waits[stat] * 1000:4.0f} ms/s for a CPU"
            lines.append(f"{stat:<14} {share * 100:4.0f}% CPU{per}{waited}{memory}")
        cores = os.cpu_count() or 1
        if queries and per_query:
            summary = f"all of these: {per_query:.1f} CPU ms/query"
            if beyond:
                # Idling costs `floor` cores whatever the load; each query costs `beyond`.
                summary += (
                    f", {beyond:.1f} beyond idle; idling takes {floor:.2f} cores, so "
                    f"{cores} cores carry at most ~{(cores - floor) * 1000 / beyond:.0f} "
                    "such queries/s"
                )
            lines.append(summary)
        return "\n".join(lines)


class Services:
    """The fake provider server and the services, as child processes."""

    def __init__(
        self, bootstrap: str, redis_url: str, prefix: str, log_dir: Path, profile: bool = False
    ) -> None:
        self.profile = profile
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.prefix = prefix
        self.log_dir = log_dir
        self.fake_url = ""
        self.model_count = 0
        # Each process's CPU share with nothing to do (see idle()).
        self.idle: dict[str, float] = {}
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, *args: str, profile: bool = False) -> subprocess.Popen[bytes]:
        if profile and self.profile:
            # Written when the service exits on SIGTERM (stop() waits for that).
            args = ("-m", "cProfile", "-o", str(self.log_dir / f"{name}.prof"), *args)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)]),
            "PYTHONUNBUFFERED": "1",
            # No approval gates here: the runtime need not check decision signatures.
            "FLOWAI_ALLOW_UNSIGNED_DECISIONS": "1",
            FAKE_URL_ENV: self.fake_url,
            "FLOWAI_ALLOW_UNREPLICATED": os.environ.get("FLOWAI_ALLOW_UNREPLICATED", "1"),
        }
        with (self.log_dir / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.started.append((name, process))
        return process

    async def start_fake(self, script: dict[str, Any]) -> None:
        path = self.log_dir / "fake-script.json"
        path.write_bytes(orjson.dumps(script))
        process = self.spawn(
            "fake-provider", "-m", "flowai_harness.testing.fake_provider", "--script", str(path)
        )
        log = self.log_dir / "fake-provider.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
            if match:
                self.fake_url = match.group(1)
                return
            if process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise SystemExit(f"the fake provider server did not start; see {log}")

    def start_responder(self, calls: Path, step_ttft: float, wait_ttft: float) -> None:
        self.spawn(
            "responder",
            str(REPO / "bench" / "live_distributed.py"),
            "--responder",
            "--bootstrap",
            self.bootstrap,
            "--prefix",
            self.prefix,
            "--calls",
            str(calls),
            "--step-ttft",
            str(step_ttft),
            "--wait-ttft",
            str(wait_ttft),
        )

    def common(self, log_level: str = "WARNING") -> tuple[str, ...]:
        return (
            "--app",
            "live_distributed:spec",
            "--bootstrap",
            self.bootstrap,
            "--prefix",
            self.prefix,
            "--partitions",
            str(PARTITIONS),
            "--log-level",
            log_level,
        )

    def runtime(self) -> subprocess.Popen[bytes]:
        return self.spawn(
            "runtime",
            "-m",
            "services.runtime",
            *self.common(),
            "--interpreter",
            "live",
            profile=True,
        )

    def worker(
        self, name: str, role: str, *extra: str, log_level: str = "WARNING"
    ) -> subprocess.Popen[bytes]:
        return self.spawn(
            name,
            "-m",
            "services.tools",
            *self.common(log_level),
            "--redis",
            self.redis_url,
            "--role",
            role,
            *extra,
            profile=True,
        )

    async def model_workers(self, count: int, concurrency: int) -> None:
        """Run ``count`` model workers: start the missing ones and wait until each owns
        partitions of model-requests (their group rebalanced)."""
        started = []
        while self.model_count < count:
            self.model_count += 1
            name = f"models-{self.model_count}"
            self.worker(
                name,
                "models",
                "--model-concurrency",
                str(concurrency),
                "--worker-id",
                f"{self.prefix}-{name}",
                log_level="INFO",
            )
            started.append(name)
        owns = re.compile(r"model worker \S+ owns \S*model-requests\[")
        deadline = time.monotonic() + 120
        for name in started:
            log = self.log_dir / f"{name}.log"
            while not owns.search(log.read_text(errors="replace")):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} took no partition in 120 s; see {log}")
                await asyncio.sleep(0.1)

    def stats(self) -> list[ProcStat]:
        found = [ProcStat("client", os.getpid())]
        found += [ProcStat(name, p.pid) for name, p in self.started if p.poll() is None]
        # Shared with whatever else uses them on this machine.
        for name, address in (
            ("kafka (shared)", self.bootstrap),
            ("redis (shared)", self.redis_url),
        ):
            port = port_of(address)
            pid = None if port is None else listening_pid(port)
            if pid is not None:
                found.append(ProcStat(name, pid))
        return found

    def check_alive(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise SystemExit(
                    f"{name} exited with status {process.returncode}; see "
                    f"{self.log_dir / (name + '.log')}"
                )

    def stop(self) -> None:
        for _, process in self.started:
            if process.poll() is None:
                process.terminate()
        for _, process in self.started:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.started.clear()


# --- the lean model responder (``--models responder``) ---------------------------------------


async def responder(
    bootstrap: str, prefix: str, calls: Path, step_ttft: float, wait_ttft: float
) -> None:
    """Answer model requests like the fake script does, without HTTP or an SDK: a model
    that takes ``ttft`` to answer. Each call is recorded as a JSON line in ``calls``."""
    from flowai_harness.kafka import bus
    from flowai_harness.messages import ModelResult, envelope

    topics = bus.Topics(prefix)
    consumer = bus.consumer(bootstrap, group_id=f"{prefix}.models", client_id="bench-responder")
    producer = bus.producer(bootstrap)
    await producer.start()
    consumer.subscribe([topics.model_requests])
    await consumer.start()
    record = calls.open("ab", buffering=0)
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    tasks: set[asyncio.Task[None]] = set()

    async def answer(request: dict[str, Any]) -> None:
        arrived = time.time()
        payload = request["payload"]
        if payload["model"] == WAIT_MODEL:
            ttft, content = wait_ttft, [{"type": "text", "text": "Done waiting."}]
        elif any(m["role"] == "tool" for m in payload["messages"]):
            ttft, content = step_ttft, [{"type": "text", "text": "The sum is 3."}]
        else:
            ttft = step_ttft
            content = [
                {
                    "type": "tool_call",
                    "id": f"call-{uuid.uuid4().hex[:8]}",
                    "name": "add",
                    "args": {"a": 1, "b": 2},
                }
            ]
        await asyncio.sleep(ttft)
        result = {
            "request_id": payload["request_id"],
            "response": {
                "content": content,
                "stop_reason": "stop" if content[0]["type"] == "text" else "tool-calls",
                "raw_stop_reason": "end_turn",
                "usage": usage,
                "provider": payload["provider"],
                "model": payload["model"],
                "latency_ms": int(ttft * 1000),
                "ttft_ms": int(ttft * 1000),
            },
        }
        body = envelope(
            ModelResult.NAME,
            id=f"{request['id']}/result",
            tenant=request["tenant"],
            thread_id=request["thread_id"],
            run_id=request.get("run_id"),
            causation_id=request["id"],
            payload=result,
        )
        key = bus.thread_key(request["tenant"], request["thread_id"])
        await producer.send_and_wait(topics.model_results, body, key=key)
        record.write(
            orjson.dumps(
                {"thread": request["thread_id"], "arrived": arrived, "finished": time.time()}
            )
            + b"\n"
        )

    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    if r.value is None:
                        continue
                    task = asyncio.create_task(answer(orjson.loads(r.value)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
    finally:
        await consumer.stop()
        await producer.stop()
        record.close()


class ResponderAdmin:
    """The responder's record of calls, read like the fake server's admin API: each read
    takes the calls recorded since the last one."""

    def __init__(self, calls: Path) -> None:
        self.calls = calls
        self.read_to = 0

    async def calls_by_thread(self) -> dict[str, list[Call]]:
        found: dict[str, list[Call]] = {}
        if not self.calls.exists():
            return found
        with self.calls.open("rb") as file:
            file.seek(self.read_to)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.read_to += len(complete)
        for line in complete.splitlines():
            row = orjson.loads(line)
            found.setdefault(row["thread"], []).append(
                Call(row["arrived"], row["finished"], None, "completed")
            )
        for thread_calls in found.values():
            thread_calls.sort(key=lambda call: call.arrived)
        return found


# --- the fake server's record ----------------------------------------------------------------


@dataclass
class Call:
    """One model request as the fake server saw it (wall-clock seconds)."""

    arrived: float
    finished: float
    turn: str | None
    outcome: str


class FakeAdmin:
    """The fake server's admin API: what it received, and a reset between measurements."""

    def __init__(self, url: str, script: dict[str, Any]) -> None:
        self.url = url
        self.script = script

    async def calls_by_thread(self) -> dict[str, list[Call]]:
        """Every request received since the last reset, by the thread its prompt names;
        then forget them (and queue the script's turns again: a reset drops them)."""
        import aiohttp

        async with aiohttp.ClientSession(self.url) as http:
            async with http.get("/_fake/requests") as answer:
                recorded = orjson.loads(await answer.read())
            async with http.post("/_fake/reset") as answer:
                answer.raise_for_status()
            async with http.post("/_fake/turns", data=orjson.dumps(self.script)) as answer:
                answer.raise_for_status()
        calls: dict[str, list[Call]] = {}
        for request in recorded:
            thread = thread_of(request["body"])
            if thread is None or request.get("finished_at") is None:
                continue
            calls.setdefault(thread, []).append(
                Call(
                    request["arrived_at"],
                    request["finished_at"],
                    request["turn"],
                    request["outcome"],
                )
            )
        for thread_calls in calls.values():
            thread_calls.sort(key=lambda call: call.arrived)
        return calls


def prompt_for(thread: str, text: str) -> str:
    return f"{text} [q:{thread}]"


def thread_of(body: dict[str, Any]) -> str | None:
    """The thread a request's first user message names (see :func:`prompt_for`)."""
    for message in body.get("messages") or ():
        if message.get("role") != "user":
            continue
        content = message.get("content")
        texts = (
            [content]
            if isinstance(content, str)
            else [b.get("text", "") for b in content or () if isinstance(b, dict)]
        )
        for text in texts:
            match = TAG.search(text or "")
            if match:
                return match.group(1)
        return None
    return None


# --- queries ---------------------------------------------------------------------------------


@dataclass
class Sample:
    thread: str
    started_at: float  # wall clock, just before the client publishes
    total: float = math.nan  # seconds, to the end of the stream
    ended_at: float = math.nan  # wall clock
    last: str = "none"
    ok: bool = False
    model: float = math.nan  # the fake server's time for this query's requests
    calls: list[Call] = field(default_factory=list)

    @property
    def overhead(self) -> float:
        return self.total - self.model


async def one_query(client: Any, thread: str, agent: str, text: str, within: float) -> Sample:
    sample = Sample(thread, time.time())
    started = time.perf_counter()
    last: dict[str, Any] = {}

    async def drain() -> None:
        nonlocal last
        async for event in client.query(prompt_for(thread, text), thread, agent=agent):
            last = event

    try:
        await asyncio.wait_for(drain(), within)
    except TimeoutError:
        sample.last = "timeout"
        return sample
    sample.total = time.perf_counter() - started
    sample.ended_at = time.time()
    sample.last = str(last.get("type", "none"))
    sample.ok = sample.last == "tool-agent" and last.get("state") == "result"
    return sample


def attach_calls(samples: Iterable[Sample], calls: dict[str, list[Call]]) -> str:
    """Give each sample its model calls and their time; returns a note on calls the fake
    server did not complete (a retried or abandoned call), empty when there were none."""
    failed: dict[str, int] = {}
    for sample in samples:
        sample.calls = calls.get(sample.thread, [])
        if sample.calls:
            sample.model = sum(call.finished - call.arrived for call in sample.calls)
        for call in sample.calls:
            if call.outcome != "completed":
                failed[call.outcome] = failed.get(call.outcome, 0) + 1
    return f"; model calls not completed: {failed}" if failed else ""


# --- where the time goes: the logged timeline of each query ------------------------------------


@dataclass
class Logged:
    """What the topics say about one thread: record timestamps in wall-clock seconds."""

    run_log: list[tuple[int, str, str | None, float]] = field(default_factory=list)
    model_results: list[float] = field(default_factory=list)
    tool_results: list[float] = field(default_factory=list)


async def read_logged(bootstrap: str, prefix: str, threads: set[str]) -> dict[str, Logged]:
    """Read the run log and the result topics from the beginning (read_committed)."""
    from aiokafka import TopicPartition

    from flowai_harness.kafka import bus

    topics = bus.Topics(prefix)
    wanted = [topics.runtime_events, topics.model_results, topics.tool_results]
    consumer = bus.consumer(bootstrap, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    logged: dict[str, Logged] = {}
    try:
        counts = await bus.partition_counts(bootstrap, wanted)
        tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 120
        while left and time.monotonic() < deadline:
            batch = await consumer.getmany(*left, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    body = orjson.loads(record.value)
                    thread = body.get("thread_id")
                    if thread not in threads:
                        continue
                    entry = logged.setdefault(thread, Logged())
                    at = record.timestamp / 1000
                    if tp.topic == topics.runtime_events:
                        payload = body["payload"]
                        entry.run_log.append(
                            (body.get("seq", 0), payload.get("type", ""), payload.get("state"), at)
                        )
                    elif tp.topic == topics.model_results:
                        entry.model_results.append(at)
                    else:
                        entry.tool_results.append(at)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    for entry in logged.values():
        entry.run_log.sort()
        entry.model_results.sort()
        entry.tool_results.sort()
    return logged


def timeline(sample: Sample, logged: Logged | None) -> list[tuple[str, float]] | None:
    """The query's moments in order, or None when they do not line up (a retried model
    call, a missing record)."""
    if logged is None or not sample.ok:
        return None
    run_start = [at for _, kind, _, at in logged.run_log if kind == "run-start"]
    responses = [at for _, kind, _, at in logged.run_log if kind == "model-response"]
    tool_done = [
        at
        for _, kind, state, at in logged.run_log
        if kind == "tool-invocation" and state == "result"
    ]
    calls = sample.calls
    steps = len(calls)
    if (
        len(run_start) != 1
        or steps == 0
        or len(responses) != steps
        or len(logged.model_results) != steps
        or len(tool_done) != steps - 1
        or len(logged.tool_results) != steps - 1
    ):
        return None
    moments: list[tuple[str, float]] = [
        ("client publishes", sample.started_at),
        ("runtime logs the run", run_start[0]),
    ]
    for n, call in enumerate(calls):
        k = n + 1
        moments += [
            (f"provider gets call {k}", call.arrived),
            (f"provider ends call {k}", call.finished),
            (f"worker publishes result {k}", logged.model_results[n]),
            (f"runtime logs result {k}", responses[n]),
        ]
        if n < steps - 1:
            moments += [
                ("tool worker publishes the tool result", logged.tool_results[n]),
                ("runtime logs the tool result", tool_done[n]),
            ]
    moments.append(("client stream ends", sample.ended_at))
    return moments


def print_hops(samples: Sequence[Sample], logged: dict[str, Logged], indent: str = "  ") -> None:
    hops: dict[tuple[int, str], list[float]] = {}
    lined_up = 0
    for sample in samples:
        moments = timeline(sample, logged.get(sample.thread))
        if moments is None:
            continue
        lined_up += 1
        for n, ((before, t0), (after, t1)) in enumerate(itertools.pairwise(moments)):
            hops.setdefault((n, f"{before} -> {after}"), []).append(t1 - t0)
    if not hops:
        print(f"{indent}(no query's timeline lined up)")
        return
    print(
        f"{indent}where the time goes ({lined_up} of {len(samples)} queries lined up; "
        "Kafka timestamps are whole ms):"
    )
    for (_, name), values in sorted(hops.items()):
        model = name.startswith("provider gets") and "-> provider ends" in name
        ms = [v * 1000 for v in values]
        print(
            f"{indent}  {name:<64} p50 {statistics.median(ms):7.1f}  "
            f"p99 {percentile(ms, 0.99):7.1f} ms{'  (model)' if model else ''}"
        )


# --- measurement 1: one-tool-step queries at a fixed rate ----------------------------------------


async def offered(
    client: Any, rate: float, seconds: float, tag: str, within: float
) -> list[Sample]:
    count = int(rate * seconds)
    tasks: list[asyncio.Task[Sample]] = []
    begin = time.perf_counter()
    for n in range(count):
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(
            asyncio.create_task(one_query(client, f"{tag}-{n}", "stepper", "Add 1 and 2.", within))
        )
    return list(await asyncio.gather(*tasks))


async def bench_step(
    args: argparse.Namespace,
    client: Any,
    services: Services,
    fake: FakeAdmin | ResponderAdmin,
    run: int,
) -> None:
    usage = Usage(services.stats())
    load = load_average()
    tag = f"step{run}"
    samples = await offered(client, args.rate, args.seconds, tag, within=60 + args.seconds)
    report = usage.report(len(samples), services.idle)
    print(f"one-tool-step query at {args.rate:g}/s for {args.seconds:g} s (run {run}); {load}")
    print(indented(report, "  "))
    failed = attach_calls(samples, await fake.calls_by_thread())
    ok = [s for s in samples if s.ok and not math.isnan(s.model)]
    lost = len(samples) - len([s for s in samples if s.ok])
    extra = sum(1 for s in ok if len(s.calls) != 2)
    print(
        f"  queries {len(samples)}, finished {len(samples) - lost}, lost {lost}"
        f"{f', {extra} with other than 2 model calls' if extra else ''}{failed}"
    )
    if not ok:
        return
    print(f"  total      {spread_ms([s.total for s in ok])}")
    print(f"  model      {spread_ms([s.model for s in ok])}  (fake server, both calls)")
    overhead = [s.overhead for s in ok]
    print(f"  overhead   {spread_ms(overhead)}  (target: p99 <= 30 ms)")
    logged = await read_logged(services.bootstrap, services.prefix, {s.thread for s in ok})
    print_hops(ok, logged)


# --- measurement 2: concurrent threads waiting on their model -------------------------------------


async def level(
    client: Any, n: int, hold: float, spread: float, tag: str, within: float
) -> tuple[list[Sample], float]:
    samples: list[Sample] = []
    begin = time.perf_counter()

    async def slot(i: int) -> None:
        await asyncio.sleep(spread * i / n)
        k = 0
        while True:
            thread = f"{tag}-{i}-{k}"
            samples.append(await one_query(client, thread, "waiter", "Wait for me.", within))
            k += 1
            if time.perf_counter() - begin >= hold:
                return

    await asyncio.gather(*(slot(i) for i in range(n)))
    return samples, time.perf_counter() - begin


def in_flight(calls: Iterable[Call]) -> tuple[int, float, float]:
    """(peak in flight, first arrival, last end) of the fake server's calls."""
    marks: list[tuple[float, int]] = []
    for call in calls:
        marks += [(call.arrived, 1), (call.finished, -1)]
    marks.sort()
    now = peak = 0
    for _, step in marks:
        now += step
        peak = max(peak, now)
    if not marks:
        return 0, math.nan, math.nan
    return peak, marks[0][0], marks[-1][0]


async def bench_threads(
    args: argparse.Namespace,
    client: Any,
    services: Services,
    fake: FakeAdmin | ResponderAdmin,
    run: int,
) -> None:
    shape = (
        f"one wave (each thread one query, starts spread over {args.spread:g} s)"
        if args.hold <= 0
        else f"held {args.hold:g} s (a fresh thread per query, starts spread over "
        f"{args.spread:g} s)"
    )
    print(
        f"concurrent threads waiting {args.wait_ttft:g} s on their model, {shape} (run {run}); "
        f"{args.model_workers} model worker(s) x --model-concurrency {args.model_concurrency}"
    )
    for n in args.levels:
        services.check_alive()
        load = load_average()
        usage = Usage(services.stats())
        tag = f"wait{run}n{n}"
        samples, elapsed = await level(
            client, n, args.hold, args.spread, tag, within=args.query_timeout
        )
        report = usage.report(len(samples), services.idle)
        failed = attach_calls(samples, await fake.calls_by_thread())
        ok = [s for s in samples if s.ok and not math.isnan(s.model)]
        lost = len(samples) - len([s for s in samples if s.ok])
        peak, first, last = in_flight(c for s in samples for c in s.calls)
        busy_model = sum(s.model for s in ok)
        mean_in_flight = busy_model / (last - first) if last > first else math.nan
        print(f"  N={n}: {load}")
        print(
            f"    queries {len(samples)}, completed {len(samples) - lost}, lost {lost}, "
            f"{len(samples) / elapsed:.0f} queries/s over {elapsed:.1f} s; model calls in "
            f"flight at the fake server: peak {peak}, mean {mean_in_flight:.0f}{failed}"
        )
        if ok:
            print(f"    total      {spread_ms([s.total for s in ok])}")
            print(f"    overhead   {spread_ms([s.overhead for s in ok])}  (target: p99 <= 50 ms)")
        print(indented(report, "    "))
        if args.hops and ok:
            logged = await read_logged(services.bootstrap, services.prefix, {s.thread for s in ok})
            print_hops(ok, logged, indent="    ")
        if lost:
            kinds: dict[str, int] = {}
            for s in samples:
                if not s.ok:
                    kinds[s.last] = kinds.get(s.last, 0) + 1
            print(f"    lost queries ended with: {kinds}")
        # Let the services settle before the next level.
        await asyncio.sleep(2)


# --- main ------------------------------------------------------------------------------------


async def idle(services: Services, seconds: float = 5.0) -> None:
    """What the processes cost with nothing to do (consumers polling, heartbeats); kept as
    the floor the measurements' CPU figures are compared with."""
    usage = Usage(services.stats())
    await asyncio.sleep(seconds)
    print(f"idle for {seconds:g} s, {services.model_count} model worker(s); {load_average()}")
    print(indented(usage.report(0), "  "))
    services.idle = usage.shares()


async def wait_ready(client: Any, services: Services, within: float = 90) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        services.check_alive()
        thread = f"ready-{uuid.uuid4().hex[:8]}"
        sample = await one_query(client, thread, "stepper", "Add 1 and 2.", 20)
        if sample.ok:
            return
    raise SystemExit(f"the services did not answer a query in {within:g} s")


async def warm_up(client: Any) -> None:
    for agent in ("stepper", "waiter"):
        await asyncio.gather(
            *(one_query(client, f"warm-{agent}-{n}", agent, "Warm up.", 60) for n in range(20))
        )


async def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics(list(names))
    finally:
        await admin.close()


async def delete_redis_keys(redis_url: str, prefix: str) -> int:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await redis.delete(*batch)
                batch.clear()
        if batch:
            deleted += await redis.delete(*batch)
    finally:
        await redis.aclose()
    return deleted


async def run(args: argparse.Namespace) -> None:
    from flowai_harness import connect
    from flowai_harness.kafka import bus

    prefix = f"livebench{uuid.uuid4().hex[:8]}"
    topics = bus.Topics(prefix)
    log_dir = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / prefix
    log_dir.mkdir(parents=True, exist_ok=True)
    services = Services(args.bootstrap, args.redis, prefix, log_dir, profile=args.profile)
    script = fake_script(args.step_ttft, args.wait_ttft)
    print(
        f"{platform.python_implementation()} {platform.python_version()} on "
        f"{platform.machine()}; prefix {prefix}; logs in {log_dir}; {load_average()}"
    )
    try:
        await bus.ensure_topics(
            args.bootstrap, topics, partitions=PARTITIONS, allow_unreplicated=True
        )
        fake: FakeAdmin | ResponderAdmin
        if args.models == "responder":
            calls = log_dir / "responder-calls.jsonl"
            services.start_responder(calls, args.step_ttft, args.wait_ttft)
            fake = ResponderAdmin(calls)
        else:
            await services.start_fake(script)
            fake = FakeAdmin(services.fake_url, script)
        services.runtime()
        services.worker("tools", "tools", "--concurrency", "64")
        if args.models == "workers":
            # One model worker for the one-tool-step queries (a small deployment); the
            # threads measurement adds the others its largest level needs.
            await services.model_workers(1, args.model_concurrency)
        async with connect(args.bootstrap, tenant=TENANT, topic_prefix=prefix) as client:
            await wait_ready(client, services)
            await warm_up(client)
            await fake.calls_by_thread()  # forget the warm-up's requests
            if "step" not in args.skip:
                await idle(services)
                for n in range(1, args.repeat + 1):
                    await bench_step(args, client, services, fake, n)
                    services.check_alive()
            if "threads" not in args.skip:
                if args.models == "workers" and services.model_count < args.model_workers:
                    await services.model_workers(args.model_workers, args.model_concurrency)
                    await warm_up(client)
                    await fake.calls_by_thread()
                await idle(services)
                for n in range(1, args.repeat + 1):
                    await bench_threads(args, client, services, fake, n)
    finally:
        services.stop()
        await delete_topics(args.bootstrap, topics.all())
        deleted = await delete_redis_keys(args.redis, prefix)
        print(f"cleaned up: topics {prefix}.*, {deleted} Redis keys {prefix}:*")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("FLOWAI_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    )
    parser.add_argument(
        "--redis", default=os.environ.get("FLOWAI_REDIS_URL", "redis://127.0.0.1:16379/0")
    )
    parser.add_argument("--skip", default="", help="comma-separated: step,threads")
    parser.add_argument("--repeat", type=int, default=1, help="run the measurements N times")
    parser.add_argument("--rate", type=float, default=20.0, help="step: queries/s (20)")
    parser.add_argument("--seconds", type=float, default=15.0, help="step: seconds (15)")
    parser.add_argument("--step-ttft", type=float, default=0.2, help="step: model ttft (0.2 s)")
    parser.add_argument(
        "--levels",
        default="50,100,250,500,1000,2000,3000",
        help="threads: concurrent threads",
    )
    parser.add_argument(
        "--hold", type=float, default=0.0, help="threads: keep N in flight this long (0: a wave)"
    )
    parser.add_argument(
        "--spread", type=float, default=1.0, help="threads: starts spread over (1 s)"
    )
    parser.add_argument("--wait-ttft", type=float, default=1.0, help="threads: model ttft (1 s)")
    parser.add_argument(
        "--query-timeout", type=float, default=120.0, help="a query not ended by then is lost"
    )
    parser.add_argument(
        "--model-workers", type=int, help="model worker processes (enough SDK connections)"
    )
    parser.add_argument(
        "--model-concurrency", type=int, help="per model worker (the largest level / workers)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the services under cProfile; <name>.prof in the log directory",
    )
    parser.add_argument(
        "--no-hops", dest="hops", action="store_false", help="threads: skip the hop breakdown"
    )
    parser.add_argument(
        "--models",
        choices=("workers", "responder"),
        default="workers",
        help="who answers model requests: model workers calling the fake provider through "
        "the SDK (workers), or a lean responder with no HTTP (responder)",
    )
    parser.add_argument("--responder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    largest = max(args.levels, default=64) if "threads" not in args.skip else 64
    if args.model_workers is None:
        # One SDK client holds SDK_POOL connections; more calls would wait for one.
        args.model_workers = max(1, math.ceil(largest / SDK_POOL))
    if args.model_concurrency is None:
        args.model_concurrency = max(64, math.ceil(largest / args.model_workers))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if args.responder:
        asyncio.run(
            responder(args.bootstrap, args.prefix, args.calls, args.step_ttft, args.wait_ttft)
        )
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
