"""Approvals in Slack: each request posted as a Block Kit message, decided by its buttons.

Owns :class:`SlackSettings`, :class:`SlackBridge`, :func:`render` and :func:`decision_modal`.

- **Posting.** Every pending approval is posted once (however many instances run: a lease
  in Redis, :mod:`.postings`) through the official ``slack-sdk`` (``AsyncWebClient``; its
  base URL is ``FLOWAI_SLACK_API_URL``, so tests point it at
  :mod:`flowai_harness.testing.fake_slack`) to the channel the app's routes pick
  (:class:`~.policy.SlackRoutes`): what is asked (tool and arguments, or plan and its
  actions), the agent, thread, glimpse, expiry, the two-person progress when the request
  asks for more than one approver, and Approve / Reject / Revise buttons.
- **Following.** When the approval is decided (by anyone, on any route: the decision is read
  back from the topic), expires or is cancelled, the message is updated (``chat.update``) to
  say so and who decided, and its buttons go. A background loop does the Slack calls; it
  retries failed ones with a growing pause and notices expiries by the clock.
- **Interactivity.** Slack POSTs a click to ``/slack/events`` (form-encoded ``payload``),
  verified with the app's signing secret by Slack's scheme
  (:func:`flowai_harness.kafka.approvals_http.verify_slack`). The Slack user decides as
  ``slack:<user id>``, checked against the tenant's approver policy by the desk. Approve
  decides at once; Reject and Revise open a modal (``views.open``) for feedback and, for a
  revision, the revised arguments as JSON; its submission decides. A refusal (not allowed,
  decided already, expired) is told to the user alone (``chat.postEphemeral``), or shown in
  the modal.

Must not import Kafka or another service; decides only through the
:class:`~.desk.ApprovalDesk`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs

import aiohttp
import orjson
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from flowai_harness.errors import FlowaiError, InvalidInputError, UsageError
from flowai_harness.kafka.approvals_http import (
    SLACK_SIGNATURE_HEADER,
    SLACK_TIMESTAMP_HEADER,
    verify_slack,
)

from .desk import ApprovalDesk, DecisionRequest
from .pending import Approval
from .policy import SlackRoutes
from .postings import Postings

__all__ = [
    "APPROVE",
    "MODAL",
    "REJECT",
    "REVISE",
    "SlackBridge",
    "SlackSettings",
    "decision_modal",
    "render",
    "slack_approver",
]

log = logging.getLogger("flowai.approvals.slack")

APPROVE: Final = "flowai_approve"
REJECT: Final = "flowai_reject"
REVISE: Final = "flowai_revise"
MODAL: Final = "flowai_decision"
ACTIONS_BLOCK: Final = "flowai_decide"
FEEDBACK: Final = "feedback"
PARTIAL: Final = "partial"
SLACK_PREFIX: Final = "slack:"
# Slack's limits: 3000 characters of section text, 150 of a header.
_SECTION_MAX: Final = 2900
_HEADER_MAX: Final = 150
# How long a click waits for its decision to be read back (Slack gives a request 3 s).
_CLICK_CONFIRM_S: Final = 2.0
_RETRY_FIRST_S: Final = 1.0
_RETRY_MAX_S: Final = 60.0

Key = tuple[str, str]


def slack_approver(user_id: str) -> str:
    """How a Slack user is named as an approver (and in the approvers policy)."""
    return f"{SLACK_PREFIX}{user_id}"


@dataclass(frozen=True)
class SlackSettings:
    """The Slack app the service posts as and hears from."""

    bot_token: str
    signing_secret: str
    api_url: str | None = None  # None: Slack's own
    sweep: float = 1.0  # seconds between looks for expiries and retries
    lease: float = 30.0  # seconds an instance may hold a message's work

    def __post_init__(self) -> None:
        if not self.bot_token or not self.signing_secret:
            raise UsageError(
                "Slack needs both the bot token (SLACK_BOT_TOKEN) and the signing secret "
                "(SLACK_SIGNING_SECRET): the first posts, the second proves a click came "
                "from Slack"
            )
        if self.sweep <= 0 or self.lease <= 0:
            raise UsageError("the Slack sweep and lease must be positive (seconds)")


# --- the message -----------------------------------------------------------------------------


def _state(approval: Approval, now: int) -> str:
    """What a message must show; a message is updated when this changes."""
    status = approval.status(now)
    if status == "decided":
        assert approval.decision is not None
        return f"decided:{approval.decision.id}"
    if status == "pending":
        return f"pending:{len(approval.progress)}"
    return status


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _who(approver: str | None) -> str:
    if approver is None:
        return "someone"
    if approver.startswith(SLACK_PREFIX):
        return f"<@{approver.removeprefix(SLACK_PREFIX)}>"
    return f"*{_escape(approver)}*"


def _when(ms: int) -> str:
    seconds = ms // 1000
    fallback = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
    return f"<!date^{seconds}^{{date_short_pretty}} at {{time_secs}}|{fallback}>"


def _code(value: Any, limit: int = _SECTION_MAX - 40) -> str:
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    if len(text) > limit:
        text = text[: limit - 20] + "\n… (cut)"
    return f"```{_escape(text)}```"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:_SECTION_MAX]}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:_SECTION_MAX]}]}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }
    if style is not None:
        button["style"] = style
    return button


def render(approval: Approval, now: int) -> tuple[str, list[dict[str, Any]]]:
    """The message for ``approval`` as it stands at ``now``: (notification text, blocks)."""
    what = f"{approval.kind} {approval.target}"
    header = f"Approval needed: {what}"[:_HEADER_MAX]
    fields = [
        {"type": "mrkdwn", "text": f"*Tenant*\n{_escape(approval.tenant)}"},
        {"type": "mrkdwn", "text": f"*Agent*\n{_escape(approval.agent or '-')}"},
        {"type": "mrkdwn", "text": f"*Thread*\n`{_escape(approval.thread_id)}`"},
        {
            "type": "mrkdwn",
            "text": "*Expires*\n"
            + ("never" if approval.expires_at is None else _when(approval.expires_at)),
        },
    ]
    asked = "*Plan*" if approval.kind == "plan" else "*Arguments*"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {"type": "section", "fields": fields},
        _section(f"{asked}\n{_code(approval.payload)}"),
    ]
    if approval.glimpse is not None:
        blocks.append(_section(f"*Glimpse*\n{_code(approval.glimpse, 1200)}"))
    if approval.approvals_required > 1:
        approvers = ", ".join(_who(name) for name in approval.progress) or "none yet"
        blocks.append(
            _context(
                f"Approvals: {len(approval.progress)} of {approval.approvals_required} "
                f"(different people): {approvers}"
            )
        )
    status = approval.status(now)
    text = f"{header} (tenant {approval.tenant}, thread {approval.thread_id})"
    if status == "pending":
        value = orjson.dumps({"t": approval.tenant, "a": approval.id}).decode()
        blocks.append(
            {
                "type": "actions",
                "block_id": ACTIONS_BLOCK,
                "elements": [
                    _button("Approve", APPROVE, value, "primary"),
                    _button("Reject", REJECT, value, "danger"),
                    _button("Revise", REVISE, value),
                ],
            }
        )
    else:
        outcome = _outcome(approval, status)
        blocks.append(_section(outcome))
        text = f"{what}: {outcome}"
    blocks.append(_context(f"approval `{_escape(approval.id)}`"))
    return text, blocks


def _outcome(approval: Approval, status: str) -> str:
    if status == "expired":
        assert approval.expires_at is not None
        return f":hourglass: *Expired* at {_when(approval.expires_at)}: rejected (timeout)"
    if status == "cancelled":
        assert approval.cancelled_at is not None
        return f":no_entry_sign: *Cancelled* with its run at {_when(approval.cancelled_at)}"
    decision = approval.decision
    assert decision is not None
    word = {
        "approve": ":white_check_mark: *Approved*",
        "reject": ":x: *Rejected*",
        "revise": ":pencil2: *Revision requested*",
    }.get(decision.outcome, decision.outcome)
    text = f"{word} by {_who(decision.approver)} at {_when(decision.ts)}"
    if decision.feedback:
        text += "\n>" + _escape(decision.feedback).replace("\n", "\n>")
    return text


def decision_modal(
    tenant: str, approval_id: str, outcome: str, channel: str | None
) -> dict[str, Any]:
    """The modal a Reject or Revise click opens: feedback, and for a revision the revised
    arguments (or plan) as JSON."""
    revise = outcome == "revise"
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": FEEDBACK,
            "optional": revise,
            "label": {"type": "plain_text", "text": "What should change?" if revise else "Why?"},
            "element": {"type": "plain_text_input", "action_id": FEEDBACK, "multiline": True},
        }
    ]
    if revise:
        blocks.append(
            {
                "type": "input",
                "block_id": PARTIAL,
                "optional": True,
                "label": {"type": "plain_text", "text": "Revised arguments or plan (JSON)"},
                "element": {"type": "plain_text_input", "action_id": PARTIAL, "multiline": True},
            }
        )
    return {
        "type": "modal",
        "callback_id": MODAL,
        "private_metadata": orjson.dumps(
            {"t": tenant, "a": approval_id, "o": outcome, "c": channel}
        ).decode(),
        "title": {"type": "plain_text", "text": "Revise" if revise else "Reject"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


# --- the bridge ------------------------------------------------------------------------------


class SlackBridge:
    """Keeps the Slack messages in step with the desk's approvals, and decides from clicks."""

    def __init__(
        self,
        settings: SlackSettings,
        desk: ApprovalDesk,
        postings: Postings,
        routes: SlackRoutes,
        *,
        client: AsyncWebClient | None = None,
    ) -> None:
        self.settings = settings
        self.desk = desk
        self.postings = postings
        self.routes = routes
        kwargs: dict[str, Any] = {"token": settings.bot_token, "timeout": 10}
        if settings.api_url:
            kwargs["base_url"] = settings.api_url
        self.client = client or AsyncWebClient(**kwargs)
        self.ready = False
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        # What each message shows, as far as this instance knows (saves a Redis read).
        self._shown: dict[Key, str] = {}
        self._retries: dict[Key, tuple[float, float]] = {}  # key -> (due, pause)
        self._expiries: list[tuple[int, Key]] = []
        self._expiring: set[Key] = set()
        self._unrouted: set[str] = set()
        desk.on_change = self.touch

    async def check_token(self) -> None:
        """Ask Slack who the token is (``auth.test``): a token Slack refuses stops the start;
        a Slack that cannot be reached does not (the API serves on, the posts are retried)."""
        try:
            answer = await self.client.auth_test()
        except SlackApiError as exc:
            raise UsageError(
                f"Slack refused the bot token (auth.test: {exc.response.get('error')}); check "
                "SLACK_BOT_TOKEN (the app's OAuth & Permissions page, xoxb-...)"
            ) from None
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "cannot reach Slack's Web API at %s (%r); posting as soon as it answers "
                "(check FLOWAI_SLACK_API_URL and the network if this lasts)",
                self.client.base_url,
                exc,
            )
            return
        log.info("posting to Slack as %s of team %s", answer.get("user"), answer.get("team"))

    def touch(self, approval: Approval) -> None:
        """Have the approval's message follow its state (posted, updated) soon."""
        if not self.ready:
            return  # the sweep at ready covers what was read before
        key = (approval.tenant, approval.id)
        if (
            approval.expires_at is not None
            and key not in self._expiring
            and approval.status(self.desk.clock()) == "pending"
        ):
            self._expiring.add(key)
            heapq.heappush(self._expiries, (approval.expires_at, key))
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def start(self) -> None:
        """Called once the desk has read the topics: queue what may need posting or updating."""
        self.ready = True
        for approval in self.desk.book:
            if approval.status(self.desk.clock()) == "pending":
                self.touch(approval)
        for tenant, approval_id in await self.postings.open():
            posted = self.desk.book.get(tenant, approval_id)
            if posted is not None:
                self.touch(posted)

    async def run(self, stopping: asyncio.Event) -> None:
        """Do the Slack calls until ``stopping`` is set."""
        while not stopping.is_set():
            self._requeue_due()
            try:
                async with asyncio.timeout(self.settings.sweep):
                    key = await self._queue.get()
            except TimeoutError:
                continue
            self._queued.discard(key)
            known = self.desk.book.get(*key)
            if known is None:
                continue
            try:
                await self.sync(known)
            except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                self._retry_later(key, f"{type(exc).__name__}: {_slack_error(exc)}")
            except Exception:
                log.exception("following approval %s of %s in Slack failed", key[1], key[0])
                self._retry_later(key, "unexpected error")

    def _requeue_due(self) -> None:
        now = time.monotonic()
        for key, (due, _) in list(self._retries.items()):
            if due <= now:
                self._enqueue(key)
        wall = self.desk.clock()
        while self._expiries and self._expiries[0][0] <= wall:
            _, key = heapq.heappop(self._expiries)
            self._expiring.discard(key)
            self._enqueue(key)

    def _enqueue(self, key: Key) -> None:
        approval = self.desk.book.get(*key)
        if approval is not None:
            self.touch(approval)

    def _retry_later(self, key: Key, why: str) -> None:
        _, pause = self._retries.get(key, (0.0, _RETRY_FIRST_S / 2))
        pause = min(pause * 2, _RETRY_MAX_S)
        self._retries[key] = (time.monotonic() + pause, pause)
        log.warning(
            "Slack message of %s (%s): %s; trying again in %g s", key[1], key[0], why, pause
        )

    async def sync(self, approval: Approval) -> None:
        """Post or update the approval's message so it shows the approval's state."""
        key = (approval.tenant, approval.id)
        now = self.desk.clock()
        state = _state(approval, now)
        pending = state.startswith("pending")
        if self._shown.get(key) == state:
            self._retries.pop(key, None)
            return
        posting = await self.postings.get(*key)
        if (posting is None and not pending) or (posting is not None and posting.shown == state):
            # Decided before it was posted, or shown already (by another instance).
            log.info("approval %s of %s needs nothing in Slack now", approval.id, approval.tenant)
            self._done(key, state)
            return
        token = await self.postings.lease(*key)
        if token is None:
            # Another instance is at it; if it dies, its lease runs out and we take over.
            self._retries[key] = (time.monotonic() + self.settings.lease, self.settings.lease)
            return
        try:
            posting = await self.postings.get(*key)
            if posting is not None and posting.shown == state:
                log.info(
                    "approval %s of %s needs nothing in Slack now", approval.id, approval.tenant
                )
                self._done(key, state)
                return
            text, blocks = render(approval, now)
            if posting is None:
                channel = await self.routes.channel(approval.view(now))
                if channel is None:
                    if approval.tenant not in self._unrouted:
                        self._unrouted.add(approval.tenant)
                        log.warning(
                            "no Slack channel for approvals of tenant %r: set "
                            "FLOWAI_SLACK_CHANNEL or the app's slack_channels",
                            approval.tenant,
                        )
                    self._done(key, state)
                    return
                answer = await self.client.chat_postMessage(
                    channel=channel, text=text, blocks=blocks
                )
                await self.postings.posted(*key, str(answer["channel"]), str(answer["ts"]), state)
                log.info("posted approval %s of %s to %s", approval.id, approval.tenant, channel)
            else:
                await self.client.chat_update(
                    channel=posting.channel, ts=posting.ts, text=text, blocks=blocks
                )
                await self.postings.shown(*key, state, final=not pending)
            self._done(key, state)
        finally:
            await self.postings.release(*key, token)

    def _done(self, key: Key, state: str) -> None:
        self._shown[key] = state
        self._retries.pop(key, None)

    # --- interactivity ---------------------------------------------------------------------

    async def interact(
        self, raw: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any] | None]:
        """Handle one request Slack sent to ``/slack/events``: (status, JSON body or None).
        Raises :class:`~flowai_harness.errors.SignatureError` when Slack did not sign it."""
        verify_slack(
            self.settings.signing_secret,
            headers.get(SLACK_TIMESTAMP_HEADER),
            headers.get(SLACK_SIGNATURE_HEADER),
            raw,
        )
        payload = _payload(raw)
        kind = payload.get("type")
        if kind == "url_verification":  # the Events API's handshake, should it be set here
            return 200, {"challenge": payload.get("challenge")}
        if kind == "block_actions":
            await self._clicked(payload)
            return 200, None
        if kind == "view_submission":
            return 200, await self._submitted(payload)
        return 200, None

    async def _clicked(self, payload: Mapping[str, Any]) -> None:
        actions = payload.get("actions") or []
        action = actions[0] if actions else {}
        action_id = action.get("action_id")
        if action_id not in (APPROVE, REJECT, REVISE):
            return
        target = _json(action.get("value"), "the button's value")
        if not isinstance(target, dict):
            raise InvalidInputError("the button's value must be a JSON object")
        tenant, approval_id = str(target.get("t")), str(target.get("a"))
        user = str((payload.get("user") or {}).get("id"))
        channel = (payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get(
            "channel_id"
        )
        approver = slack_approver(user)
        try:
            if action_id == APPROVE:
                await self.desk.decide(
                    tenant,
                    approval_id,
                    DecisionRequest("approve", approver),
                    confirm_wait=_CLICK_CONFIRM_S,
                )
                return
            await self.desk.check(tenant, approval_id, approver)
        except FlowaiError as exc:
            await self._tell(channel, user, exc.message)
            return
        outcome = "reject" if action_id == REJECT else "revise"
        await self.client.views_open(
            trigger_id=str(payload.get("trigger_id")),
            view=decision_modal(tenant, approval_id, outcome, channel),
        )

    async def _submitted(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        view = payload.get("view") or {}
        if view.get("callback_id") != MODAL:
            return None
        meta = _json(view.get("private_metadata"), "the modal's private_metadata")
        outcome = meta.get("o") if isinstance(meta, dict) else None
        if outcome not in ("reject", "revise"):
            raise InvalidInputError(
                f"the modal's outcome must be reject or revise, got {outcome!r}"
            )
        values = (view.get("state") or {}).get("values") or {}
        feedback = _input(values, FEEDBACK)
        partial_text = _input(values, PARTIAL)
        try:
            partial = orjson.loads(partial_text) if partial_text else None
        except orjson.JSONDecodeError as exc:
            return _modal_error(PARTIAL, f"not JSON: {exc}")
        user = str((payload.get("user") or {}).get("id"))
        try:
            await self.desk.decide(
                str(meta.get("t")),
                str(meta.get("a")),
                DecisionRequest(outcome, slack_approver(user), feedback, partial),
                confirm_wait=_CLICK_CONFIRM_S,
            )
        except FlowaiError as exc:
            return _modal_error(FEEDBACK, exc.message)
        return None  # an empty answer closes the modal

    async def _tell(self, channel: str | None, user: str, text: str) -> None:
        if not channel:
            return
        with contextlib.suppress(SlackClientError, aiohttp.ClientError, TimeoutError):
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text)


def _payload(raw: bytes) -> dict[str, Any]:
    """The JSON of an interactive request (form field ``payload``) or of an Events API one."""
    text = raw.decode(errors="replace")
    if not text.startswith("{"):
        fields = parse_qs(text)
        if "payload" not in fields:
            raise InvalidInputError("a Slack interactive request carries a 'payload' form field")
        text = fields["payload"][0]
    body = _json(text, "the Slack payload")
    if not isinstance(body, dict):
        raise InvalidInputError("the Slack payload must be a JSON object")
    return body


def _json(text: str | None, what: str) -> Any:
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not JSON: {exc}") from None


def _input(values: Mapping[str, Any], block: str) -> str | None:
    value = ((values.get(block) or {}).get(block) or {}).get("value")
    return value if isinstance(value, str) and value.strip() else None


def _modal_error(block: str, message: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {block: message[:500]}}


def _slack_error(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error"))
    return str(exc) or type(exc).__name__
