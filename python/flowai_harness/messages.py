"""The messages on the bus: the envelope and every message type, as Pydantic v2 models.

Owns :class:`Envelope`, one model per schema name (``flowai.v1.<Name>``) with its typed
payload, :data:`SCHEMAS` (schema name -> model), :func:`decode` / :meth:`Envelope.to_bytes`
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
``PlanStep``, ``ApprovalRequest`` and its ``DeadLetter`` records inside Kafka transactions, so
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
from typing import Annotated, Any, ClassVar, Literal

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SCHEMAS",
    "SCHEMA_VERSION",
    "ApprovalDecision",
    "ApprovalDecisionPayload",
    "ApprovalRequest",
    "ApprovalRequestPayload",
    "CancelRun",
    "CancelRunPayload",
    "DeadLetter",
    "DeadLetterPayload",
    "DeadLetterSource",
    "Envelope",
    "ErrorBody",
    "EventPayload",
    "PlanStep",
    "PlanStepPayload",
    "Query",
    "QueryPayload",
    "RuntimeEvent",
    "ToolInvocation",
    "ToolInvocationPayload",
    "ToolResult",
    "ToolResultPayload",
    "decode",
    "json_schemas",
    "schema_name",
]

SCHEMA_VERSION = "v1"


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
    inputTokens: int
    outputTokens: int


class RunUsage(Usage):
    totalTokens: int


# --- run-log event payloads (what a stream yields) -------------------------------------------


class RunStartEvent(_Open):
    """Logged at the start of every run; replay reads it, streams never show it."""

    type: Literal["run-start"]
    runId: str
    agent: str
    prompt: str


class StepStartEvent(_Open):
    type: Literal["step-start"]
    agent: str
    step: int
    model: str
    usage: Usage


class TextEvent(_Open):
    type: Literal["text"]
    agent: str
    text: str


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
    """A coordinator's call of another agent, then that agent's final answer."""

    type: Literal["tool-agent"]
    agent: str
    toolInvocationId: str
    targetAgent: str
    state: Literal["call", "result"]
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
    """Emitted by a tool with ``ctx.progress(message, fraction=...)``."""

    type: Literal["tool-progress"]
    message: str
    fraction: float | None = None
    toolInvocationId: str


class ApprovalRequiredEvent(_Open):
    type: Literal["approval-required"]
    id: str
    kind: Literal["tool", "plan"]
    target: str
    payload: Any = None
    resourceId: str
    threadId: str
    correlationId: str | None = None
    expiresAt: int | None = None


class ApprovalDecisionEvent(_Open):
    type: Literal["approval-decision"]
    id: str
    outcome: dict[str, Any]
    feedback: str | None = None
    approver: str | None = None
    reason: str | None = None


class PlanStatusChangeEvent(_Open):
    type: Literal["plan-status-change"]
    planId: str
    to: str
    # ``from`` is a keyword: kept under its wire name through the alias.
    from_: str | None = Field(default=None, alias="from")


class FinishEvent(_Open):
    type: Literal["finish"]
    finishReason: Literal["stop", "cancelled"]
    usage: RunUsage


class ErrorEvent(_Open):
    """Terminal for the run when logged; also the answer to a rejected input (unlogged)."""

    type: Literal["error"]
    error: ErrorBody


EventPayload = Annotated[
    RunStartEvent
    | StepStartEvent
    | TextEvent
    | ToolInvocationEvent
    | ToolAgentEvent
    | DataEvent
    | CustomEvent
    | ToolProgressEvent
    | ApprovalRequiredEvent
    | ApprovalDecisionEvent
    | PlanStatusChangeEvent
    | FinishEvent
    | ErrorEvent,
    Field(discriminator="type"),
]


# --- input and effect payloads ---------------------------------------------------------------


class QueryPayload(_Strict):
    prompt: str
    agent: str | None = Field(
        default=None, description="the agent to run; null = the coordinator, or the only agent"
    )


class CancelRunPayload(_Strict):
    pass


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


class ApprovalRequestPayload(ApprovalRequiredEvent):
    """The ``approval-required`` event payload, published for approvers."""


class ApprovalDecisionPayload(_Strict):
    approval_id: str
    outcome: Literal["approve", "reject", "revise"]
    feedback: str | None = None
    partial: Any = Field(default=None, description="revised arguments or plan (outcome revise)")
    approver: str | None = Field(default=None, description="who decided (user id, bot, ...)")


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


# --- envelopes -------------------------------------------------------------------------------


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
    NAME: ClassVar[str] = ""

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
    schema_: Literal["flowai.v1.Query"] = Field(default="flowai.v1.Query", alias="schema")
    payload: QueryPayload


class CancelRun(Envelope):
    """Input: stop the thread's active run at its next step (key ``tenant/thread_id``)."""

    NAME = schema_name("CancelRun")
    schema_: Literal["flowai.v1.CancelRun"] = Field(default="flowai.v1.CancelRun", alias="schema")
    payload: CancelRunPayload = Field(default_factory=CancelRunPayload)


class RuntimeEvent(Envelope):
    """A run-log entry: ``id`` is ``{tenant}/{thread_id}/{seq}``, ``seq`` counts 1, 2, 3...
    per thread. A rejected input is answered with an unlogged one whose ``seq`` is null."""

    NAME = schema_name("RuntimeEvent")
    schema_: Literal["flowai.v1.RuntimeEvent"] = Field(
        default="flowai.v1.RuntimeEvent", alias="schema"
    )
    seq: int | None = Field(ge=1, description="position in the thread's log; null = not logged")
    payload: EventPayload


class ToolInvocation(Envelope):
    """Effect: run one tool (key: its own ``id``, ``{tenant}/{thread_id}/{run_id}/{call id}``)."""

    NAME = schema_name("ToolInvocation")
    schema_: Literal["flowai.v1.ToolInvocation"] = Field(
        default="flowai.v1.ToolInvocation", alias="schema"
    )
    payload: ToolInvocationPayload


class ToolResult(Envelope):
    """Input: a tool invocation's outcome (key ``tenant/thread_id``)."""

    NAME = schema_name("ToolResult")
    schema_: Literal["flowai.v1.ToolResult"] = Field(default="flowai.v1.ToolResult", alias="schema")
    payload: ToolResultPayload


class PlanStep(Envelope):
    """Effect: run an approved plan's actions through the action dispatcher (key: ``id``)."""

    NAME = schema_name("PlanStep")
    schema_: Literal["flowai.v1.PlanStep"] = Field(default="flowai.v1.PlanStep", alias="schema")
    payload: PlanStepPayload


class ApprovalRequest(Envelope):
    """Effect: a human must decide (key ``tenant/thread_id``)."""

    NAME = schema_name("ApprovalRequest")
    schema_: Literal["flowai.v1.ApprovalRequest"] = Field(
        default="flowai.v1.ApprovalRequest", alias="schema"
    )
    payload: ApprovalRequestPayload


class ApprovalDecision(Envelope):
    """Input: a human's decision on an approval request (key ``tenant/thread_id``)."""

    NAME = schema_name("ApprovalDecision")
    schema_: Literal["flowai.v1.ApprovalDecision"] = Field(
        default="flowai.v1.ApprovalDecision", alias="schema"
    )
    payload: ApprovalDecisionPayload


class DeadLetter(Envelope):
    """A message a service could not handle, with the reason (``dead-letters`` topic).

    ``tenant`` and ``thread_id`` are null when the message was too broken to name them.
    """

    NAME = schema_name("DeadLetter")
    schema_: Literal["flowai.v1.DeadLetter"] = Field(default="flowai.v1.DeadLetter", alias="schema")
    tenant: str | None  # type: ignore[assignment]
    thread_id: str | None  # type: ignore[assignment]
    payload: DeadLetterPayload


_MODELS: tuple[type[Envelope], ...] = (
    Query,
    CancelRun,
    RuntimeEvent,
    ToolInvocation,
    ToolResult,
    PlanStep,
    ApprovalRequest,
    ApprovalDecision,
    DeadLetter,
)

SCHEMAS: dict[str, type[Envelope]] = {model.NAME: model for model in _MODELS}

_Message = Annotated[
    Query
    | CancelRun
    | RuntimeEvent
    | ToolInvocation
    | ToolResult
    | PlanStep
    | ApprovalRequest
    | ApprovalDecision
    | DeadLetter,
    Field(discriminator="schema_"),
]
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
