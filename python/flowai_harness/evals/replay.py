"""Replay-as-eval: recorded threads as regression test cases, re-run against changed code.

Owns three steps.

1. **From the log** (:func:`recorded_threads`, :func:`kafka_recorded_threads`,
   :func:`replay_suite`, :func:`write_replay_suite`): the threads of a ``log_path``
   directory (the embedded runtime's run logs, ``<log_path>/<tenant>/<thread>.jsonl``) or of
   the Kafka run log, filtered by agent, start time and thread id,
   become test cases: the input is the last run's prompt; the expectations are what the
   recording did in that run: its tool trajectory (strict, sub-agents included), its planned
   and executed actions (exact) and its final response (an ``exact`` scorer). The suite file
   (``"kind": "flowai.replay-suite/v1"``) holds the eval request and, per test case, the
   thread's runs and its recorded log, so it is self-contained and can be reviewed and
   edited (``liveTools: true`` on a thread runs its tools live). The run log carries no
   tags: ``tags`` label the cases (``replay`` always).
2. **Re-running** (:class:`ReplayRuntime`, what ``flowai eval run SUITE --app ...`` runs):
   each sample re-runs the thread's runs, in order, on a fresh in-memory runtime built from
   the *new* spec, under the recorded thread id (so ids line up). Model calls go to
   :class:`RecordedModels`: a request whose hash (:func:`flowai_harness.modelcall.
   request_sha256`) equals a recorded ``model-response``'s ``requestHash`` gets the recorded
   answer (after the recorded failures of that turn, so retries replay too); any other
   request goes to the live provider the spec's ``providers`` configure (the fake provider
   in tests) and is listed as re-requested. Tools answer from the recorded results (matched
   by tool call id, else by name and arguments; its ``custom`` and ``tool-progress`` events
   are emitted again) unless
   the thread runs them live; a call with no recording runs its handler if it has one.
   Approval gates get the recorded decisions, else the eval's approval policy. The plan
   dispatcher answers from the recorded ``executePlan`` results.
3. **Divergence** (:func:`first_divergence`): the new log against the recorded one, event by
   event, leaving out what always differs (times, latencies); the first differing event is
   reported per thread in the sample's ``metadata.replay`` with the re-requested model
   calls, beside the scorers' results.

Recordings made before ``requestHash`` was logged have no hash: every request is then
re-requested (and said so). Threads are read from a ``log_path`` directory
(:func:`recorded_threads`) or from the Kafka run log (:func:`kafka_recorded_threads`).

Must not import services; imports the runtime only when it re-runs a thread and the bus
(Kafka) only when it reads the Kafka run log, so the evals package imports without either.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import orjson

from ..errors import EvalError, UsageError
from ..modelcall import Complete, DeltaSink, request_sha256
from .authoring import define_expected_action, define_expected_actions, define_test_case
from .live_judge import LiveJudge, judge_model_for
from .models import (
    EvalRequest,
    EvalTestCase,
    FinalResponseEval,
    RawSampleOutput,
    ResponseScorer,
    validated,
)
from .projection import project_run
from .runner import EvalStream, stream_eval
from .runtime_bridge import approval_policy_of
from .suite import EvalSuite

__all__ = [
    "REPLAY_SUITE_KIND",
    "RecordedModels",
    "RecordedThread",
    "ReplayRuntime",
    "first_divergence",
    "is_replay_suite",
    "kafka_recorded_threads",
    "open_replay_suite",
    "recorded_threads",
    "replay_suite",
    "write_replay_suite",
]

REPLAY_SUITE_KIND: Final = "flowai.replay-suite/v1"
REPLAY_EXTRA_KEY: Final = "replay"
# Differ between any two runs of the same thing (seq: events are compared by position): never
# a divergence.
_VOLATILE: Final = frozenset({"latencyMs", "ttftMs", "seq"})
_EXECUTE_PLAN: Final = "executePlan"

Event = dict[str, Any]


# --- 1. from the log ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedThread:
    """One recorded thread: its id, the runs it holds (agent, prompt) and its log."""

    thread_id: str
    entries: list[dict[str, Any]]
    live_tools: bool = False

    @property
    def events(self) -> list[Event]:
        return [entry["payload"] for entry in self.entries]

    @property
    def runs(self) -> list[dict[str, str]]:
        return [
            {"agent": e["agent"], "prompt": e["prompt"]}
            for e in self.events
            if e.get("type") == "run-start"
        ]

    @property
    def started_ms(self) -> int:
        return int(self.entries[0].get("ts", 0)) if self.entries else 0

    def last_run_events(self) -> list[Event]:
        events = self.events
        starts = [i for i, e in enumerate(events) if e.get("type") == "run-start"]
        return events[starts[-1] :] if starts else events


def _ms(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{option} {value!r} is not an ISO 8601 time (e.g. 2026-05-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def recorded_threads(
    log_path: str | Path,
    *,
    tenant: str,
    agent: str | None = None,
    since: str | None = None,
    until: str | None = None,
    threads: Iterable[str] | None = None,
) -> list[RecordedThread]:
    """The finished threads of ``tenant`` under ``log_path`` that pass the filters: ``agent``
    (one of its runs starts that agent), ``since``/``until`` (ISO times; its first entry's),
    ``threads`` (these ids only)."""
    directory = Path(log_path) / tenant
    if not directory.is_dir():
        raise UsageError(
            f"no run logs for tenant {tenant!r} under {log_path} (looked in {directory}); "
            "pass the runtime's log_path and the tenant's resource id"
        )
    keep = _filter(agent=agent, since=since, until=until, threads=threads)
    found: list[RecordedThread] = []
    for path in sorted(directory.glob("*.jsonl")):
        thread_id = unquote(path.stem)
        if not keep(thread_id, None):
            continue
        entries = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
        thread = RecordedThread(thread_id, entries)
        if keep(thread_id, thread):
            found.append(thread)
    return found


def _filter(
    *,
    agent: str | None,
    since: str | None,
    until: str | None,
    threads: Iterable[str] | None,
) -> Callable[[str, RecordedThread | None], bool]:
    """Whether a thread passes the filters (by id alone when ``thread`` is None)."""
    low, high = _ms(since, "--since"), _ms(until, "--until")
    wanted = set(threads) if threads else None

    def keep(thread_id: str, thread: RecordedThread | None) -> bool:
        if wanted is not None and thread_id not in wanted:
            return False
        if thread is None:
            return True
        if not thread.runs:
            return False
        if agent is not None and all(run["agent"] != agent for run in thread.runs):
            return False
        if low is not None and thread.started_ms < low:
            return False
        return high is None or thread.started_ms < high

    return keep


async def kafka_recorded_threads(
    bootstrap: str,
    *,
    tenant: str,
    prefix: str = "flowai",
    agent: str | None = None,
    since: str | None = None,
    until: str | None = None,
    threads: Iterable[str] | None = None,
) -> list[RecordedThread]:
    """:func:`recorded_threads` from the Kafka run log (``{prefix}.runtime-events``, every
    partition, read committed, up to its end now). Reads the whole topic: name ``threads``
    to keep what is held in memory small on a busy log."""
    from ..kafka import bus

    topics = bus.Topics(prefix)
    keep = _filter(agent=agent, since=since, until=until, threads=threads)
    consumer = bus.consumer(bootstrap, client_id="flowai-eval-from-log")
    await consumer.start()
    by_thread: dict[str, list[dict[str, Any]]] = defaultdict(list)
    try:
        from aiokafka import TopicPartition

        count = await bus.partition_count(bootstrap, topics.runtime_events)
        partitions = [TopicPartition(topics.runtime_events, n) for n in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=500)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp]:
                        continue
                    entry = orjson.loads(record.value)
                    if entry.get("tenant") == tenant and keep(entry["thread_id"], None):
                        by_thread[entry["thread_id"]].append(entry)
    finally:
        await consumer.stop()
    found = [RecordedThread(thread_id, entries) for thread_id, entries in by_thread.items()]
    return sorted((t for t in found if keep(t.thread_id, t)), key=lambda t: t.thread_id)


def _case(thread: RecordedThread, tags: Sequence[str]) -> EvalTestCase:
    recorded = project_run(thread.last_run_events())
    extra = recorded.output.extra
    planned = extra.get("plannedActions") or []
    executed = extra.get("resolvedActions") or []
    response = recorded.output.response_text
    return define_test_case(
        thread.thread_id,
        thread.runs[-1]["prompt"],
        tags=sorted({"replay", *tags}),
        expected_trajectory=recorded.output.actual_trajectory,
        trajectory_mode="strict",
        expected_actions=define_expected_actions(
            planned_actions=[define_expected_action(a["type"], a["payload"]) for a in planned],
            executed_actions=[define_expected_action(a["type"], a["payload"]) for a in executed],
            payload_match="exact",
        )
        if planned or executed
        else None,
        final_response=FinalResponseEval(
            scorers=[ResponseScorer.exact(id="recorded-response", expected=response)]
        )
        if response
        else None,
        source_thread_id=thread.thread_id,
    )


def replay_suite(
    threads: Sequence[RecordedThread], *, tenant: str, tags: Sequence[str] = ()
) -> dict[str, Any]:
    """The replay suite document of ``threads`` (see the module docstring)."""
    if not threads:
        raise UsageError("no recorded thread passed the filters; there is nothing to replay")
    request = EvalRequest.model_validate(
        {
            "tenantId": tenant,
            "workspaceId": "replay",
            "config": {
                "mode": "sequential",
                "samplesPerCase": 1,
                "kValues": [1],
                "passThreshold": 1.0,
                "scorerConfig": {"trajectory": {"includeSubAgents": True}},
            },
            "testCases": [_case(thread, tags).to_wire() for thread in threads],
        }
    )
    return {
        "kind": REPLAY_SUITE_KIND,
        "tenant": tenant,
        "request": request.to_wire(),
        "threads": {
            thread.thread_id: {"liveTools": thread.live_tools, "entries": thread.entries}
            for thread in threads
        },
    }


def write_replay_suite(
    found: Sequence[RecordedThread],
    *,
    tenant: str,
    out: str | Path,
    tags: Sequence[str] = (),
) -> int:
    """``flowai eval from-log``: write the replay suite of ``found`` to ``out``; returns
    how many test cases it holds."""
    document = replay_suite(found, tenant=tenant, tags=tags)
    Path(out).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return len(found)


def _read_suite(reference: str) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(Path(reference).read_bytes())
    return body


def is_replay_suite(reference: str) -> bool:
    path = Path(reference)
    if not (reference.endswith(".json") and path.is_file()):
        return False
    try:
        body = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("kind") == REPLAY_SUITE_KIND


# --- 2. re-running --------------------------------------------------------------------------


def _turn(request_id: str) -> str:
    # `{tenant}/{thread}/{run}/model-{turn}/{attempt}`: the attempts of one turn share it.
    return request_id.rsplit("/", 1)[0]


class RecordedModels:
    """Model calls answered from a recording while the request is unchanged; the rest go to
    the live providers. One per re-run thread."""

    def __init__(self, events: Iterable[Event], live: Complete):
        # Per request hash, in order: the failures of that turn, then its answer.
        self._answers: dict[str, deque[Event]] = defaultdict(deque)
        failures: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            kind = event.get("type")
            if kind == "model-failure":
                failures[_turn(event["requestId"])].append(event)
            elif kind == "model-response" and event.get("requestHash"):
                turn = _turn(event["requestId"])
                self._answers[event["requestHash"]].extend([*failures.pop(turn, []), event])
        self._live = live
        self.reused: list[str] = []
        self.requested: list[dict[str, str]] = []

    def provider(self) -> _RecordedProvider:
        return _RecordedProvider(self)

    async def complete(
        self, request: dict[str, Any], *, on_delta: DeltaSink | None = None
    ) -> dict[str, Any]:
        asked = request_sha256(request)
        queued = self._answers.get(asked)
        if queued:
            self.reused.append(request["request_id"])
            return _result(request["request_id"], queued.popleft(), asked)
        self.requested.append(
            {"requestId": request["request_id"], "agent": request["agent"], "requestHash": asked}
        )
        return await self._live.complete(request, on_delta=on_delta)


class _RecordedProvider:
    """One provider name's door into :class:`RecordedModels`."""

    def __init__(self, models: RecordedModels) -> None:
        self._models = models

    async def complete(
        self, request: dict[str, Any], *, on_delta: DeltaSink | None = None
    ) -> dict[str, Any]:
        return await self._models.complete(request, on_delta=on_delta)


def _result(request_id: str, event: Event, asked: str) -> dict[str, Any]:
    """The ModelResult payload that gives the engine what ``event`` recorded."""
    if event["type"] == "model-failure":
        failure = {
            key: event.get(source)
            for key, source in (
                ("kind", "kind"),
                ("message", "message"),
                ("status", "status"),
                ("retry_after_ms", "retryAfterMs"),
                ("provider", "provider"),
                ("model", "model"),
                ("latency_ms", "latencyMs"),
            )
        }
        return {"request_id": request_id, "failure": failure}
    usage = event.get("usage") or {}
    return {
        "request_id": request_id,
        "response": {
            "content": event["content"],
            "stop_reason": event["stopReason"],
            "raw_stop_reason": event.get("rawStopReason"),
            "usage": {
                "prompt_tokens": usage.get("promptTokens", 0),
                "completion_tokens": usage.get("completionTokens", 0),
                "cache_read_input_tokens": usage.get("cacheReadInputTokens", 0),
                "cache_creation_input_tokens": usage.get("cacheCreationInputTokens", 0),
            },
            "provider": event["provider"],
            "model": event["model"],
            "latency_ms": event.get("latencyMs", 0),
            "ttft_ms": event.get("ttftMs"),
            "request_hash": asked,
        },
    }


def _args_key(name: str, args: Any) -> str:
    return name + ":" + orjson.dumps(args, option=orjson.OPT_SORT_KEYS).decode()


class _RecordedError(Exception):
    """A recorded tool failure, raised again so the new result reads the same."""


def _raise_recorded(message: str) -> None:
    # The runtime words a failure "tool 'x' failed: {type}: {message}"; raising an exception
    # of the recorded type's name gives back the recorded words.
    prefix, _, rest = message.partition(" failed: ")
    kind, sep, text = rest.partition(": ")
    if prefix.startswith("tool ") and sep and kind.isidentifier():
        raise type(kind, (_RecordedError,), {})(text)
    raise _RecordedError(message)


def _emit_again(ctx: Any, event: Mapping[str, Any]) -> None:
    """What a tool emitted while it ran, emitted again through its context."""
    if event["type"] == "custom":
        ctx.emit(event["name"], event.get("data"))
        return
    ctx.progress(
        event.get("label"),
        phase_index=event.get("phaseIndex"),
        total_phases=event.get("totalPhases"),
        milestone=event.get("milestone"),
        fraction=event.get("fraction"),
    )


class RecordedTools:
    """Tool handlers and a plan dispatcher answering from a recording."""

    def __init__(self, events: Iterable[Event]) -> None:
        self._by_id: dict[str, Event] = {}
        self._by_args: dict[str, deque[Event]] = defaultdict(deque)
        self._emitted: dict[str, list[Event]] = defaultdict(list)
        self._plans: dict[str, Event] = {}
        for event in events:
            kind = event.get("type")
            if kind == "tool-invocation" and event.get("state") == "result":
                self._by_id[event["toolInvocationId"]] = event
                self._by_args[_args_key(event["toolName"], event.get("args"))].append(event)
                if event["toolName"] == _EXECUTE_PLAN:
                    plan_id = (event.get("args") or {}).get("planId")
                    self._plans[str(plan_id)] = event
            elif kind in ("custom", "tool-progress") and event.get("toolInvocationId"):
                self._emitted[event["toolInvocationId"]].append(event)
        self.unrecorded: list[str] = []

    def handler(self, name: str, live: Callable[..., Any] | None) -> Callable[..., Any]:
        async def replayed(args: dict[str, Any], ctx: Any) -> Any:
            recorded = self._by_id.get(ctx.tool_use_id)
            if recorded is None or recorded.get("toolName") != name:
                queue = self._by_args.get(_args_key(name, args))
                recorded = queue.popleft() if queue else None
            if recorded is None:
                self.unrecorded.append(f"{name} {ctx.tool_use_id}")
                if live is None:
                    raise EvalError(
                        f"tool {name!r} has no recorded result for these arguments and no "
                        "handler to run it live"
                    )
                result = live(args, ctx)
                return await result if hasattr(result, "__await__") else result
            for event in self._emitted.get(recorded["toolInvocationId"], []):
                _emit_again(ctx, event)
            result = recorded.get("result")
            if recorded.get("isError"):
                error = (result or {}).get("error") if isinstance(result, dict) else None
                _raise_recorded(str((error or {}).get("message", result)))
            return result

        return replayed

    def dispatch(self, actions: list[dict[str, Any]], ctx: Any) -> dict[str, Any]:
        recorded = self._plans.get(str(ctx.get("plan_id"))) or next(
            iter(self._plans.values()), None
        )
        if recorded is None or recorded.get("isError"):
            raise EvalError("no recorded executePlan result to answer this plan with")
        result = dict(recorded.get("result") or {})
        details = dict(result.get("details") or {})
        details.pop("resolvedActions", None)
        answer = {key: result[key] for key in ("entitiesAffected", "summary") if key in result}
        if details:
            answer["details"] = details
        return answer


# --- 3. divergence --------------------------------------------------------------------------


def _normal(event: Mapping[str, Any]) -> dict[str, Any]:
    normal = {key: value for key, value in event.items() if key not in _VOLATILE}
    if isinstance(normal.get("recovery"), Mapping):
        normal["recovery"] = {k: v for k, v in normal["recovery"].items() if k != "at"}
    if normal.get("type") == "data-latency-summary":
        return {"type": "data-latency-summary"}
    return normal


def first_divergence(
    recorded: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The first logged event where ``new`` differs from ``recorded`` (times and latencies
    aside): its position (``seq``, from 1), both events' types, the differing fields and
    both events; None when they agree throughout."""
    for index in range(max(len(recorded), len(new))):
        before = _normal(recorded[index]) if index < len(recorded) else None
        after = _normal(new[index]) if index < len(new) else None
        if before == after:
            continue
        fields = sorted(
            key
            for key in set(before or {}) | set(after or {})
            if (before or {}).get(key) != (after or {}).get(key)
        )
        return {
            "seq": index + 1,
            "recordedType": before.get("type") if before else None,
            "newType": after.get("type") if after else None,
            "fields": fields,
            "recorded": before,
            "new": after,
        }
    return None


class ReplayRuntime:
    """What ``flowai eval run`` drives for a replay suite: ``stream_eval`` re-runs each
    thread on a fresh runtime of ``spec`` (see the module docstring)."""

    def __init__(
        self,
        spec: Any,
        threads: Mapping[str, RecordedThread],
        *,
        live_tools: bool = False,
    ) -> None:
        self.spec = spec
        self.threads = dict(threads)
        self.live_tools = live_tools
        # Built on the first changed request; a setting that cannot make a provider fails
        # that request (and so the run), naming the setting.
        self._live = LiveJudge(None, spec.providers, who="a changed request", where="replay")
        self._judge = LiveJudge(None, spec.providers)

    def _runtime(self, thread: RecordedThread) -> tuple[Any, RecordedModels, RecordedTools]:
        from ..runtime import create_runtime

        events = thread.events
        models = RecordedModels(events, self._live)
        tools = RecordedTools(events)
        live = self.live_tools or thread.live_tools
        bindings = {
            tool.name: tools.handler(tool.name, tool.handler)
            for tool in self.spec.tools
            if not live
        }
        names = {*self.spec.providers, *(e["provider"] for e in events if e.get("provider"))}
        runtime = create_runtime(
            self.spec,
            interpreter="live",
            tool_bindings=bindings,
            action_dispatcher=tools.dispatch,
            model_providers={str(name): models.provider() for name in names},
        )
        return runtime, models, tools

    async def _run_sample(
        self, case: EvalTestCase, index: int, policy: str
    ) -> tuple[RawSampleOutput, list[Event]]:
        thread = self.threads.get(case.id)
        if thread is None:
            raise EvalError(f"the replay suite has no recording for test case {case.id!r}")
        runtime, models, tools = self._runtime(thread)
        decisions = _recorded_decisions(thread.events)
        shown: list[Event] = []
        try:
            for run in thread.runs:
                # The same door Runtime.stream_eval hands the evals: any agent, any role.
                stream = runtime._start(run["prompt"], thread.thread_id, run["agent"])
                shown = []
                async for event in stream:
                    shown.append(event)
                    if event.get("type") in ("approval-required", "approval-progress"):
                        await _decide(runtime, event, decisions, policy)
            new = runtime.replay(thread.thread_id).events
        finally:
            await runtime.aclose()
        output = project_run(shown).output
        extra = dict(output.extra)
        extra[REPLAY_EXTRA_KEY] = {
            "threadId": thread.thread_id,
            "divergence": first_divergence(thread.events, new),
            "reusedModelResponses": len(models.reused),
            "reRequested": models.requested,
            "unrecordedToolCalls": tools.unrecorded,
            "recordedEvents": len(thread.events),
            "newEvents": len(new),
        }
        return output.model_copy(update={"extra": extra}), shown

    def stream_eval(self, request: Any, *, approval_policy: str | None = None) -> EvalStream:
        checked = validated(EvalRequest, request, what="replay eval request")
        policy = approval_policy_of(checked.config, approval_policy)

        async def run_sample(case: EvalTestCase, index: int) -> tuple[RawSampleOutput, Any]:
            return await self._run_sample(case, index, policy)

        return stream_eval(
            checked,
            run_sample,
            complete=self._judge.complete,
            judge_model=judge_model_for(self.spec.agents),
            finalize=self._judge.aclose,
        )

    async def run_eval(self, request: Any, *, approval_policy: str | None = None) -> Any:
        from .runner import artifact_of

        return await artifact_of(self.stream_eval(request, approval_policy=approval_policy))

    async def aclose(self) -> None:
        await self._live.aclose()
        await self._judge.aclose()


def _recorded_decisions(events: Iterable[Event]) -> dict[str, deque[dict[str, Any]]]:
    """Per approval id, the recorded decisions in order (each approve short of a quorum,
    then the one that closed the gate)."""
    decisions: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
    for event in events:
        data = event.get("data") or {}
        if event.get("type") == "approval-progress":
            decisions[data["id"]].append({"outcome": "approve", "approver": data.get("approver")})
        elif event.get("type") == "approval-decision" and data.get("reason") != "timeout":
            decisions[data["id"]].append(
                {
                    "outcome": (data.get("outcome") or {}).get("outcome", "approve"),
                    "feedback": data.get("feedback"),
                    "approver": data.get("approver"),
                }
            )
    return decisions


async def _decide(
    runtime: Any, event: Mapping[str, Any], decisions: Mapping[str, deque[Any]], policy: str
) -> None:
    approval_id = str((event.get("data") or {}).get("id"))
    queue = decisions.get(approval_id)
    if queue:
        recorded = queue.popleft()
        await runtime.respond_to_approval(
            approval_id,
            recorded["outcome"],
            recorded.get("feedback"),
            approver=recorded["approver"],
        )
        return
    if policy == "fail":
        raise EvalError(f"approval {approval_id!r} was not recorded and the policy is 'fail'")
    outcome = "reject" if policy == "reject" else "approve"
    await runtime.respond_to_approval(approval_id, outcome, approver="flowai-eval-replay")


async def open_replay_suite(reference: str, *, app: str, live_tools: bool = False) -> EvalSuite:
    """The :class:`EvalSuite` of a replay suite file, re-run against the spec ``app`` names
    (``module:attr``: the spec, or a function returning it)."""
    from ..apps import load_spec

    body = _read_suite(reference)
    if body.get("kind") != REPLAY_SUITE_KIND:
        raise UsageError(f"{reference} is not a replay suite (kind {REPLAY_SUITE_KIND!r})")
    spec = load_spec(app, option="--app")
    threads = {
        thread_id: RecordedThread(thread_id, recording["entries"], bool(recording.get("liveTools")))
        for thread_id, recording in body["threads"].items()
    }
    return EvalSuite(
        runtime=ReplayRuntime(spec, threads, live_tools=live_tools),
        request=validated(EvalRequest, body["request"], what=f"the request in {reference}"),
    )
