"""The approvals service's command line: ``flowai serve approvals`` / ``python -m
services.approvals``.

Owns :func:`build_parser`, :func:`settings_from_args` and :func:`main`: options and their
environment defaults, logging, exit codes (0 stopped, 1 Kafka failed at run time, 2 a usage
or configuration error, one line on stderr).

Secrets never come from the command line, where other users of the machine could read
them: the tenants' API secrets come from a file (``--tenant-secrets``) or the app, the Slack
bot token and signing secret from ``SLACK_BOT_TOKEN`` / ``SLACK_SIGNING_SECRET`` or the files
``--slack-bot-token-file`` / ``--slack-signing-secret-file``. The decision key is PEM text
or a file (``--decision-key`` / ``FLOWAI_DECISION_KEY``; prefer a file, or the environment).

Must not import another service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiokafka.errors import KafkaError

from flowai_harness import settings as flowai_settings
from flowai_harness.errors import FlowaiError, SettingError, UsageError
from flowai_harness.kafka import bus, observe
from flowai_harness.kafka.decision_auth import key_list

from .policy import SECRETS_ENV, load_policy
from .service import STEPS, ServiceSettings, serve
from .slack import SlackSettings

__all__ = ["build_parser", "main", "parse_address", "settings_from_args"]

HOLD_ENV = "FLOWAI_APPROVALS_TEST_HOLD"


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
        "to list and decide them (and Slack, when configured), signed decisions back to "
        "Kafka (the first one wins).",
    )
    parser.add_argument(
        "--app",
        required=True,
        help="module:attr of the RuntimeSpec (or a function returning it); its optional "
        "`approvers`, `tenant_secrets` and `slack_channels` attributes set the policy",
    )
    parser.add_argument(
        "--http",
        default=env("FLOWAI_APPROVALS_HTTP", "127.0.0.1:8080"),
        help="host:port of the HTTP API (env FLOWAI_APPROVALS_HTTP; default 127.0.0.1:8080)",
    )
    bus.add_service_arguments(parser, redis="the Slack messages and dead-letter watermarks")
    auth = parser.add_argument_group("who may call the API, and how decisions are signed")
    auth.add_argument(
        "--tenant-secrets",
        default=env(SECRETS_ENV) or None,
        metavar="FILE",
        help=f"JSON file {{tenant: secret | [secrets]}} ('*': every other tenant) of the "
        f"secrets that sign each tenant's API requests (env {SECRETS_ENV})",
    )
    bus.add_flag_argument(
        parser,
        "--allow-unauthenticated",
        env="FLOWAI_APPROVALS_ALLOW_UNAUTHENTICATED",
        help="serve the tenants without a secret to anyone (development only)",
    )
    auth.add_argument(
        "--decision-key",
        default=env("FLOWAI_DECISION_KEY") or None,
        metavar="PEM|FILE",
        help="the Ed25519 private key that signs every decision published (env "
        "FLOWAI_DECISION_KEY); make one with `python -m flowai_harness.kafka.decision_auth keygen`",
    )
    auth.add_argument(
        "--decision-public-key",
        action="append",
        default=None,
        metavar="PEM|FILE",
        help="also count decisions on the topic signed by this key (repeatable; env "
        "FLOWAI_DECISION_PUBLIC_KEYS, files separated by commas): the operators' "
        "tools the runtimes trust",
    )
    bus.add_flag_argument(
        parser,
        "--allow-unsigned-decisions",
        env="FLOWAI_ALLOW_UNSIGNED_DECISIONS",
        help="without --decision-key, publish unsigned decisions (development only)",
    )
    auth.add_argument(
        "--confirm-wait",
        type=flowai_settings.positive_float,
        default=10.0,
        help="seconds a decision waits to be read back from the topic before the 202 says "
        "confirmed: false (10)",
    )
    slack = parser.add_argument_group(
        "Slack (on when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, or their files, are given)"
    )
    slack.add_argument(
        "--slack-bot-token-file", metavar="FILE", help="file holding the xoxb- token"
    )
    slack.add_argument(
        "--slack-signing-secret-file", metavar="FILE", help="file holding the signing secret"
    )
    slack.add_argument(
        "--slack-channel",
        default=env("FLOWAI_SLACK_CHANNEL") or None,
        help="channel for the approvals the app's slack_channels does not route (env "
        "FLOWAI_SLACK_CHANNEL)",
    )
    slack.add_argument(
        "--slack-api-url",
        default=env("FLOWAI_SLACK_API_URL") or None,
        help="Slack Web API base URL (env FLOWAI_SLACK_API_URL; default Slack's own)",
    )
    slack.add_argument(
        "--slack-sweep",
        type=flowai_settings.positive_float,
        default=1.0,
        help="seconds between looks for expired approvals and Slack calls to retry (1)",
    )
    slack.add_argument(
        "--slack-lease",
        type=flowai_settings.positive_float,
        default=30.0,
        help="seconds an instance may hold a message's posting or update before another "
        "instance takes it over (30); longer than a Slack call can take",
    )
    observe.add_arguments(parser)
    return parser


def _secret(path: str | None, variable: str) -> str | None:
    if path is not None:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return os.environ.get(variable) or None


def _slack(args: argparse.Namespace) -> SlackSettings | None:
    token = _secret(args.slack_bot_token_file, "SLACK_BOT_TOKEN")
    signing = _secret(args.slack_signing_secret_file, "SLACK_SIGNING_SECRET")
    if token is None and signing is None:
        return None
    return SlackSettings(
        bot_token=token or "",
        signing_secret=signing or "",
        api_url=args.slack_api_url,
        sweep=args.slack_sweep,
        lease=args.slack_lease,
    )


def settings_from_args(args: argparse.Namespace) -> ServiceSettings:
    host, port = parse_address(args.http)
    public = args.decision_public_key
    if public is None:
        public = key_list(os.environ.get("FLOWAI_DECISION_PUBLIC_KEYS"))
    hold = os.environ.get(HOLD_ENV) or None
    steps = {step: step for step in STEPS}
    if hold is not None and hold not in steps:
        raise UsageError(f"{HOLD_ENV} must be one of {', '.join(STEPS)}, got {hold!r}")
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
        decision_key=args.decision_key,
        allow_unsigned_decisions=args.allow_unsigned_decisions,
        trusted_keys=public,
        slack=_slack(args),
        confirm_wait=args.confirm_wait,
        hold_at=None if hold is None else steps[hold],
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "flowai serve approvals") -> int:
    """``flowai serve approvals ...``: parse, load the app's policy, serve until signalled."""
    try:
        args = flowai_settings.parse(build_parser, argv, prog)
        observe.setup(args, "approvals")
    except SettingError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args)
        policy = load_policy(
            args.app,
            secrets_file=args.tenant_secrets,
            slack_channel=args.slack_channel,
            allow_unauthenticated=args.allow_unauthenticated,
        )
        asyncio.run(observe.run(args.metrics, serve(policy, settings)))
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
