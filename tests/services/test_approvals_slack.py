"""Approvals in Slack: the official slack-sdk against the fake Slack Web API over HTTP, the
service's desk and HTTP app in this process, message leases in the real Redis.

What Slack does is played by :class:`~flowai_harness.testing.fake_slack.FakeSlack`: it
records the Web API calls, and clicks buttons / submits modals by POSTing signed interactive
payloads to the app's ``/slack/events``, as Slack would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from approvals_helpers import (
    NOW,
    SIGNER,
    VERIFIER,
    Clock,
    Topic,
    approval_request,
    id_of,
    make_desk,
    post,
    serving,
    url,
)
from redis.asyncio import Redis
from services.approvals.desk import ApprovalDesk
from services.approvals.policy import SlackRoutes
from services.approvals.postings import Postings
from services.approvals.slack import APPROVE, REJECT, REVISE, SlackBridge, SlackSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from flowai_harness.errors import UsageError
from flowai_harness.kafka.approvals_http import slack_signature
from flowai_harness.testing.fake_slack import FakeSlack, SlackMessage

ALICE, BOB, MALLORY = "U0ALICE01", "U0BOB0001", "U0MALLORY"
APPROVERS = {"acme": {f"slack:{ALICE}", f"slack:{BOB}", "carol"}}
ROUTES = SlackRoutes({"acme": "#acme-approvals", "acme/*/delete_rows": "#dba"})


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as slack:
        yield slack


@dataclass
class Instance:
    """One approvals instance: its desk, its Slack bridge, its HTTP app's base URL."""

    desk: ApprovalDesk
    bridge: SlackBridge
    client: Any


@contextlib.asynccontextmanager
async def instance(
    fake: FakeSlack,
    redis: Redis,
    namespace: str,
    *,
    topic: Topic | None = None,
    clock: Clock | None = None,
    routes: SlackRoutes = ROUTES,
    lease: float = 30.0,
    requests: tuple[bytes, ...] = (),
) -> AsyncIterator[Instance]:
    """An instance that has read ``requests`` (and the topic so far) and is running."""
    desk, _ = make_desk(approvers=APPROVERS, topic=topic, clock=clock, slack_routes=routes)
    for request in requests:
        desk.on_approval_request(request)
    if topic is not None:
        for _, _, value in topic.sent:
            desk.on_approval_decision(value)
    settings = SlackSettings(
        bot_token=fake.token,
        signing_secret=fake.signing_secret,
        api_url=fake.api_url,
        sweep=0.02,
        lease=lease,
    )
    bridge = SlackBridge(settings, desk, Postings(redis, namespace=namespace), routes)
    await bridge.check_token()
    stopping = asyncio.Event()
    async with serving(desk, bridge) as client:
        fake.interactivity_url = str(client.make_url("/slack/events"))
        await bridge.start()
        task = asyncio.create_task(bridge.run(stopping))
        try:
            yield Instance(desk, bridge, client)
        finally:
            stopping.set()
            await asyncio.wait_for(task, 5)


async def until(check: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"waiting for {what}: {within} s passed"
        await asyncio.sleep(0.01)


async def posted(fake: FakeSlack, count: int = 1) -> list[SlackMessage]:
    await fake.wait_for("chat.postMessage", count)
    return fake.messages


async def updated(fake: FakeSlack, message: SlackMessage, times: int = 1) -> SlackMessage:
    await fake.wait_for("chat.update", times)
    assert message.updates == times
    return message


def text_of(message: SlackMessage) -> str:
    return orjson.dumps(message.blocks).decode()


# --- posting ---------------------------------------------------------------------------------


async def test_a_pending_approval_is_posted_to_its_channel_with_buttons(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    tool = approval_request(call="c1", kind="tool", expires_at=NOW + 60_000, glimpse={"rows": 42})
    plan = approval_request(thread="thread-2", call="c2")
    async with instance(fake, redis, namespace, requests=(tool, plan)):
        messages = await posted(fake, 2)

    by_channel = {message.channel: message for message in messages}
    dba = by_channel[fake.channel_id("#dba")]
    assert dba.blocks[0]["text"]["text"] == "Approval needed: tool delete_rows"
    assert set(dba.buttons()) == {APPROVE, REJECT, REVISE}
    assert orjson.loads(dba.buttons()[APPROVE]["value"]) == {"t": "acme", "a": id_of(tool)}
    shown = text_of(dba)
    for fact in ("acme", "planner", "thread-1", "Glimpse", "rows", id_of(tool), "<!date^"):
        assert fact in shown
    assert "Approval needed: tool delete_rows" in dba.text
    general = by_channel[fake.channel_id("#acme-approvals")]
    assert general.blocks[0]["text"]["text"] == "Approval needed: plan p1"
    assert "reorder" in text_of(general)
    [call] = fake.calls_of("auth.test")
    assert call.token == fake.token


async def test_an_approval_is_posted_once_however_many_instances_run(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    topic = Topic()
    request = approval_request()
    async with (
        instance(fake, redis, namespace, topic=topic, lease=0.5, requests=(request,)) as a,
        instance(fake, redis, namespace, topic=topic, lease=0.5, requests=(request,)) as b,
    ):
        [message] = await posted(fake)
        key = ("acme", id_of(request))
        await until(
            lambda: all(i.bridge._shown.get(key) == "pending:0" for i in (a, b)),
            "both instances to know the message is posted",
        )
        status, _ = await fake.click(message, APPROVE, user_id=ALICE)
        assert status == 200
        await until(
            lambda: all(str(i.bridge._shown.get(key, "")).startswith("decided:") for i in (a, b)),
            "both instances to know the message shows the decision",
        )

    assert len(fake.calls_of("chat.postMessage")) == 1
    assert len(fake.calls_of("chat.update")) == 1
    assert len(topic.sent) == 1


async def test_nothing_is_posted_without_a_channel(
    fake: FakeSlack, redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    request = approval_request("globex")
    async with instance(
        fake, redis, namespace, routes=SlackRoutes({"acme": "#a"}), requests=(request,)
    ) as one:
        await until(
            lambda: ("globex", id_of(request)) in one.bridge._shown, "the bridge to pass it over"
        )

    assert fake.calls_of("chat.postMessage") == []
    assert "no Slack channel for approvals of tenant 'globex'" in caplog.text


async def test_a_refused_token_stops_the_start(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    desk, _ = make_desk()
    settings = SlackSettings(bot_token="xoxb-wrong", signing_secret="s", api_url=fake.api_url)
    bridge = SlackBridge(settings, desk, Postings(redis, namespace=namespace), ROUTES)

    with pytest.raises(UsageError, match="invalid_auth"):
        await bridge.check_token()


async def test_a_slack_that_cannot_be_reached_does_not_stop_the_start(
    redis: Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    desk, _ = make_desk()
    settings = SlackSettings(bot_token="xoxb-1", signing_secret="s", api_url="http://127.0.0.1:9/")
    bridge = SlackBridge(settings, desk, Postings(redis, namespace=namespace), ROUTES)

    await bridge.check_token()

    assert "cannot reach Slack's Web API at http://127.0.0.1:9/" in caplog.text


# --- deciding from Slack ---------------------------------------------------------------------


async def test_an_approve_click_decides_and_the_message_shows_who(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    topic = Topic()
    request = approval_request()
    async with instance(fake, redis, namespace, topic=topic, requests=(request,)):
        [message] = await posted(fake)
        status, body = await fake.click(message, APPROVE, user_id=ALICE)
        await updated(fake, message)

    assert (status, body) == (200, b"")
    [decision] = topic.decisions()
    assert decision["payload"]["approver"] == f"slack:{ALICE}"
    assert decision["payload"]["outcome"] == "approve"
    assert VERIFIER.verify(decision) == SIGNER.kid
    assert message.buttons() == {}
    assert f"*Approved* by <@{ALICE}>" in text_of(message)


async def test_a_click_by_someone_the_policy_does_not_name_decides_nothing(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    topic = Topic()
    request = approval_request()
    async with instance(fake, redis, namespace, topic=topic, requests=(request,)):
        [message] = await posted(fake)
        status, _ = await fake.click(message, APPROVE, user_id=MALLORY)
        rejected, _ = await fake.click(message, REJECT, user_id=MALLORY)
        await fake.wait_for("chat.postEphemeral", 2)

    assert (status, rejected) == (200, 200)
    assert topic.sent == []
    assert fake.calls_of("views.open") == []
    assert message.updates == 0
    for told in fake.ephemerals:
        assert told["user"] == MALLORY
        assert f"slack:{MALLORY}' may not decide" in told["text"]


async def test_reject_opens_a_modal_whose_feedback_goes_with_the_decision(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    topic = Topic()
    request = approval_request()
    async with instance(fake, redis, namespace, topic=topic, requests=(request,)):
        [message] = await posted(fake)
        await fake.click(message, REJECT, user_id=BOB)
        [opened] = await fake.wait_for("views.open")
        assert topic.sent == []  # nothing decided before the modal is sent
        view_id = next(iter(fake.views))
        status, body = await fake.submit(view_id, {"feedback": "not on a Friday"}, user_id=BOB)
        await updated(fake, message)

    assert opened.args["view"]["title"]["text"] == "Reject"
    assert (status, body) == (200, b"")
    [decision] = topic.decisions()
    assert (decision["payload"]["outcome"], decision["payload"]["feedback"]) == (
        "reject",
        "not on a Friday",
    )
    assert decision["payload"]["approver"] == f"slack:{BOB}"
    shown = text_of(message)
    assert f"*Rejected* by <@{BOB}>" in shown
    assert "not on a Friday" in shown


async def test_revise_takes_the_revised_arguments_as_json(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    topic = Topic()
    request = approval_request()
    async with instance(fake, redis, namespace, topic=topic, requests=(request,)):
        [message] = await posted(fake)
        await fake.click(message, REVISE, user_id=ALICE)
        await fake.wait_for("views.open")
        view_id = next(iter(fake.views))
        bad_status, bad = await fake.submit(view_id, {"partial": "{rows: 5"}, user_id=ALICE)
        status, _ = await fake.submit(
            view_id, {"feedback": "fewer", "partial": '{"rows": 5}'}, user_id=ALICE
        )
        await updated(fake, message)

    assert bad_status == 200
    answer = orjson.loads(bad)
    assert answer["response_action"] == "errors"
    assert "not JSON" in answer["errors"]["partial"]
    assert status == 200
    [decision] = topic.decisions()
    assert decision["payload"]["partial"] == {"rows": 5}
    assert decision["payload"]["outcome"] == "revise"
    assert "*Revision requested*" in text_of(message)


async def test_a_modal_sent_after_someone_else_decided_says_so(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    topic = Topic()
    request = approval_request()
    async with instance(fake, redis, namespace, topic=topic, requests=(request,)) as one:
        [message] = await posted(fake)
        await fake.click(message, REJECT, user_id=BOB)
        await fake.wait_for("views.open")
        status, _ = await post(
            one.client,
            url("acme", id_of(request), decision=True),
            {"outcome": "approve", "approver": "carol"},
        )
        assert status == 202
        _, body = await fake.submit(next(iter(fake.views)), {"feedback": "no"}, user_id=BOB)
        await updated(fake, message)

    assert "already decided: approve by 'carol'" in orjson.loads(body)["errors"]["feedback"]
    assert "*Approved* by *carol*" in text_of(message)
    assert len(topic.sent) == 1


@pytest.mark.parametrize(
    ("sign", "says"),
    [
        ({"secret": "not-the-apps-signing-secret"}, b"does not match"),
        ({"timestamp": int(time.time()) - 301}, b"more than 300 s"),
    ],
    ids=["wrong-secret", "stale"],
)
async def test_a_click_slack_did_not_sign_is_refused(
    fake: FakeSlack, redis: Redis, namespace: str, sign: dict[str, Any], says: bytes
) -> None:
    topic = Topic()
    request = approval_request()
    async with instance(fake, redis, namespace, topic=topic, requests=(request,)):
        [message] = await posted(fake)
        status, body = await fake.click(message, APPROVE, user_id=ALICE, **sign)

    assert status == 401
    assert b"SIGNATURE_INVALID" in body
    assert says in body
    assert topic.sent == []


@pytest.mark.parametrize(
    "body",
    [b"nothing=here", b"payload=%7Bnot+json", b"payload=%5B1%5D"],
    ids=["no-payload", "not-json", "not-an-object"],
)
async def test_a_signed_request_that_is_not_a_slack_payload_is_400(
    fake: FakeSlack, redis: Redis, namespace: str, body: bytes
) -> None:
    async with instance(fake, redis, namespace) as one:
        stamp = str(int(time.time()))
        response = await one.client.post(
            "/slack/events",
            data=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": slack_signature(fake.signing_secret, stamp, body),
            },
        )
        answer = orjson.loads(await response.read())

    assert response.status == 400
    assert answer["error"]["code"] == "INPUT_MALFORMED"
    assert "payload" in answer["error"]["message"]


async def test_the_events_api_handshake_is_answered(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    async with instance(fake, redis, namespace):
        status, body = await fake.deliver({"type": "url_verification", "challenge": "c-123"})

    assert (status, orjson.loads(body)) == (200, {"challenge": "c-123"})


# --- following the approval ------------------------------------------------------------------


async def test_two_person_progress_is_shown_until_the_second_approve(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    topic = Topic()
    request = approval_request(approvalsRequired=2)
    async with instance(fake, redis, namespace, topic=topic, requests=(request,)):
        [message] = await posted(fake)
        assert "Approvals: 0 of 2" in text_of(message)
        await fake.click(message, APPROVE, user_id=ALICE)
        await updated(fake, message, 1)
        halfway = text_of(message)
        await fake.click(message, APPROVE, user_id=ALICE)  # the same person again
        await fake.click(message, APPROVE, user_id=BOB)
        await updated(fake, message, 2)

    assert f"Approvals: 1 of 2 (different people): <@{ALICE}>" in halfway
    assert APPROVE in halfway  # still open: the buttons stay
    assert len(topic.sent) == 2
    assert f"*Approved* by <@{BOB}>" in text_of(message)
    assert message.buttons() == {}


async def test_expiry_and_cancellation_are_shown(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    clock = Clock()
    expiring = approval_request(call="c1", expires_at=NOW + 1000)
    doomed = approval_request(thread="thread-2", call="c2")
    async with instance(fake, redis, namespace, clock=clock, requests=(expiring, doomed)) as one:
        messages = await posted(fake, 2)
        clock.now = NOW + 1000
        cancel = {
            "schema": "flowai.v1.CancelRun",
            "id": "cancel-2",
            "tenant": "acme",
            "thread_id": "thread-2",
            "run_id": "run-1",
            "causation_id": None,
            "ts": NOW + 10,
            "payload": {},
        }
        one.desk.on_cancel_run(orjson.dumps(cancel))
        await fake.wait_for("chat.update", 2)

    shown = {message.ts: text_of(message) for message in messages}
    assert sum("*Expired*" in text for text in shown.values()) == 1
    assert sum("*Cancelled* with its run" in text for text in shown.values()) == 1
    assert all(message.buttons() == {} for message in messages)


async def test_a_decision_made_while_no_instance_ran_is_shown_after_a_restart(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    topic = Topic()
    request = approval_request()
    async with instance(fake, redis, namespace, topic=topic, requests=(request,)):
        [message] = await posted(fake)
    # Decided through another instance of another deployment, say, while this one was down.
    other, _ = make_desk(approvers=APPROVERS, topic=topic)
    other.on_approval_request(request)
    async with serving(other) as client:
        status, _ = await post(
            client,
            url("acme", id_of(request), decision=True),
            {"outcome": "reject", "approver": "carol"},
        )
        assert status == 202
    topic.readers.remove(other)

    async with instance(fake, redis, namespace, topic=topic, requests=(request,)):
        await updated(fake, message)

    assert len(fake.calls_of("chat.postMessage")) == 1
    assert "*Rejected* by *carol*" in text_of(message)


async def test_failed_slack_calls_are_tried_again(
    fake: FakeSlack, redis: Redis, namespace: str
) -> None:
    fake.fail("chat.postMessage", "ratelimited")
    fake.fail("chat.postMessage", "internal_error")
    async with instance(fake, redis, namespace, requests=(approval_request(),)):
        await posted(fake)

    errors = [call.error for call in fake.calls_of("chat.postMessage")]
    assert errors == ["ratelimited", "internal_error", None]
    assert len(fake.messages) == 1


# --- the fake answers the SDK as Slack would -------------------------------------------------


async def test_the_fake_answers_the_real_sdk_with_slacks_errors(fake: FakeSlack) -> None:
    client = AsyncWebClient(token=fake.token, base_url=fake.api_url)
    intruder = AsyncWebClient(token="xoxb-other", base_url=fake.api_url)
    posted_ = await client.chat_postMessage(channel="#general", text="hello")

    with pytest.raises(SlackApiError) as refused:
        await intruder.chat_postMessage(channel="#general", text="hi")
    with pytest.raises(SlackApiError) as by_name:
        await client.chat_update(channel="#general", ts=str(posted_["ts"]), text="x")
    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel=str(posted_["channel"]), ts="1.000001", text="x")
    with pytest.raises(SlackApiError) as trigger:
        await client.views_open(trigger_id="made-up", view={"type": "modal", "title": {}})
    updated_ = await client.chat_update(
        channel=str(posted_["channel"]), ts=str(posted_["ts"]), text="bye"
    )

    assert posted_["channel"] == fake.channel_id("#general")
    assert [e.value.response["error"] for e in (refused, by_name, missing, trigger)] == [
        "invalid_auth",
        "channel_not_found",
        "message_not_found",
        "invalid_trigger_id",
    ]
    assert updated_["ok"] is True
    assert fake.messages[0].text == "bye"
    assert fake.messages[0].history == [{"text": "hello", "blocks": []}]
