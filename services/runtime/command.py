"""The runtime service's command line: ``flowai serve runtime`` / ``python -m services.runtime``.

Owns the arguments and environment, logging and signals of one runtime instance. Exit
status 2 with a one-line message for a usage or configuration error (a bad ``--app``, a
missing ``--mock-response``), 1 when Kafka fails while serving, 0 after SIGTERM/SIGINT.

Must not import other services, with one exception: when the app has tools marked
``placement="inline"``, their runner (:mod:`services.tools.inline`, the tool workers' own
ledger and checks) is built here and handed to the service.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from flowai_harness import settings as flowai_settings
from flowai_harness.apps import load_spec
from flowai_harness.errors import BusError, FlowaiError, SettingError, UsageError
from flowai_harness.kafka import bus, metrics, observe
from flowai_harness.kafka.decision_auth import DecisionVerifier, key_list
from flowai_harness.runtime import INTERPRETERS
from flowai_harness.runtime import interpreter_config as engine_interpreter

from .service import RuntimeService, ServiceConfig

log = logging.getLogger("flowai.runtime")


def parser(prog: str = "flowai serve runtime") -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run the runtime service: inputs from Kafka -> engine -> run log + effects.",
    )
    p.add_argument(
        "--app",
        required=True,
        help="module:attr naming the RuntimeSpec (or a zero-argument function returning it)",
    )
    bus.add_service_arguments(p, redis="the ledger of tools placed inline")
    p.add_argument(
        "--interpreter",
        choices=(*INTERPRETERS, "mock"),
        default=env("FLOWAI_INTERPRETER", "scripted"),
        help="model turns: live (model requests go to the model workers: flowai serve tools "
        "--role models), scripted (prompts are JSON tool scripts), mock (every turn answers "
        "--mock-response) or noop; the deterministic ones are answered inside the engine "
        "(env FLOWAI_INTERPRETER, default scripted)",
    )
    p.add_argument(
        "--mock-response",
        default=env("FLOWAI_MOCK_RESPONSE"),
        help="the answer of every model turn with --interpreter mock (env FLOWAI_MOCK_RESPONSE)",
    )
    p.add_argument("--group", default=None, help="consumer group (default <prefix>.runtime)")
    bus.add_membership_arguments(p, role="runtime")
    p.add_argument(
        "--decision-public-key",
        action="append",
        default=key_list(env("FLOWAI_DECISION_PUBLIC_KEYS")),
        metavar="PEM",
        help="a public key (PEM file) whose signatures on approval decisions this runtime "
        "trusts: the approvals service's (repeatable, for rotation; env "
        "FLOWAI_DECISION_PUBLIC_KEYS, comma-separated). An unsigned or wrongly signed "
        "decision is a dead letter (DECISION_UNVERIFIED)",
    )
    bus.add_flag_argument(
        p,
        "--allow-unsigned-decisions",
        env="FLOWAI_ALLOW_UNSIGNED_DECISIONS",
        help="accept approval decisions without a signature (development only: then whoever "
        "can write to the approval-decisions topic can open any gate)",
    )
    p.add_argument(
        "--dedup-window",
        type=flowai_settings.positive_float,
        default=env("FLOWAI_DEDUP_WINDOW", "86400"),
        help="seconds an input's id is remembered, so the same message published again "
        "(an upstream retry) is ignored instead of run again; rebuilt from the run log "
        "(env FLOWAI_DEDUP_WINDOW, default 86400: a day)",
    )
    p.add_argument(
        "--snapshot-every",
        type=flowai_settings.non_negative_int,
        default=50,
        help="snapshot a thread to the snapshots topic once this many of its events are not "
        "covered, and at each run end; 0 turns snapshots off (a takeover then replays whole "
        "partitions). Default 50",
    )
    p.add_argument(
        "--checkpoint-every",
        type=flowai_settings.positive_int,
        default=1000,
        help="checkpoint a partition every this many events: a takeover folds about this many "
        "of its events at most (default 1000)",
    )
    bus.add_flag_argument(
        p,
        "--lazy-snapshots",
        env="FLOWAI_LAZY_SNAPSHOTS",
        help="no snapshot at each run's end, only every --snapshot-every events, at "
        "checkpoints and before an eviction: more throughput on short threads (one record "
        "fewer per run), a longer tail to fold on takeover (at most --checkpoint-every)",
    )
    _add_eviction_arguments(p)
    observe.add_arguments(p)
    _add_inline_arguments(p)
    return p


def _add_eviction_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--evict-after",
        type=flowai_settings.non_negative_float,
        default=600.0,
        help="seconds after which a thread at rest (idle, or at an approval gate without a "
        "deadline) leaves memory for the local store and comes back on its next input; "
        "0 keeps every thread in memory (default 600: a long-lived instance stays bounded, "
        "and a conversation's next turn within ten minutes never waits for the disk)",
    )
    p.add_argument(
        "--state-dir",
        default=os.path.join(tempfile.gettempdir(), "flowai-runtime"),
        help="directory of the local store of evicted threads (one SQLite file per instance, "
        "named by --group and --instance-id; rebuilt from the snapshots topic when missing, "
        "so a volatile directory only costs a slower takeover). Default: "
        "<temp dir>/flowai-runtime",
    )


def _evict_after(seconds: float, snapshot_every: int) -> float | None:
    if seconds == 0:
        return None
    if snapshot_every == 0:
        log.warning(
            "idle threads stay in memory: eviction needs snapshots, and --snapshot-every 0 "
            "turns them off"
        )
        return None
    return seconds


def _add_inline_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--inline-claim-ttl",
        type=flowai_settings.positive_float,
        default=60.0,
        help="seconds a claim on an inline tool call outlives this runtime (60)",
    )
    p.add_argument(
        "--inline-tool-timeout",
        type=flowai_settings.positive_float,
        default=10.0,
        help="seconds an inline tool call may take per attempt; it holds its partition's "
        "transaction meanwhile (10)",
    )
    bus.add_uvloop_argument(p)
    bus.add_flag_argument(
        p,
        "--allow-volatile-ledger",
        env="FLOWAI_ALLOW_VOLATILE_LEDGER",
        help="run inline tools even if Redis does not persist the ledger",
    )


def _inline_settings(args: argparse.Namespace, spec: Any) -> Any:
    """The inline tools' settings when the app has any (None: nothing runs inline)."""
    if not any(tool.placement == "inline" for tool in spec.tools):
        return None
    inline = _tools_module("inline")
    return inline.InlineSettings(
        redis_url=args.redis,
        prefix=args.prefix,
        claim_ttl=args.inline_claim_ttl,
        allow_volatile_ledger=args.allow_volatile_ledger,
        worker_id=bus.expand_instance_id(args.instance_id),
        worker=_tools_module("worker").WorkerSettings(
            tool_timeout=args.inline_tool_timeout, max_attempts=2
        ),
    )


def _tools_module(name: str) -> Any:
    # Imported by name: the tool service is a package of its own (and its own mypy root).
    return importlib.import_module(f"services.tools.{name}")


def interpreter_config(kind: str, mock_response: str | None) -> dict[str, Any]:
    """The engine's interpreter setting, chosen as create_runtime chooses it."""
    if kind == "mock":
        if mock_response is None:
            raise UsageError(
                "--interpreter mock needs --mock-response TEXT (or env FLOWAI_MOCK_RESPONSE)"
            )
        return {"kind": "mock", "response": mock_response}
    return engine_interpreter(None, kind)


def _decision_verifier(keys: list[str], allow_unsigned: bool) -> DecisionVerifier | None:
    if keys:
        verifier = DecisionVerifier.from_pems(keys)
        log.info("approval decisions must be signed by: %s", ", ".join(verifier.key_ids))
        return verifier
    if allow_unsigned:
        log.warning(
            "approval decisions are accepted unsigned (--allow-unsigned-decisions): whoever "
            "can write to the approval-decisions topic can open any gate; development only"
        )
        return None
    raise UsageError(
        "approval decisions must be signed: give the approvals service's public key with "
        "--decision-public-key FILE (env FLOWAI_DECISION_PUBLIC_KEYS; make a pair with "
        "`python -m flowai_harness.kafka.decision_auth keygen`), or pass "
        "--allow-unsigned-decisions on a development machine"
    )


def _dedup_window_ms(seconds: float) -> int:
    if not seconds > 0:
        raise UsageError(f"--dedup-window must be a positive number of seconds, got {seconds}")
    return int(seconds * 1000)


def main(argv: Sequence[str] | None = None, *, prog: str = "flowai serve runtime") -> int:
    """Run one runtime instance until SIGTERM/SIGINT; returns the exit status."""
    try:
        args = flowai_settings.parse(parser, argv, prog)
        observe.setup(args, "runtime")
    except SettingError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        interpreter = interpreter_config(args.interpreter, args.mock_response)
        spec = load_spec(args.app)
        config = ServiceConfig(
            bootstrap=args.bootstrap,
            prefix=args.prefix,
            group_id=args.group,
            instance_id=bus.expand_instance_id(args.instance_id),
            partitions=args.partitions,
            replication=args.replication,
            min_insync_replicas=args.min_insync_replicas,
            allow_unreplicated=args.allow_unreplicated,
            create_topics=not args.no_create_topics,
            session_timeout_ms=args.session_timeout_ms,
            dedup_window_ms=_dedup_window_ms(args.dedup_window),
            decisions=_decision_verifier(args.decision_public_key, args.allow_unsigned_decisions),
            snapshot_every=args.snapshot_every or None,
            snapshot_at_run_end=not args.lazy_snapshots,
            checkpoint_every=args.checkpoint_every,
            evict_after=_evict_after(args.evict_after, args.snapshot_every),
            state_dir=args.state_dir,
        )
        service = RuntimeService(spec, interpreter, config)
        inline = _inline_settings(args, spec)
        if args.uvloop:
            bus.use_uvloop()
    except FlowaiError as exc:
        print(f"flowai serve runtime: {exc}", file=sys.stderr)
        return 2
    observe.ready_when(
        "the assigned partitions rebuilt from the run log",
        lambda: service.ready.is_set() and metrics.replay_pending() == 0,
    )
    return asyncio.run(observe.run(args.metrics, _serve(service, inline)))


async def _serve(service: RuntimeService, inline: Any = None) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    runner = None
    try:
        if inline is not None:
            from redis.exceptions import RedisError

            app = _tools_module("app").ToolApp.from_spec(service.spec)

            try:
                runner = await _tools_module("inline").open_inline_tools(app, inline)
            except (RedisError, OSError) as exc:
                print(
                    f"flowai serve runtime: cannot reach the Redis at {inline.redis_url} "
                    f"that holds the ledger of the inline tools: {exc}; start it or pass "
                    "--redis URL (env FLOWAI_REDIS_URL)",
                    file=sys.stderr,
                )
                return 1
            service.inline = runner
        await service.run()
    except (KafkaError, BusError) as exc:
        # Kafka went away or misbehaved while serving: a supervisor may restart us.
        print(f"flowai serve runtime: Kafka failed: {exc}", file=sys.stderr)
        return 1
    except FlowaiError as exc:
        print(f"flowai serve runtime: {exc}", file=sys.stderr)
        return 2
    finally:
        if runner is not None:
            await runner.close()
    return 0
