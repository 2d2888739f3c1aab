"""Snapshot benchmark (issue 12): prints figures, asserts nothing.

    python bench/snapshots.py [--threads 2000] [--steps 50] [--evict-threads 15000]

``--threads 0`` runs only the eviction part (its RSS is then not skewed by the partition's
allocations), ``--evict-threads 0`` only the others.

- thread: a scripted 50-step thread (its log has about 156 events) folded in the engine
  whole, from a snapshot taken at its end, and from one taken 5 steps before its end plus the
  tail; microseconds per fold through the native boundary (median and p95).
- partition: one run-log partition of ``--threads`` threads of ``--steps`` tool steps each
  (the 50-step thread's log copied under other thread ids, so every line is one the engine
  really wrote), rebuilt as the runtime service rebuilds it: whole (``Engine.load``), and from
  every thread's snapshot plus the events after the last checkpoint (``restore`` +
  ``load_tail``, the tail being the last 1,000 events); seconds and events per second.
  ``--threads 6400 --steps 50`` is about 1,000,000 events.
- eviction: an embedded runtime with ``log_path`` runs ``--evict-threads`` threads (one
  3-tool-step run each) with ``evict_after=0`` (every thread leaves memory once its run ended)
  and without eviction; RSS as it goes, and the latency of a run on an evicted thread (restored
  from its snapshot file) vs on a resident one.

The machine is shared; figures are noisy: compare runs on one machine, at one time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from flowai_harness import _native, create_runtime, define_runtime, define_specialist
from flowai_harness import define_tool as tool


@tool("add", {"a": int, "b": int}, description="Add two integers.")
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


SPEC = define_runtime(
    ("acme", "v1"),
    agents=[define_specialist("calc", model="claude-haiku-4-5", prompt="Add.", tools=[add])],
    providers={"anthropic": {}},
)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Any, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


async def thread_log(steps: int) -> bytes:
    runtime = create_runtime(SPEC, interpreter="scripted")
    script = json.dumps(
        {"script": [{"tool": "add", "args": {"a": n, "b": 1}} for n in range(steps)]}
    )
    async for _ in runtime.run_specialist("calc", script, "t"):
        pass
    log = runtime._log.read("t")
    assert log is not None
    return log


def bench_thread(log: bytes) -> None:
    lines = log.splitlines(keepends=True)
    whole = _native.replay(log)
    at_end = whole.save("t")
    cut = len(lines) - 15  # about 5 tool steps before the end
    before = _native.replay(b"".join(lines[:cut])).save("t")
    assert at_end is not None
    assert before is not None
    tail = b"".join(lines[cut:])
    print(f"thread: {len(lines)} events, snapshot {len(at_end)} bytes")
    for name, fn in (
        ("whole log", lambda: _native.replay(log)),
        ("snapshot at its end", lambda: _native.replay_from(at_end, b"")),
        (f"snapshot + {len(lines) - cut}-event tail", lambda: _native.replay_from(before, tail)),
    ):
        median, p95 = timed(fn, 2000)
        print(f"  {name:<28} median {median:8.1f} us   p95 {p95:8.1f} us")


def engine() -> _native.Engine:
    from flowai_harness.runtime import new_engine

    return new_engine(SPEC, {"kind": "scripted"})


def bench_partition(log: bytes, threads: int) -> None:
    template = log.decode()
    logs = [
        template.replace('"thread_id":"t"', f'"thread_id":"t{n}"').replace(
            '"acme/t/', f'"acme/t{n}/'
        )
        for n in range(threads)
    ]
    # Interleave the threads' lines as a partition would hold them.
    per_thread = [text.splitlines() for text in logs]
    events = sum(len(lines) for lines in per_thread)
    partition = (
        "\n".join(line for step in zip(*per_thread, strict=True) for line in step).encode() + b"\n"
    )
    tail_events = 1000
    cut = len(partition.splitlines()) - tail_events
    partition_lines = partition.splitlines(keepends=True)
    head, tail = b"".join(partition_lines[:cut]), b"".join(partition_lines[cut:])
    print(f"partition: {threads} threads, {events} events, {len(partition) / 1e6:.0f} MB")

    e = engine()
    started = time.perf_counter()
    e.load(partition)
    whole = time.perf_counter() - started
    print(f"  whole replay         {whole:8.3f} s   {events / whole:12,.0f} events/s")

    # The snapshots a checkpoint before the tail left: every thread as of the head.
    at_checkpoint = engine()
    at_checkpoint.load(head)
    snapshots = [at_checkpoint.save(f"t{n}") for n in range(threads)]
    size = sum(len(s) for s in snapshots if s is not None)
    e = engine()
    started = time.perf_counter()
    for n, snapshot in enumerate(snapshots):
        assert snapshot is not None
        e.restore(snapshot, f"t{n}")
    restored = time.perf_counter() - started
    folded = e.load_tail(tail)
    total = time.perf_counter() - started
    print(
        f"  snapshots + tail     {total:8.3f} s   ({threads} restores {restored:.3f} s, "
        f"{size / 1e6:.0f} MB of snapshots; {folded} tail events folded)"
    )


async def bench_eviction(count: int) -> None:
    # Without eviction the file run log keeps every thread's file open.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"open-file limit raised from {soft} to {hard}")
    for evict in (None, 0.0):
        # With log_path: in memory the log and the snapshots would stay in RAM anyway.
        root = tempfile.mkdtemp(prefix="flowai-evict-")
        runtime = create_runtime(
            SPEC, interpreter="scripted", log_path=root, fsync="never", evict_after=evict
        )
        prompt = json.dumps({"script": [{"tool": "add", "args": {"a": 1, "b": 2}}] * 3})
        start_rss = rss_mb()
        marks = []
        for n in range(count):
            async for _ in runtime.run_specialist("calc", prompt, f"e{n}"):
                pass
            if (n + 1) % (count // 4) == 0:
                marks.append(f"{n + 1}: {rss_mb() - start_rss:+.0f} MB")
        label = "no eviction" if evict is None else "evict_after=0"
        print(f"eviction ({label}): RSS growth after " + ", ".join(marks))
        if evict is not None:
            latencies: dict[str, list[float]] = {"evicted": [], "resident": []}
            for n in range(300):
                runtime.evict_idle()
                for kind in ("evicted", "resident"):
                    started = time.perf_counter()
                    async for _ in runtime.run_specialist("calc", prompt, f"e{n}"):
                        pass
                    latencies[kind].append((time.perf_counter() - started) * 1e3)
        runtime.close()
        shutil.rmtree(root)
        if evict is not None:
            for kind, samples in latencies.items():
                samples.sort()
                print(
                    f"  query to a {kind:<8} thread: median {statistics.median(samples):.2f} ms"
                    f"   p99 {samples[int(len(samples) * 0.99)]:.2f} ms"
                )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--evict-threads", type=int, default=15000)
    args = parser.parse_args()
    print(f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}")
    if args.threads:
        bench_thread(await thread_log(50))
        bench_partition(await thread_log(args.steps), args.threads)
    if args.evict_threads:
        await bench_eviction(args.evict_threads)


if __name__ == "__main__":
    asyncio.run(main())
