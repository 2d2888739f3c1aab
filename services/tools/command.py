"""The worker's command line: ``flowai serve tools``, ``flowai serve models`` (the same with
``--role models``) and ``python -m services.tools``.

Owns :func:`build_parser`, :func:`settings_from_args` and :func:`main`: options and their
environment defaults, logging, exit codes (0 stopped, 1 Kafka failed at run time, 2 a usage
or configuration error, one line on stderr).

Must not import another service.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from flowai_harness import settings as flowai_settings
from flowai_harness.errors import FlowaiError, SettingError
from flowai_harness.kafka import bus, metrics, observe

from .app import load_app
from .models import ModelSettings
from .once import default_worker_id
from .service import DAY, ROLES, ServiceSettings, serve
from .worker import WorkerSettings

__all__ = ["build_parser", "main", "settings_from_args"]


def build_parser(prog: str = "flowai serve tools") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a worker: tool invocations and plan steps (role tools), model "
        "requests (role models), or both, from Kafka, results back, each answered effectively "
        "once (Redis keeps claims and results).",
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
    parser.add_argument(
        "--role",
        choices=ROLES,
        default="tools",
        help="what to answer: tools (tool invocations and plan steps), models (model "
        "requests, with the providers of the app's spec), or all (tools)",
    )
    parser.add_argument("--group", help="consumer group of tools (default: <prefix>.tools)")
    parser.add_argument("--model-group", help="consumer group of models (default: <prefix>.models)")
    bus.add_membership_arguments(parser, role="tool worker")
    bus.add_flag_argument(
        parser,
        "--allow-volatile-ledger",
        env="FLOWAI_ALLOW_VOLATILE_LEDGER",
        help="start even if Redis does not persist the ledger (no append-only file), or "
        "forbids asking: a Redis restart then forgets recorded results and tools run again",
    )
    bus.add_uvloop_argument(parser)
    parser.add_argument(
        "--concurrency", type=flowai_settings.positive_int, default=8, help="tool calls at once (8)"
    )
    parser.add_argument(
        "--tool-timeout",
        type=flowai_settings.positive_float,
        default=30.0,
        help="seconds per attempt; retried (30)",
    )
    parser.add_argument(
        "--max-attempts",
        type=flowai_settings.positive_int,
        default=3,
        help="attempts for retryable failures (3)",
    )
    parser.add_argument(
        "--retry-backoff",
        type=flowai_settings.non_negative_float,
        default=0.5,
        help="first retry delay, doubling (0.5 s)",
    )
    parser.add_argument(
        "--claim-ttl",
        type=flowai_settings.positive_float,
        default=60.0,
        help="seconds a claim outlives its worker; renewed while the tool runs (60)",
    )
    parser.add_argument(
        "--result-ttl",
        type=flowai_settings.positive_float,
        default=7 * DAY,
        help="seconds results are kept (7 days)",
    )
    parser.add_argument(
        "--prefetch", type=flowai_settings.positive_int, help="messages in flight (4 x concurrency)"
    )
    parser.add_argument(
        "--model-concurrency",
        type=flowai_settings.positive_int,
        default=64,
        help="model calls at once (64)",
    )
    parser.add_argument(
        "--model-prefetch",
        type=flowai_settings.positive_int,
        help="model requests in flight (2 x model concurrency)",
    )
    parser.add_argument(
        "--provider-concurrency",
        action="append",
        default=[],
        metavar="PROVIDER=N",
        help="calls at once to one provider from this worker, overriding the spec's "
        "maxConcurrency (repeatable)",
    )
    parser.add_argument(
        "--no-stream-deltas",
        action="store_true",
        help="do not publish streamed model text on model-deltas (clients then see each "
        "model turn when it completes)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=flowai_settings.non_negative_float,
        default=30.0,
        help="seconds to finish on SIGTERM (30)",
    )
    parser.add_argument("--worker-id", default=default_worker_id(), help="default: host:pid")
    observe.add_arguments(parser)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    return ServiceSettings(
        bootstrap=args.bootstrap,
        redis_url=args.redis,
        prefix=args.prefix,
        role=args.role,
        group=args.group,
        model_group=args.model_group,
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
        model_prefetch=args.model_prefetch,
        provider_concurrency=_provider_limits(args.provider_concurrency),
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
        models=ModelSettings(
            concurrency=args.model_concurrency,
            stream_deltas=not args.no_stream_deltas,
            claim_poll=min(0.25, args.claim_ttl / 8),
        ),
    )


def _provider_limits(entries: Sequence[str]) -> dict[str, int]:
    limits: dict[str, int] = {}
    for entry in entries:
        name, sep, number = entry.partition("=")
        if not sep or not name or not number.strip().isdigit():
            raise ValueError(
                f"--provider-concurrency takes PROVIDER=N (e.g. anthropic=16), got {entry!r}"
            )
        limits[name.strip()] = int(number)
    return limits


def main(argv: Sequence[str] | None = None, *, prog: str = "flowai serve tools") -> int:
    """``flowai serve tools ...``: parse the arguments, load the app, run until signalled.

    Exit status 2 with a one-line message for a usage or configuration error (as the other
    services), 1 when Kafka fails at run time.
    """
    try:
        args = flowai_settings.parse(build_parser, argv, prog)
        observe.setup(args, "models" if args.role == "models" else "tools")
    except SettingError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        app = load_app(args.app, args.services)
        if args.uvloop:
            bus.use_uvloop()
        lanes = 2 if args.role == "all" else 1
        observe.ready_when(
            "the consumers started", lambda: len(metrics.watched_consumers()) >= lanes
        )
        asyncio.run(observe.run(args.metrics, serve(app, settings)))
    except FlowaiError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"{prog}: Kafka failed: {exc!r}", file=sys.stderr)
        return 1
    return 0
