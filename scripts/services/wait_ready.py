"""Wait until the local Kafka broker(s) and/or Redis answer, or fail with a clear message.

Used by scripts/services/services; runs with the repo venv's Python (needs aiokafka and redis).

Kafka is ready when AIOKafkaAdminClient.describe_cluster() succeeds and lists at least
--kafka-brokers live brokers. Redis is ready when PING answers. While waiting, the pids given
with --pid are watched: if one dies, waiting stops at once. On failure the tail of every
--log file is printed to stderr and the exit code is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purpose.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return True


def _tail(path: str, lines: int) -> str:
    p = Path(path)
    if not p.exists():
        return f"  ({path} does not exist)\n"
    data = p.read_bytes()[-64 * 1024 :].decode("utf-8", "replace").splitlines()
    return "".join(f"  {line}\n" for line in data[-lines:])


class NotReady(Exception):
    pass


async def _kafka_once(bootstrap: str, want_brokers: int, attempt_timeout: float) -> str:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(attempt_timeout * 1000),
        retry_backoff_ms=100,
        client_id="flowai-wait-ready",
    )
    try:
        await asyncio.wait_for(admin.start(), attempt_timeout)
        info = await asyncio.wait_for(admin.describe_cluster(), attempt_timeout)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    brokers = info.get("brokers") or []
    if len(brokers) < want_brokers:
        raise NotReady(f"{len(brokers)} of {want_brokers} brokers live")
    return (
        f"cluster {info.get('cluster_id')} with {len(brokers)} broker(s),"
        f" controller {info.get('controller_id')}"
    )


async def _redis_once(url: str, attempt_timeout: float) -> str:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=attempt_timeout, socket_timeout=attempt_timeout
    )
    try:
        if not await client.ping():
            raise NotReady("PING did not answer PONG")
    finally:
        await client.aclose()
    return "PONG"


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kafka", help="bootstrap servers, host:port[,host:port...]")
    ap.add_argument("--kafka-brokers", type=int, default=1, help="live brokers to expect")
    ap.add_argument("--redis", help="redis URL, e.g. redis://127.0.0.1:16379/0")
    ap.add_argument("--timeout", type=float, default=90.0, help="overall deadline in seconds")
    ap.add_argument("--pid", type=int, action="append", default=[], help="pid to watch")
    ap.add_argument(
        "--kafka-log", action="append", default=[], help="broker log to show on failure"
    )
    ap.add_argument("--redis-log", action="append", default=[], help="redis log to show on failure")
    ap.add_argument("--tail", type=int, default=30)
    args = ap.parse_args()

    # aiokafka logs every refused connection at ERROR while the broker starts: keep it quiet.
    logging.basicConfig(level=logging.CRITICAL)

    checks: dict[str, object] = {}
    logs: dict[str, list[str]] = {}
    if args.kafka:
        name = f"Kafka at {args.kafka}"
        checks[name] = lambda t: _kafka_once(args.kafka, args.kafka_brokers, t)
        logs[name] = args.kafka_log
    if args.redis:
        name = f"Redis at {args.redis}"
        checks[name] = lambda t: _redis_once(args.redis, t)
        logs[name] = args.redis_log
    if not checks:
        ap.error("nothing to wait for: give --kafka and/or --redis")

    start = time.monotonic()
    deadline = start + args.timeout
    pending = dict(checks)
    last_error: dict[str, str] = {}
    failure = ""
    while pending:
        attempt_timeout = max(1.0, min(5.0, deadline - time.monotonic()))
        for name, check in list(pending.items()):
            try:
                detail = await check(attempt_timeout)  # type: ignore[operator]
            except Exception as exc:  # any failure means "not yet"
                last_error[name] = f"{type(exc).__name__}: {exc}"
                continue
            print(
                f"ready: {name}: {detail} ({time.monotonic() - start:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            del pending[name]
        if not pending:
            break
        dead = [p for p in args.pid if not _alive(p)]
        if dead:
            failure = f"process(es) {', '.join(map(str, dead))} exited while starting"
            break
        if time.monotonic() >= deadline:
            failure = f"not ready after {args.timeout:.0f} s"
            break
        await asyncio.sleep(0.25)

    if not pending:
        return 0
    print(f"error: {failure}", file=sys.stderr)
    for name in pending:
        print(
            f"  {name}: last error: {last_error.get(name, 'no attempt finished')}", file=sys.stderr
        )
    for log in [log for name in pending for log in logs[name]]:
        print(f"--- last {args.tail} lines of {log} ---", file=sys.stderr)
        sys.stderr.write(_tail(log, args.tail))
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
