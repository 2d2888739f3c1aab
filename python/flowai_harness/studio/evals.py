"""Evals in Studio: the suites it can run, the runs it started, and how two runs compare.

Owns :func:`load_suites` (``--evals module:attr``), :class:`EvalRuns` (runs started from the
page, each driven by a task here over the backend's ``stream_eval``, their envelopes kept for
the SSE stream), :class:`EvalRun` and :func:`compare`.

A suite's samples run on the runtime Studio serves, not on the :class:`EvalSuite`'s own
``runtime`` (which is never built): that is what puts every sample's thread in the Runs page,
where a failing sample is opened. Runs live as long as the Studio process.

Must not import FastAPI, Kafka, the runtime or a backend implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ..apps import import_object
from ..errors import EvalError, NotFoundError, RunStateError, UsageError
from ..evals.artifact import EvalArtifact, TestCaseArtifact
from ..evals.models import EvalRequest, validated
from ..evals.report import case_pass_rate
from ..evals.runner import EvalStream
from ..evals.runtime_bridge import sample_thread_id
from ..evals.suite import EvalSuite

__all__ = ["EvalRun", "EvalRuns", "EvalSource", "StudioSuite", "compare", "load_suites"]

log = logging.getLogger("flowai.studio")

# Runs kept per Studio; the oldest finished ones go first.
MAX_RUNS: Final = 50


class EvalSource(Protocol):
    """What runs an eval: the backend's runtime (embedded) or its client (distributed)."""

    def stream_eval(self, request: EvalRequest, approval_policy: str | None) -> EvalStream: ...


@dataclass(frozen=True)
class StudioSuite:
    """A suite as Studio runs it: its name, its validated request and how to judge it."""

    name: str
    request: EvalRequest
    approval_policy: str | None
    min_pass_rate: float

    def as_json(self) -> dict[str, Any]:
        config = self.request.config
        return {
            "name": self.name,
            "testCases": [case.id for case in self.request.test_cases],
            "samplesPerCase": config.samples_per_case,
            "kValues": list(config.k_values or ()),
            "mode": config.mode,
            "targetAgent": config.target_agent_id,
            "passThreshold": config.pass_threshold,
            "minPassRate": self.min_pass_rate,
        }


def _suite(name: str, value: Any, reference: str) -> StudioSuite:
    if not isinstance(value, EvalSuite):
        raise UsageError(
            f"--evals {reference}: {name!r} is a {type(value).__name__}, not an EvalSuite; "
            "name an EvalSuite, a list or dict of them, or a function returning one of those"
        )
    try:
        request = validated(EvalRequest, value.request, what=f"the eval request of {name!r}")
    except EvalError as error:
        raise UsageError(f"--evals {reference}: {error.message}") from None
    return StudioSuite(
        name=value.name or name,
        request=request,
        approval_policy=value.approval_policy,
        min_pass_rate=value.min_pass_rate,
    )


def load_suites(reference: str) -> dict[str, StudioSuite]:
    """The suites ``module:attr`` names: an :class:`EvalSuite`, a list of them (named by
    ``EvalSuite.name``, else ``attr[i]``), a dict of them by name, or a zero-argument
    function returning one of those."""
    value = import_object(reference, option="--evals")
    if callable(value) and not isinstance(value, EvalSuite):
        value = value()
    attr = reference.rsplit(":", 1)[-1]
    if isinstance(value, Mapping):
        found = [_suite(str(key), item, reference) for key, item in value.items()]
    elif isinstance(value, list | tuple):
        found = [_suite(f"{attr}[{i}]", item, reference) for i, item in enumerate(value)]
    else:
        found = [_suite(attr, value, reference)]
    suites: dict[str, StudioSuite] = {}
    for suite in found:
        if suite.name in suites:
            raise UsageError(f"--evals {reference}: two suites are named {suite.name!r}")
        suites[suite.name] = suite
    if not suites:
        raise UsageError(f"--evals {reference} names no suite")
    return suites


@dataclass
class EvalRun:
    """One eval run started from Studio: its envelopes (wire JSON) as they came."""

    run_id: str
    suite: StudioSuite
    started_at: int
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    finished_at: int | None = None
    artifact: EvalArtifact | None = None
    error: str | None = None
    cases: dict[str, TestCaseArtifact] = field(default_factory=dict)
    samples_done: int = 0
    # Set and replaced on every change: a stream waits on the current one.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def samples_total(self) -> int:
        config = self.suite.request.config
        return len(self.suite.request.test_cases) * config.samples_per_case

    @property
    def done(self) -> bool:
        return self.status != "running"

    def add(self, envelope: Any) -> None:
        wire = envelope.to_wire()
        self.envelopes.append(wire)
        kind, data = wire["type"], envelope.event.data
        if kind == "sampleCompleted":
            self.samples_done += 1
        elif kind == "testCaseCompleted":
            self.cases[data.test_case.test_case_id] = data.test_case
        elif kind == "evalCompleted":
            self.artifact = data.artifact
            self.status = "completed"
        elif kind == "evalFailed":
            self.status, self.error = "failed", data.error
        elif kind == "evalCancelled":
            self.status, self.error = "cancelled", data.reason
        if self.done:
            self.finished_at = int(time.time() * 1000)
        self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def test_cases(self) -> list[TestCaseArtifact]:
        """The test cases finished so far, in the request's order."""
        if self.artifact is not None:
            return list(self.artifact.test_cases)
        order = [case.id for case in self.suite.request.test_cases]
        return [self.cases[case] for case in order if case in self.cases]

    def thread_of(self, case_id: str, sample_index: int, given: str | None) -> str:
        return given or sample_thread_id(self.run_id, case_id, sample_index)

    def as_json(self) -> dict[str, Any]:
        summary = self.artifact.summary if self.artifact is not None else None
        cost = summary.cost.estimated_cost_usd if summary and summary.cost else None
        return {
            "runId": self.run_id,
            "suite": self.suite.name,
            "status": self.status,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "samplesDone": self.samples_done,
            "samplesTotal": self.samples_total,
            "passRate": summary.pass_rate if summary else None,
            "aggregateScore": summary.aggregate_score if summary else None,
            "passed": (summary.pass_rate >= self.suite.min_pass_rate) if summary else None,
            "costUsd": cost,
            "error": self.error,
        }

    def results(self) -> dict[str, Any]:
        """The run with its finished test cases, each sample with the thread it ran on."""
        threshold = self.suite.request.config.pass_threshold
        cases = []
        for case in self.test_cases():
            samples = []
            for sample in case.samples:
                samples.append(
                    {
                        "sampleIndex": sample.sample_index,
                        "passed": sample.passed,
                        "score": sample.aggregate_score,
                        "scorers": {s.scorer_name: s.score for s in sample.component_scores},
                        "trajectory": sample.actual_trajectory,
                        "durationMs": sample.duration_ms,
                        "error": sample.error,
                        "threadId": self.thread_of(
                            case.test_case_id, sample.sample_index, sample.thread_id
                        ),
                    }
                )
            cases.append(
                {
                    "testCaseId": case.test_case_id,
                    "input": case.input,
                    "score": case.aggregate_score,
                    "passRate": case_pass_rate(case),
                    "passed": case.aggregate_score >= threshold,
                    "passAtK": {str(p.k): p.unbiased_estimate for p in case.pass_at_k},
                    "samples": samples,
                }
            )
        return {**self.as_json(), "suiteInfo": self.suite.as_json(), "testCases": cases}


class EvalRuns:
    """The suites Studio offers and the runs it started."""

    def __init__(self, source: EvalSource, suites: Mapping[str, StudioSuite]) -> None:
        self.source = source
        self.suites = dict(suites)
        self.runs: dict[str, EvalRun] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._streams: dict[str, EvalStream] = {}

    def run(self, run_id: str) -> EvalRun:
        found = self.runs.get(run_id)
        if found is None:
            raise NotFoundError(
                f"no eval run {run_id!r} in this Studio (runs last as long as its process)",
                code="STUDIO_UNKNOWN_EVAL_RUN",
            )
        return found

    def start(self, suite_name: str) -> EvalRun:
        suite = self.suites.get(suite_name)
        if suite is None:
            raise NotFoundError(
                f"no suite named {suite_name!r}; this Studio's suites are: "
                f"{', '.join(self.suites) or 'none (start it with --evals module:attr)'}",
                code="STUDIO_UNKNOWN_SUITE",
            )
        stream = self.source.stream_eval(suite.request, suite.approval_policy)
        run = EvalRun(stream.run_id, suite, started_at=int(time.time() * 1000))
        self._forget_old()
        self.runs[run.run_id] = run
        self._streams[run.run_id] = stream
        self._tasks[run.run_id] = asyncio.get_running_loop().create_task(
            self._drive(run, stream), name=f"studio eval {run.run_id}"
        )
        return run

    def cancel(self, run_id: str) -> None:
        run = self.run(run_id)
        stream = self._streams.get(run_id)
        if run.done or stream is None:
            raise RunStateError(f"eval run {run_id!r} has already ended ({run.status})")
        stream.cancel("cancelled in Studio")

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for stream in self._streams.values():
            stream.cancel("Studio stopped")
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drive(self, run: EvalRun, stream: EvalStream) -> None:
        try:
            async for envelope in stream:
                run.add(envelope)
            # A stream cancelled before its first envelope ends with none.
            self._end(run, "cancelled", "cancelled before it started")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a run that cannot start still ends, with its reason
            log.exception("eval run %s failed", run.run_id)
            self._end(run, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._tasks.pop(run.run_id, None)
            self._streams.pop(run.run_id, None)
            with contextlib.suppress(Exception):
                await stream.aclose()

    @staticmethod
    def _end(run: EvalRun, status: str, reason: str) -> None:
        if not run.done:
            run.status, run.error = status, reason
            run.finished_at = int(time.time() * 1000)
            run.notify()

    def _forget_old(self) -> None:
        finished = [r for r in self.runs.values() if r.done]
        while len(self.runs) >= MAX_RUNS and finished:
            del self.runs[finished.pop(0).run_id]


def compare(a: EvalRun, b: EvalRun) -> dict[str, Any]:
    """Two finished runs side by side: per test case (of either) its score and pass rate in
    each, and the change from ``a`` to ``b``."""
    for run in (a, b):
        if run.artifact is None:
            raise RunStateError(
                f"eval run {run.run_id!r} is {run.status}; compare runs that completed"
            )
    left = {case.test_case_id: case for case in a.test_cases()}
    right = {case.test_case_id: case for case in b.test_cases()}
    order = list(left) + [case for case in right if case not in left]

    def side(case: TestCaseArtifact | None) -> dict[str, Any] | None:
        if case is None:
            return None
        return {
            "score": case.aggregate_score,
            "passRate": case_pass_rate(case),
            "passAtK": {str(p.k): p.unbiased_estimate for p in case.pass_at_k},
        }

    rows = []
    for case_id in order:
        one, two = side(left.get(case_id)), side(right.get(case_id))
        delta = two["score"] - one["score"] if one and two else None
        rows.append({"testCaseId": case_id, "a": one, "b": two, "scoreDelta": delta})
    return {"a": a.as_json(), "b": b.as_json(), "testCases": rows}
