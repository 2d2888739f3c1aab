"""What the approvals service does, without Kafka's loop, HTTP's plumbing or Slack's API.

Owns :class:`ApprovalDesk`, :class:`DecisionRequest` (:func:`parse_decision`),
:func:`decision_id` and :class:`Rejected`.

- :meth:`ApprovalDesk.on_approval_request`, :meth:`~ApprovalDesk.on_approval_decision` and
  :meth:`~ApprovalDesk.on_cancel_run` fold one message of ``approval-requests``,
  ``approval-decisions`` or ``queries`` (only its ``CancelRun``) into the
  :class:`~.pending.ApprovalBook`, validated against the message models (``schemas/v1``);
  a message it cannot use raises :class:`Rejected` with the dead-letter reason. A decision
  whose signature does not verify (a forgery, or a key this service was not given) is left
  out of the book, as the runtime leaves it out of the run: it is logged, not dead-lettered
  (the runtime dead-letters it).
- :meth:`ApprovalDesk.decide` turns a human's decision into a signed
  ``flowai.v1.ApprovalDecision``: the approval must be known to the tenant (another
  tenant's id reads as unknown), the approver allowed by the policy, the approval open (not
  decided, expired or cancelled) and not decided by this approver already.

**Crash safety: publish first, let the topic decide.** There is no claim to take or give
back. A decision's id is derived from (tenant, approval, approver) (:func:`decision_id`), so
publishing it twice (a retry after a crash, before or after the broker took it) yields
copies the book and the runtime both ignore. The service publishes (acks=all), then waits
until its consumer has folded that id: the book then holds every decision published before
it on the thread's partition, in the order the runtime sees them, so the answer is the
runtime's: 202 when the decision counted (``confirmed``), 409 naming the one that came
first when another decision won the race. A 202 therefore always means the decision is
durably on Kafka; if reading it back takes longer than the wait, the answer is still 202,
with ``confirmed: false``. A process killed at any step leaves nothing held: before the
publish nothing happened, after it the decision is on the topic and a retry by the same
approver answers 202 with it (the same choice) or 409 (another one).

Errors are the package's typed errors (the HTTP layer maps each class to a status):
InvalidInputError (400), ApproverNotAllowedError (403), UnknownApprovalError (404),
ApprovalAlreadyResolvedError / ApprovalExpiredError (409), BusError (503).

Must not import aiohttp, Redis, Slack or another service; talks to Kafka only through a
:class:`flowai_harness.kafka.bus.Publisher`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import orjson
import pydantic

from flowai_harness.errors import (
    ApprovalAlreadyResolvedError,
    ApprovalExpiredError,
    ApproverNotAllowedError,
    BusError,
    DecisionUnverifiedError,
    InvalidInputError,
    UnknownApprovalError,
    UnknownSchemaError,
)
from flowai_harness.kafka import bus, telemetry
from flowai_harness.kafka.decision_auth import DecisionSigner, DecisionVerifier
from flowai_harness.messages import ApprovalDecision, ApprovalRequest, CancelRun, Envelope

from .pending import Approval, ApprovalBook, Decision
from .policy import AppPolicy

__all__ = [
    "ApprovalDesk",
    "DecisionRequest",
    "Rejected",
    "Step",
    "decision_id",
    "parse_decision",
]

log = logging.getLogger("flowai.approvals")

OUTCOMES: Final = ("approve", "reject", "revise")
MAX_APPROVER: Final = 256
_FIELDS: Final = ("outcome", "approver", "feedback", "partial")
_CANCEL: Final = CancelRun.NAME.encode()

# Where deciding can be held for a crash test (FLOWAI_APPROVALS_TEST_HOLD, see service.py).
Step = Literal["before-publish", "after-publish"]


class Rejected(Exception):
    """A message on an input topic this service cannot use: dead-letter it, go on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    """A decision as a human asked for it."""

    outcome: Literal["approve", "reject", "revise"]
    approver: str
    feedback: str | None = None
    partial: Any = None


def parse_decision(raw: bytes) -> DecisionRequest:
    """Check a decision body; :class:`InvalidInputError` says what is wrong."""
    example = '{"outcome": "approve", "approver": "alice"}'
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the body is not JSON ({exc}); send e.g. {example}") from None
    if not isinstance(body, dict):
        raise InvalidInputError(
            f"the body must be a JSON object, got {type(body).__name__}; send e.g. {example}"
        )
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise InvalidInputError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; a decision has {', '.join(_FIELDS)}"
        )
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        raise InvalidInputError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    approver = body.get("approver")
    if not isinstance(approver, str) or not approver.strip():
        raise InvalidInputError(
            f"approver is required: a non-empty string naming who decides, got {approver!r}"
        )
    if len(approver) > MAX_APPROVER:
        raise InvalidInputError(f"approver must be at most {MAX_APPROVER} characters")
    feedback = body.get("feedback")
    if feedback is not None and not isinstance(feedback, str):
        raise InvalidInputError(
            f"feedback must be a string (or left out), got {type(feedback).__name__}"
        )
    return DecisionRequest(
        outcome=outcome, approver=approver, feedback=feedback, partial=body.get("partial")
    )


def decision_id(tenant: str, approval_id: str, approver: str) -> str:
    """The id of ``approver``'s decision on an approval: the same at every attempt, so a
    repeated publish is a copy (an approver counts once per approval anyway)."""
    digest = hashlib.sha256("\0".join((tenant, approval_id, approver)).encode()).hexdigest()
    return f"decision/{digest[:32]}"


Waiter = Callable[[Callable[[], bool], float], Awaitable[bool]]


class ApprovalDesk:
    """The approvals of every tenant, and deciding them; see the module docstring."""

    def __init__(
        self,
        policy: AppPolicy,
        publisher: bus.Publisher,
        topics: bus.Topics,
        *,
        signer: DecisionSigner | None,
        verifier: DecisionVerifier | None,
        clock: Callable[[], int] = bus.now_ms,
        catch_up: Callable[[], Awaitable[None]] | None = None,
        wait_folded: Waiter | None = None,
        confirm_wait: float = 10.0,
        hold: Callable[[Step], Awaitable[None]] | None = None,
    ) -> None:
        """``signer`` signs what this desk publishes (None: unsigned, development only);
        ``verifier`` checks the decisions read from the topic (None: all are taken).
        ``catch_up`` waits (bounded) until everything on the input topics right now has
        been observed; a lookup of an unknown id calls it once before answering 404, so a
        request a bot just read on the topic is found. ``wait_folded(check, seconds)``
        waits until ``check()`` holds after a fold (False when the time ran out)."""
        self.policy = policy
        self.publisher = publisher
        self.topics = topics
        self.book = ApprovalBook()
        self.signer = signer
        self.verifier = verifier
        self.clock = clock
        self.confirm_wait = confirm_wait
        self._catch_up = catch_up
        self._wait_folded = wait_folded
        self._hold = hold
        # Called with an approval whose view changed (a new request, a counted decision, a
        # cancellation): the Slack messages follow it.
        self.on_change: Callable[[Approval], None] | None = None
        self.unverified = 0
        # False until the topics were read up to where they ended at start: before that an
        # answer could miss approvals or decisions.
        self.ready = catch_up is None

    # --- the topics ------------------------------------------------------------------------

    def on_approval_request(self, value: bytes | None) -> None:
        """``ApprovalRequest`` (``approval-requests``): a gate asks; the book gains it (or a
        copy reporting more approvers)."""
        approval, new = self.book.add_request(_validated(ApprovalRequest, value))
        if new:
            self._changed([approval])

    def on_approval_decision(self, value: bytes | None) -> None:
        """``ApprovalDecision`` (``approval-decisions``): a decision read back from the topic,
        counted once its signature checks out."""
        message = _validated(ApprovalDecision, value)
        if self._verified(message, value or b""):
            counted = self.book.add_decision(message)
            if counted is not None:
                self._changed([counted])

    def on_cancel_run(self, value: bytes | None) -> None:
        """A ``queries`` message: a well-formed ``CancelRun`` withdraws its run's pending
        approvals; anything else there is the runtime's to judge, not ours."""
        if value is None or _CANCEL not in value:
            return
        try:
            cancel = CancelRun.model_validate_json(value)
        except pydantic.ValidationError:
            return
        self._changed(self.book.cancel(cancel.tenant, cancel.thread_id, cancel.run_id, cancel.ts))

    def _changed(self, approvals: list[Approval]) -> None:
        if self.on_change is not None:
            for approval in approvals:
                self.on_change(approval)

    def _verified(self, message: ApprovalDecision, raw: bytes) -> bool:
        if self.verifier is None:
            return True
        try:
            self.verifier.verify(orjson.loads(raw))
        except DecisionUnverifiedError as exc:
            self.unverified += 1
            log.warning(
                "ignoring decision %s on %s of %s (approver %r): %s",
                message.id,
                message.payload.approval_id,
                message.tenant,
                message.payload.approver,
                exc.message,
            )
            return False
        return True

    # --- the API ---------------------------------------------------------------------------

    def listing(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's approvals waiting for a decision, expired ones marked."""
        self._check_ready()
        now = self.clock()
        return [approval.view(now) for approval in self.book.waiting(tenant)]

    async def lookup(self, tenant: str, approval_id: str) -> Approval:
        """The tenant's approval ``approval_id`` (decided or not)."""
        self._check_ready()
        approval = self.book.get(tenant, approval_id)
        if approval is None and self._catch_up is not None:
            await self._catch_up()
            approval = self.book.get(tenant, approval_id)
        if approval is None:
            raise UnknownApprovalError(
                f"no approval {approval_id!r} for tenant {tenant!r}; check the id and the "
                "tenant (list them with GET /v1/tenants/{tenant}/approvals)"
            )
        return approval

    async def check(self, tenant: str, approval_id: str, approver: str) -> Approval:
        """The approval, if ``approver`` may decide it now; else the error saying why."""
        approval = await self.lookup(tenant, approval_id)
        now = self.clock()
        if not await self.policy.approvers.allows(tenant, approver, approval.view(now)):
            raise ApproverNotAllowedError(
                f"approver {approver!r} may not decide for tenant {tenant!r} "
                f"(allowed: {self.policy.approvers.describe(tenant)})"
            )
        _check_open(approval, approver, now)
        return approval

    async def decide(
        self,
        tenant: str,
        approval_id: str,
        request: DecisionRequest,
        *,
        confirm_wait: float | None = None,
    ) -> dict[str, Any]:
        """Publish ``request`` as the approver's decision; returns it as the API answers."""
        approval = await self.lookup(tenant, approval_id)
        earlier = approval.vote_of(request.approver)
        decision = Decision(
            id=decision_id(tenant, approval_id, request.approver),
            outcome=request.outcome,
            approver=request.approver,
            ts=self.clock(),
            feedback=request.feedback,
            partial=request.partial,
        )
        if earlier is not None and earlier.same_choice(decision):
            # A retry of a decision that is on the topic already (the answer was lost).
            return _answer(approval, earlier, confirmed=True)
        approval = await self.check(tenant, approval_id, request.approver)
        envelope = self._envelope(approval, decision)
        if self._hold is not None:
            await self._hold("before-publish")
        try:
            await self.publisher.publish(
                self.topics.approval_decisions,
                bus.thread_key(tenant, approval.thread_id),
                envelope,
                telemetry.approval_wait(
                    tenant,
                    approval_id,
                    approval.requested_at,
                    **{"flowai.approver": request.approver, "flowai.outcome": request.outcome},
                ),
            )
        except Exception as exc:
            log.exception("publishing the decision on %s failed", approval_id)
            raise BusError(
                f"the decision could not be published ({type(exc).__name__}); try again"
            ) from exc
        if self._hold is not None:
            await self._hold("after-publish")
        log.info(
            "approval %s of %s: %s by %s published%s",
            approval_id,
            tenant,
            request.outcome,
            request.approver,
            "" if self.signer is not None else " UNSIGNED",
        )
        wait = self.confirm_wait if confirm_wait is None else confirm_wait
        if not await self._folded(lambda: decision.id in approval.seen, wait):
            # Durably on the topic, not read back yet: whether it counted is not known.
            return _answer(approval, decision, confirmed=False)
        counted = approval.counted(decision.id)
        if counted is not None and counted.same_choice(decision):
            return _answer(approval, counted, confirmed=True)
        # Read back, and it did not count: another decision came first on the topic (the
        # runtime honours that one), or this approver's own (another choice, sent at the
        # same moment, or by another route).
        _check_open(approval, request.approver, self.clock())
        raise ApprovalAlreadyResolvedError(
            f"approval {approval_id!r} did not take this decision; read it again"
        )

    async def _folded(self, check: Callable[[], bool], within: float) -> bool:
        if check():
            return True
        if self._wait_folded is None:
            return False
        return await self._wait_folded(check, within)

    def _envelope(self, approval: Approval, decision: Decision) -> bytes:
        payload: dict[str, Any] = {
            "approval_id": approval.id,
            "outcome": decision.outcome,
            "approver": decision.approver,
        }
        if decision.feedback is not None:
            payload["feedback"] = decision.feedback
        if decision.partial is not None:
            payload["partial"] = decision.partial
        envelope: dict[str, Any] = {
            "schema": ApprovalDecision.NAME,
            "id": decision.id,
            "tenant": approval.tenant,
            "thread_id": approval.thread_id,
            "run_id": approval.run_id,
            # The request it answers (its envelope id is the approval id).
            "causation_id": approval.id,
            "ts": decision.ts,
            "payload": payload,
        }
        if self.signer is not None:
            envelope = self.signer.signed(envelope)
        return orjson.dumps(envelope)

    def _check_ready(self) -> None:
        if not self.ready:
            raise BusError(
                "the approvals service is still reading the approval topics; try again in a moment",
                code="NOT_READY",
            )


def _answer(approval: Approval, decision: Decision, *, confirmed: bool) -> dict[str, Any]:
    return {
        "approval_id": approval.id,
        "tenant": approval.tenant,
        **decision.view(),
        "confirmed": confirmed,
        "approvals_required": approval.approvals_required,
        "approvals": approval.progress,
    }


def _check_open(approval: Approval, approver: str, now: int) -> None:
    if approval.decision is not None:
        raise _already_decided(approval)
    mine = approval.vote_of(approver)
    if mine is not None or approver in approval.reported:
        outcome = "approve" if mine is None else mine.outcome
        raise ApprovalAlreadyResolvedError(
            f"{approver!r} already decided approval {approval.id!r} ({outcome}); it "
            f"needs {approval.approvals_required} different approvers",
            details={} if mine is None else {"decision": mine.view()},
        )
    if approval.cancelled_at is not None:
        raise ApprovalAlreadyResolvedError(
            f"approval {approval.id!r} was cancelled with its run at {approval.cancelled_at} "
            "(ms since the epoch); there is nothing left to decide",
            details={"cancelled_at": approval.cancelled_at},
        )
    if approval.expires_at is not None and now >= approval.expires_at:
        raise ApprovalExpiredError(
            f"approval {approval.id!r} expired at {approval.expires_at} (ms since the epoch); "
            "the runtime resolves it as rejected (timeout)",
            details={"expires_at": approval.expires_at},
        )


def _already_decided(approval: Approval) -> ApprovalAlreadyResolvedError:
    decision = approval.decision
    assert decision is not None
    return ApprovalAlreadyResolvedError(
        f"approval {approval.id!r} was already decided: {decision.outcome} by "
        f"{decision.approver!r}; the first decision wins",
        details={"decision": decision.view()},
    )


M = TypeVar("M", bound=Envelope)


def _validated(model: type[M], value: bytes | None) -> M:
    fields = None if value is None else bus.peek(value)
    if fields is None:
        raise Rejected(InvalidInputError.code, "the message is not a JSON object (an envelope)")
    schema = fields.get("schema")
    if schema != model.NAME:
        raise Rejected(
            UnknownSchemaError.code if isinstance(schema, str) else InvalidInputError.code,
            f"schema {schema!r} does not belong on this topic; it carries {model.NAME}",
        )
    try:
        message = model.model_validate_json(value or b"")
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'message'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:5]
        )
        raise Rejected(InvalidInputError.code, f"not a valid {model.NAME}: {problems}") from None
    if isinstance(message, ApprovalRequest) and message.payload.resourceId != message.tenant:
        raise Rejected(
            InvalidInputError.code,
            f"resourceId {message.payload.resourceId!r} does not match the envelope's tenant "
            f"{message.tenant!r}",
        )
    return message
