"""The approvals service's command line: ``flowai serve approvals`` / ``python -m
services.approvals``.

Owns :func:`build_parser`, :func:`settings_from_args` and :func:`main`: options and their
environment defaults, logging, exit codes (0 stopped, 1 Kafka failed at run time, 2 a usage
or configuration error, one line on stderr). The signing secret is read from the app or the
environment (``FLOWAI_APPROVALS_SIGNING_SECRET``), never from the command line, where other
users of the machine could read it.

Must not import another service.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from flowai_harness import bus
from flowai_harness.errors import FlowaiError

from .policy import load_policy
from .service import DAY, ServiceSettings, serve

__all__ = ["build_parser", "main", "parse_address", "settings_from_args"]


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--http {text!r}: write it as host:port, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def build_parser(prog: str = "flowai serve approvals") -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the approvals service: approval requests from Kafka, an HTTP API "
        "to list and decide them, decisions back to Kafka (the first one wins).",
    )
    parser.add_argument(
        "--app",
        required=True,
        help="module:attr of the RuntimeSpec (or a function returning it); its optional "
        "`approvers` and `signing_secret` attributes set the policy",
    )
    parser.add_argument(
        "--http",
        default=env("FLOWAI_APPROVALS_HTTP", "127.0.0.1:8080"),
        help="host:port of the HTTP API (env FLOWAI_APPROVALS_HTTP; default 127.0.0.1:8080)",
    )
    bus.add_service_arguments(parser, redis="decision claims")
    parser.add_argument(
        "--claim-ttl",
        type=float,
        default=DAY,
        help="seconds a decision's claim is kept in Redis (one day)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    host, port = parse_address(args.http)
    return ServiceSettings(
        bootstrap=args.bootstrap,
        redis_url=args.redis,
        host=host,
        port=port,
        prefix=args.prefix,
        partitions=args.partitions,
        replication=args.replication,
        min_insync_replicas=args.min_insync_replicas,
        allow_unreplicated=args.allow_unreplicated,
        create_topics=not args.no_create_topics,
        claim_ttl=args.claim_ttl,
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "flowai serve approvals") -> int:
    """``flowai serve approvals ...``: parse, load the app's policy, serve until signalled."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = settings_from_args(args)
        policy = load_policy(args.app)
        asyncio.run(serve(policy, settings))
    except (FlowaiError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the HTTP port is taken, say
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"{prog}: Kafka failed: {exc!r}", file=sys.stderr)
        return 1
    return 0
