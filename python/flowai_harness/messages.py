"""The messages on the bus: the envelope and every message type, as Pydantic v2 models.

Owns :class:`Envelope`, one model per schema name (``flowai.v1.<Name>``) with its typed
payload, and the contract registry: each model says its schema name (``NAME``), the topic
it travels on (``TOPIC``, a stem; None for what the runtime answers in its own process),
what it is to the runtime (``ROLE``: input, effect or record) and how its record is keyed
(``KEY``); :data:`SCHEMAS` (schema name -> model), :data:`TOPICS` (topic stem -> models,
every topic in order), :data:`IN_PROCESS` and :data:`KEYED_BY_ID` are derived from them,
and so are the bus's topic names (``flowai_harness.kafka.bus.Topics``) and the AsyncAPI
document. Code names a message type as ``Query.NAME``, never as a string. Also owns
:func:`decode` / :meth:`Envelope.to_bytes`
(orjson: the bytes that travel on Kafka are the bytes that cross into the engine), and the
JSON Schemas committed under ``schemas/v1`` (``python -m flowai_harness.messages`` or
``make schemas`` writes them; ``--check`` reports drift), and the two tables of docs/wire.md
that restate the models (``--docs docs/wire.md``: the glossary from each message's first
docstring sentence, ``HANDLED_BY``, ``TOPIC``, ``KEY`` and ``TOPIC_NOTE``; the events table from
each event payload model's docstring and ``TYPE_NOTE``), so a message or event type is
described in one place.

Shapes follow docs/wire.md. Field names in envelopes and effect/input payloads are
snake_case; run-log event payloads (what a stream yields) are camelCase. Event payload models
accept fields this version does not list (``extra="allow"``), so a newer engine's additions do
not break an older reader; input payloads the engine checks strictly are strict here too.

The hot paths (runtime service, tool worker) route bytes and never build these models per
message; the models are the contract, the schema generator's source, and a validator for
upstream producers and tests. Must not import the runtime, the native engine, the bus
clients or any service.

Reading them off Kafka: the runtime writes ``RuntimeEvent`` (the run log), ``ToolInvocation``,
``PlanStep``, ``ModelRequest``, ``ApprovalRequest`` and its ``DeadLetter`` records inside Kafka
transactions (schemas/asyncapi.yaml says which topic carries what), so
every reader of those topics must consume with ``isolation.level=read_committed``. A
``read_uncommitted`` reader (the default of the Java consumer and of kcat) also gets the
records of transactions that a crash aborted and the next runtime wrote again: they look like
duplicated events with the same ids and ``seq`` numbers.
"""

from __future__ import annotations

import argparse
import base64
import inspect
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from .errors import UsageError

__all__ = [
    "IN_PROCESS",
    "KEYED_BY_ID",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "TOPICS",
    "ApprovalCheck",
    "ApprovalCheckResult",
    "ApprovalDecision",
    "ApprovalDecisionPayload",
    "ApprovalRequest",
    "ApprovalRequestPayload",
    "CancelRun",
    "CancelRunPayload",
    "DeadLetter",
    "DeadLetterPayload",
    "DeadLetterSource",
    "DeadlineReached",
    "Envelope",
    "ErrorBody",
    "EventPayload",
    "ForkThread",
    "KeyRule",
    "ModelDelta",
    "ModelRequest",
    "ModelResult",
    "PlanStep",
    "PlanStepPayload",
    "Query",
    "QueryPayload",
    "Redrive",
    "RedrivePayload",
    "ResumeRun",
    "Role",
    "RuntimeEvent",
    "Thread",
    "ThreadPayload",
    "ThreadSnapshot",
    "ToolInvocation",
    "ToolInvocationPayload",
    "ToolProgress",
    "ToolResult",
    "ToolResultPayload",
    "decode",
    "doc_markdown",
    "events_table",
    "glossary_table",
    "json_schemas",
    "render_docs",
    "schema_name",
]

SCHEMA_VERSION = "v1"

# Why a model call failed (docs/wire.md, "Model calls"): the one list the providers report,
# the engine decides on, and specs name in retry_on / fallback_on.
FailureKind = Literal[
    "rate_limited",
    "overloaded",
    "server",
    "timeout",
    "connection",
    "auth",
    "bad_request",
    "context_length",
    "bad_response",
]
FAILURE_KINDS: tuple[FailureKind, ...] = get_args(FailureKind)


def envelope(
    schema: str,
    *,
    id: str,
    tenant: str,
    thread_id: str,
    payload: Any,
    ts: int | None = None,
    run_id: str | None = None,
    causation_id: str | None = None,
) -> bytes:
    """One message envelope as the JSON bytes that travel on Kafka and cross into the engine
    (``ts`` defaults to now, in ms). Builds bytes directly: this runs for every input."""
    return orjson.dumps(
        {
            "schema": schema,
            "id": id,
            "tenant": tenant,
            "thread_id": thread_id,
            "run_id": run_id,
            "causation_id": causation_id,
            "ts": time.time_ns() // 1_000_000 if ts is None else ts,
            "payload": payload,
        }
    )


def schema_name(name: str) -> str:
    """``"Query"`` -> ``"flowai.v1.Query"``."""
    return f"flowai.{SCHEMA_VERSION}.{name}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Open(BaseModel):
    # Event payloads: a newer engine may add fields; readers keep them.
    model_config = ConfigDict(extra="allow", frozen=True)


class ErrorBody(_Strict):
    """``{"message", "code"}``: what went wrong, and the stable code to match on."""

    message: str
    code: str


class Usage(_Open):
    """Token counts in the seed's names; ``promptTokens`` excludes cache reads and writes,
    ``totalTokens`` counts all four."""

    promptTokens: int
    completionTokens: int
    totalTokens: int
    cacheReadInputTokens: int = 0
    cacheCreationInputTokens: int = 0


# --- run-log event payloads (what a stream yields) -------------------------------------------
# Each event model's docstring is its row of docs/wire.md's events table: the first paragraph
# is the row's text (a model listing its types as ``- ``type``: text`` bullets gets a row per
# bullet), and TYPE_NOTE what the table says beside the type. Models sharing one documented
# base share one row. ``python -m flowai_harness.messages --docs docs/wire.md`` renders it.


class _Event(_Open):
    # Said beside the type name in the events table (logged or streamed, ours or the seed's).
    TYPE_NOTE: ClassVar[str] = ""


class RunStartEvent(_Event):
    """``runId``, ``agent``, ``prompt``, ``v`` (log format, 2)

    Logged at the start of every run; replay reads it, streams never show it. ``v`` is
    the log format the run is written in (absent: format 1)."""

    TYPE_NOTE = "(logged, not streamed)"

    type: Literal["run-start"]
    runId: str
    agent: str
    prompt: str
    v: int | None = None


class StepStartEvent(_Event):
    """*(ours)* ``agent``, ``step`` (turn number in that agent's frame), ``model``,
    ``provider?``, ``requestId?``, ``usage?`` of that turn

    A model turn begins: its request went out (``requestId``; a retry or a fallback is
    another step-start of the same ``step``)."""

    type: Literal["step-start"]
    agent: str
    step: int
    model: str
    provider: str | None = None
    requestId: str | None = None


class ContentBlock(_Open):
    """One block of a model's answer: ``text``, ``reasoning`` or ``tool_call``."""

    type: Literal["text", "reasoning", "tool_call"]
    text: str | None = None
    signature: str | None = None
    redacted: str | None = None
    id: str | None = None
    name: str | None = None
    args: Any = None
    args_error: str | None = None


class ModelResponseEvent(_Event):
    """``agent``, ``requestId``, ``attempt``, ``provider``, ``model``, ``stopReason``,
    ``rawStopReason?``, ``usage``, ``latencyMs``, ``ttftMs?``, ``content`` (the model's
    blocks: replay reads the answer from here); *(ours)* ``requestHash?`` (the
    ``request_hash`` of the result: replay-as-eval reuses the answer while the request is
    unchanged)

    A model's answer, logged (never streamed): replay rebuilds the conversation from it
    and never calls the model again."""

    TYPE_NOTE = "(logged, not streamed)"

    type: Literal["model-response"]
    agent: str
    requestId: str
    attempt: int
    provider: str = Field(description="who answered: a provider, or mock / scripted / noop")
    model: str = Field(description="the model that actually answered")
    stopReason: Literal["stop", "tool-calls", "length", "content-filter"]
    rawStopReason: str | None = None
    usage: Usage
    latencyMs: int
    ttftMs: int | None = None
    content: list[ContentBlock]
    requestHash: str | None = Field(
        default=None,
        description="the driver's SHA-256 of the request answered (flowai_harness.modelcall."
        "request_sha256); absent in older logs and for the deterministic interpreters",
    )


class ModelFailureEvent(_Event):
    """``agent``, ``requestId``, ``attempt``, ``provider``, ``model``, ``kind``, ``message``,
    ``status?``, ``retryAfterMs?``, ``latencyMs``, ``recovery{action: retry, at} or
    {action: fallback, provider, model} or {action: give-up}``

    A failed model call and what the engine does next (``recovery.action``: ``retry`` at
    ``recovery.at``, ``fallback`` to ``recovery.model``, or ``give-up``)."""

    TYPE_NOTE = "*(ours; streamed, so a retry or a fallback shows as it happens)*"

    type: Literal["model-failure"]
    agent: str
    requestId: str
    attempt: int
    provider: str
    model: str
    kind: str
    message: str
    status: int | None = None
    retryAfterMs: int | None = None
    latencyMs: int
    recovery: dict[str, Any]


class _ModelText(_Event):
    """``text``; *(ours)* ``agent``, ``requestId?``. A live model's text streams as deltas
    and is then not repeated"""

    text: str
    agent: str | None = None
    requestId: str | None = None


class TextEvent(_ModelText):
    type: Literal["text"]


class ReasoningEvent(_ModelText):
    type: Literal["reasoning"]


class ToolInvocationEvent(_Event):
    """``toolInvocationId``, ``toolName``, ``args``, ``state: "call"``; then
    ``state: "result"`` with ``result`` (and *(ours)* ``isError: true`` when ``result`` is
    ``{"error": {"message","code"}}``); *(ours)* ``agent``

    A tool call (``state: "call"``) and later its outcome (``state: "result"``)."""

    type: Literal["tool-invocation"]
    agent: str
    toolInvocationId: str
    toolName: str
    args: Any
    state: Literal["call", "result"]
    result: Any = None
    isError: bool = False


class ToolAgentEvent(_Event):
    """``agentName``, ``toolInvocationId``, ``state: "call"``, then ``state: "result"`` with
    ``result``. The entry agent gets a wrapping pair (its result is the run's answer, or null
    when cancelled); a sub-agent call also carries *(ours)* ``agent`` (the caller),
    ``targetAgent``, ``prompt``, ``isError?``

    An agent called as a tool: ``agentName`` is the agent being called. The entry agent of
    every run gets a wrapping call/result pair (no ``targetAgent``); a coordinator's call of
    another agent names the caller (``agent``), ``targetAgent`` and ``prompt``/``result``."""

    type: Literal["tool-agent"]
    agentName: str
    toolInvocationId: str
    state: Literal["call", "result"]
    agent: str | None = None
    targetAgent: str | None = None
    prompt: str | None = None
    result: Any = None
    isError: bool = False


class DataEvent(_Event):
    """``data-*`` summaries (latency, cost, sub-agent usage, plans), by ``type``:

    - ``data-tool-agent``: ``data{agentName, model, usage}`` for a finished agent; *(ours)*
      ``provider``
    - ``data-plan``: *(ours)* ``data{planId, specName, actions, context}``: the validated
      plan, logged before its first status change
    - ``data-latency-summary``: ``data{totalDurationMs, phases{llmCalls, llmTimeMs,
      subAgentTimeMs, toolTimeMs}, toolTimings[], retryCount, hadTimeout, ttftMs?,
      firstTextMs?}``
    - ``data-cost-summary``: ``data{agents[], totalPromptTokens, totalCompletionTokens,
      totalCacheReadInputTokens, totalCacheCreationInputTokens, totalTokens}``; only for
      live models
    """

    type: Literal["data-tool-agent", "data-latency-summary", "data-cost-summary", "data-plan"]
    data: dict[str, Any]


class CustomEvent(_Event):
    """``name``, ``data``, ``toolInvocationId`` (as the tool emitted it with
    ``ctx.emit(name, data)``; the seed lists ``event_type, data``). The engine refuses a tool
    result whose custom event lacks ``name`` or ``toolInvocationId``.

    Emitted by a tool with ``ctx.emit(name, data)``."""

    type: Literal["custom"]
    name: str
    data: Any = None
    toolInvocationId: str


class ToolProgressEvent(_Event):
    """``toolName``, ``toolCallId``, ``label``, ``phaseIndex``, ``totalPhases``,
    ``milestone?`` (as the tool emitted it); *(ours)* ``toolInvocationId`` (required: the
    engine refuses a tool result whose progress event lacks it), ``message?``, ``fraction?``

    Emitted by a tool with ``ctx.progress(...)`` while it runs (the seed's fields:
    ``toolName, toolCallId?, label, phaseIndex, totalPhases, milestone?``)."""

    type: Literal["tool-progress"]
    toolInvocationId: str
    toolName: str | None = None
    toolCallId: str | None = None
    label: str | None = None
    phaseIndex: int | None = None
    totalPhases: int | None = None
    milestone: str | None = None
    message: str | None = None
    fraction: float | None = None


class ApprovalRequestData(_Open):
    """What a human is asked to decide (``approval-required`` data, and the
    ``ApprovalRequest`` effect payload)."""

    id: str
    kind: Literal["tool", "plan"]
    target: str = Field(description="the tool name, or the plan id")
    payload: Any = Field(default=None, description="the tool's arguments, or the plan")
    glimpse: Any = None
    resourceId: str = Field(description="the tenant")
    threadId: str
    correlationId: str | None = Field(
        default=None, description="the tool invocation id, or the plan id"
    )
    expiresAt: int | None = Field(default=None, description="ms; null: no deadline")
    agent: str | None = None
    approvalsRequired: int | None = Field(
        default=None,
        ge=2,
        description="how many different approvers must approve; absent: one",
    )


class ApprovalRequiredEvent(_Event):
    """``data{id, kind (tool or plan), target (tool name or plan id), payload (tool args or
    the plan), resourceId (tenant), threadId, correlationId (tool invocation id, or plan id),
    expiresAt (ms or null), agent}``; *(ours)* ``approvalsRequired`` (>= 2) when the gate
    needs that many different approvers (absent: one)"""

    type: Literal["approval-required"]
    data: ApprovalRequestData


class ApprovalDecisionData(_Open):
    id: str
    outcome: dict[str, Any] = Field(description="{outcome: approve | reject | revise, partial?}")
    feedback: str | None = None
    approver: str | None = None
    reason: str | None = Field(default=None, description="timeout when a deadline decided")
    approvals: int | None = Field(
        default=None,
        ge=0,
        description="at a gate that needs several approvers: how many had approved, this "
        "decision included",
    )
    approvalsRequired: int | None = Field(
        default=None, ge=2, description="how many different approvers the gate needed"
    )


class ApprovalDecisionEvent(_Event):
    """``data{id, outcome{outcome: approve or reject or revise, partial?}, feedback?,
    approver?, reason?}`` (``reason: "timeout"`` when the deadline decided); *(ours)* at a
    gate that needs several approvers also ``approvals`` (how many had approved when it
    closed: ``approvalsRequired`` for an approve) and ``approvalsRequired``"""

    type: Literal["approval-decision"]
    data: ApprovalDecisionData


class ApprovalProgressData(_Open):
    """One more approver of a gate that needs several; the gate keeps waiting."""

    id: str
    approver: str
    approvals: int = Field(ge=1, description="how many different approvers have approved")
    approvalsRequired: int = Field(ge=2, description="how many the gate needs")


class ApprovalProgressEvent(_Event):
    """``data{id, approver, approvals, approvalsRequired}``: an approve at a gate that needs
    several approvers, short of the quorum (``approvals`` different approvers so far, this
    one included); the gate keeps waiting"""

    TYPE_NOTE = "*(ours)*"
    type: Literal["approval-progress"]
    data: ApprovalProgressData


class PlanStatusChangeData(_Open):
    planId: str
    to: str
    # ``from`` is a keyword: kept under its wire name through the alias.
    from_: str | None = Field(default=None, alias="from")
    fromAlias: str | None = None
    toAlias: str | None = None


class PlanStatusChangeEvent(_Event):
    """``data{planId, from, to}``; ``from`` is null when the plan is created; ``to`` is
    ``draft``, ``pending_approval`` (display only: the stored plan stays ``draft`` while the
    gate is open), ``approved``, ``executing``, ``executed``, ``failed``; with display
    aliases *(ours)* ``fromAlias``, ``toAlias``"""

    type: Literal["plan-status-change"]
    data: PlanStatusChangeData


class FinishEvent(_Event):
    """``finishReason`` (``stop``, ``tool-calls``, ``length``, ``content-filter``, *(ours)*
    ``cancelled``), ``usage{promptTokens, completionTokens, totalTokens,
    cacheReadInputTokens, cacheCreationInputTokens}`` (cumulative)"""

    type: Literal["finish"]
    finishReason: Literal["stop", "tool-calls", "length", "content-filter", "cancelled"]
    usage: Usage


class ErrorEvent(_Event):
    """``error{message, code}``; terminal for the run

    Terminal for the run when logged; also the answer to a rejected input (unlogged)."""

    type: Literal["error"]
    error: ErrorBody


class ForkData(_Open):
    sourceThreadId: str
    sourceSeq: int


class ForkEvent(_Event):
    """``data{sourceThreadId, sourceSeq}``: this thread was forked from ``sourceThreadId``
    after its event ``sourceSeq``; the events before it are that thread's, copied (same
    ``seq``, payload and ``causation_id``; envelope ``id`` and ``thread_id`` are this
    thread's). At a gate the fork re-opens it: an ``approval-required`` with this thread's
    approval id follows.

    The first fact of a forked thread after the history it copied: where it branched
    (ours, not the seed's)."""

    TYPE_NOTE = "*(ours; logged)*"

    type: Literal["fork"]
    data: ForkData


def _not_a_known_type(schema: dict[str, Any]) -> None:
    schema["not"] = {"enum": sorted(EVENT_TYPES)}


class OtherEvent(_Event):
    """An event type this version does not know (a newer engine's). Readers keep it as it
    came and skip what they do not understand: the event union is open, so a new event type
    is not a breaking change (docs/contract.md)."""

    type: str = Field(json_schema_extra=_not_a_known_type)


# The known events: the one list the union, its dispatch, OtherEvent's exclusions and the
# events table of docs/wire.md (in this order: roughly when each shows in a run) come from.
_KnownEvent = (
    RunStartEvent
    | ToolAgentEvent
    | StepStartEvent
    | ModelResponseEvent
    | ModelFailureEvent
    | TextEvent
    | ReasoningEvent
    | ToolInvocationEvent
    | ToolProgressEvent
    | CustomEvent
    | DataEvent
    | PlanStatusChangeEvent
    | ApprovalRequiredEvent
    | ApprovalProgressEvent
    | ApprovalDecisionEvent
    | FinishEvent
    | ErrorEvent
    | ForkEvent
)
_EVENT_TAG: dict[str, str] = {
    kind: model.__name__
    for model in get_args(_KnownEvent)
    for kind in get_args(model.model_fields["type"].annotation)
}
EVENT_TYPES: frozenset[str] = frozenset(_EVENT_TAG)


def _event_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return _EVENT_TAG.get(kind, "OtherEvent") if isinstance(kind, str) else "OtherEvent"


if TYPE_CHECKING:
    EventPayload = _KnownEvent | OtherEvent
else:
    # Dispatch on ``type``, unknown types to OtherEvent (a callable discriminator: pydantic's
    # field discriminator has no default branch).
    _TAGGED = tuple(Annotated[m, Tag(m.__name__)] for m in (*get_args(_KnownEvent), OtherEvent))
    EventPayload = Annotated[Union[_TAGGED], Discriminator(_event_tag)]  # noqa: UP007


# --- input and effect payloads ---------------------------------------------------------------


class QueryPayload(_Strict):
    prompt: str
    agent: str | None = Field(
        default=None, description="the agent to run; null = the coordinator, or the only agent"
    )


class CancelRunPayload(_Strict):
    pass


class ForkThreadPayload(_Strict):
    source_thread_id: str = Field(min_length=1, description="the thread to fork")
    at: int = Field(ge=1, description="the source's event after which the fork branches (seq)")


class ThreadSnapshotPayload(_Strict):
    kind: Literal["thread", "checkpoint"] = Field(
        description="a thread's snapshot, or a partition checkpoint: every thread with events "
        "before run_log_offset has a snapshot covering them"
    )
    run_log_offset: int = Field(
        ge=0,
        description="run-log offset (same partition number) from which the events this "
        "snapshot does not cover may appear; a reader folds from there, skipping covered seqs",
    )
    seq: int | None = Field(default=None, ge=1, description="the thread's last event covered")
    snapshot: str | None = Field(
        default=None,
        description="the engine's versioned snapshot (JSON text, opaque; docs/wire.md)",
    )


class ToolInvocationPayload(_Strict):
    tool: str
    tool_invocation_id: str
    args: Any
    agent: str


class ToolResultPayload(_Strict):
    """The outcome of one tool invocation: ``output``, or ``error`` instead of it."""

    invocation_id: str = Field(description="the id of the ToolInvocation envelope answered")
    tool_invocation_id: str | None = None
    output: Any = None
    error: ErrorBody | None = None
    events: list[CustomEvent | ToolProgressEvent] | None = Field(
        default=None, description="custom / tool-progress events the tool emitted, logged first"
    )


class PlanStepPayload(_Strict):
    """Run an approved plan's actions through the action dispatcher. Answered by a
    ``flowai.v1.ToolResult`` whose ``invocation_id`` is the PlanStep envelope's id and whose
    ``output`` is the dispatcher's return: null or ``{entitiesAffected, summary?, details?}``."""

    step_id: str = Field(description="the PlanStep envelope's id")
    tool_invocation_id: str = Field(description="the executor's executePlan call")
    plan_id: str
    spec_name: str
    actions: list[dict[str, Any]] = Field(description="each {kind, payload, references}")
    context: Any = Field(default=None, description="the plan's other top-level fields")
    references: list[dict[str, Any]] = Field(
        default_factory=list, description="every reference handle the actions cite"
    )
    agent: str | None = Field(default=None, description="the executor that asked")


class ApprovalRequestPayload(ApprovalRequestData):
    """The ``approval-required`` event's data, published for approvers."""


class DecisionSignature(_Strict):
    """Ed25519 over what decides (flowai_harness.kafka.decision_auth): the runtime service accepts
    a decision only with a signature from a key it trusts."""

    alg: Literal["ed25519"]
    kid: str = Field(description="the signing key's id")
    issued_at: int = Field(description="when it was signed, ms since the epoch")
    sig: str = Field(description="the signature, base64url without padding")


class ApprovalDecisionPayload(_Strict):
    approval_id: str
    outcome: Literal["approve", "reject", "revise"]
    feedback: str | None = None
    partial: Any = Field(default=None, description="revised arguments or plan (outcome revise)")
    approver: str | None = Field(default=None, description="who decided (user id, bot, ...)")
    signature: DecisionSignature | None = None


class ToolProgressPayload(_Strict):
    """Events a running tool emitted (``custom``, ``tool-progress``), logged at once."""

    invocation_id: str = Field(description="the id of the ToolInvocation envelope running")
    tool_invocation_id: str | None = None
    events: list[CustomEvent | ToolProgressEvent]


class ModelRequestPayload(_Strict):
    """Ask a model for one turn (docs/wire.md, "Model calls"). Answered by a
    ``flowai.v1.ModelResult`` naming ``request_id``."""

    request_id: str = Field(description="the envelope id: the idempotency key")
    agent: str
    provider: str
    model: str
    attempt: int = Field(ge=1, description="counts the turn's retries and fallbacks from 1")
    turn: int = Field(ge=1)
    system: str
    messages: list[dict[str, Any]] = Field(description="user / assistant / tool messages")
    tools: list[dict[str, Any]] = Field(description="{name, description, input_schema}")
    max_tokens: int
    temperature: float | None = None
    thinking: dict[str, Any] | None = None
    cache: bool = True


class ModelUsage(_Strict):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class ModelResponseBody(_Strict):
    content: list[dict[str, Any]]
    stop_reason: Literal["stop", "tool-calls", "length", "content-filter"]
    raw_stop_reason: str | None = None
    usage: ModelUsage
    provider: str
    model: str
    latency_ms: int = 0
    ttft_ms: int | None = None
    request_hash: str | None = Field(
        default=None, description="SHA-256 of the request answered (logged as requestHash)"
    )


class ModelFailureBody(_Strict):
    kind: FailureKind
    message: str
    retry_after_ms: int | None = None
    status: int | None = None
    provider: str | None = None
    model: str | None = None
    latency_ms: int | None = None


class ModelResultPayload(_Strict):
    """A model's answer (``response``) or why there is none (``failure``)."""

    request_id: str
    response: ModelResponseBody | None = None
    failure: ModelFailureBody | None = None


class ModelDeltaPayload(_Strict):
    """Text a model is streaming, for clients to show as it comes (short retention)."""

    request_id: str
    agent: str | None = None
    index: int = Field(description="the content block index")
    seq: int = Field(description="1, 2, 3... per request, so a reader can order and dedupe")
    type: Literal["text-delta", "reasoning-delta"]
    text: str


class ApprovalCheckPayload(_Strict):
    """Evaluate a dynamic approval rule for the call outstanding."""

    check_id: str
    predicate: str
    kind: Literal["tool", "plan"] = Field(
        default="tool", description="The gate's channel, as the predicate's ctx['kind']."
    )
    target: str | None = Field(
        default=None, description="The tool's name, or the plan's id at a plan gate."
    )
    tool: str
    agent: str
    args: Any = Field(description="The call's arguments; the plan itself at a plan gate.")


class ApprovalCheckResultPayload(_Strict):
    check_id: str
    required: bool


class EmptyPayload(_Strict):
    pass


class DeadLetterSource(_Strict):
    topic: str
    partition: int
    offset: int


class DeadLetterPayload(_Strict):
    """Why a message could not be handled, and the message itself."""

    reason: str = Field(description="stable error code, e.g. INPUT_MALFORMED, UNKNOWN_THREAD")
    message: str = Field(description="what was wrong and what to do")
    service: str = Field(description="which service gave up on it: runtime, tools, approvals")
    source: DeadLetterSource | None = None
    original: str = Field(description="the message bytes, as text or base64 (see encoding)")
    encoding: Literal["utf-8", "base64"]
    original_schema: str | None = None
    original_id: str | None = None

    def original_bytes(self) -> bytes:
        if self.encoding == "base64":
            return base64.b64decode(self.original)
        return self.original.encode()


class RedrivePayload(_Strict):
    """Who re-published which dead letter's message, where it went, and whether it was the
    original bytes or a corrected message with the same id."""

    dead_letter_id: str = Field(description="the `id` of the DeadLetter re-driven")
    original_id: str | None = Field(description="the re-published message's envelope id")
    operator: str = Field(description="who re-drove it (the --operator of the command)")
    note: str | None = None
    topic: str = Field(description="where the message was re-published (its source topic)")
    partition: int
    offset: int
    replaced: bool = Field(description="true: a corrected message, not the original bytes")


class ThreadPayload(_Strict):
    """Where a thread's log starts and how the thread stands."""

    status: str = Field(
        description="the thread's phase after its last logged events: idle, running, "
        "awaiting-model, awaiting-tool, awaiting-approval or closing"
    )
    seq: int = Field(ge=1, description="the thread's last logged seq when this was written")
    partition: int = Field(ge=0, description="the run-log partition holding the thread")
    log_offset: int = Field(
        ge=0,
        description="an offset of that partition at or before the thread's first event: "
        "a reader of the thread starts there instead of at the beginning",
    )
    created: int | None = Field(
        default=None, description="when the thread's first event was logged (ms); null if unknown"
    )


# --- envelopes -------------------------------------------------------------------------------


Role = Literal["input", "effect", "record"]
# "thread": ``tenant/thread_id`` (a partition checkpoint's ``thread_id`` is empty:
# ``tenant/``), so every message about a thread lands on its run log's partition number;
# "id": the envelope's own ``id``, so the work spreads over the workers' partitions;
# "dead-letter": the original message's ``tenant/thread_id`` when it names them, else the
# original record's key.
KeyRule = Literal["thread", "id", "dead-letter"]


def _require_schema(schema: dict[str, Any]) -> None:
    # ``schema`` has a default in Python (each class knows its own name), but on the wire
    # every message carries it.
    required = schema.setdefault("required", [])
    if "schema" not in required:
        required.insert(0, "schema")


class Envelope(_Strict):
    """Every message: ``schema``, ``id`` (unique: the idempotency key), ``tenant``,
    ``thread_id``, ``run_id``, ``causation_id`` (the id of the message that caused it),
    ``ts`` (ms since the Unix epoch) and ``payload``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, json_schema_extra=_require_schema
    )
    # The contract of each message type, in one place (see :data:`TOPICS`): its schema name,
    # the stem of the topic it travels on (None: the runtime answers it in its own process),
    # what it is to the runtime (an input it consumes, an effect the engine asks for, or a
    # record written for readers), and how its record is keyed.
    NAME: ClassVar[str] = ""
    TOPIC: ClassVar[str | None] = None
    ROLE: ClassVar[Role] = "record"
    KEY: ClassVar[KeyRule] = "thread"
    # For docs/wire.md's glossary, beside the first sentence of the docstring (what the
    # message means): who handles it, and what else a reader should know of its topic.
    HANDLED_BY: ClassVar[str] = ""
    TOPIC_NOTE: ClassVar[str] = ""

    schema_: str = Field(alias="schema")
    id: str = Field(min_length=1)
    tenant: str
    thread_id: str
    run_id: str | None = None
    causation_id: str | None = None
    ts: int = Field(description="milliseconds since the Unix epoch")
    payload: Any

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # A message's schema name is the default of its ``schema`` field (which its schema
        # pins as a const); NAME is read from there, never written again.
        super().__pydantic_init_subclass__(**kwargs)
        name = cls.model_fields["schema_"].default
        if name != schema_name(cls.__name__):
            raise TypeError(f"{cls.__name__}.schema defaults to {name!r}, not its own name")
        cls.NAME = name

    def to_bytes(self) -> bytes:
        """The wire form (JSON); fields left at their default are omitted, ``schema`` never."""
        body = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        body.pop("schema", None)
        return orjson.dumps({"schema": self.schema_, **body})


class Query(Envelope):
    """A user's prompt: start a run on the thread."""

    TOPIC = "queries"
    ROLE = "input"
    HANDLED_BY = "engine and runtime service ``on_query``"
    schema_: Literal["flowai.v1.Query"] = Field(default="flowai.v1.Query", alias="schema")
    payload: QueryPayload


class CancelRun(Envelope):
    """End the thread's run in flight (its pending approvals are cancelled). The run stops at
    its next step."""

    TOPIC = "queries"
    ROLE = "input"
    HANDLED_BY = "engine and runtime service ``on_cancel_run``; approvals desk ``on_cancel_run``"
    schema_: Literal["flowai.v1.CancelRun"] = Field(default="flowai.v1.CancelRun", alias="schema")
    payload: CancelRunPayload = Field(default_factory=CancelRunPayload)


class ForkThread(Envelope):
    """Start a thread from another's committed log. The new thread is ``thread_id`` (the key is
    the new thread's), its history the other thread's log up to ``at``."""

    TOPIC = "queries"
    ROLE = "input"
    HANDLED_BY = "``Engine.fork``; runtime service ``on_fork_thread``"
    schema_: Literal["flowai.v1.ForkThread"] = Field(default="flowai.v1.ForkThread", alias="schema")
    payload: ForkThreadPayload


class ThreadSnapshot(Envelope):
    """A thread's state up to a seq. The runtime's snapshot of a thread, or a partition
    checkpoint (``thread_id`` empty, key ``tenant/``), written in the transaction of the
    events it covers."""

    TOPIC = "snapshots"
    HANDLED_BY = "the runtime service on takeover"
    TOPIC_NOTE = "compacted; a partition's checkpoint ``tenant/``"
    schema_: Literal["flowai.v1.ThreadSnapshot"] = Field(
        default="flowai.v1.ThreadSnapshot", alias="schema"
    )
    payload: ThreadSnapshotPayload


class RuntimeEvent(Envelope):
    """One logged event of a thread (or, unlogged, the answer to a refused input). A run-log
    entry's ``id`` is ``{tenant}/{thread_id}/{seq}``, ``seq`` counts 1, 2, 3... per thread;
    an unlogged one's ``seq`` is null."""

    TOPIC = "runtime-events"
    HANDLED_BY = "written by the runtime; read by clients, replay and takeovers"
    TOPIC_NOTE = "the run log"
    schema_: Literal["flowai.v1.RuntimeEvent"] = Field(
        default="flowai.v1.RuntimeEvent", alias="schema"
    )
    seq: int | None = Field(ge=1, description="position in the thread's log; null = not logged")
    payload: EventPayload


class ToolInvocation(Envelope):
    """Run one tool call. Its ``id`` is ``{tenant}/{thread_id}/{run_id}/{call id}``."""

    TOPIC = "tool-invocations"
    ROLE = "effect"
    KEY = "id"
    HANDLED_BY = "tool worker ``on_tool_invocation``"
    schema_: Literal["flowai.v1.ToolInvocation"] = Field(
        default="flowai.v1.ToolInvocation", alias="schema"
    )
    payload: ToolInvocationPayload


class ToolResult(Envelope):
    """A tool call's (or a plan step's) output or error."""

    TOPIC = "tool-results"
    ROLE = "input"
    HANDLED_BY = "engine and runtime service ``on_tool_result``"
    schema_: Literal["flowai.v1.ToolResult"] = Field(default="flowai.v1.ToolResult", alias="schema")
    payload: ToolResultPayload


class PlanStep(Envelope):
    """Run an approved plan through the action dispatcher."""

    TOPIC = "plan-steps"
    ROLE = "effect"
    KEY = "id"
    HANDLED_BY = "tool worker ``on_plan_step``"
    schema_: Literal["flowai.v1.PlanStep"] = Field(default="flowai.v1.PlanStep", alias="schema")
    payload: PlanStepPayload


class ApprovalRequest(Envelope):
    """A gate waits for a human."""

    TOPIC = "approval-requests"
    ROLE = "effect"
    HANDLED_BY = "approvals desk ``on_approval_request``"
    schema_: Literal["flowai.v1.ApprovalRequest"] = Field(
        default="flowai.v1.ApprovalRequest", alias="schema"
    )
    payload: ApprovalRequestPayload


class ApprovalDecision(Envelope):
    """A human's approve, reject or revise at a gate."""

    TOPIC = "approval-decisions"
    ROLE = "input"
    HANDLED_BY = (
        "engine and runtime service ``on_approval_decision``; approvals desk "
        "``on_approval_decision``"
    )
    schema_: Literal["flowai.v1.ApprovalDecision"] = Field(
        default="flowai.v1.ApprovalDecision", alias="schema"
    )
    payload: ApprovalDecisionPayload


class ToolProgress(Envelope):
    """Events a tool emitted while it still runs. The engine logs them as they come."""

    TOPIC = "tool-results"
    ROLE = "input"
    HANDLED_BY = "engine and runtime service ``on_tool_progress``"
    schema_: Literal["flowai.v1.ToolProgress"] = Field(
        default="flowai.v1.ToolProgress", alias="schema"
    )
    payload: ToolProgressPayload


class ModelRequest(Envelope):
    """Call a model for one turn. Its ``id`` is the request id."""

    TOPIC = "model-requests"
    ROLE = "effect"
    KEY = "id"
    HANDLED_BY = "model worker ``on_model_request``"
    schema_: Literal["flowai.v1.ModelRequest"] = Field(
        default="flowai.v1.ModelRequest", alias="schema"
    )
    payload: ModelRequestPayload


class ModelResult(Envelope):
    """A model turn's answer or failure."""

    TOPIC = "model-results"
    ROLE = "input"
    HANDLED_BY = "engine and runtime service ``on_model_result``"
    schema_: Literal["flowai.v1.ModelResult"] = Field(
        default="flowai.v1.ModelResult", alias="schema"
    )
    payload: ModelResultPayload


class ModelDelta(Envelope):
    """Streamed text of a model call, never logged. Clients show it while the call is in
    flight; the logged events carry the complete text."""

    TOPIC = "model-deltas"
    HANDLED_BY = "clients following the thread"
    TOPIC_NOTE = "short retention"
    schema_: Literal["flowai.v1.ModelDelta"] = Field(default="flowai.v1.ModelDelta", alias="schema")
    payload: ModelDeltaPayload


class ApprovalCheck(Envelope):
    """Evaluate a dynamic approval rule. The runtime answers it in its own process; it is never
    published."""

    TOPIC = None
    ROLE = "effect"
    HANDLED_BY = "the runtime's driver (the app's predicates)"
    schema_: Literal["flowai.v1.ApprovalCheck"] = Field(
        default="flowai.v1.ApprovalCheck", alias="schema"
    )
    payload: ApprovalCheckPayload


class ApprovalCheckResult(Envelope):
    """The answer to an ``ApprovalCheck``."""

    TOPIC = None
    ROLE = "input"
    HANDLED_BY = "engine ``on_approval_check_result``"
    schema_: Literal["flowai.v1.ApprovalCheckResult"] = Field(
        default="flowai.v1.ApprovalCheckResult", alias="schema"
    )
    payload: ApprovalCheckResultPayload


class DeadlineReached(Envelope):
    """The time now, for a thread whose deadline passed. The time is the envelope's ``ts``."""

    TOPIC = None
    ROLE = "input"
    HANDLED_BY = "engine and runtime service ``on_deadline_reached``"
    schema_: Literal["flowai.v1.DeadlineReached"] = Field(
        default="flowai.v1.DeadlineReached", alias="schema"
    )
    payload: EmptyPayload = Field(default_factory=EmptyPayload)


class ResumeRun(Envelope):
    """Re-issue the effects an unfinished run still waits for. It logs nothing new."""

    TOPIC = "queries"
    ROLE = "input"
    HANDLED_BY = "engine and runtime service ``on_resume_run``"
    schema_: Literal["flowai.v1.ResumeRun"] = Field(default="flowai.v1.ResumeRun", alias="schema")
    payload: EmptyPayload = Field(default_factory=EmptyPayload)


class Thread(Envelope):
    """A thread's status, last seq and where its run log starts. An index record, on the
    partition number of the thread's run log: the runtime writes one in the transaction of
    the events it describes whenever the status changes or the thread comes to rest (idle,
    awaiting approval); the latest per key is current."""

    TOPIC = "threads"
    HANDLED_BY = "clients (``follow``, ``threads``)"
    TOPIC_NOTE = "compacted"
    schema_: Literal["flowai.v1.Thread"] = Field(default="flowai.v1.Thread", alias="schema")
    payload: ThreadPayload


class Redrive(Envelope):
    """An operator re-published a dead letter's message. The record of who did it, when
    (``ts``) and where it went.

    ``tenant`` and ``thread_id`` are null when the message did not name them.
    """

    TOPIC = "dead-letters"
    KEY = "dead-letter"
    HANDLED_BY = "``flowai dead-letters``"
    schema_: Literal["flowai.v1.Redrive"] = Field(default="flowai.v1.Redrive", alias="schema")
    tenant: str | None  # type: ignore[assignment]
    thread_id: str | None  # type: ignore[assignment]
    payload: RedrivePayload


class DeadLetter(Envelope):
    """A message a service gave up on, with the code and message why.

    ``tenant`` and ``thread_id`` are null when the message was too broken to name them.
    """

    TOPIC = "dead-letters"
    KEY = "dead-letter"
    HANDLED_BY = "``flowai dead-letters``"
    schema_: Literal["flowai.v1.DeadLetter"] = Field(default="flowai.v1.DeadLetter", alias="schema")
    tenant: str | None  # type: ignore[assignment]
    thread_id: str | None  # type: ignore[assignment]
    payload: DeadLetterPayload


# Every message type, those on topics in the order of their topics (the order the topics
# are created and documented in), then those the runtime answers in its own process.
_MODELS: tuple[type[Envelope], ...] = (
    Query,
    CancelRun,
    ResumeRun,
    ForkThread,
    RuntimeEvent,
    ToolInvocation,
    PlanStep,
    ToolResult,
    ToolProgress,
    ModelRequest,
    ModelResult,
    ModelDelta,
    ApprovalRequest,
    ApprovalDecision,
    DeadLetter,
    Redrive,
    Thread,
    ThreadSnapshot,
    ApprovalCheck,
    ApprovalCheckResult,
    DeadlineReached,
)

SCHEMAS: dict[str, type[Envelope]] = {model.NAME: model for model in _MODELS}


def _by_topic() -> dict[str, tuple[type[Envelope], ...]]:
    topics: dict[str, tuple[type[Envelope], ...]] = {}
    for model in _MODELS:
        if model.TOPIC is not None:
            topics[model.TOPIC] = (*topics.get(model.TOPIC, ()), model)
    return topics


# Topic stem -> the message types it carries: every topic of the bus, in order.
TOPICS: dict[str, tuple[type[Envelope], ...]] = _by_topic()
# The runtime's inputs and effects that never travel on a topic.
IN_PROCESS: tuple[type[Envelope], ...] = tuple(m for m in _MODELS if m.TOPIC is None)
# The schema names of the messages keyed by their own id.
KEYED_BY_ID: frozenset[str] = frozenset(m.NAME for m in _MODELS if m.KEY == "id")

# Any message, told apart by its schema name.
_Message = Annotated[Union[_MODELS], Field(discriminator="schema_")]  # type: ignore[valid-type]  # noqa: UP007
_MESSAGE: pydantic.TypeAdapter[Envelope] = pydantic.TypeAdapter(_Message)


def decode(data: bytes | str) -> Envelope:
    """Parse and validate one message of any schema; raises ``pydantic.ValidationError``."""
    return _MESSAGE.validate_json(data)


# --- schemas/v1 ------------------------------------------------------------------------------


def json_schemas() -> dict[str, bytes]:
    """``{file name: JSON Schema bytes}`` for every message, as committed in schemas/v1."""
    files: dict[str, bytes] = {}
    for model in _MODELS:
        schema = model.model_json_schema(by_alias=True, mode="validation")
        document = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": model.NAME,
            **schema,
        }
        files[f"{model.__name__}.json"] = (
            orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )
    return files


# --- docs/wire.md's generated tables -----------------------------------------------------------

_DOC_START = "<!-- generated by make schemas: {} -->"
_DOC_END = "<!-- end generated -->"
_KEY_TEXT: dict[KeyRule, str] = {
    "thread": "``tenant/thread_id``",
    "id": "its id",
    "dead-letter": "the original message's key",
}
_BULLET = re.compile(r"- ``([^`]+)``: ")


def _markdown(text: str) -> str:
    """Docstring text as one line of Markdown: unwrapped, reST literals as code."""
    return " ".join(text.split()).replace("``", "`")


def doc_markdown(cls: type) -> str:
    """A class's own docstring as Markdown paragraphs (the AsyncAPI descriptions)."""
    return "\n\n".join(_markdown(paragraph) for paragraph in _paragraphs(cls))


def _paragraphs(cls: type) -> list[str]:
    return inspect.cleandoc(cls.__dict__.get("__doc__") or "").split("\n\n")


def _cell(text: str) -> str:
    return _markdown(text).replace("|", "\\|")


def _meaning(model: type[Envelope]) -> str:
    # The first sentence, as a table phrase: "A user's prompt." -> "a user's prompt".
    sentence = re.split(r"(?<=\.)\s", _paragraphs(model)[0], maxsplit=1)[0].removesuffix(".")
    first_word = sentence.split(" ", 1)[0]
    if not (len(first_word) > 1 and first_word.isupper()):
        sentence = sentence[0].lower() + sentence[1:]
    return _cell(sentence)


def glossary_table() -> str:
    """docs/wire.md's glossary: every message type, its topic (with the key on the topic's
    first row), who handles it and what it means (the first sentence of its docstring)."""
    rows = ["| stem | topic (key) | handled by | what it means |", "| --- | --- | --- | --- |"]
    keyed: set[str | None] = set()
    for model in _MODELS:
        if not model.HANDLED_BY or not model.__doc__:
            raise UsageError(
                f"{model.__name__} needs a docstring and HANDLED_BY (who consumes it) for "
                "docs/wire.md's glossary"
            )
        # A topic's key (and note) is said on its first row; the rest name the topic only.
        topic = "in-process" if model.TOPIC is None else f"``{model.TOPIC}``"
        if model.TOPIC not in keyed and model.TOPIC is not None:
            keyed.add(model.TOPIC)
            key = ", ".join(part for part in (_KEY_TEXT[model.KEY], model.TOPIC_NOTE) if part)
            topic = f"{topic} ({key})"
        rows.append(
            f"| `{model.__name__}` | {_cell(topic)} | {_cell(model.HANDLED_BY)} "
            f"| {_meaning(model)} |"
        )
    return "\n".join(rows)


def events_table() -> str:
    """docs/wire.md's events table: a row per documented event model, in the union's order
    (models sharing a documented base share its row; a model listing its types as
    ``- ``type``: text`` bullets gets a row per bullet)."""
    types_of: dict[type[_Event], list[str]] = {}
    for model in get_args(_KnownEvent):
        owner = next(
            (c for c in model.__mro__ if issubclass(c, _Event) and c.__dict__.get("__doc__")),
            None,
        )
        if owner is None or owner is _Event:
            raise UsageError(f"{model.__name__} needs a docstring for docs/wire.md's events")
        types_of.setdefault(owner, []).extend(get_args(model.model_fields["type"].annotation))
    rows = ["| type | payload fields |", "| --- | --- |"]
    for owner, types in types_of.items():
        note = f" {owner.TYPE_NOTE}" if owner.TYPE_NOTE else ""
        paragraphs = _paragraphs(owner)
        bullets = [p for p in paragraphs if _BULLET.match(p)]
        if not bullets:
            named = ", ".join(f"`{kind}`" for kind in types)
            rows.append(f"| {named}{note} | {_cell(paragraphs[0])} |")
            continue
        items = re.split(r"\n(?=- ``)", "\n".join(bullets))
        matches = [found for found in map(_BULLET.match, items) if found]
        listed = [found.group(1) for found in matches]
        if sorted(listed) != sorted(types):
            raise UsageError(
                f"{owner.__name__}'s docstring lists {listed} but its types are {types}: "
                "one bullet per type"
            )
        for found in matches:
            rows.append(f"| `{found.group(1)}`{note} | {_cell(found.string[found.end() :])} |")
    return "\n".join(rows)


def render_docs(page: str) -> str:
    """``page`` (docs/wire.md) with the text between its generated-table markers rewritten
    from the models; the prose around them is kept as written."""
    for name, table in (("glossary", glossary_table()), ("events", events_table())):
        start = _DOC_START.format(name)
        begin = page.find(start)
        end = page.find(_DOC_END, begin)
        if begin < 0 or end < 0:
            raise UsageError(
                f"the page has no `{start}` ... `{_DOC_END}` block: add the two markers where "
                f"the {name} table goes"
            )
        page = f"{page[: begin + len(start)]}\n{table}\n{page[end:]}"
    return page


def _write_docs(path: Path, check: bool) -> int:
    page = path.read_text()
    rendered = render_docs(page)
    if rendered == page:
        return 0
    if check:
        print(f"{path}'s generated tables are out of date; run `make schemas`", file=sys.stderr)
        return 1
    path.write_text(rendered)
    print(f"{path}: generated tables rewritten")
    return 0


def _write(out: Path, check: bool) -> int:
    files = json_schemas()
    present = {path.name for path in out.glob("*.json")} if out.is_dir() else set()
    stale = sorted(present - set(files))
    changed = sorted(
        name
        for name, data in files.items()
        if not (out / name).is_file() or (out / name).read_bytes() != data
    )
    if check:
        if stale or changed:
            print(
                f"{out} is out of date (changed: {', '.join(changed) or 'none'}; "
                f"not generated: {', '.join(stale) or 'none'}); run `make schemas`",
                file=sys.stderr,
            )
            return 1
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for name in changed:
        (out / name).write_bytes(files[name])
    for name in stale:
        (out / name).unlink()
    print(f"{out}: {len(files)} schemas, {len(changed)} written, {len(stale)} removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowai_harness.messages",
        description="Write the JSON Schemas of every bus message (schemas/v1) and the tables "
        "of docs/wire.md generated from the models.",
    )
    parser.add_argument(
        "--out", type=Path, help=f"the schema folder (default schemas/{SCHEMA_VERSION})"
    )
    parser.add_argument(
        "--docs", type=Path, help="a page with generated-table markers (docs/wire.md)"
    )
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    args = parser.parse_args(argv)
    out = args.out if args.out or args.docs else Path("schemas") / SCHEMA_VERSION
    failed = _write(out, args.check) if out else 0
    try:
        return (_write_docs(args.docs, args.check) if args.docs else 0) or failed
    except UsageError as error:
        print(f"{args.docs}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
