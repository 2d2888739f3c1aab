"""The Studio command lines: ``flowai studio`` and the seed's ``flowai-harness dev|serve``.

Owns :func:`main` (``flowai studio --app module:attr [--log-path DIR] [--interpreter ...]
[--evals module:attr] [--host H] [--port P] [--token T]``, and with ``--kafka BOOTSTRAP
--tenant T`` the distributed mode), :func:`seed_main` (``flowai-harness dev|serve --app
module:attr [--host] [--port] [--no-studio]``, the same server) and :func:`build_backend`.

Studio binds 127.0.0.1 by default; any other address needs a token (``--token`` or env
``FLOWAI_STUDIO_TOKEN``), since whoever reaches the page can run agents and decide approvals.
The interpreter is chosen as for ``create_runtime`` (``--interpreter``, env
``FLOWAI_INTERPRETER``, default scripted; ``mock`` with ``--mock-response``); a runtime
factory that takes ``interpreter`` / ``testing`` / ``log_path`` parameters is given them.

Exit codes: 0 after Ctrl-C, 2 a usage or app error (one line on stderr). Imports uvicorn and
the backends only when serving.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from ..errors import FlowaiError, UsageError
from .apps import RuntimeChoice, build_runtime, resolve_target, spec_of

__all__ = ["build_backend", "main", "seed_main"]

DEFAULT_PORT = 4111


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--app",
        required=True,
        help="module:attr naming a RuntimeSpec, a runtime, a function returning one, or a "
        "define_app(...) app",
    )
    p.add_argument("--workspace", help="the workspace of a define_app(...) app to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument(
        "--token",
        default=os.environ.get("FLOWAI_STUDIO_TOKEN"),
        help="required to bind anything but loopback: the page is opened with ?token=... "
        "(env FLOWAI_STUDIO_TOKEN)",
    )
    p.add_argument(
        "--log-path",
        help="keep run logs in files there (embedded; default: in memory, gone at exit)",
    )
    p.add_argument(
        "--interpreter",
        choices=("noop", "scripted", "live", "anthropic", "mock"),
        default=os.environ.get("FLOWAI_INTERPRETER", "scripted"),
        help="model turns, as create_runtime chooses them: live (the spec's providers and "
        "keys), scripted (prompts are JSON tool scripts), mock (--mock-response), noop "
        "(env FLOWAI_INTERPRETER, default scripted)",
    )
    p.add_argument("--mock-response", default=os.environ.get("FLOWAI_MOCK_RESPONSE"))
    p.add_argument(
        "--evals",
        metavar="MODULE:ATTR",
        help="eval suites the Evals page can run: an EvalSuite, a list or dict of them, or a "
        "function returning one; their samples run on the runtime Studio serves",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="flowai studio",
        description="Studio, a browser UI on the run log: chat, runs, approvals, costs.",
    )
    _add_common(p)
    kafka = p.add_argument_group("distributed mode (the runtime service on Kafka)")
    kafka.add_argument("--kafka", metavar="BOOTSTRAP", help="serve the runtime service's tenant")
    kafka.add_argument("--tenant", help="the tenant to serve (required with --kafka)")
    kafka.add_argument("--prefix", default=os.environ.get("FLOWAI_TOPIC_PREFIX", "flowai"))
    kafka.add_argument(
        "--decision-key",
        default=os.environ.get("FLOWAI_DECISION_KEY"),
        metavar="PEM",
        help="deciding key that signs the decisions made in Studio (env FLOWAI_DECISION_KEY)",
    )
    return p


def check_bind(host: str, token: str | None) -> None:
    if token is not None:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UsageError(
            f"--host {host} lets other machines run agents and decide approvals: pass "
            "--token (or FLOWAI_STUDIO_TOKEN), or bind 127.0.0.1"
        )


def build_backend(args: argparse.Namespace) -> Any:
    """The backend ``args`` ask for (embedded unless ``--kafka``)."""
    target = resolve_target(args.app, workspace=args.workspace)
    if getattr(args, "kafka", None):
        if not args.tenant:
            raise UsageError("--kafka needs --tenant: the tenant whose run log Studio shows")
        if args.log_path:
            raise UsageError("--log-path is for the embedded runtime; on Kafka the log is a topic")
        from .distributed import DistributedBackend

        return DistributedBackend(
            args.kafka,
            tenant=args.tenant,
            spec=spec_of(target),
            topic_prefix=args.prefix,
            decision_key=args.decision_key,
        )
    from .embedded import EmbeddedBackend

    choice = RuntimeChoice(
        interpreter=args.interpreter, mock_response=args.mock_response, log_path=args.log_path
    )
    return EmbeddedBackend(build_runtime(target, choice))


def serve(args: argparse.Namespace, *, serve_page: bool = True) -> int:
    check_bind(args.host, args.token)
    import uvicorn

    from .server import create_studio_app

    suites = None
    if args.evals:
        from .evals import load_suites

        suites = load_suites(args.evals)
    backend = build_backend(args)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    suffix = "/?token=<token>" if args.token else "/"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                # Said once the run log is loaded and the port answers: scripts wait for it.
                print(f"flowai studio: {backend.mode} runtime of tenant {backend.tenant}")
                print(f"flowai studio: open http://{shown}:{args.port}{suffix}", flush=True)

    app = create_studio_app(
        backend, app_name=args.app, token=args.token, serve_page=serve_page, suites=suites
    )
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    Server(config).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        return serve(args)
    except FlowaiError as exc:
        print(f"flowai studio: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def seed_main(argv: list[str] | None = None) -> int:
    """``flowai-harness dev|serve --app module:attr``: the seed's entry points to Studio."""
    p = argparse.ArgumentParser(prog="flowai-harness", description="Studio and its API.")
    commands = p.add_subparsers(dest="command", required=True)
    for name, text in (
        ("dev", "run Studio (API and page) on one port"),
        ("serve", "run Studio (API and page) on one port"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        _add_common(sub)
        sub.add_argument(
            "--no-studio", action="store_true", help="serve the HTTP API without the page"
        )
    try:
        args = p.parse_args(argv)
        args.kafka = None
        return serve(args, serve_page=not args.no_studio)
    except FlowaiError as exc:
        print(f"flowai-harness: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
