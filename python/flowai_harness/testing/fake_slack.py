"""A local HTTP server that answers the Slack Web API methods an approvals bot uses, and plays
Slack's side of interactivity.

Owns :class:`FakeSlack`, :class:`SlackCall` and :class:`SlackMessage`. Point the official
``slack-sdk`` at it (``AsyncWebClient(token, base_url=fake.api_url)``, or the approvals
service's ``FLOWAI_SLACK_API_URL``); it answers over real HTTP, with Slack's JSON shapes:

- ``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral`` and
  ``views.open`` (JSON or form bodies, the token as ``Authorization: Bearer``);
- ``{"ok": false, "error": ...}`` as Slack answers it: ``not_authed`` / ``invalid_auth``
  (no or another token), ``channel_not_found`` (``chat.update`` names a channel by name,
  not id), ``message_not_found``, ``no_text``, ``invalid_trigger_id`` (a trigger it never
  issued or already used), ``unknown_method``; :meth:`FakeSlack.fail` queues more (``ratelimited``
  is answered 429 with ``Retry-After``, as Slack does).

Every call is recorded (:class:`SlackCall`: method, arguments, token) and every message kept
with its updates (:class:`SlackMessage`), so tests assert what was posted and wait for calls
(:meth:`FakeSlack.wait_for`). Channels named ``#name`` get a stable id (:meth:`channel_id`).

Slack's side: :meth:`FakeSlack.click` presses a button of a posted message and
:meth:`FakeSlack.submit` submits a modal the bot opened, each by POSTing the interactive
payload Slack would send (form-encoded ``payload``) to ``interactivity_url``, signed with
the app's signing secret by Slack's scheme (``X-Slack-Request-Timestamp``,
``X-Slack-Signature: v0=...``). The payload's button value and trigger id come from the
message and the click, as Slack's would.

Needs aiohttp (the ``dev`` and ``kafka`` extras). Must not import the runtime, the native
engine or any service.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import orjson

from ..kafka.approvals_http import SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER, slack_signature
from .local_server import LocalServer

try:
    import aiohttp
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "flowai_harness.testing.fake_slack needs aiohttp: pip install 'flowai-harness[dev]'"
    ) from exc

__all__ = ["FakeSlack", "SlackCall", "SlackMessage"]

METHODS: Final = frozenset(
    {"auth.test", "chat.postMessage", "chat.update", "chat.postEphemeral", "views.open"}
)


@dataclass(eq=False)
class SlackCall:
    """One Web API call the fake received."""

    seq: int
    method: str
    args: dict[str, Any]
    token: str | None = field(repr=False)
    error: str | None = None  # the error answered, None for ok


@dataclass(eq=False)
class SlackMessage:
    """A message posted to a channel, as it reads now, and what it read before."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def updates(self) -> int:
        return len(self.history)

    def buttons(self) -> dict[str, dict[str, Any]]:
        """The buttons it shows now, by action id."""
        found: dict[str, dict[str, Any]] = {}
        for block in self.blocks:
            if block.get("type") == "actions":
                for element in block.get("elements", []):
                    if element.get("type") == "button":
                        found[element["action_id"]] = {**element, "block_id": block.get("block_id")}
        return found

    def as_json(self) -> dict[str, Any]:
        return {"type": "message", "ts": self.ts, "text": self.text, "blocks": self.blocks}


class FakeSlack(LocalServer):
    """The fake Slack; see the module docstring.

    ``token``: the bot token it accepts. ``signing_secret``: what it signs interactive
    payloads with. ``interactivity_url``: where :meth:`click` and :meth:`submit` deliver
    them (settable after start, once the bot's server listens).
    """

    def __init__(
        self,
        *,
        token: str = "xoxb-fake-token",
        signing_secret: str = "fake-signing-secret-0123456789",
        interactivity_url: str | None = None,
        team_id: str = "T0FAKE001",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.signing_secret = signing_secret
        self.interactivity_url = interactivity_url
        self.team_id = team_id
        self.calls: list[SlackCall] = []
        self.messages: list[SlackMessage] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        super().__init__(host, port)
        self._changed: asyncio.Condition | None = None
        self._failures: dict[str, list[str]] = {}
        self._triggers: set[str] = set()
        self._counter = itertools.count(1)
        self._seconds = int(time.time())

    # --- lifecycle ---------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._on_call)
        app.router.add_get("/api/{method}", self._on_call)

    async def start(self) -> None:
        await super().start()
        self._changed = asyncio.Condition()

    @property
    def api_url(self) -> str:
        """The Web API base URL (``slack-sdk``'s ``base_url``)."""
        return f"{self.url}/api/"

    # --- what tests ask --------------------------------------------------------------------

    def channel_id(self, channel: str) -> str:
        """The id Slack gives a channel named ``#name`` (an id stays as it is)."""
        if not channel.startswith("#"):
            return channel
        return "C" + hashlib.sha256(channel.encode()).hexdigest()[:8].upper()

    def calls_of(self, method: str) -> list[SlackCall]:
        return [call for call in self.calls if call.method == method]

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``error`` (``ratelimited``: 429)."""
        self._failures.setdefault(method, []).extend([error] * times)

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        channel = self.channel_id(channel)
        return next((m for m in self.messages if (m.channel, m.ts) == (channel, ts)), None)

    async def wait_for(
        self, method: str, count: int = 1, *, within: float = 10.0, ok: bool = True
    ) -> list[SlackCall]:
        """Wait until ``count`` calls of ``method`` (answered ok, unless ``ok`` is False)
        arrived; returns them. Raises TimeoutError after ``within`` seconds."""
        assert self._changed is not None, "start the fake first"

        def found() -> list[SlackCall]:
            return [c for c in self.calls_of(method) if not ok or c.error is None]

        async with asyncio.timeout(within), self._changed:
            while len(found()) < count:
                await self._changed.wait()
        return found()

    # --- Slack's side: interactivity -------------------------------------------------------

    async def click(
        self,
        message: SlackMessage,
        action_id: str,
        *,
        user_id: str,
        user_name: str | None = None,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[int, bytes]:
        """Press the button ``action_id`` of ``message`` as ``user_id``: POST the
        ``block_actions`` payload to ``interactivity_url``; returns (status, body)."""
        button = message.buttons().get(action_id)
        if button is None:
            raise AssertionError(
                f"message {message.ts} has no button {action_id!r} now "
                f"(it has {sorted(message.buttons())})"
            )
        trigger = self._new_trigger()
        payload = {
            "type": "block_actions",
            "user": self._user(user_id, user_name),
            "api_app_id": "A0FAKE001",
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "trigger_id": trigger,
            "team": {"id": self.team_id, "domain": "fake"},
            "channel": {"id": message.channel, "name": "approvals"},
            "message": message.as_json(),
            "response_url": f"{self.url}/actions/{trigger}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": button.get("block_id"),
                    "text": button.get("text"),
                    "value": button.get("value"),
                    "style": button.get("style"),
                    "action_ts": self._next_ts(),
                }
            ],
        }
        return await self.deliver(payload, secret=secret, timestamp=timestamp)

    async def submit(
        self,
        view_id: str,
        values: dict[str, str | None],
        *,
        user_id: str,
        user_name: str | None = None,
    ) -> tuple[int, bytes]:
        """Submit the modal ``view_id`` the bot opened, its inputs filled from ``values``
        (by block id); returns (status, body)."""
        view = self.views.get(view_id)
        if view is None:
            raise AssertionError(f"no view {view_id!r} was opened (opened: {sorted(self.views)})")
        state: dict[str, dict[str, Any]] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                continue
            element = block["element"]
            state[block["block_id"]] = {
                element["action_id"]: {
                    "type": element["type"],
                    "value": values.get(block["block_id"]),
                }
            }
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "fake"},
            "user": self._user(user_id, user_name),
            "api_app_id": "A0FAKE001",
            "token": "legacy-verification-token",
            "trigger_id": self._new_trigger(),
            "view": {**view, "state": {"values": state}},
            "response_urls": [],
        }
        return await self.deliver(payload)

    async def deliver(
        self,
        payload: dict[str, Any],
        *,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[int, bytes]:
        """POST an interactive ``payload`` to ``interactivity_url`` as Slack does (signed
        with ``secret``, default the fake's signing secret, at ``timestamp``, default now)."""
        if self.interactivity_url is None:
            raise AssertionError("set FakeSlack.interactivity_url to the bot's /slack/events")
        body, headers = self.signed_form(payload, secret=secret, timestamp=timestamp)
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.interactivity_url, data=body, headers=headers) as response,
        ):
            return response.status, await response.read()

    def signed_form(
        self,
        payload: dict[str, Any],
        *,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The form body Slack sends for ``payload`` and the headers that sign it."""
        body = urlencode({"payload": orjson.dumps(payload).decode()}).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return body, {
            "Content-Type": "application/x-www-form-urlencoded",
            SLACK_TIMESTAMP_HEADER: stamp,
            SLACK_SIGNATURE_HEADER: slack_signature(
                secret if secret is not None else self.signing_secret, stamp, body
            ),
        }

    def _user(self, user_id: str, name: str | None) -> dict[str, str]:
        name = name or user_id.lower()
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _new_trigger(self) -> str:
        trigger = f"{next(self._counter)}.{self._seconds}.{os.urandom(16).hex()}"
        self._triggers.add(trigger)
        return trigger

    def _next_ts(self) -> str:
        return f"{self._seconds}.{next(self._counter):06d}"

    # --- the Web API -----------------------------------------------------------------------

    async def _on_call(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        call = SlackCall(len(self.calls) + 1, method, args, token)
        status, answer = self._answer(call)
        call.error = None if answer.get("ok") else str(answer.get("error"))
        self.calls.append(call)
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()
        headers = {"Retry-After": "1"} if status == 429 else None
        return web.Response(
            body=orjson.dumps(answer),
            status=status,
            content_type="application/json",
            headers=headers,
        )

    def _answer(self, call: SlackCall) -> tuple[int, dict[str, Any]]:
        if call.method not in METHODS:
            return 200, _error("unknown_method")
        if not call.token:
            return 200, _error("not_authed")
        if call.token != self.token:
            return 200, _error("invalid_auth")
        queued = self._failures.get(call.method)
        if queued:
            error = queued.pop(0)
            return (429 if error == "ratelimited" else 200), _error(error)
        return 200, getattr(self, "_" + call.method.replace(".", "_"))(call.args)

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "http://fake.slack.invalid/",
            "team": "Fake",
            "user": "flowai",
            "team_id": self.team_id,
            "user_id": "U0BOT0001",
            "bot_id": "B0BOT0001",
        }

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not isinstance(channel, str) or not channel:
            return _error("channel_not_found")
        text, blocks = args.get("text"), _blocks(args.get("blocks"))
        if not text and not blocks:
            return _error("no_text")
        message = SlackMessage(self.channel_id(channel), self._next_ts(), text or "", blocks)
        self.messages.append(message)
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "message": {**message.as_json(), "bot_id": "B0BOT0001"},
        }

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel"), args.get("ts")
        if not isinstance(channel, str) or channel.startswith("#"):
            return _error("channel_not_found")  # chat.update takes the channel's id
        message = self.message(channel, str(ts))
        if message is None:
            return _error("message_not_found")
        text, blocks = args.get("text"), _blocks(args.get("blocks"))
        if not text and not blocks:
            return _error("no_text")
        message.history.append({"text": message.text, "blocks": message.blocks})
        message.text, message.blocks = text or "", blocks
        return {"ok": True, "channel": channel, "ts": message.ts, "text": message.text}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not args.get("user"):
            return _error("channel_not_found" if not args.get("channel") else "user_not_found")
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        self.ephemerals.append(args)
        return {"ok": True, "message_ts": self._next_ts()}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        trigger = args.get("trigger_id")
        if trigger not in self._triggers:
            return _error("invalid_trigger_id")
        self._triggers.discard(trigger)
        view = args.get("view")
        if isinstance(view, str):
            view = orjson.loads(view)
        if not isinstance(view, dict) or view.get("type") != "modal":
            return _error("invalid_arguments")
        view_id = f"V{next(self._counter):08d}"
        opened = {**view, "id": view_id, "team_id": self.team_id, "hash": view_id.lower()}
        self.views[view_id] = opened
        return {"ok": True, "view": {**opened, "state": {"values": {}}}}


def _error(code: str) -> dict[str, Any]:
    return {"ok": False, "error": code}


def _blocks(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = orjson.loads(value)
    return list(value) if isinstance(value, Sequence) else []


async def _arguments(request: web.Request) -> dict[str, Any]:
    """A call's arguments: the query string, then a JSON or form body."""
    args: dict[str, Any] = dict(request.query)
    raw = await request.read()
    if not raw:
        return args
    if request.content_type == "application/json":
        body = orjson.loads(raw)
        if isinstance(body, dict):
            args.update(body)
    else:
        args.update(parse_qsl(raw.decode(), keep_blank_values=True))
    return args
