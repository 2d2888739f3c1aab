"""``flowai eval``: run an eval suite as a CI gate, and turn recorded threads into one.

Owns the ``eval`` command's arguments (:func:`add_commands`, called by
:mod:`flowai_harness.cli`) and their work (:func:`run`):

- ``flowai eval run SUITE [--runtime module:attr] [--app module:attr] [--approvals P]
  [--out DIR] [--min-pass-rate R]``: runs the suite (see :mod:`.suite` for what SUITE may
  be), shows progress on stderr (a rich progress bar on a terminal when rich is installed,
  else one line per sample), prints the results table on stdout, writes
  ``DIR/<run id>.json`` (the artifact) and ``DIR/<run id>.html`` (a self-contained report
  with the pass-rate / pass@k chart), and exits 0 when the gate passed, 1 when it did not
  (fewer than ``--min-pass-rate`` of the test cases reached the config's pass threshold),
  2 on a usage error or an eval that could not run.
- ``flowai eval from-log (LOG_PATH | --kafka BOOTSTRAP [--prefix P]) --tenant T [--agent A]
  [--since ISO] [--until ISO] [--thread ID ...] [--tag TAG ...] --out SUITE.json``: turns
  the recorded threads of a ``log_path`` directory, or of the Kafka run log, into a replay
  suite (:mod:`.replay`); no matching thread is a usage error (exit 2).

Must not import services or Kafka; the runtime only through the suite the user names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Protocol, TextIO

import orjson

from ..errors import EvalError, UsageError
from .artifact import EvalArtifact
from .report import gate_passed, html_report, results_table
from .runner import EvalStream
from .runtime_bridge import APPROVAL_POLICIES
from .suite import load_suite, resolve

__all__ = ["add_commands", "run"]


def add_commands(commands: Any) -> None:
    """Register ``eval run`` and ``eval from-log`` on the ``flowai`` subcommands."""
    evals = commands.add_parser("eval", help="run eval suites; turn recorded threads into one")
    actions = evals.add_subparsers(dest="eval_command", required=True)
    run_ = actions.add_parser(
        "run",
        help="run an eval suite; exit 1 when it misses its pass threshold",
        description="SUITE is module:attr naming an EvalSuite (or a function returning "
        "one), an eval request JSON file (with --runtime), or a replay suite from "
        "`flowai eval from-log` (with --app).",
    )
    run_.add_argument("suite")
    run_.add_argument("--runtime", help="module:attr of the Runtime a request file runs on")
    run_.add_argument("--app", help="module:attr of the spec a replay suite re-runs against")
    run_.add_argument("--approvals", choices=APPROVAL_POLICIES, help="the eval approval policy")
    run_.add_argument("--out", default="flowai-evals", help="where the JSON and HTML go")
    run_.add_argument(
        "--min-pass-rate",
        type=float,
        help="share of test cases that must pass (default: the suite's, else 1.0)",
    )
    run_.add_argument("--live-tools", action="store_true", help="replay: run tools live")
    from_log = actions.add_parser(
        "from-log",
        help="turn recorded threads (a log_path directory, or --kafka) into a replay suite",
    )
    from_log.add_argument("log_path", nargs="?", help="the embedded runtime's log_path")
    from_log.add_argument("--kafka", metavar="BOOTSTRAP", help="read the Kafka run log instead")
    from_log.add_argument("--prefix", default="flowai", help="the topic prefix (with --kafka)")
    from_log.add_argument("--tenant", required=True)
    from_log.add_argument("--agent", help="only threads whose runs start this agent")
    from_log.add_argument("--since", help="only threads started at or after (ISO 8601)")
    from_log.add_argument("--until", help="only threads started before (ISO 8601)")
    from_log.add_argument("--thread", action="append", help="only these thread ids")
    from_log.add_argument("--tag", action="append", default=[], help="tag the test cases")
    from_log.add_argument("--out", required=True, help="the replay suite file to write")


class _Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, text: str) -> None: ...

    def stop(self) -> None: ...


class _Lines:
    """One line per finished sample (not a terminal, or rich is not installed)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.total = 0
        self.done = 0

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, text: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {text}", file=self.out, flush=True)

    def stop(self) -> None:
        pass


class _Bar:
    """A rich progress bar on the terminal."""

    def __init__(self, out: TextIO) -> None:
        # Optional: a plain line per sample without it.
        from rich.console import Console  # type: ignore[import-not-found,unused-ignore]
        from rich.progress import Progress  # type: ignore[import-not-found,unused-ignore]

        self.progress = Progress(console=Console(file=out), transient=True)
        self.task: Any = None

    def start(self, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("samples", total=total)

    def advance(self, text: str) -> None:
        self.progress.update(self.task, advance=1, description=text)

    def stop(self) -> None:
        self.progress.stop()


def _progress(out: TextIO) -> _Progress:
    if out.isatty():
        try:
            return _Bar(out)
        except ImportError:
            pass
    return _Lines(out)


async def follow(stream: EvalStream, progress: _Progress) -> EvalArtifact:
    """Drain ``stream``, reporting each finished sample; returns the artifact."""
    case_id = ""
    try:
        async for envelope in stream:
            event: Any = envelope.event
            kind = envelope.type
            if kind == "evalStarted":
                summary = event.data.artifact.summary
                progress.start(summary.total_test_cases * stream.request.config.samples_per_case)
            elif kind == "testCaseStarted":
                case_id = event.data.test_case_id
            elif kind == "sampleCompleted":
                sample = event.data.sample
                verdict = "pass" if sample.passed else "fail"
                progress.advance(
                    f"{case_id} #{sample.sample_index}: {verdict} ({sample.aggregate_score:.2f})"
                )
            elif kind == "evalCompleted":
                artifact: EvalArtifact = event.data.artifact
                return artifact
            elif kind == "evalFailed":
                raise EvalError(f"the eval failed: {event.data.error}")
            elif kind == "evalCancelled":
                raise EvalError(f"the eval was cancelled: {event.data.reason}")
    finally:
        progress.stop()
        await stream.aclose()
    raise EvalError("the eval stream ended without a result")


def write_outputs(
    artifact: EvalArtifact, out: Path, threshold: float, min_pass_rate: float
) -> tuple[Path, Path]:
    """Write ``<run id>.json`` and ``<run id>.html`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{artifact.run_id}.json"
    html_path = out / f"{artifact.run_id}.html"
    json_path.write_bytes(orjson.dumps(artifact.to_wire(), option=orjson.OPT_INDENT_2))
    html_path.write_text(html_report(artifact, threshold, min_pass_rate), encoding="utf-8")
    return json_path, html_path


async def run(args: argparse.Namespace) -> int:
    """The ``eval`` command's work; returns the exit code."""
    if args.eval_command == "from-log":
        from .replay import kafka_recorded_threads, recorded_threads, write_replay_suite

        if (args.log_path is None) == (args.kafka is None):
            raise UsageError("give either LOG_PATH (a log_path directory) or --kafka BOOTSTRAP")
        filters = {
            "tenant": args.tenant,
            "agent": args.agent,
            "since": args.since,
            "until": args.until,
            "threads": args.thread,
        }
        found = (
            await kafka_recorded_threads(args.kafka, prefix=args.prefix, **filters)
            if args.kafka is not None
            else recorded_threads(args.log_path, **filters)
        )
        written = write_replay_suite(found, tenant=args.tenant, tags=args.tag, out=args.out)
        print(f"wrote {written} test case(s) to {args.out}")
        return 0
    return await _run_suite(args)


async def _run_suite(args: argparse.Namespace) -> int:
    from .replay import is_replay_suite, open_replay_suite

    if is_replay_suite(args.suite):
        if args.app is None:
            raise UsageError(
                f"{args.suite} is a replay suite; name the spec to re-run it against with "
                "--app module:attr (the spec, or a function returning it)"
            )
        suite = await open_replay_suite(args.suite, app=args.app, live_tools=args.live_tools)
    else:
        suite = await load_suite(args.suite, runtime=args.runtime)
    runtime = await resolve(suite.runtime)
    if not hasattr(runtime, "stream_eval"):
        raise UsageError(
            f"the suite's runtime must be a Runtime (or a function returning one), got "
            f"{type(runtime).__name__}"
        )
    min_pass_rate = args.min_pass_rate if args.min_pass_rate is not None else suite.min_pass_rate
    try:
        stream = runtime.stream_eval(
            suite.request, approval_policy=args.approvals or suite.approval_policy
        )
        artifact = await follow(stream, _progress(sys.stderr))
    finally:
        close = getattr(runtime, "aclose", None)
        if close is not None:
            await close()
    threshold = stream.request.config.pass_threshold
    print(results_table(artifact, threshold, min_pass_rate))
    json_path, html_path = write_outputs(artifact, Path(args.out), threshold, min_pass_rate)
    print(f"artifact: {json_path}\nreport:   {html_path}")
    return 0 if gate_passed(artifact, min_pass_rate) else 1
