"""The tool worker's command line: ``flowai serve tools`` and ``python -m services.tools``.

Owns :func:`build_parser`, :func:`settings_from_args` and :func:`main`: options and their
environment defaults, logging, exit codes (0 stopped, 1 Kafka failed at run time, 2 a usage
or configuration error, one line on stderr).

Must not import another service.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from flowai_harness import bus
from flowai_harness.errors import FlowaiError

from .app import load_app
from .service import DAY, ServiceSettings, serve
from .worker import WorkerSettings, default_worker_id

__all__ = ["build_parser", "main", "settings_from_args"]


def build_parser(prog: str = "flowai serve tools") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a tool worker: tool invocations and plan steps from Kafka, results "
        "back, each executed effectively once (Redis keeps claims and results).",
    )
    parser.add_argument(
        "--app", required=True, help="module:attr of the RuntimeSpec (or a function returning it)"
    )
    parser.add_argument(
        "--services", help="module:attr of a mapping of host objects handlers get as ctx.services"
    )
    bus.add_service_arguments(
        parser, redis="claims, recorded results and references", creates="this worker"
    )
    parser.add_argument("--group", help="consumer group (default: <prefix>.tools)")
    bus.add_instance_argument(parser, role="tool worker")
    bus.add_flag_argument(
        parser,
        "--allow-volatile-ledger",
        env="FLOWAI_ALLOW_VOLATILE_LEDGER",
        help="start even if Redis does not persist the ledger (no append-only file), or "
        "forbids asking: a Redis restart then forgets recorded results and tools run again",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="tool calls at once (8)")
    parser.add_argument(
        "--tool-timeout", type=float, default=30.0, help="seconds per attempt; retried (30)"
    )
    parser.add_argument(
        "--max-attempts", type=int, default=3, help="attempts for retryable failures (3)"
    )
    parser.add_argument(
        "--retry-backoff", type=float, default=0.5, help="first retry delay, doubling (0.5 s)"
    )
    parser.add_argument(
        "--claim-ttl",
        type=float,
        default=60.0,
        help="seconds a claim outlives its worker; renewed while the tool runs (60)",
    )
    parser.add_argument(
        "--result-ttl", type=float, default=7 * DAY, help="seconds results are kept (7 days)"
    )
    parser.add_argument("--prefetch", type=int, help="messages in flight (4 x concurrency)")
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=10_000,
        help="Kafka group session timeout: how soon a dead worker's partitions move (10000)",
    )
    parser.add_argument(
        "--shutdown-grace", type=float, default=30.0, help="seconds to finish on SIGTERM (30)"
    )
    parser.add_argument("--worker-id", default=default_worker_id(), help="default: host:pid")
    return parser


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    return ServiceSettings(
        bootstrap=args.bootstrap,
        redis_url=args.redis,
        prefix=args.prefix,
        group=args.group,
        instance_id=bus.expand_instance_id(args.instance_id),
        partitions=args.partitions,
        replication=args.replication,
        min_insync_replicas=args.min_insync_replicas,
        allow_unreplicated=args.allow_unreplicated,
        allow_volatile_ledger=args.allow_volatile_ledger,
        create_topics=not args.no_create_topics,
        claim_ttl=args.claim_ttl,
        result_ttl=args.result_ttl,
        prefetch=args.prefetch,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(100, args.session_timeout_ms // 3),
        shutdown_grace=args.shutdown_grace,
        worker_id=args.worker_id,
        worker=WorkerSettings(
            concurrency=args.concurrency,
            tool_timeout=args.tool_timeout,
            max_attempts=args.max_attempts,
            retry_backoff=args.retry_backoff,
            claim_poll=min(0.25, args.claim_ttl / 8),
        ),
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "flowai serve tools") -> int:
    """``flowai serve tools ...``: parse the arguments, load the app, run until signalled.

    Exit status 2 with a one-line message for a usage or configuration error (as the other
    services), 1 when Kafka fails at run time.
    """
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        app = load_app(args.app, args.services)
        asyncio.run(serve(app, settings))
    except FlowaiError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"{prog}: Kafka failed: {exc!r}", file=sys.stderr)
        return 1
    return 0
