"""The ``flowai`` command line.

Owns the commands and their exit codes; each does its work through the package (``bus``,
``messages``) or hands over to a service's own command line:

- ``flowai serve runtime|tools|models|approvals [--app module:attr ...]``: runs
  ``services/<name>`` (``services.<name>.main(argv)``); each service parses its own options.
  ``models`` is the tools service with ``--role models`` (model workers).
- ``flowai replay THREAD_ID --tenant T [--at SEQ]``: the thread's timeline from the run log
  (seq, time, type, summary), read_committed, as the runtime service logged it; ``--at``
  stops after event SEQ and prints the thread's status at that point.
- ``flowai topics create [--partitions N] [--replication R] [--min-insync-replicas M]
  [--allow-unreplicated] [--prefix P]``: creates the missing topics (idempotent); replication
  3 with min.insync.replicas 2 on a cluster of three or more brokers unless told otherwise,
  and a run log with one replica is refused unless ``--allow-unreplicated`` (env
  ``FLOWAI_ALLOW_UNREPLICATED=1``), as :func:`flowai_harness.kafka.bus.ensure_topics` says.
- ``flowai dead-letters list|show ID|redrive ID...`` (filters ``--topic``, ``--reason``,
  ``--tenant``, ``--service``, ``--since``, ``--until``): :mod:`flowai_harness.kafka.deadletters`.
- ``flowai approvals list|show ID|decide ID OUTCOME --tenant T``: an operator's view of a
  tenant's approvals through the approvals service's HTTP API (``--url``, env
  ``FLOWAI_APPROVALS_URL``), each request signed with the tenant's secret (env
  ``FLOWAI_APPROVALS_SECRET`` or ``--secret-file``), so the service authorises it as it
  does any other caller (:mod:`flowai_harness.kafka.approvals_http`).
- ``flowai mcp python MODULE:OBJECT --agent A [--transport stdio|streamable-http] [--host
  --port --path --allow-origin ... --no-origin-check --thread-id --call-timeout-secs
  --expose-agent-tools]``: serves one agent's tools to MCP clients
  (``Runtime.serve_mcp_stdio`` / ``serve_mcp_http``); OBJECT is a Runtime, a RuntimeSpec
  (run on the noop interpreter) or a zero-argument function returning either.
- ``flowai studio --app module:attr [...]``: Studio, the browser UI on the run log
  (``flowai_harness.studio.command``; its options are its own, see ``flowai studio --help``).
- ``flowai eval run SUITE`` / ``flowai eval from-log LOG_PATH``: evals as a CI gate, and
  replay suites from recorded threads (:mod:`flowai_harness.evals.cli`; exit 1 there means
  the eval missed its pass threshold).

Exit codes: 0 done, 1 Kafka (or the approvals service) failed while working, 2 a usage or
configuration error, or a request the approvals service refused (one line on stderr, no
traceback). Must stay thin: no service logic here, and services are imported
only when asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .errors import FlowaiError, UsageError
from .progress import progress

__all__ = ["main"]

SERVICES = ("runtime", "tools", "models", "approvals")
_SUMMARY_WIDTH = 100


def _env_bootstrap() -> str:
    return os.environ.get("FLOWAI_KAFKA_BOOTSTRAP", "127.0.0.1:19092")


def _env_prefix() -> str:
    return os.environ.get("FLOWAI_TOPIC_PREFIX", "flowai")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowai", description="flowai-harness command line")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run a service (runtime, tools, models, approvals)",
        description="Run a service; the options after its name are the service's own "
        "(see `flowai serve runtime --help`).",
    )
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("args", nargs=argparse.REMAINDER, help="the service's options")

    replay = commands.add_parser(
        "replay",
        help="print a thread's timeline from the run log",
        description="Print a thread's timeline from the run log (read_committed).",
    )
    replay.add_argument("thread_id")
    replay.add_argument("--tenant", required=True)
    replay.add_argument("--bootstrap", default=_env_bootstrap())
    replay.add_argument("--prefix", default=_env_prefix())
    replay.add_argument("--json", action="store_true", help="print each logged envelope")
    replay.add_argument(
        "--at",
        type=int,
        metavar="SEQ",
        help="time travel: the thread as it was after its event SEQ (then its status)",
    )

    topics = commands.add_parser("topics", help="manage the topics")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True)
    create = topic_commands.add_parser(
        "create",
        help="create the missing topics (idempotent)",
        description="Create the topics under a prefix with the given partitions and replication "
        "(default: 3 replicas with min.insync.replicas 2 on a cluster of 3 or more brokers, else "
        "one per broker). A run log with one replica is refused unless --allow-unreplicated.",
    )
    create.add_argument("--partitions", type=int, default=6)
    _bus().add_replication_arguments(create, creates="this command")
    create.add_argument("--prefix", default=_env_prefix())
    create.add_argument("--bootstrap", default=_env_bootstrap())
    _approvals_parser(commands)
    _mcp_parser(commands)
    from .kafka import deadletters

    deadletters.add_parser(commands, bootstrap=_env_bootstrap(), prefix=_env_prefix())
    commands.add_parser(
        "studio",
        help="Studio, the browser UI on the run log (see `flowai studio --help`)",
        add_help=False,
    )
    from .evals.cli import add_commands as add_eval_commands

    add_eval_commands(commands)
    return p


def _mcp_parser(commands: Any) -> None:
    mcp = commands.add_parser("mcp", help="serve an agent's tools over MCP")
    kinds = mcp.add_subparsers(dest="mcp_command", required=True)
    python = kinds.add_parser(
        "python",
        help="serve the tools of an agent of a Python app",
        description="Serve one agent's tools to MCP clients. TARGET is module:object naming a "
        "Runtime, a RuntimeSpec or a zero-argument function returning one. Every call runs "
        "through the engine and is logged in --thread-id.",
    )
    python.add_argument("target", metavar="MODULE:OBJECT")
    python.add_argument("--agent", required=True, help="the agent whose tools are served")
    python.add_argument("--transport", choices=("stdio", "streamable-http"), default="stdio")
    python.add_argument("--host", default="127.0.0.1")
    python.add_argument("--port", type=int, default=8765)
    python.add_argument("--path", default="/mcp")
    python.add_argument(
        "--allow-origin",
        action="append",
        dest="allowed_origins",
        metavar="ORIGIN",
        help="an Origin browsers may call from (repeatable; default: this server's own)",
    )
    python.add_argument(
        "--no-origin-check", action="store_true", help="do not check the Origin header"
    )
    python.add_argument("--thread-id", default=None, help="the thread calls are logged in")
    python.add_argument("--call-timeout-secs", type=float, default=30.0)
    python.add_argument(
        "--expose-agent-tools",
        action="store_true",
        help="also offer the agent's built-in tools (plans, references)",
    )


def _approvals_parser(commands: Any) -> None:
    approvals = commands.add_parser(
        "approvals",
        help="list, show and decide approvals (through the approvals service)",
        description="A tenant's approvals through the approvals service's HTTP API, each "
        "request signed with the tenant's secret (env FLOWAI_APPROVALS_SECRET, or "
        "--secret-file).",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tenant", required=True)
    common.add_argument(
        "--url",
        default=os.environ.get("FLOWAI_APPROVALS_URL", "http://127.0.0.1:8080"),
        help="the approvals service (env FLOWAI_APPROVALS_URL; default http://127.0.0.1:8080)",
    )
    common.add_argument(
        "--secret-file",
        metavar="FILE",
        help="file holding the tenant's secret (default: env FLOWAI_APPROVALS_SECRET)",
    )
    common.add_argument("--json", action="store_true", help="print the service's JSON")
    actions = approvals.add_subparsers(dest="approvals_command", required=True)
    actions.add_parser("list", parents=[common], help="the approvals waiting for a decision")
    show = actions.add_parser("show", parents=[common], help="one approval")
    show.add_argument("approval_id")
    decide = actions.add_parser("decide", parents=[common], help="decide one approval")
    decide.add_argument("approval_id")
    decide.add_argument("outcome", choices=("approve", "reject", "revise"))
    decide.add_argument(
        "--approver",
        default=os.environ.get("FLOWAI_APPROVER"),
        help="who decides, as the tenant's approvers policy names them (env FLOWAI_APPROVER)",
    )
    decide.add_argument("--feedback")
    decide.add_argument("--partial", help="revised arguments or plan, as JSON")


def _bus() -> Any:
    try:
        from .kafka import bus
    except ImportError as exc:  # pragma: no cover - the kafka extra is missing
        raise UsageError(
            f"the flowai commands talk to Kafka, which needs the kafka extra ({exc}); "
            "install flowai-harness[kafka]"
        ) from None
    return bus


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["studio"]:
        # Studio parses its own options (they would be a second parser's worth here).
        from .studio.command import main as studio_main

        return studio_main(argv[1:])
    try:
        args = parser().parse_args(argv)
    except FlowaiError as exc:
        print(f"flowai: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            return _serve(args.service, list(args.args))
        if args.command == "replay":
            return asyncio.run(_replay(args))
        if args.command == "approvals":
            return asyncio.run(_approvals(args))
        if args.command == "mcp":
            return _mcp(args)
        if args.command == "dead-letters":
            from .kafka import deadletters

            return asyncio.run(deadletters.run(args))
        if args.command == "eval":
            from .evals.cli import run as run_eval_command

            return asyncio.run(run_eval_command(args))
        return asyncio.run(_topics_create(args))
    except FlowaiError as exc:
        print(f"flowai: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not _is_kafka_error(exc):
            raise
        print(f"flowai: Kafka failed: {exc}", file=sys.stderr)
        return 1


def _is_kafka_error(exc: Exception) -> bool:
    try:
        from aiokafka.errors import KafkaError
    except ImportError:  # pragma: no cover - the kafka extra is missing
        return False
    return isinstance(exc, KafkaError)


# --- serve -----------------------------------------------------------------------------------


def _serve(service: str, argv: list[str]) -> int:
    if service == "models":
        # Model workers are the worker service in the models role.
        return _service_main("tools")(["--role", "models", *argv])
    entry = _service_main(service)
    return entry(argv)


# The modules of the kafka extra the services import.
_KAFKA_EXTRA = frozenset(
    {"aiokafka", "redis", "aiohttp", "prometheus_client", "cryptography", "slack_sdk"}
)


def _service_main(service: str) -> Callable[[list[str]], int]:
    package = f"services.{service}"
    try:
        module = importlib.import_module(package)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _KAFKA_EXTRA:
            raise UsageError(
                f"flowai serve {service} needs the kafka extra ({missing} is not installed): "
                "pip install 'flowai-harness[kafka]'"
            ) from None
        if exc.name not in ("services", package):
            raise
        # A source checkout: services/ sits next to python/ (the package's parent).
        root = Path(__file__).resolve().parents[2]
        if not (root / "services" / service / "__init__.py").is_file():
            raise UsageError(
                f"the {service} service is not available here (no services/{service} next "
                "to this installation); run it from a checkout of flowai-harness"
            ) from None
        sys.path.insert(0, str(root))
        module = importlib.import_module(package)
    entry = getattr(module, "main", None)
    if not callable(entry):
        raise UsageError(f"services/{service} has no main(argv) entry point yet")
    return entry  # type: ignore[no-any-return]


# --- mcp -------------------------------------------------------------------------------------


def _mcp(args: argparse.Namespace) -> int:
    from .apps import import_object
    from .runtime import Runtime, create_runtime
    from .specs import RuntimeSpec

    target = import_object(args.target, option="MODULE:OBJECT")
    if callable(target) and not isinstance(target, (Runtime, RuntimeSpec)):
        target = target()
    if isinstance(target, RuntimeSpec):
        target = create_runtime(target)
    if not isinstance(target, Runtime):
        raise UsageError(
            f"{args.target} must name a Runtime, a RuntimeSpec or a function returning one, "
            f"got {type(target).__name__}"
        )
    options: dict[str, Any] = {
        "thread_id": args.thread_id,
        "call_timeout_secs": args.call_timeout_secs,
        "expose_agent_tools": args.expose_agent_tools,
    }
    if args.transport == "stdio":
        target.serve_mcp_stdio(args.agent, **options)
        return 0
    print(
        f"flowai: serving the tools of {args.agent!r} over MCP at "
        f"http://{args.host}:{args.port}{args.path}",
        file=sys.stderr,
    )
    target.serve_mcp_http(
        args.agent,
        host=args.host,
        port=args.port,
        path=args.path,
        allowed_origins=args.allowed_origins,
        require_origin=not args.no_origin_check,
        **options,
    )
    return 0


# --- replay ----------------------------------------------------------------------------------


async def _replay(args: argparse.Namespace) -> int:
    from .kafka import bus

    entries = await read_thread(args.bootstrap, args.prefix, args.tenant, args.thread_id)
    if not entries:
        raise UsageError(
            f"no run log for thread {args.thread_id!r} of tenant {args.tenant!r} on "
            f"{bus.Topics(args.prefix).runtime_events}; check the thread id, --tenant and "
            "--prefix"
        )
    if args.at is not None:
        if not 1 <= args.at <= len(entries):
            raise UsageError(
                f"thread {args.thread_id!r} has {len(entries)} events; --at takes a seq "
                f"from 1 to {len(entries)}"
            )
        entries = entries[: args.at]
    for entry in entries:
        if args.json:
            print(orjson.dumps(entry).decode())
        else:
            print(timeline_line(entry))
    if args.at is not None and not args.json:
        from . import _native

        log = b"".join(orjson.dumps(entry) + b"\n" for entry in entries)
        print(f"after seq {args.at}: {_native.replay(log).status(args.thread_id)}")
    return 0


async def read_thread(
    bootstrap: str, prefix: str, tenant: str, thread_id: str
) -> list[dict[str, Any]]:
    """Every committed run-log envelope of one thread, in log order."""
    from aiokafka import TopicPartition

    from .kafka import bus

    topics = bus.Topics(prefix)
    key = bus.thread_key(tenant, thread_id)
    count = await bus.partition_count(bootstrap, topics.runtime_events)
    tp = TopicPartition(topics.runtime_events, bus.partition_for(key, count))
    consumer = bus.consumer(bootstrap, client_id="flowai-replay")
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        entries: list[dict[str, Any]] = []
        with progress(f"reading {tp.topic}[{tp.partition}]", end) as shown:
            while (position := await consumer.position(tp)) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                for record in batch.get(tp, []):
                    if record.key == key and record.offset < end:
                        entries.append(orjson.loads(record.value))
                shown.advance(await consumer.position(tp) - position)
    finally:
        await consumer.stop()
    return entries


def timeline_line(entry: dict[str, Any]) -> str:
    """``seq  time  type  summary`` for one logged envelope."""
    payload = entry.get("payload") or {}
    kind = str(payload.get("type", "?"))
    when = _utc(entry.get("ts"), "milliseconds", missing="?")
    return f"{entry.get('seq', '?'):>5}  {when}  {kind:<22} {_summary(kind, payload)}"


def _utc(ms: Any, timespec: str, *, missing: str) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC (``missing`` when not a number)."""
    if not isinstance(ms, int):
        return missing
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec=timespec)


def _short(value: Any, width: int = _SUMMARY_WIDTH) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _summary(kind: str, p: dict[str, Any]) -> str:
    if kind == "run-start":
        return f"{p.get('runId')} {p.get('agent')}: {_short(p.get('prompt', ''), 70)}"
    if kind == "step-start":
        return f"{p.get('agent')} step {p.get('step')} ({p.get('model')})"
    if kind == "text":
        return f"{p.get('agent')}: {_short(p.get('text', ''))}"
    if kind == "tool-invocation":
        if p.get("state") == "call":
            return f"{p.get('toolName')}({_short(p.get('args'), 70)}) [{p.get('toolInvocationId')}]"
        flag = " ERROR" if p.get("isError") else ""
        return f"{p.get('toolName')} ->{flag} {_short(p.get('result'), 70)}"
    if kind == "tool-agent":
        arrow = "->" if p.get("state") == "call" else "<-"
        return f"{p.get('agent')} {arrow} {p.get('targetAgent')}"
    if kind == "finish":
        usage = p.get("usage") or {}
        return f"{p.get('finishReason')} ({usage.get('totalTokens')} tokens)"
    if kind == "error":
        error = p.get("error") or {}
        return f"{error.get('code')}: {_short(error.get('message', ''))}"
    if kind == "custom":
        return f"{p.get('name')}: {_short(p.get('data'), 70)}"
    if kind == "tool-progress":
        return _short(p.get("message", ""))
    rest = {k: v for k, v in p.items() if k != "type"}
    return _short(rest)


# --- approvals -------------------------------------------------------------------------------


async def _approvals(args: argparse.Namespace) -> int:
    import aiohttp  # the kafka extra

    from .errors import BusError
    from .kafka import approvals_http

    secret = _tenant_secret(args.secret_file)
    try:
        if args.approvals_command == "list":
            waiting = await approvals_http.pending(args.url, args.tenant, secret=secret)
            if args.json:
                print(orjson.dumps(waiting, option=orjson.OPT_INDENT_2).decode())
            for approval in [] if args.json else waiting:
                print(approval_line(approval))
            if not waiting and not args.json:
                print(f"no approvals waiting for tenant {args.tenant}", file=sys.stderr)
        elif args.approvals_command == "show":
            shown = await approvals_http.show(
                args.url, args.tenant, args.approval_id, secret=secret
            )
            print(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
        else:
            if not args.approver:
                raise UsageError("--approver is required (or FLOWAI_APPROVER): who decides")
            try:
                partial = None if args.partial is None else orjson.loads(args.partial)
            except orjson.JSONDecodeError as exc:
                raise UsageError(f"--partial must be JSON: {exc}") from None
            decided = await approvals_http.decide(
                args.url,
                args.tenant,
                args.approval_id,
                args.outcome,
                approver=args.approver,
                feedback=args.feedback,
                partial=partial,
                secret=secret,
            )
            if args.json:
                print(orjson.dumps(decided, option=orjson.OPT_INDENT_2).decode())
            else:
                state = "" if decided.get("confirmed") else " (not read back yet)"
                print(
                    f"{decided['outcome']} by {decided['approver']} published as "
                    f"{decided['decision_id']}{state}"
                )
    except BusError as exc:
        print(f"flowai: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except FlowaiError as exc:
        print(f"flowai: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except aiohttp.ClientError as exc:
        print(f"flowai: cannot reach the approvals service at {args.url}: {exc}", file=sys.stderr)
        return 1
    return 0


def _tenant_secret(path: str | None) -> str | None:
    if path is not None:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --secret-file {path}: {exc.strerror}") from None
    return os.environ.get("FLOWAI_APPROVALS_SECRET") or None


def approval_line(approval: dict[str, Any]) -> str:
    """``id  status  kind target  agent  thread  expires`` for one approval."""
    when = _utc(approval.get("expires_at"), "seconds", missing="never")
    progress = ""
    if approval.get("approvals_required", 1) > 1:
        progress = f"  {len(approval.get('approvals') or [])}/{approval['approvals_required']}"
    return (
        f"{approval['id']}  {approval['status']:<8} {approval['kind']} {approval['target']}"
        f"  agent={approval.get('agent') or '-'}  thread={approval['thread_id']}"
        f"  expires={when}{progress}"
    )


# --- topics ----------------------------------------------------------------------------------


async def _topics_create(args: argparse.Namespace) -> int:
    from .kafka import bus

    topics = bus.Topics(args.prefix)
    created = await bus.ensure_topics(
        args.bootstrap,
        topics,
        partitions=args.partitions,
        replication=args.replication,
        min_insync_replicas=args.min_insync_replicas,
        allow_unreplicated=args.allow_unreplicated,
    )
    for name in topics.all():
        print(f"{name}: {'created' if name in created else 'exists'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
