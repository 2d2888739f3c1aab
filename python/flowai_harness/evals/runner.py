"""The eval runner core: run every sample, judge and score it, build the artifact, stream it.

Owns :func:`stream_eval` (an :class:`EvalStream` of :class:`HarnessEvalEventEnvelope`:
``evalStarted``, then per test case ``testCaseStarted``, one ``sampleCompleted`` per sample as
it finishes and ``testCaseCompleted``, then ``evalCompleted`` — or ``evalFailed`` /
``evalCancelled``), :func:`run_eval` (the same run, returning the :class:`EvalArtifact`) and
:func:`run_eval_sync`.

It does not know the runtime: a sample runs through the injected async
``run_sample(test_case, sample_index) -> (RawSampleOutput, events)`` where ``events`` is the
run's seed-shaped event list (tokens, cost, latency and errors are projected from it by
:mod:`.projection`), and judges run through the injected ``complete`` model call
(:mod:`.judge`). Test cases run one after another; a test case's samples run concurrently,
at most ``config.concurrency`` at a time, each within ``timeout_per_sample_secs`` (past it the
sample is cancelled and recorded as failed with ``errorKind: "sample_timeout"``; a sample that
raises is failed with ``sample_execution_failed``, one whose events end in ``error`` with
``sample_agent_error``). Cancelling the stream — ``cancel()``, ``aclose()``, or breaking out
of ``async for`` and dropping it — cancels the samples in flight and starts no more.

Must not import the runtime, the native extension or the provider adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal

from ..errors import EvalCancelledError, EvalError, EvalRunError, ScorerPresetError
from .artifact import (
    TERMINAL_EVENT_TYPES,
    ArtifactMetadata,
    CostAgentBreakdown,
    EvalArtifact,
    EvalArtifactSummary,
    EvalCancelled,
    EvalCancelledData,
    EvalCompleted,
    EvalCompletedData,
    EvalFailed,
    EvalFailedData,
    EvalStarted,
    EvalStartedData,
    HarnessEvalEvent,
    HarnessEvalEventEnvelope,
    ModelInvocation,
    PassAtKResult,
    SampleArtifact,
    SampleCompleted,
    SampleCompletedData,
    SampleCost,
    SampleLatency,
    SummaryCost,
    SummaryLatency,
    TestCaseArtifact,
    TestCaseCompleted,
    TestCaseCompletedData,
    TestCaseStarted,
    TestCaseStartedData,
    TokenUsageSummary,
)
from .deadline import DeadlineExceeded, within_deadline
from .judge import JudgeModel, ModelComplete, run_judges
from .models import (
    FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY,
    AggregationStrategy,
    EvalRequest,
    EvalTestCase,
    RawSampleOutput,
    ResolvedAction,
    ScorerName,
    ScorerPresetName,
    validated,
)
from .projection import ProviderFor, project_run
from .scoring import (
    PRESET_FOR_MODE,
    case_weights,
    check_specialist_weights,
    default_score_weights,
    materialize_score_weights,
    pass_at_k,
    score_with_weights,
)

__all__ = [
    "EvalStream",
    "PriceModel",
    "RunSample",
    "SampleErrorKind",
    "SampleFailure",
    "artifact_of",
    "judge_provider_for_model",
    "run_eval",
    "run_eval_sync",
    "stream_eval",
]

# `run_sample(test_case, sample_index) -> (output, the run's seed-shaped events)`.
RunSample = Callable[
    [EvalTestCase, int], Awaitable[tuple[RawSampleOutput, Sequence[Mapping[str, Any]]]]
]
# The USD cost of one model invocation, or None when the model's price is unknown.
PriceModel = Callable[[ModelInvocation], float | None]
SampleErrorKind = Literal[
    "sample_timeout",
    "sample_execution_failed",
    "sample_agent_error",
    "sample_approval_required",
]


class SampleFailure(Exception):
    """Raised by a ``run_sample`` to fail its sample with a given ``errorKind`` (any other
    exception fails it with ``sample_execution_failed``)."""

    def __init__(self, kind: SampleErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: SampleErrorKind = kind


log = logging.getLogger("flowai.evals")

_STREAM_CLOSED: Final = "the eval stream was closed before the run completed"


def judge_provider_for_model(model: str) -> str:
    """The provider a judge model id routes to when the config names no provider (the
    engine's rule: ``claude-`` -> anthropic; ``gpt-``, ``o1-``, ``o3-`` -> openai; else
    anthropic)."""
    return "openai" if model.startswith(("gpt-", "o1-", "o3-")) else "anthropic"


def _percentile(sorted_values: Sequence[int], percent: int) -> int:
    # Nearest rank: the smallest value with at least `percent`% of the values at or below it.
    return sorted_values[max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)]


def _describe(error: BaseException) -> str:
    # A sample task's failure arrives wrapped in the task group's ExceptionGroup.
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """A validated request, resolved once before anything runs."""

    request: EvalRequest
    run_id: str
    preset: ScorerPresetName
    weights: dict[ScorerName, float]
    keep_empty_trajectory: bool
    test_cases: list[EvalTestCase]
    judge: JudgeModel | None


def _select(request: EvalRequest) -> list[EvalTestCase]:
    config = request.config
    cases = list(request.test_cases)
    if config.test_case_ids is not None:
        known = {case.id for case in cases}
        unknown = [case_id for case_id in config.test_case_ids if case_id not in known]
        if unknown:
            raise EvalError(
                f"config.test_case_ids names test cases the request does not have: {unknown}; "
                f"the request has {sorted(known)}"
            )
        wanted = set(config.test_case_ids)
        cases = [case for case in cases if case.id in wanted]
    if config.tags_filter is not None:
        tags = set(config.tags_filter)
        cases = [case for case in cases if tags.intersection(case.tags)]
    if not cases:
        raise EvalError(
            "no test case is selected: config.test_case_ids / tags_filter left none; "
            "a case is selected when its id is listed and it carries at least one listed tag"
        )
    return cases


def _prepare(request: EvalRequest, run_id: str, judge_model: JudgeModel | None) -> _Plan:
    config = request.config
    if config.mode == "testCaseBuilder":
        raise ScorerPresetError(
            "mode 'testCaseBuilder' builds test cases and cannot run an eval; use planner, "
            "executor, sequential or specialist"
        )
    if request.scorer_preset == "trajectory_only":
        raise ScorerPresetError(
            "scorer_preset='trajectory_only' is for offline score_sample only; for a run, "
            "give score_weights={'trajectory': 1.0}"
        )
    preset = request.scorer_preset or PRESET_FOR_MODE[config.mode]
    if (config.mode == "specialist") != (preset == "specialist"):
        raise ScorerPresetError(
            f"scorer preset {preset!r} is not valid for eval mode {config.mode!r}: the "
            "specialist preset goes with mode 'specialist' and only with it"
        )
    cases = _select(request)
    explicit = request.score_weights or config.score_weights
    if explicit is not None:
        weights = explicit.as_dict()
        if preset == "specialist":
            check_specialist_weights(weights, cases)
        keep_empty_trajectory = True
    else:
        weights = default_score_weights(preset, cases)
        # Executor defaults score trajectory only where a case authors one.
        keep_empty_trajectory = not (
            preset == "executor" and any(case.expected_trajectory for case in cases)
        )
    judge = (
        JudgeModel(config.provider or judge_provider_for_model(config.model), config.model)
        if config.model
        else judge_model
    )
    return _Plan(
        request=request,
        run_id=run_id,
        preset=preset,
        weights=materialize_score_weights(weights, preset),
        keep_empty_trajectory=keep_empty_trajectory,
        test_cases=cases,
        judge=judge,
    )


def _summary_cost(samples: Sequence[SampleArtifact]) -> SummaryCost:
    groups: dict[tuple[str, str, str], CostAgentBreakdown] = {}
    total = 0.0
    for invocation in (inv for sample in samples for inv in sample.model_invocations):
        key = (invocation.agent, invocation.provider or "", invocation.model)
        cost = invocation.estimated_cost_usd
        total += cost or 0.0
        previous = groups.get(key)
        if previous is None:
            groups[key] = CostAgentBreakdown(
                agent=invocation.agent,
                provider=invocation.provider,
                model=invocation.model,
                usage=invocation.usage,
                estimated_cost_usd=cost,
            )
        else:
            known = [c for c in (previous.estimated_cost_usd, cost) if c is not None]
            groups[key] = previous.model_copy(
                update={
                    "usage": previous.usage + invocation.usage,
                    "estimated_cost_usd": sum(known) if known else None,
                }
            )
    return SummaryCost(estimated_cost_usd=total, per_agent=[groups[k] for k in sorted(groups)])


def _summary_latency(samples: Sequence[SampleArtifact]) -> SummaryLatency | None:
    totals = sorted(sample.latency.total_ms for sample in samples if sample.latency is not None)
    if not totals:
        return None
    return SummaryLatency(
        p50_ms=_percentile(totals, 50),
        p95_ms=_percentile(totals, 95),
        p99_ms=_percentile(totals, 99),
        min_ms=totals[0],
        max_ms=totals[-1],
    )


def _aggregate(strategy: AggregationStrategy, passed: int, scores: Sequence[float]) -> float:
    if not scores:
        return 0.0
    return passed / len(scores) if strategy == "passRate" else sum(scores) / len(scores)


def _pass_at_k(k_values: Sequence[int], n: int, c: int) -> list[PassAtKResult]:
    results = []
    for k in k_values:
        simple, unbiased = pass_at_k(n, c, k)
        results.append(
            PassAtKResult(
                k=k,
                simple_estimate=simple,
                unbiased_estimate=unbiased,
                num_samples=n,
                num_correct=c,
            )
        )
    return results


class _EvalRun:
    """One run's work. Holds no reference to its stream, so dropping the stream drops it."""

    def __init__(
        self,
        plan: _Plan,
        run_sample: RunSample,
        *,
        complete: ModelComplete | None,
        price: PriceModel | None,
        provider_for: ProviderFor | None,
        plan_discriminator: str,
        finalize: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.plan = plan
        self.finalize = finalize
        self.run_sample = run_sample
        self.complete = complete
        self.price = price
        self.provider_for = provider_for
        self.plan_discriminator = plan_discriminator
        self.cancel_reason = _STREAM_CLOSED
        self._sequence = 0

    def _envelope(self, event: HarnessEvalEvent) -> HarnessEvalEventEnvelope:
        envelope = HarnessEvalEventEnvelope(
            run_id=self.plan.run_id, sequence=self._sequence, event=event
        )
        self._sequence += 1
        return envelope

    async def drive(self, emit: Callable[[HarnessEvalEventEnvelope], None]) -> None:
        """Run to the end, emitting every envelope; always ends with a terminal envelope
        (after ``finalize``, so what the run held is released when the stream ends)."""
        terminal: HarnessEvalEvent
        try:
            artifact = await self._run(lambda event: emit(self._envelope(event)))
        except asyncio.CancelledError:
            # Only the stream cancels this task: report it instead of propagating.
            terminal = EvalCancelled(data=EvalCancelledData(reason=self.cancel_reason))
        except Exception as error:  # a run-level failure ends the stream, never hangs it
            terminal = EvalFailed(data=EvalFailedData(error=_describe(error)))
        else:
            terminal = EvalCompleted(data=EvalCompletedData(artifact=artifact))
        try:
            if self.finalize is not None:
                await self.finalize()
        except Exception:  # releasing must not turn a finished run into a failed one
            log.exception("eval %s: releasing its resources failed", self.plan.run_id)
        finally:
            emit(self._envelope(terminal))

    def _artifact(
        self, test_cases: list[TestCaseArtifact], summary: EvalArtifactSummary
    ) -> EvalArtifact:
        request = self.plan.request
        return EvalArtifact(
            run_id=self.plan.run_id,
            tenant_id=request.tenant_id,
            workspace_id=request.workspace_id,
            mode=request.config.mode,
            summary=summary,
            test_cases=test_cases,
            metadata=ArtifactMetadata(
                scorer_preset=self.plan.preset,
                score_weights={str(name): weight for name, weight in self.plan.weights.items()},
            ),
        )

    async def _run(self, emit: Callable[[HarnessEvalEvent], None]) -> EvalArtifact:
        config = self.plan.request.config
        started = EvalArtifactSummary(
            total_test_cases=len(self.plan.test_cases),
            passed=0,
            failed=0,
            aggregate_score=0.0,
            pass_rate=0.0,
            total_duration_ms=0,
            total_usage=TokenUsageSummary(),
        )
        emit(EvalStarted(data=EvalStartedData(artifact=self._artifact([], started))))
        case_artifacts: list[TestCaseArtifact] = []
        for case in self.plan.test_cases:
            emit(TestCaseStarted(data=TestCaseStartedData(test_case_id=case.id)))
            samples = await self._run_case(case, emit)
            passed = sum(sample.passed for sample in samples)
            scores = [sample.aggregate_score for sample in samples]
            artifact = TestCaseArtifact(
                test_case_id=case.id,
                input=case.input,
                samples=samples,
                pass_at_k=_pass_at_k(config.k_values, len(samples), passed),
                aggregate_score=_aggregate(config.aggregation_strategy, passed, scores),
            )
            case_artifacts.append(artifact)
            emit(TestCaseCompleted(data=TestCaseCompletedData(test_case=artifact)))
        return self._artifact(case_artifacts, self._summary(case_artifacts))

    def _summary(self, cases: list[TestCaseArtifact]) -> EvalArtifactSummary:
        config = self.plan.request.config
        scores = [case.aggregate_score for case in cases]
        passed = sum(score >= config.pass_threshold for score in scores)
        samples = [sample for case in cases for sample in case.samples]
        total_usage = TokenUsageSummary()
        for sample in samples:
            total_usage = total_usage + sample.token_usage
        return EvalArtifactSummary(
            total_test_cases=len(cases),
            passed=passed,
            failed=len(cases) - passed,
            aggregate_score=_aggregate(config.aggregation_strategy, passed, scores),
            pass_rate=passed / len(cases) if cases else 0.0,
            pass_at_k=_pass_at_k(config.k_values, len(cases), passed),
            total_duration_ms=sum(sample.duration_ms for sample in samples),
            total_usage=total_usage,
            cost=_summary_cost(samples),
            latency=_summary_latency(samples),
        )

    async def _run_case(
        self, case: EvalTestCase, emit: Callable[[HarnessEvalEvent], None]
    ) -> list[SampleArtifact]:
        config = self.plan.request.config
        slots = asyncio.Semaphore(config.concurrency)
        weights = case_weights(
            self.plan.weights, case, keep_empty_trajectory=self.plan.keep_empty_trajectory
        )
        done: list[SampleArtifact] = []

        async def one(index: int) -> None:
            async with slots:
                sample = await self._sample(case, index, weights)
            done.append(sample)
            emit(SampleCompleted(data=SampleCompletedData(sample=sample)))

        async with asyncio.TaskGroup() as group:
            for index in range(config.samples_per_case):
                group.create_task(one(index))
        return sorted(done, key=lambda sample: sample.sample_index)

    def _failed(
        self, index: int, kind: SampleErrorKind, message: str, duration_ms: int
    ) -> SampleArtifact:
        return SampleArtifact(
            sample_index=index,
            passed=False,
            aggregate_score=0.0,
            component_scores=[],
            actual_trajectory=[],
            duration_ms=duration_ms,
            token_usage=TokenUsageSummary(),
            metadata={"errorKind": kind},
            error=message,
        )

    def _priced(self, invocations: list[ModelInvocation]) -> list[ModelInvocation]:
        if self.price is None:
            return invocations
        price = self.price
        return [
            inv.model_copy(update={"estimated_cost_usd": price(inv)})
            if inv.estimated_cost_usd is None
            else inv
            for inv in invocations
        ]

    async def _sample(
        self, case: EvalTestCase, index: int, weights: Mapping[ScorerName, float]
    ) -> SampleArtifact:
        config = self.plan.request.config
        timeout = config.timeout_per_sample_secs
        started = time.monotonic()

        def elapsed_ms() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            raw_output, events = await within_deadline(self.run_sample(case, index), timeout)
        except DeadlineExceeded:
            return self._failed(
                index,
                "sample_timeout",
                f"sample {index} of test case {case.id!r} did not finish within "
                f"timeout_per_sample_secs={timeout}; it was cancelled",
                elapsed_ms(),
            )
        except SampleFailure as failure:
            return self._failed(index, failure.kind, str(failure), elapsed_ms())
        except Exception as error:
            return self._failed(
                index, "sample_execution_failed", f"{type(error).__name__}: {error}", elapsed_ms()
            )
        duration_ms = elapsed_ms()
        try:
            output = validated(RawSampleOutput, raw_output, what="run_sample's output")
            projection = project_run(
                events, plan_discriminator=self.plan_discriminator, provider_for=self.provider_for
            )
        except (EvalError, TypeError, AttributeError) as error:
            return self._failed(
                index,
                "sample_execution_failed",
                f"run_sample must return (RawSampleOutput, list of event dicts): {error}",
                duration_ms,
            )
        invocations = list(projection.model_invocations)
        if projection.error is not None:
            failed = self._failed(index, "sample_agent_error", projection.error, duration_ms)
            # What the failed run did and spent is still worth seeing.
            return failed.model_copy(
                update={
                    "actual_trajectory": output.actual_trajectory,
                    "response_text": output.response_text or None,
                    "token_usage": projection.token_usage,
                    "model_invocations": self._priced(invocations),
                }
            )
        response_text = output.response_text or ""
        extra = dict(output.extra)
        spec = case.final_response
        if spec is not None:
            recorded = extra.get(FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY) or {}
            pending = spec.model_copy(
                update={"scorers": [s for s in spec.scorers if s.id not in recorded]}
            )
            judged, judge_invocations = await run_judges(
                pending,
                response_text,
                complete=self.complete,
                judge=self.plan.judge,
                request_id_prefix=(
                    f"{self.plan.request.tenant_id}/eval-{self.plan.run_id}-{case.id}-{index}"
                    f"/{self.plan.run_id}"
                ),
                run_context={"testCaseId": case.id, "sampleIndex": index, "input": case.input},
                include_trace=config.final_response_config.include_judge_trace,
                timeout_secs=timeout,
            )
            if judged:
                extra[FINAL_RESPONSE_JUDGE_VERDICTS_EXTRA_KEY] = {
                    **recorded,
                    **{scorer_id: result.as_extra_value() for scorer_id, result in judged.items()},
                }
            invocations.extend(judge_invocations)
        scored = score_with_weights(
            case,
            RawSampleOutput(
                actual_trajectory=output.actual_trajectory, response_text=response_text, extra=extra
            ),
            weights,
            config.trajectory_config,
        )
        final_response = next(
            (r.details for r in scored.component_scores if r.scorer_name == "final_response"), None
        )
        priced = self._priced(invocations)
        costs = [inv.estimated_cost_usd for inv in priced if inv.estimated_cost_usd is not None]
        return SampleArtifact(
            sample_index=index,
            passed=scored.aggregate >= config.pass_threshold,
            aggregate_score=scored.aggregate,
            component_scores=scored.component_scores,
            response_text=response_text or None,
            actual_trajectory=output.actual_trajectory,
            final_response_eval=final_response,
            planned_actions=[
                ResolvedAction.model_validate(a) for a in extra.get("plannedActions", [])
            ],
            resolved_actions=[
                ResolvedAction.model_validate(a) for a in extra.get("resolvedActions", [])
            ],
            duration_ms=duration_ms,
            model_invocations=priced,
            token_usage=projection.token_usage,
            cost=(
                SampleCost(llm_cost_usd=sum(costs), total_cost_usd=sum(costs)) if costs else None
            ),
            latency=projection.latency or SampleLatency(total_ms=duration_ms),
            metadata=extra or None,
        )


class EvalStream:
    """The envelopes of one eval run, as an async iterator; the run starts on the first
    ``__anext__``. ``cancel()`` stops it (the stream then ends with ``evalCancelled``);
    ``aclose()`` stops it and waits; dropping the stream (breaking out of ``async for``)
    cancels it too."""

    def __init__(self, run: _EvalRun) -> None:
        # The stream refers to its run, never the other way round: dropping the stream
        # must leave nothing but the loop holding the run.
        self._run = run
        self._queue: asyncio.Queue[HarnessEvalEventEnvelope] = asyncio.Queue()
        self._driver: asyncio.Task[None] | None = None
        self._finished = False
        self.run_id = run.plan.run_id

    @property
    def request(self) -> EvalRequest:
        """The validated request this stream runs."""
        return self._run.plan.request

    def __aiter__(self) -> EvalStream:
        return self

    async def __anext__(self) -> HarnessEvalEventEnvelope:
        if self._finished:
            raise StopAsyncIteration
        if self._driver is None:
            self._driver = asyncio.get_running_loop().create_task(
                self._run.drive(self._queue.put_nowait), name=f"eval {self.run_id}"
            )
        envelope = await self._queue.get()
        if envelope.type in TERMINAL_EVENT_TYPES:
            self._finished = True
        return envelope

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """Stop the run: samples in flight are cancelled, no more start. A started stream
        then ends with ``evalCancelled``; one never iterated just ends."""
        if self._driver is None:
            self._finished = True
        elif not self._driver.done():
            self._run.cancel_reason = reason
            self._driver.cancel()

    async def aclose(self) -> None:
        """Cancel the run if it is still going and wait until it has stopped."""
        driver = self._driver
        self.cancel(_STREAM_CLOSED)
        self._finished = True
        if driver is not None:
            await asyncio.gather(driver, return_exceptions=True)

    def __del__(self) -> None:
        driver = self._driver
        if driver is not None and not driver.done():
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                driver.cancel()


def _request(request: EvalRequest | Mapping[str, Any] | str | bytes) -> EvalRequest:
    return validated(EvalRequest, request, what="eval request")


def stream_eval(
    request: EvalRequest | Mapping[str, Any] | str | bytes,
    run_sample: RunSample,
    *,
    complete: ModelComplete | None = None,
    judge_model: JudgeModel | tuple[str, str] | None = None,
    price: PriceModel | None = None,
    provider_for: ProviderFor | None = None,
    plan_discriminator: str = "kind",
    run_id: str | None = None,
    finalize: Callable[[], Awaitable[None]] | None = None,
) -> EvalStream:
    """Run an eval, streaming its envelopes. The request is validated now (bad input raises
    :class:`~flowai_harness.errors.EvalError` here); the run starts when iterated.

    ``complete`` is the judges' model call; ``judge_model`` is the judge when the config names
    no model (the runtime passes its coordinator's, else its first agent's model); ``price``
    prices model invocations in USD; ``provider_for`` and ``plan_discriminator`` tune the
    projection of each run's events; ``finalize`` is awaited once the run is over, before
    its terminal envelope (the runtime closes the judge's providers there).
    """
    judge = JudgeModel(*judge_model) if judge_model is not None else None
    plan = _prepare(_request(request), run_id or f"eval-{uuid.uuid4()}", judge)
    run = _EvalRun(
        plan,
        run_sample,
        complete=complete,
        price=price,
        provider_for=provider_for,
        plan_discriminator=plan_discriminator,
        finalize=finalize,
    )
    return EvalStream(run)


async def run_eval(
    request: EvalRequest | Mapping[str, Any] | str | bytes,
    run_sample: RunSample,
    *,
    complete: ModelComplete | None = None,
    judge_model: JudgeModel | tuple[str, str] | None = None,
    price: PriceModel | None = None,
    provider_for: ProviderFor | None = None,
    plan_discriminator: str = "kind",
    run_id: str | None = None,
) -> EvalArtifact:
    """Run an eval to the end and return its artifact (the ``evalCompleted`` one). A run that
    fails raises :class:`~flowai_harness.errors.EvalRunError`; one cancelled from outside,
    :class:`~flowai_harness.errors.EvalCancelledError`."""
    stream = stream_eval(
        request,
        run_sample,
        complete=complete,
        judge_model=judge_model,
        price=price,
        provider_for=provider_for,
        plan_discriminator=plan_discriminator,
        run_id=run_id,
    )
    return await artifact_of(stream)


async def artifact_of(stream: EvalStream) -> EvalArtifact:
    """Drain ``stream`` and return its artifact (see :func:`run_eval` for what it raises)."""
    try:
        async for envelope in stream:
            event = envelope.event
            if isinstance(event, EvalCompleted):
                return event.data.artifact
            if isinstance(event, EvalFailed):
                raise EvalRunError(f"eval {stream.run_id} failed: {event.data.error}")
            if isinstance(event, EvalCancelled):
                raise EvalCancelledError(f"eval {stream.run_id} was cancelled: {event.data.reason}")
    finally:
        await stream.aclose()
    raise EvalRunError(f"eval {stream.run_id} ended without a terminal event")


def run_eval_sync(
    runtime: Any, request: EvalRequest | Mapping[str, Any] | str | bytes
) -> EvalArtifact:
    """``await runtime.run_eval(request)`` from synchronous code, validated as an
    :class:`EvalArtifact` (the runtime returns the artifact's JSON dict, as the seed's does)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise EvalRunError(
            "run_eval_sync cannot run inside a running event loop; await runtime.run_eval(request)"
        )
    request_model = _request(request)

    async def run() -> Any:
        return await runtime.run_eval(request_model)

    return validated(EvalArtifact, asyncio.run(run()), what="the runtime's eval artifact")
