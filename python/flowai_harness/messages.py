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
``make schemas`` writes them; ``--check`` reports drift).

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
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

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
    "json_schemas",
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


class RunStartEvent(_Open):
    """Logged at the start of every run; replay reads it, streams never show it. ``v`` is
    the log format the run is written in (absent: format 1)."""

    type: Literal["run-start"]
    runId: str
    agent: str
    prompt: str
    v: int | None = None


class StepStartEvent(_Open):
    """A model turn begins: its request went out (``requestId``; a retry or a fallback is
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


class ModelResponseEvent(_Open):
    """A model's answer, logged (never streamed): replay rebuilds the conversation from it
    and never calls the model again."""

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


class ModelFailureEvent(_Open):
    """A failed model call and what the engine does next (``recovery.action``: ``retry`` at
    ``recovery.at``, ``fallback`` to ``recovery.model``, or ``give-up``)."""

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


class TextEvent(_Open):
    type: Literal["text"]
    text: str
    agent: str | None = None
    requestId: str | None = None


class ReasoningEvent(_Open):
    type: Literal["reasoning"]
    text: str
    agent: str | None = None
    requestId: str | None = None


class ToolInvocationEvent(_Open):
    """A tool call (``state: "call"``) and later its outcome (``state: "result"``)."""

    type: Literal["tool-invocation"]
    agent: str
    toolInvocationId: str
    toolName: str
    args: Any
    state: Literal["call", "result"]
    result: Any = None
    isError: bool = False


class ToolAgentEvent(_Open):
    """An agent called as a tool: ``agentName`` is the agent being called. The entry agent of
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


class DataEvent(_Open):
    """``data-*`` summaries (latency, cost, sub-agent usage, plans)."""

    type: Literal["data-tool-agent", "data-latency-summary", "data-cost-summary", "data-plan"]
    data: dict[str, Any]


class CustomEvent(_Open):
    """Emitted by a tool with ``ctx.emit(name, data)``."""

    type: Literal["custom"]
    name: str
    data: Any = None
    toolInvocationId: str


class ToolProgressEvent(_Open):
    """Emitted by a tool with ``ctx.progress(...)`` while it runs (the seed's fields:
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


class ApprovalRequiredEvent(_Open):
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


class ApprovalDecisionEvent(_Open):
    type: Literal["approval-decision"]
    data: ApprovalDecisionData


class ApprovalProgressData(_Open):
    """One more approver of a gate that needs several; the gate keeps waiting."""

    id: str
    approver: str
    approvals: int = Field(ge=1, description="how many different approvers have approved")
    approvalsRequired: int = Field(ge=2, description="how many the gate needs")


class ApprovalProgressEvent(_Open):
    type: Literal["approval-progress"]
    data: ApprovalProgressData


class PlanStatusChangeData(_Open):
    planId: str
    to: str
    # ``from`` is a keyword: kept under its wire name through the alias.
    from_: str | None = Field(default=None, alias="from")
    fromAlias: str | None = None
    toAlias: str | None = None


class PlanStatusChangeEvent(_Open):
    type: Literal["plan-status-change"]
    data: PlanStatusChangeData


class FinishEvent(_Open):
    type: Literal["finish"]
    finishReason: Literal["stop", "tool-calls", "length", "content-filter", "cancelled"]
    usage: Usage


class ErrorEvent(_Open):
    """Terminal for the run when logged; also the answer to a rejected input (unlogged)."""

    type: Literal["error"]
    error: ErrorBody


class ForkData(_Open):
    sourceThreadId: str
    sourceSeq: int


class ForkEvent(_Open):
    """The first fact of a forked thread after the history it copied: where it branched
    (ours, not the seed's)."""

    type: Literal["fork"]
    data: ForkData


def _not_a_known_type(schema: dict[str, Any]) -> None:
    schema["not"] = {"enum": sorted(EVENT_TYPES)}


class OtherEvent(_Open):
    """An event type this version does not know (a newer engine's). Readers keep it as it
    came and skip what they do not understand: the event union is open, so a new event type
    is not a breaking change (docs/contract.md)."""

    type: str = Field(json_schema_extra=_not_a_known_type)


# The known events: the one list the union, its dispatch and OtherEvent's exclusions come from.
_KnownEvent = (
    RunStartEvent
    | StepStartEvent
    | ModelResponseEvent
    | ModelFailureEvent
    | TextEvent
    | ReasoningEvent
    | ToolInvocationEvent
    | ToolAgentEvent
    | DataEvent
    | CustomEvent
    | ToolProgressEvent
    | ApprovalRequiredEvent
    | ApprovalProgressEvent
    | ApprovalDecisionEvent
    | PlanStatusChangeEvent
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

    schema_: str = Field(alias="schema")
    id: str = Field(min_length=1)
    tenant: str
    thread_id: str
    run_id: str | None = None
    causation_id: str | None = None
    ts: int = Field(description="milliseconds since the Unix epoch")
    payload: Any

    def to_bytes(self) -> bytes:
        """The wire form (JSON); fields left at their default are omitted, ``schema`` never."""
        body = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        body.pop("schema", None)
        return orjson.dumps({"schema": self.schema_, **body})


class Query(Envelope):
    """Input: run an agent on a prompt in a thread (key ``tenant/thread_id``)."""

    NAME = schema_name("Query")
    TOPIC = "queries"
    ROLE = "input"
    schema_: Literal["flowai.v1.Query"] = Field(default="flowai.v1.Query", alias="schema")
    payload: QueryPayload


class CancelRun(Envelope):
    """Input: stop the thread's active run at its next step (key ``tenant/thread_id``)."""

    NAME = schema_name("CancelRun")
    TOPIC = "queries"
    ROLE = "input"
    schema_: Literal["flowai.v1.CancelRun"] = Field(default="flowai.v1.CancelRun", alias="schema")
    payload: CancelRunPayload = Field(default_factory=CancelRunPayload)


class ForkThread(Envelope):
    """Input: start thread ``thread_id`` from another thread's log up to ``at`` (key
    ``tenant/thread_id`` of the new thread; ``queries`` topic)."""

    NAME = schema_name("ForkThread")
    TOPIC = "queries"
    ROLE = "input"
    schema_: Literal["flowai.v1.ForkThread"] = Field(default="flowai.v1.ForkThread", alias="schema")
    payload: ForkThreadPayload


class ThreadSnapshot(Envelope):
    """The runtime's snapshot of a thread, or a partition checkpoint (``thread_id`` empty), on
    the compacted ``snapshots`` topic (key ``tenant/thread_id``; ``tenant/`` for a
    checkpoint), written in the transaction of the events it covers."""

    NAME = schema_name("ThreadSnapshot")
    TOPIC = "snapshots"
    schema_: Literal["flowai.v1.ThreadSnapshot"] = Field(
        default="flowai.v1.ThreadSnapshot", alias="schema"
    )
    payload: ThreadSnapshotPayload


class RuntimeEvent(Envelope):
    """A run-log entry: ``id`` is ``{tenant}/{thread_id}/{seq}``, ``seq`` counts 1, 2, 3...
    per thread. A rejected input is answered with an unlogged one whose ``seq`` is null."""

    NAME = schema_name("RuntimeEvent")
    TOPIC = "runtime-events"
    schema_: Literal["flowai.v1.RuntimeEvent"] = Field(
        default="flowai.v1.RuntimeEvent", alias="schema"
    )
    seq: int | None = Field(ge=1, description="position in the thread's log; null = not logged")
    payload: EventPayload


class ToolInvocation(Envelope):
    """Effect: run one tool (key: its own ``id``, ``{tenant}/{thread_id}/{run_id}/{call id}``)."""

    NAME = schema_name("ToolInvocation")
    TOPIC = "tool-invocations"
    ROLE = "effect"
    KEY = "id"
    schema_: Literal["flowai.v1.ToolInvocation"] = Field(
        default="flowai.v1.ToolInvocation", alias="schema"
    )
    payload: ToolInvocationPayload


class ToolResult(Envelope):
    """Input: a tool invocation's outcome (key ``tenant/thread_id``)."""

    NAME = schema_name("ToolResult")
    TOPIC = "tool-results"
    ROLE = "input"
    schema_: Literal["flowai.v1.ToolResult"] = Field(default="flowai.v1.ToolResult", alias="schema")
    payload: ToolResultPayload


class PlanStep(Envelope):
    """Effect: run an approved plan's actions through the action dispatcher (key: ``id``)."""

    NAME = schema_name("PlanStep")
    TOPIC = "plan-steps"
    ROLE = "effect"
    KEY = "id"
    schema_: Literal["flowai.v1.PlanStep"] = Field(default="flowai.v1.PlanStep", alias="schema")
    payload: PlanStepPayload


class ApprovalRequest(Envelope):
    """Effect: a human must decide (key ``tenant/thread_id``)."""

    NAME = schema_name("ApprovalRequest")
    TOPIC = "approval-requests"
    ROLE = "effect"
    schema_: Literal["flowai.v1.ApprovalRequest"] = Field(
        default="flowai.v1.ApprovalRequest", alias="schema"
    )
    payload: ApprovalRequestPayload


class ApprovalDecision(Envelope):
    """Input: a human's decision on an approval request (key ``tenant/thread_id``)."""

    NAME = schema_name("ApprovalDecision")
    TOPIC = "approval-decisions"
    ROLE = "input"
    schema_: Literal["flowai.v1.ApprovalDecision"] = Field(
        default="flowai.v1.ApprovalDecision", alias="schema"
    )
    payload: ApprovalDecisionPayload


class ToolProgress(Envelope):
    """Input: events a running tool emitted, logged while it runs (key ``tenant/thread_id``)."""

    NAME = schema_name("ToolProgress")
    TOPIC = "tool-results"
    ROLE = "input"
    schema_: Literal["flowai.v1.ToolProgress"] = Field(
        default="flowai.v1.ToolProgress", alias="schema"
    )
    payload: ToolProgressPayload


class ModelRequest(Envelope):
    """Effect: one model turn (key: its own ``id``, the request id)."""

    NAME = schema_name("ModelRequest")
    TOPIC = "model-requests"
    ROLE = "effect"
    KEY = "id"
    schema_: Literal["flowai.v1.ModelRequest"] = Field(
        default="flowai.v1.ModelRequest", alias="schema"
    )
    payload: ModelRequestPayload


class ModelResult(Envelope):
    """Input: a model's answer or failure (key ``tenant/thread_id``)."""

    NAME = schema_name("ModelResult")
    TOPIC = "model-results"
    ROLE = "input"
    schema_: Literal["flowai.v1.ModelResult"] = Field(
        default="flowai.v1.ModelResult", alias="schema"
    )
    payload: ModelResultPayload


class ModelDelta(Envelope):
    """Streamed text of a model call in flight (``model-deltas``, key ``tenant/thread_id``)."""

    NAME = schema_name("ModelDelta")
    TOPIC = "model-deltas"
    schema_: Literal["flowai.v1.ModelDelta"] = Field(default="flowai.v1.ModelDelta", alias="schema")
    payload: ModelDeltaPayload


class ApprovalCheck(Envelope):
    """Effect: evaluate a dynamic approval rule (answered in the runtime, never published)."""

    NAME = schema_name("ApprovalCheck")
    TOPIC = None
    ROLE = "effect"
    schema_: Literal["flowai.v1.ApprovalCheck"] = Field(
        default="flowai.v1.ApprovalCheck", alias="schema"
    )
    payload: ApprovalCheckPayload


class ApprovalCheckResult(Envelope):
    """Input: the answer to an ApprovalCheck."""

    NAME = schema_name("ApprovalCheckResult")
    TOPIC = None
    ROLE = "input"
    schema_: Literal["flowai.v1.ApprovalCheckResult"] = Field(
        default="flowai.v1.ApprovalCheckResult", alias="schema"
    )
    payload: ApprovalCheckResultPayload


class DeadlineReached(Envelope):
    """Input: the time now (the envelope ``ts``) for a thread whose deadline passed."""

    NAME = schema_name("DeadlineReached")
    TOPIC = None
    ROLE = "input"
    schema_: Literal["flowai.v1.DeadlineReached"] = Field(
        default="flowai.v1.DeadlineReached", alias="schema"
    )
    payload: EmptyPayload = Field(default_factory=EmptyPayload)


class ResumeRun(Envelope):
    """Input: re-issue the effects an unfinished run still waits for (logs nothing new)."""

    NAME = schema_name("ResumeRun")
    TOPIC = None
    ROLE = "input"
    schema_: Literal["flowai.v1.ResumeRun"] = Field(default="flowai.v1.ResumeRun", alias="schema")
    payload: EmptyPayload = Field(default_factory=EmptyPayload)


class Thread(Envelope):
    """Index: a thread's place in the run log and its status (``threads`` topic, compacted,
    key ``tenant/thread_id``, the partition number of the thread's run log). The runtime
    writes one in the transaction of the events it describes whenever the status changes or
    the thread comes to rest (idle, awaiting approval); the latest per key is current."""

    NAME = schema_name("Thread")
    TOPIC = "threads"
    schema_: Literal["flowai.v1.Thread"] = Field(default="flowai.v1.Thread", alias="schema")
    payload: ThreadPayload


class Redrive(Envelope):
    """An operator re-published a dead letter's message (``dead-letters`` topic, key of the
    dead letter): the record of who did it, when (``ts``) and where it went.

    ``tenant`` and ``thread_id`` are null when the message did not name them.
    """

    NAME = schema_name("Redrive")
    TOPIC = "dead-letters"
    KEY = "dead-letter"
    schema_: Literal["flowai.v1.Redrive"] = Field(default="flowai.v1.Redrive", alias="schema")
    tenant: str | None  # type: ignore[assignment]
    thread_id: str | None  # type: ignore[assignment]
    payload: RedrivePayload


class DeadLetter(Envelope):
    """A message a service could not handle, with the reason (``dead-letters`` topic).

    ``tenant`` and ``thread_id`` are null when the message was too broken to name them.
    """

    NAME = schema_name("DeadLetter")
    TOPIC = "dead-letters"
    KEY = "dead-letter"
    schema_: Literal["flowai.v1.DeadLetter"] = Field(default="flowai.v1.DeadLetter", alias="schema")
    tenant: str | None  # type: ignore[assignment]
    thread_id: str | None  # type: ignore[assignment]
    payload: DeadLetterPayload


# Every message type, those on topics in the order of their topics (the order the topics
# are created and documented in), then those the runtime answers in its own process.
_MODELS: tuple[type[Envelope], ...] = (
    Query,
    CancelRun,
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
    ResumeRun,
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
        description="Write the JSON Schemas of every bus message (schemas/v1).",
    )
    parser.add_argument("--out", type=Path, default=Path("schemas") / SCHEMA_VERSION)
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    args = parser.parse_args(argv)
    return _write(args.out, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
