"""What a tool worker does with one consumed message; Kafka's consumer loop is elsewhere.

Owns :class:`ToolWorker`, a :class:`~.once.OnceWorker`. For each delivery it routes by the
envelope's ``schema``: a ``ToolInvocation`` runs its tool's handler (or, for the
executor's built-in ``resolveRef`` / ``glimpseRef``, reads the reference store), a
``PlanStep`` goes to the app's action dispatcher exactly as in the embedded runtime
(``dispatcher(actions, ctx)`` with the referenced values hydrated from the reference store),
anything else is dead-lettered. Both are answered with a ``flowai.v1.ToolResult`` built by
:mod:`flowai_harness.toolcall`, the code the embedded runtime runs, so the same outcome gives
the same result; a plan step's result answers the PlanStep envelope's id.

Checked before anything runs: the envelope's tenant must be the app's (else a
``TENANT_MISMATCH`` dead letter and no result: a worker never writes into a thread of a
tenant it does not serve, and a misrouted deployment must be loud); the tool must exist
(else a ``TOOL_NOT_AVAILABLE`` error result and a dead letter) and the arguments must match
its input schema, by the engine's own validator (else a ``TOOL_ARGS_INVALID`` error result,
the code the engine gives a model's bad arguments, and a dead letter: the run goes on and
the model may try again, while operators learn that the runtime and the workers disagree
about the tool).

Effectively once, with the invocation id as the key (:mod:`.once`): the handler runs while
the claim is held and renewed, with a per-attempt timeout, retries with exponential backoff
for retryable errors, and at most ``concurrency`` handlers at once per worker. A plan step
runs once (its actions are not assumed idempotent): a failure or timeout is the result, and
the engine marks the plan failed.

A tool defined with ``delivery="at_most_once"`` is marked started in Redis (``arm``, only
while the claim is still ours) right before its handler runs. If that worker dies (or is
stopped) before a result is recorded, the next ``begin`` finds the mark without a claim or a
result and the worker records a ``TOOL_OUTCOME_UNKNOWN`` error result (and a dead letter)
instead of running the handler again. Such a tool's timeout is not retried either: the
handler may still be running, or may have done its work.

Must not import another service or drive the engine (tool workers do not decide).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from flowai_harness import _native, messages
from flowai_harness.errors import (
    FlowaiError,
    InvalidInputError,
    ResultCode,
    RetryableToolError,
)
from flowai_harness.kafka import bus, metrics, telemetry
from flowai_harness.references import MemoryReferenceStore, ReferenceAccess, ReferenceStore
from flowai_harness.toolcall import (
    NO_ACTION_DISPATCHER,
    REFERENCE_TOOLS,
    TOOL_TIMEOUT,
    run_plan_step,
    run_reference_tool,
    run_tool_call,
    tool_result,
)
from flowai_harness.tools import TOOL_OUTCOME_UNKNOWN, ToolDefinition

from .app import ToolApp
from .claims import InvocationLedger
from .once import (
    MALFORMED,
    DeadLetter,
    Delivery,
    OnceWorker,
    Outcome,
    Rejected,
    default_worker_id,
)

__all__ = ["Delivery", "ToolWorker", "WorkerSettings", "default_worker_id"]

log = logging.getLogger("flowai.tools")

TOOL_INVOCATION: Final = messages.ToolInvocation.NAME
PLAN_STEP: Final = messages.PlanStep.NAME

# Dead-letter reasons (stable codes operators match on), beside those of .once.
TOOL_NOT_AVAILABLE: Final = ResultCode.TOOL_NOT_AVAILABLE.value  # a tool nobody runs
TOOL_ARGS_INVALID: Final = ResultCode.TOOL_ARGS_INVALID.value  # bad arguments
RETRIES_EXHAUSTED: Final = "TOOL_RETRIES_EXHAUSTED"
_NO_DISPATCHER_MESSAGE: Final = (
    "this tool worker's app has no action_dispatcher, so it cannot execute plans; give the "
    "--app object an action_dispatcher attribute: fn(actions, ctx), as "
    "create_runtime(action_dispatcher=fn)"
)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Limits and timings; every duration is in seconds."""

    concurrency: int = 8
    tool_timeout: float = 30.0
    max_attempts: int = 3
    retry_backoff: float = 0.5
    retry_backoff_max: float = 30.0
    # How long to wait between looks at an invocation another live worker holds.
    claim_poll: float = 0.25
    # How long to wait before starting over when Redis or Kafka failed mid-way.
    failure_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.tool_timeout <= 0:
            raise ValueError(f"tool_timeout must be positive, got {self.tool_timeout}")

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: exponential, capped, with jitter."""
        delay: float = min(self.retry_backoff_max, self.retry_backoff * 2.0 ** (attempt - 1))
        # Jitter spreads the retries of many invocations that failed together.
        return delay * random.uniform(0.5, 1.0)


class ToolWorker(OnceWorker):
    """Runs tool invocations and plan steps effectively once (see the module docstring)."""

    role = "tool worker"

    def __init__(
        self,
        app: ToolApp,
        ledger: InvocationLedger,
        publisher: bus.Publisher,
        topics: bus.Topics,
        settings: WorkerSettings | None = None,
        *,
        worker_id: str | None = None,
        references: ReferenceStore | None = None,
    ) -> None:
        """``references`` is the store behind ``ctx.references``, ``resolveRef`` and the
        dispatcher's ``resolved_refs`` (the service passes the Redis one; the default, in
        this process only, suits tests)."""
        self.settings = settings or WorkerSettings()
        super().__init__(
            ledger,
            publisher,
            topics,
            tenant=app.spec.tenant.resource_id,
            worker_id=worker_id,
            claim_poll=self.settings.claim_poll,
            failure_backoff=self.settings.failure_backoff,
        )
        self.app = app
        self.references = ReferenceAccess(
            references if references is not None else MemoryReferenceStore(),
            app.spec.tenant.resource_id,
            app.spec.references,
        )
        # Each tool's input schema as the engine's validator takes it, serialized once.
        self._schemas = {name: orjson.dumps(tool.input_schema) for name, tool in app.tools.items()}
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._routes = {
            TOOL_INVOCATION: self.on_tool_invocation,
            PLAN_STEP: self.on_plan_step,
        }
        self.unknown = 0  # at-most-once calls answered "outcome unknown" instead of run again

    # --- tool invocations ------------------------------------------------------------------

    async def on_tool_invocation(self, envelope: dict[str, Any], delivery: Delivery) -> None:
        """``ToolInvocation`` (``tool-invocations``): run the tool, answer with a
        ``ToolResult``."""
        problem = _invocation_problem(envelope)
        if problem is not None:
            raise Rejected(MALFORMED, f"ToolInvocation: {problem}", envelope)
        await self._effectively_once(envelope, delivery, self._run_invocation)

    async def _run_invocation(self, envelope: dict[str, Any], token: str) -> Outcome | None:
        """The outcome of running the invocation; None when an at-most-once tool's claim was
        lost before its handler started (nothing ran: start over)."""
        call = envelope["payload"]
        name = call["tool"]
        if name in REFERENCE_TOOLS:
            return Outcome(self._result(envelope, run_reference_tool(envelope, self.references)))
        tool = self.app.tools.get(name)
        if tool is None:
            why = (
                "it has no handler in this worker's app"
                if name in self.app.missing
                else "the app does not declare it"
            )
            message = f"tool {name!r} is not available on the tool workers: {why}"
            payload = {
                "invocation_id": envelope["id"],
                "tool_invocation_id": call["tool_invocation_id"],
                "error": {"message": message, "code": TOOL_NOT_AVAILABLE},
            }
            return Outcome(self._result(envelope, payload), DeadLetter(TOOL_NOT_AVAILABLE, message))
        bad_args = self._args_problem(tool, call["args"])
        if bad_args is not None:
            code, message = bad_args
            payload = {
                "invocation_id": envelope["id"],
                "tool_invocation_id": call["tool_invocation_id"],
                "error": {"message": message, "code": code},
            }
            return Outcome(self._result(envelope, payload), DeadLetter(code, message))

        settings = self.settings
        at_most_once = tool.delivery == "at_most_once"
        attempt = 0
        while True:
            attempt += 1
            async with self._slots:
                # Marked while the claim is still ours, right before the handler: a crash
                # from here on must never lead to a second run.
                if (
                    attempt == 1
                    and at_most_once
                    and not await self.ledger.arm(envelope["id"], token)
                ):
                    log.warning(
                        "invocation %s: lost the claim before its at-most-once tool %r "
                        "started; not running it here",
                        envelope["id"],
                        name,
                    )
                    return None
                self.ran += 1
                # A timeout is a TOOL_TIMEOUT error result, retried like any retryable one.
                with telemetry.tool_run(name, attempt) as run:
                    payload = run["payload"] = await run_tool_call(
                        tool,
                        envelope,
                        self.app.services,
                        time_limit=settings.tool_timeout,
                        references=self.references,
                    )
            error: dict[str, Any] | None = payload.get("error")
            if error is None or error.get("code") not in _retryable_codes():
                return Outcome(self._result(envelope, payload))
            if at_most_once and error.get("code") == TOOL_TIMEOUT:
                # The handler may still be running, or may have done its work: not again.
                return Outcome(self._result(envelope, payload))
            if attempt >= settings.max_attempts:
                break
            delay = settings.backoff(attempt)
            log.info(
                "invocation %s: attempt %d/%d failed (%s); retrying in %.2f s",
                envelope["id"],
                attempt,
                settings.max_attempts,
                error["code"],
                delay,
            )
            metrics.retry("tool")
            await asyncio.sleep(delay)
        # The last attempt failed too: the model sees the failure, operators a dead letter.
        error["message"] = f"{error['message']} (gave up after {settings.max_attempts} attempts)"
        return Outcome(
            self._result(envelope, payload),
            DeadLetter(RETRIES_EXHAUSTED, f"{error['code']}: {error['message']}"),
        )

    def _args_problem(self, tool: ToolDefinition, args: Any) -> tuple[str, str] | None:
        """(code, message) when ``args`` do not match the tool's input schema."""
        try:
            _native.validate_json(self._schemas[tool.name], orjson.dumps(args))
        except InvalidInputError as exc:
            return TOOL_ARGS_INVALID, f"arguments for `{tool.name}` are invalid: {exc.message}"
        except FlowaiError as exc:
            return exc.code, f"the input schema of `{tool.name}` cannot be checked: {exc.message}"
        return None

    def _outcome_unknown(self, envelope: dict[str, Any]) -> Outcome:
        self.unknown += 1
        call = envelope["payload"]
        message = (
            f"tool {call.get('tool')!r} may or may not have run: the tool worker running it "
            "stopped before recording an outcome, and the tool is at_most_once, so it was not "
            "run again; check whether its effect happened before calling it again"
        )
        payload = {
            "invocation_id": envelope["id"],
            "tool_invocation_id": call["tool_invocation_id"],
            "error": {"message": message, "code": TOOL_OUTCOME_UNKNOWN},
        }
        return Outcome(self._result(envelope, payload), DeadLetter(TOOL_OUTCOME_UNKNOWN, message))

    def _result(self, invocation: Mapping[str, Any], payload: dict[str, Any]) -> bytes:
        # The id follows from the invocation's, so every copy of its result is recognisable.
        return tool_result(invocation, payload, id=f"{invocation['id']}/result", ts=bus.now_ms())

    # --- plan steps ------------------------------------------------------------------------

    async def on_plan_step(self, envelope: dict[str, Any], delivery: Delivery) -> None:
        """``PlanStep`` (``plan-steps``): run one step of a stored plan through the app's
        action dispatcher, answer with a ``ToolResult``."""
        problem = _plan_step_problem(envelope)
        if problem is not None:
            raise Rejected(MALFORMED, f"PlanStep: {problem}", envelope)
        await self._effectively_once(envelope, delivery, self._run_plan_step)

    async def _run_plan_step(self, envelope: dict[str, Any], token: str) -> Outcome:
        dispatcher = self.app.action_dispatcher
        async with self._slots:
            self.ran += 1
            payload = await run_plan_step(
                envelope,
                dispatcher,
                self.app.services,
                self.references,
                time_limit=self.settings.tool_timeout,
                no_dispatcher=_NO_DISPATCHER_MESSAGE,
            )
        # Without a dispatcher the plan fails (the run goes on, as embedded) and operators
        # get a dead letter: the deployment is wrong, not the plan.
        dead = (
            None
            if dispatcher is not None
            else DeadLetter(NO_ACTION_DISPATCHER, _NO_DISPATCHER_MESSAGE)
        )
        return Outcome(self._result(envelope, payload), dead)


# --- helpers ---------------------------------------------------------------------------------


def _retryable_codes() -> frozenset[str]:
    # Read each time: an app may define its own RetryableToolError subclasses, with their
    # own codes, after the worker started.
    codes = set()
    stack: list[type[RetryableToolError]] = [RetryableToolError]
    while stack:
        cls = stack.pop()
        codes.add(cls.code)
        stack.extend(cls.__subclasses__())
    return frozenset(codes)


def _invocation_problem(envelope: Mapping[str, Any]) -> str | None:
    # Everything the handler's context and the result are built from must be there: a
    # message missing one would fail the same way on every retry.
    if not isinstance(envelope.get("run_id"), str):
        return f"'run_id' must be a string, got {envelope.get('run_id')!r}"
    payload = envelope["payload"]
    for name in ("tool", "tool_invocation_id", "agent"):
        if not isinstance(payload.get(name), str):
            return f"payload {name!r} must be a string, got {payload.get(name)!r}"
    if "args" not in payload:
        return "payload 'args' is missing"
    return None


def _plan_step_problem(envelope: Mapping[str, Any]) -> str | None:
    if not isinstance(envelope.get("run_id"), str):
        return f"'run_id' must be a string, got {envelope.get('run_id')!r}"
    payload = envelope["payload"]
    for name in ("tool_invocation_id", "plan_id", "spec_name"):
        if not isinstance(payload.get(name), str):
            return f"payload {name!r} must be a string, got {payload.get(name)!r}"
    if not isinstance(payload.get("actions"), list):
        return f"payload 'actions' must be a list, got {payload.get('actions')!r}"
    if not isinstance(payload.get("references", []), list):
        return f"payload 'references' must be a list, got {payload.get('references')!r}"
    return None
