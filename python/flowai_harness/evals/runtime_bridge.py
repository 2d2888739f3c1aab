"""Evals on a live runtime: every sample is a real run on a fresh thread.

Owns what ``Runtime.run_eval`` / ``Runtime.stream_eval`` (and the distributed client's) hand
to the runner core (:mod:`.runner`): the ``run_sample`` that starts a run for one sample,
follows its events to the end, answers approval gates by the eval's
:data:`ApprovalPolicy`, and stops the run when the sample is cancelled (a timeout, the
stream's ``cancel()``, or a ``break`` out of the stream).

- Which agent a sample runs (:func:`entry_agent`): ``target_agent_id`` when the config names
  one; otherwise ``sequential`` and ``executor`` run the coordinator (a plan must be stored
  before an executor can run it, so executor evals run the whole flow), ``planner`` runs the
  runtime's only planner, ``specialist`` needs ``target_agent_id``.
- Each sample runs on its own thread, ``{run_id}.{test case id}.{sample index}``, so samples
  never see each other's history and may run at once.
- Approval gates: ``"approve"`` (the default, as the seed's eval runs bypass gates) approves
  each gate, as many distinct approvers as a two-person gate needs (``flowai-eval-1``, ...);
  ``"reject"`` rejects it, so the run goes on as it would after a human's reject;
  ``"fail"`` cancels the run and fails the sample with ``errorKind:
  "sample_approval_required"``. No gate is ever left waiting.

Works with anything that can start a run and decide a gate (:class:`EvalTarget`): the
embedded :class:`~flowai_harness.runtime.Runtime` (:func:`embedded_stream_eval`) and the
distributed client (:func:`remote_stream_eval`, ``Client.stream_eval``: the runtime service
runs the samples; the client decides gates with its deciding key). Must not import the
runtime, the client or the native extension (they import this module).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol, get_args

from ..errors import EvalError, FlowaiError
from .judge import ModelComplete
from .live_judge import LiveJudge, judge_model_for
from .models import EvalConfig, EvalRequest, EvalTestCase, RawSampleOutput, validated
from .projection import project_run
from .runner import EvalStream, RunSample, SampleFailure, stream_eval

__all__ = [
    "APPROVAL_POLICIES",
    "ApprovalPolicy",
    "EvalTarget",
    "RunStream",
    "approval_policy_of",
    "embedded_stream_eval",
    "entry_agent",
    "remote_stream_eval",
    "runtime_run_sample",
    "runtime_stream_eval",
    "sample_thread_id",
]

ApprovalPolicy = Literal["approve", "reject", "fail"]
APPROVAL_POLICIES: Final[tuple[str, ...]] = get_args(ApprovalPolicy)
# Where a suite file may set the policy: EvalConfig.request_overrides["approvalPolicy"].
APPROVAL_POLICY_OVERRIDE: Final = "approvalPolicy"
EVAL_APPROVER: Final = "flowai-eval"
_REJECT_FEEDBACK: Final = "rejected by the eval's approval policy (approval_policy='reject')"
# A run that never reaches a gate's end could otherwise take every approver name there is.
_MAX_APPROVERS: Final = 32


class RunStream(Protocol):
    """A run's event stream as the runtime and the client return it."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    def cancel(self) -> None: ...

    async def aclose(self) -> None: ...


class EvalTarget(Protocol):
    """What an eval needs of a runtime: start a run of ``agent`` (None: the coordinator) on
    a thread, decide a gate, and end a run no stream drives any more."""

    def start(self, prompt: str, thread_id: str, agent: str | None) -> RunStream: ...

    def decide(
        self, approval_id: str, outcome: Literal["approve", "reject"], approver: str
    ) -> Awaitable[object]: ...

    async def end(self, thread_id: str) -> None: ...


def approval_policy_of(config: EvalConfig, given: str | None) -> ApprovalPolicy:
    """The policy a run follows: the one given, else the config's
    ``request_overrides["approvalPolicy"]``, else ``"approve"``."""
    policy = given
    if policy is None:
        policy = (config.request_overrides or {}).get(APPROVAL_POLICY_OVERRIDE, "approve")
    if policy not in APPROVAL_POLICIES:
        raise EvalError(
            f"approval_policy must be one of {', '.join(APPROVAL_POLICIES)}, got {policy!r}: "
            "'approve' approves every gate, 'reject' rejects it, 'fail' fails the sample"
        )
    return policy  # type: ignore[return-value]  # checked against the Literal's values


def entry_agent(config: EvalConfig, agents: Sequence[tuple[str, str]] | None) -> str | None:
    """The agent each sample runs (None: the coordinator, through ``query``). ``agents``
    are the runtime's ``(name, role)`` pairs, or None when the runtime is remote (then only
    ``target_agent_id`` can name an agent)."""
    target = (config.target_agent_id or "").strip() or None
    if agents is not None and target is not None and target not in {n for n, _ in agents}:
        raise EvalError(
            f"target_agent_id {target!r} is not an agent of this runtime; its agents are: "
            f"{', '.join(sorted(n for n, _ in agents))}"
        )
    if target is not None:
        coordinator = agents is not None and dict(agents).get(target) == "coordinator"
        return None if coordinator else target
    if config.mode != "planner":
        return None
    planners = sorted(n for n, role in agents or () if role == "planner")
    if len(planners) != 1:
        raise EvalError(
            "mode 'planner' runs the runtime's planner, and this runtime has "
            f"{len(planners) or 'no'} ({', '.join(planners) or 'none'}); set "
            "target_agent_id to the planner to evaluate"
        )
    return planners[0]


def sample_thread_id(run_id: str, case_id: str, index: int) -> str:
    return f"{run_id}.{case_id}.{index}"


def runtime_run_sample(
    target: EvalTarget,
    *,
    run_id: str,
    agent: str | None,
    approval_policy: ApprovalPolicy,
    plan_discriminator: str = "kind",
) -> RunSample:
    """The runner's ``run_sample`` over ``target``: one real run per sample."""

    async def run_sample(
        case: EvalTestCase, index: int
    ) -> tuple[RawSampleOutput, Sequence[Mapping[str, Any]]]:
        thread_id = sample_thread_id(run_id, case.id, index)
        stream = target.start(case.input, thread_id, agent)
        events: list[dict[str, Any]] = []
        gate = _Gate(target, approval_policy)
        ended = False
        try:
            async for event in stream:
                events.append(event)
                kind = event.get("type")
                if kind in ("approval-required", "approval-progress"):
                    await gate.answer(event, stream)
                ended = kind == "error" or _ends_run(event)
        finally:
            if not ended:
                # Cancelled (a timeout, the eval stopped) or failed: stop the run, and end it
                # in the log if its stream left it paused at a gate.
                stream.cancel()
                await stream.aclose()
                with contextlib.suppress(FlowaiError):
                    await target.end(thread_id)
        if gate.blocked is not None:
            raise SampleFailure(
                "sample_approval_required",
                f"the run stopped at approval gate {gate.blocked!r} and the eval's approval "
                "policy is 'fail'; run with approval_policy='approve' or 'reject' to let it "
                "go on",
            )
        return project_run(events, plan_discriminator=plan_discriminator).output, events

    return run_sample


class _Gate:
    """Answers one run's approval gates by the policy."""

    def __init__(self, target: EvalTarget, policy: ApprovalPolicy) -> None:
        self.target = target
        self.policy = policy
        self.approvers: dict[str, int] = {}
        self.blocked: str | None = None

    async def answer(self, event: Mapping[str, Any], stream: RunStream) -> None:
        data = event.get("data")
        approval_id = data.get("id") if isinstance(data, Mapping) else None
        if not isinstance(approval_id, str):
            return
        if self.policy == "fail":
            # Cancelled, not dropped: the stream goes on to the run's cancelled end.
            self.blocked = approval_id
            stream.cancel()
            return
        if self.policy == "reject":
            if event.get("type") == "approval-required":
                await self.target.decide(approval_id, "reject", f"{EVAL_APPROVER}-1")
            return
        # An approve short of a two-person quorum shows `approval-progress`: the next
        # approver, a different one, approves again.
        count = self.approvers.get(approval_id, 0) + 1
        if count > _MAX_APPROVERS:
            raise EvalError(
                f"approval {approval_id!r} did not open after {_MAX_APPROVERS} approves"
            )
        self.approvers[approval_id] = count
        await self.target.decide(approval_id, "approve", f"{EVAL_APPROVER}-{count}")


def _ends_run(event: Mapping[str, Any]) -> bool:
    """The entry agent's wrapping ``tool-agent`` result: the last event of a finished run."""
    return (
        event.get("type") == "tool-agent"
        and event.get("state") == "result"
        and "targetAgent" not in event
    )


def runtime_stream_eval(
    target: EvalTarget,
    request: EvalRequest | Mapping[str, Any] | str | bytes,
    *,
    agents: Sequence[tuple[str, str]] | None,
    approval_policy: str | None = None,
    complete: ModelComplete | None = None,
    judge_model: tuple[str, str] | None = None,
    provider_for: Callable[[str, str], str | None] | None = None,
    plan_discriminator: str = "kind",
    run_id: str | None = None,
    finalize: Callable[[], Awaitable[None]] | None = None,
) -> EvalStream:
    """The runner's stream over ``target``: the request is checked now (agent, policy)."""
    checked = validated(EvalRequest, request, what="eval request")
    run_id = run_id or f"eval-{uuid.uuid4().hex[:12]}"
    run_sample = runtime_run_sample(
        target,
        run_id=run_id,
        agent=entry_agent(checked.config, agents),
        approval_policy=approval_policy_of(checked.config, approval_policy),
        plan_discriminator=plan_discriminator,
    )
    return stream_eval(
        checked,
        run_sample,
        complete=complete,
        judge_model=judge_model,
        provider_for=provider_for,
        plan_discriminator=plan_discriminator,
        run_id=run_id,
        finalize=finalize,
    )


class _Embedded:
    """An embedded runtime as an :class:`EvalTarget`."""

    def __init__(self, runtime: Any, start: Callable[[str, str, str | None], RunStream]) -> None:
        self._runtime = runtime
        self._start = start

    def start(self, prompt: str, thread_id: str, agent: str | None) -> RunStream:
        return self._start(prompt, thread_id, agent)

    def decide(
        self, approval_id: str, outcome: Literal["approve", "reject"], approver: str
    ) -> Awaitable[object]:
        feedback = _REJECT_FEEDBACK if outcome == "reject" else None
        decided: Awaitable[object] = self._runtime.respond_to_approval(
            approval_id, outcome, feedback, approver=approver
        )
        return decided

    async def end(self, thread_id: str) -> None:
        await self._runtime.cancel(thread_id)


def embedded_stream_eval(
    runtime: Any,
    request: EvalRequest | Mapping[str, Any] | str | bytes,
    *,
    start: Callable[[str, str, str | None], RunStream],
    providers: Mapping[str, Any],
    approval_policy: str | None = None,
) -> EvalStream:
    """``Runtime.stream_eval``: samples run through ``start(prompt, thread_id, agent)`` on
    ``runtime``; judges through its live ``providers``, else ones built from its spec."""
    spec = runtime.spec
    judge = LiveJudge(providers, spec.providers)
    return runtime_stream_eval(
        _Embedded(runtime, start),
        request,
        agents=[(agent.name, agent.role) for agent in spec.agents],
        approval_policy=approval_policy,
        complete=judge.complete,
        judge_model=judge_model_for(spec.agents),
        finalize=judge.aclose,
    )


class _RemoteRun:
    """A remote run's stream with the ``aclose`` the eval needs (the client's stream ends
    its follow when its iterator is closed)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._iterator: Any = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        self._iterator = self._stream.__aiter__()
        iterator: AsyncIterator[dict[str, Any]] = self._iterator
        return iterator

    def cancel(self) -> None:
        self._stream.cancel()

    async def aclose(self) -> None:
        iterator = self._iterator
        if iterator is not None:
            await iterator.aclose()


class _Remote:
    """The distributed client as an :class:`EvalTarget`."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def start(self, prompt: str, thread_id: str, agent: str | None) -> RunStream:
        return _RemoteRun(self._client.query(prompt, thread_id, agent=agent))

    def decide(
        self, approval_id: str, outcome: Literal["approve", "reject"], approver: str
    ) -> Awaitable[object]:
        feedback = _REJECT_FEEDBACK if outcome == "reject" else None
        decided: Awaitable[object] = self._client.respond_to_approval(
            approval_id, outcome, feedback, approver=approver
        )
        return decided

    async def end(self, thread_id: str) -> None:
        # Nothing to do here: the stream's cancel() already published the CancelRun, which
        # the runtime service applies wherever the run waits (a gate included).
        return None


def remote_stream_eval(
    client: Any,
    request: EvalRequest | Mapping[str, Any] | str | bytes,
    *,
    approval_policy: str | None = None,
    judge_providers: Mapping[str, Mapping[str, Any]] | None = None,
) -> EvalStream:
    """``Client.stream_eval``: samples run on the runtime service through ``client``; the
    agent comes from ``target_agent_id`` (the client does not know the spec), judges from
    ``judge_providers`` settings (else they fail closed: no provider)."""
    judge = LiveJudge(None, judge_providers)
    return runtime_stream_eval(
        _Remote(client),
        request,
        agents=None,
        approval_policy=approval_policy,
        complete=judge.complete,
        finalize=judge.aclose,
    )
