"""The approvals service: its HTTP API, who may call it (per-tenant secrets over method, path
and body), who may decide, the signed decisions it publishes, first-decision-wins by the
topic's order, the two-person rule, cancellations, and the book rebuilt from the topics.

Most tests run the service's desk and aiohttp app in this process, with approval requests
fed in as the topics would and an in-process stand-in for the decisions topic
(approvals_helpers.Topic). The ``connected`` ones at the end run the whole service (Kafka
loop, HTTP server) on the real Kafka under a fresh topic prefix: rebuilding after a restart,
dead letters, finding a request published a moment ago, cancellations on ``queries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from approvals_helpers import (
    NOW,
    PRIVATE_PEM,
    PUBLIC_PEM,
    SECRETS,
    SIGNER,
    TOPICS,
    VERIFIER,
    Clock,
    Topic,
    approval_decision,
    approval_request,
    get,
    id_of,
    make_desk,
    post,
    serving,
    signed,
    url,
)
from redis.asyncio import Redis
from services.approvals.command import build_parser, parse_address, settings_from_args
from services.approvals.desk import Rejected, decision_id
from services.approvals.policy import (
    AppPolicy,
    ApproverPolicy,
    SlackRoutes,
    TenantSecrets,
    load_policy,
)
from services.approvals.service import ApprovalsService, ServiceSettings
from slack_sdk.signature import SignatureVerifier

from flowai_harness import messages
from flowai_harness.errors import (
    AppLoadError,
    ApprovalAlreadyResolvedError,
    ApprovalExpiredError,
    ApproverNotAllowedError,
    InvalidInputError,
    SignatureError,
    UnknownApprovalError,
    UsageError,
)
from flowai_harness.kafka import approvals_http, bus
from flowai_harness.kafka.decision_auth import DecisionSigner, generate_keys

APPROVE = {"outcome": "approve", "approver": "alice"}


# --- listing, reading, deciding --------------------------------------------------------------


async def test_list_get_and_decide_publishes_a_signed_decision() -> None:
    desk, topic = make_desk()
    first, second = approval_request(call="c1"), approval_request(thread="thread-2", call="c2")
    for request in (first, second, approval_request("globex", call="c3")):
        desk.on_approval_request(request)

    async with serving(desk) as client:
        status, listing = await get(client, url("acme"))
        assert status == 200
        assert [a["id"] for a in listing["approvals"]] == [id_of(first), id_of(second)]
        assert {a["status"] for a in listing["approvals"]} == {"pending"}

        status, one = await get(client, url("acme", id_of(first)))
        assert status == 200
        assert one == {
            "id": id_of(first),
            "tenant": "acme",
            "thread_id": "thread-1",
            "run_id": "run-1",
            "kind": "plan",
            "target": "p1",
            "agent": "planner",
            "payload": {"planId": "p1", "actions": [{"kind": "reorder"}]},
            "glimpse": None,
            "correlation_id": "c1",
            "requested_at": NOW - 1000,
            "expires_at": None,
            "status": "pending",
            "approvals_required": 1,
            "approvals": [],
            "decision": None,
        }

        body = {"outcome": "revise", "approver": "alice", "feedback": "fewer", "partial": {"q": 1}}
        status, decided = await post(client, url("acme", id_of(first), decision=True), body)
        assert status == 202
        assert decided["approval_id"] == id_of(first)
        assert decided["confirmed"] is True
        assert (decided["outcome"], decided["approver"], decided["feedback"]) == (
            "revise",
            "alice",
            "fewer",
        )

        [(sent_to, key, value)] = topic.sent
        assert sent_to == TOPICS.approval_decisions
        assert key == b"acme/thread-1"  # lands on the partition of the runtime owning it
        message = messages.decode(value)
        assert isinstance(message, messages.ApprovalDecision)
        assert message.id == decided["decision_id"] == decision_id("acme", id_of(first), "alice")
        assert (message.tenant, message.thread_id, message.run_id) == ("acme", "thread-1", "run-1")
        assert message.causation_id == id_of(first)
        assert message.ts == NOW
        assert message.payload.model_dump(exclude_none=True, exclude={"signature"}) == {
            "approval_id": id_of(first),
            "outcome": "revise",
            "feedback": "fewer",
            "partial": {"q": 1},
            "approver": "alice",
        }
        # Signed with the service's key: the runtime can tell it came from here.
        assert VERIFIER.verify(orjson.loads(value)) == SIGNER.kid

        status, one = await get(client, url("acme", id_of(first)))
        assert (one["status"], one["decision"]["approver"]) == ("decided", "alice")
        status, listing = await get(client, url("acme"))
        assert [a["id"] for a in listing["approvals"]] == [id_of(second)]


async def test_the_topic_decides_between_concurrent_decisions_of_two_instances() -> None:
    # Two instances (each with its own book) publishing to, and reading, one topic.
    topic = Topic()
    desks = [make_desk(topic=topic)[0] for _ in range(2)]
    request = approval_request()
    for desk in desks:
        desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desks[0]) as a, serving(desks[1]) as b:
        answers = await asyncio.gather(
            post(a, path, {"outcome": "approve", "approver": "alice"}),
            post(b, path, {"outcome": "reject", "approver": "bob"}),
        )
        again = await post(a, path, {"outcome": "approve", "approver": "carol"})

    statuses = sorted(status for status, _ in answers)
    assert statuses == [202, 409]
    winner = next(body for status, body in answers if status == 202)
    loser = next(body for status, body in answers if status == 409)
    assert loser["error"]["code"] == "APPROVAL_ALREADY_RESOLVED"
    assert "already decided" in loser["error"]["message"]
    assert loser["decision"]["outcome"] == winner["outcome"]
    assert loser["decision"]["approver"] == winner["approver"]
    assert again[0] == 409
    assert again[1]["decision"]["decision_id"] == winner["decision_id"]
    # The first on the topic is the winner, in both books, as in the runtime.
    assert topic.decisions()[0]["id"] == winner["decision_id"]
    assert {desk.book.get("acme", id_of(request)).decision.id for desk in desks} == {  # type: ignore[union-attr]
        winner["decision_id"]
    }


async def test_unknown_and_another_tenants_ids_read_the_same() -> None:
    desk, topic = make_desk()
    theirs = approval_request("globex")
    desk.on_approval_request(theirs)

    async with serving(desk) as client:
        unknown = await get(client, url("acme", "appr:nope/run-1/x"))
        other = await get(client, url("acme", id_of(theirs)))
        decided = await post(client, url("acme", id_of(theirs), decision=True), APPROVE)
        listing = await get(client, url("acme"))

    assert unknown[0] == other[0] == decided[0] == 404
    assert other[1]["error"]["code"] == "UNKNOWN_APPROVAL"
    # Nothing tells another tenant's approval from one that does not exist.
    assert other[1]["error"]["message"] == unknown[1]["error"]["message"].replace(
        "appr:nope/run-1/x", id_of(theirs)
    )
    assert listing[1]["approvals"] == []
    assert topic.sent == []


@pytest.mark.parametrize(
    ("approvers", "allowed", "refused"),
    [
        ({"acme": {"alice"}}, "alice", "bob"),
        ({"*": ["alice", "carol"]}, "carol", "bob"),
        ({"acme": lambda who, approval: who.endswith("@acme.example")}, "a@acme.example", "b@x"),
        ({"globex": {"alice"}}, None, "alice"),  # no entry for acme: nobody decides for it
    ],
    ids=["names", "any-tenant", "check", "no-entry"],
)
async def test_approver_must_be_allowed_for_the_tenant(
    approvers: object, allowed: str | None, refused: str
) -> None:
    desk, topic = make_desk(approvers=approvers)
    request = approval_request()
    desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        status, body = await post(client, path, {"outcome": "approve", "approver": refused})
        assert status == 403
        assert body["error"]["code"] == "APPROVER_NOT_ALLOWED"
        assert refused in body["error"]["message"]
        if allowed is not None:
            status, _ = await post(client, path, {"outcome": "approve", "approver": allowed})
            assert status == 202
    assert len(topic.sent) == (allowed is not None)


async def test_async_approver_check_gets_the_approval_and_a_raising_one_refuses() -> None:
    seen: list[tuple[str, str]] = []

    async def check(approver: str, approval: Mapping[str, Any]) -> bool:
        seen.append((approver, approval["kind"]))
        if approver == "mallory":
            raise RuntimeError("directory down")
        return approval["kind"] == "plan"

    desk, _ = make_desk(approvers={"acme": check})
    request = approval_request()
    desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        refused = await post(client, path, {"outcome": "approve", "approver": "mallory"})
        accepted = await post(client, path, {"outcome": "approve", "approver": "alice"})

    assert (refused[0], accepted[0]) == (403, 202)
    assert seen == [("mallory", "plan"), ("alice", "plan")]


def test_approvers_policy_is_checked_when_the_app_loads() -> None:
    with pytest.raises(AppLoadError, match="must be a mapping"):
        ApproverPolicy.from_app(["alice"])
    with pytest.raises(AppLoadError, match=r"approvers\['acme'\] must be a set of approver names"):
        ApproverPolicy.from_app({"acme": "alice"})


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "the body is not JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        ({"approver": "alice"}, "outcome must be one of approve, reject, revise, got None"),
        ({"outcome": "yes", "approver": "alice"}, "got 'yes'"),
        ({"outcome": "approve"}, "approver is required"),
        ({"outcome": "approve", "approver": "  "}, "approver is required"),
        ({"outcome": "approve", "approver": 7}, "approver is required"),
        ({"outcome": "approve", "approver": "a" * 300}, "at most 256 characters"),
        ({"outcome": "reject", "approver": "a", "feedback": 3}, "feedback must be a string"),
        ({"outcome": "approve", "approver": "a", "why": "x"}, "unknown field(s) 'why'"),
    ],
)
async def test_bad_bodies_are_400_saying_what_is_wrong(body: Any, says: str) -> None:
    desk, topic = make_desk()
    request = approval_request()
    desk.on_approval_request(request)

    async with serving(desk) as client:
        status, answer = await post(client, url("acme", id_of(request), decision=True), body)

    assert status == 400
    assert answer["error"]["code"] == "INPUT_MALFORMED"
    assert says in answer["error"]["message"]
    assert topic.sent == []


async def test_expired_approval_is_marked_and_cannot_be_decided() -> None:
    clock = Clock()
    desk, topic = make_desk(clock=clock)
    request = approval_request(expires_at=NOW + 500)
    desk.on_approval_request(request)

    async with serving(desk) as client:
        _, before = await get(client, url("acme"))
        clock.now = NOW + 500
        _, after = await get(client, url("acme"))
        status, body = await post(client, url("acme", id_of(request), decision=True), APPROVE)

    assert [a["status"] for a in before["approvals"]] == ["pending"]
    assert [a["status"] for a in after["approvals"]] == ["expired"]
    assert status == 409
    assert body["error"]["code"] == "APPROVAL_EXPIRED"
    assert "timeout" in body["error"]["message"]
    assert body["expires_at"] == NOW + 500
    assert topic.sent == []


async def test_not_ready_until_the_topics_are_read() -> None:
    desk, _ = make_desk()
    desk.ready = False

    async with serving(desk) as client:
        health = await get(client, "/healthz")
        listing = await get(client, url("acme"))
        desk.ready = True
        ready = await get(client, "/healthz")

    assert health[0] == listing[0] == 503
    assert listing[1]["error"]["code"] == "NOT_READY"
    assert ready == (200, {"ready": True})


# --- nothing lost, nothing stuck -------------------------------------------------------------


async def test_a_failed_publish_leaves_nothing_behind_and_a_retry_decides() -> None:
    desk, topic = make_desk()
    topic.fail_next = 1
    request = approval_request()
    desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        failed = await post(client, path, APPROVE)
        retried = await post(client, path, APPROVE)

    assert failed[0] == 503
    assert failed[1]["error"]["code"] == "BUS_ERROR"
    assert retried[0] == 202
    assert len(topic.sent) == 1


async def test_a_retry_after_a_lost_answer_gets_the_same_decision_and_no_copy_counts() -> None:
    # The first attempt reached the topic, and its answer was lost (the process died, say):
    # a new instance reads the topic and the approver tries again.
    topic = Topic()
    first, _ = make_desk(topic=topic)
    request = approval_request()
    first.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)
    async with serving(first) as client:
        original = await post(client, path, APPROVE)
    topic.readers.clear()

    second, _ = make_desk(topic=topic)
    second.on_approval_request(request)
    for _, _, value in topic.sent:
        second.on_approval_decision(value)
    async with serving(second) as client:
        again = await post(client, path, APPROVE)
        changed_mind = await post(client, path, {"outcome": "reject", "approver": "alice"})

    assert original[0] == again[0] == 202
    assert again[1]["decision_id"] == original[1]["decision_id"]
    assert again[1]["confirmed"] is True
    assert changed_mind[0] == 409
    assert changed_mind[1]["decision"]["outcome"] == "approve"
    assert len(topic.sent) == 1, "the retry answered from the topic, publishing nothing"


async def test_an_approver_sending_two_choices_at_once_gets_one_of_them() -> None:
    # Both pass the checks and are published (one id: the second is a copy) before the
    # consumer reads either back.
    desk, topic = make_desk()
    topic.deliver = False
    read_back = asyncio.Event()

    async def wait_folded(check: Callable[[], bool], within: float) -> bool:
        await read_back.wait()
        return check()

    desk._wait_folded = wait_folded
    both_sent = asyncio.Event()
    publish = topic.publish

    async def publish_and_count(*args: Any) -> None:
        await publish(*args)
        if len(topic.sent) == 2:
            both_sent.set()

    topic.publish = publish_and_count  # type: ignore[method-assign]
    request = approval_request()
    desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        answers = asyncio.gather(
            post(client, path, APPROVE),
            post(client, path, {"outcome": "reject", "approver": "alice"}),
        )
        await asyncio.wait_for(both_sent.wait(), 10)
        for _, _, value in topic.sent:
            desk.on_approval_decision(value)
        read_back.set()
        statuses = await answers

    first = topic.decisions()[0]["payload"]["outcome"]
    asked = ["approve", "reject"]
    assert [status for status, _ in statuses] == [202 if o == first else 409 for o in asked]
    [(_, refused)] = [(status, body) for status, body in statuses if status == 409]
    assert refused["decision"]["outcome"] == first


async def test_a_publish_not_read_back_in_time_is_202_unconfirmed_and_copies_do_not_count() -> None:
    desk, topic = make_desk()
    topic.deliver = False  # this instance's consumer lags behind
    request = approval_request()
    desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        first = await post(client, path, APPROVE)
        second = await post(client, path, APPROVE)  # not read back yet: published again
        for _, _, value in topic.sent:  # the consumer catches up: both copies
            desk.on_approval_decision(value)
        shown = await get(client, url("acme", id_of(request)))

    assert (first[0], first[1]["confirmed"]) == (202, False)
    assert (second[0], second[1]["decision_id"]) == (202, first[1]["decision_id"])
    assert len(topic.sent) == 2
    approval = desk.book.get("acme", id_of(request))
    assert approval is not None
    assert [vote.id for vote in approval.votes] == [first[1]["decision_id"]]
    assert shown[1]["status"] == "decided"


# --- decisions on the topic must verify ------------------------------------------------------


async def test_approval_decision_forged_on_the_topic_decides_nothing_here() -> None:
    desk, topic = make_desk(approvers={"acme": {"alice"}})
    request = approval_request()
    desk.on_approval_request(request)
    mallory, _ = generate_keys()
    forgeries = [
        approval_decision(id_of(request), "approve", "mallory", signer=None),
        approval_decision(
            id_of(request), "approve", "mallory", signer=DecisionSigner.from_pem(mallory)
        ),
        # A real signature, moved to another approval.
        orjson.dumps(
            {
                **(
                    moved := orjson.loads(
                        approval_decision("appr:thread-1/run-1/other", "approve", "alice")
                    )
                ),
                "payload": {**moved["payload"], "approval_id": id_of(request)},
            }
        ),
    ]
    for forged in forgeries:
        desk.on_approval_decision(forged)

    assert desk.unverified == 3
    async with serving(desk) as client:
        _, shown = await get(client, url("acme", id_of(request)))
        status, _ = await post(client, url("acme", id_of(request), decision=True), APPROVE)

    assert shown["status"] == "pending"
    assert status == 202
    assert len(topic.sent) == 1


async def test_approval_decision_signed_by_a_trusted_key_counts_like_our_own() -> None:
    desk, _ = make_desk()
    request = approval_request()
    desk.on_approval_request(request)
    desk.on_approval_decision(approval_decision(id_of(request), "reject", "bot"))

    async with serving(desk) as client:
        status, answer = await post(client, url("acme", id_of(request), decision=True), APPROVE)

    assert status == 409
    assert answer["decision"]["approver"] == "bot"


# --- the two-person rule, cancellations ------------------------------------------------------


async def test_approval_decision_by_two_distinct_approvers_opens_a_two_person_approval() -> None:
    desk, topic = make_desk()
    request = approval_request(approvalsRequired=2)
    desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        alice = await post(client, path, APPROVE)
        _, half = await get(client, url("acme", id_of(request)))
        alice_again = await post(client, path, APPROVE)
        alice_rejects = await post(client, path, {"outcome": "reject", "approver": "alice"})
        bob = await post(client, path, {"outcome": "approve", "approver": "bob"})
        carol = await post(client, path, {"outcome": "reject", "approver": "carol"})
        _, done = await get(client, url("acme", id_of(request)))

    assert (alice[0], alice[1]["approvals"], alice[1]["approvals_required"]) == (202, ["alice"], 2)
    assert (half["status"], half["approvals"]) == ("pending", ["alice"])
    assert alice_again[0] == 202  # the same choice again: answered, not counted twice
    assert alice_rejects[0] == 409
    assert "needs 2 different approvers" in alice_rejects[1]["error"]["message"]
    assert (bob[0], bob[1]["approvals"]) == (202, ["alice", "bob"])
    assert carol[0] == 409
    assert (done["status"], done["decision"]["approver"]) == ("decided", "bob")
    assert len(topic.sent) == 2


async def test_approval_request_shows_reported_approvers_who_may_not_approve_again() -> None:
    desk, topic = make_desk()
    changed: list[str] = []
    desk.on_change = lambda approval: changed.append(approval.id)
    request = approval_request(approvalsRequired=3, approvals=["alice"])
    desk.on_approval_request(request)
    # A copy of the request (a resumed run) reporting one more; then one reporting less.
    again = approval_request(approvalsRequired=3, approvals=[{"approver": "alice"}, "dave"])
    desk.on_approval_request(again)
    desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        alice = await post(client, path, APPROVE)
        bob = await post(client, path, {"outcome": "approve", "approver": "bob"})

    # New, the copy reporting more, bob's decision (not the copy reporting less).
    assert changed == [id_of(request)] * 3
    assert alice[0] == 409
    assert "already decided" in alice[1]["error"]["message"]
    assert (bob[0], bob[1]["approvals"]) == (202, ["bob", "alice", "dave"])
    assert len(topic.sent) == 1


async def test_approval_decision_reject_closes_a_two_person_approval() -> None:
    desk, _ = make_desk()
    request = approval_request(approvalsRequired=2)
    desk.on_approval_request(request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        await post(client, path, APPROVE)
        rejected = await post(client, path, {"outcome": "reject", "approver": "bob"})
        late = await post(client, path, {"outcome": "approve", "approver": "carol"})

    assert rejected[0] == 202
    assert (late[0], late[1]["decision"]["outcome"]) == (409, "reject")


async def test_cancel_run_cancels_its_pending_approvals() -> None:
    desk, topic = make_desk()
    pending, other_thread = approval_request(call="c1"), approval_request("acme", "thread-2")
    desk.on_approval_request(pending)
    desk.on_approval_request(other_thread)
    cancel = {
        "schema": "flowai.v1.CancelRun",
        "id": "cancel-1",
        "tenant": "acme",
        "thread_id": "thread-1",
        "run_id": None,
        "causation_id": None,
        "ts": NOW,
        "payload": {},
    }
    desk.on_cancel_run(orjson.dumps(cancel))
    # Queries are not this service's to judge: anything else there is passed over.
    desk.on_cancel_run(b"not even json")
    desk.on_cancel_run(orjson.dumps({**cancel, "schema": "flowai.v1.CancelRun", "x": 1}))

    async with serving(desk) as client:
        _, shown = await get(client, url("acme", id_of(pending)))
        _, listing = await get(client, url("acme"))
        status, answer = await post(client, url("acme", id_of(pending), decision=True), APPROVE)

    assert shown["status"] == "cancelled"
    assert [a["id"] for a in listing["approvals"]] == [id_of(other_thread)]
    assert status == 409
    assert "cancelled" in answer["error"]["message"]
    assert topic.sent == []


# --- who may call the API --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        (lambda path, body: {}, "the request is not signed"),
        (
            lambda path, body: signed("POST", path, body, secret="wrong-secret-0123456789"),
            "does not match",
        ),
        (
            lambda path, body: signed("POST", path, b'{"outcome":"reject","approver":"alice"}'),
            "does not match",
        ),
        (lambda path, body: signed("GET", path, body), "does not match"),
        (lambda path, body: signed("POST", path, body, tenant="globex"), "does not match"),
        (
            lambda path, body: signed("POST", path, body, timestamp=int(time.time()) - 301),
            "more than 300 s from now",
        ),
        (
            lambda path, body: signed("POST", path, body, timestamp=int(time.time()) + 301),
            "more than 300 s from now",
        ),
        (
            lambda path, body: {
                **signed("POST", path, body),
                approvals_http.TIMESTAMP_HEADER: "soon",
            },
            "must be an integer of Unix seconds",
        ),
    ],
    ids=[
        "missing",
        "wrong-secret",
        "other-body",
        "other-method",
        "other-tenants-secret",
        "stale",
        "future",
        "bad-timestamp",
    ],
)
async def test_decisions_must_be_signed_with_the_tenants_secret(
    headers: Callable[[str, bytes], dict[str, str]], says: str
) -> None:
    desk, topic = make_desk()
    request = approval_request()
    desk.on_approval_request(request)
    body = orjson.dumps(APPROVE)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        status, answer = await post(client, path, body, headers(path, body))

    assert status == 401
    assert answer["error"]["code"] == "SIGNATURE_INVALID"
    assert says in answer["error"]["message"]
    assert topic.sent == []


async def test_a_captured_decision_cannot_be_moved_to_another_approval_or_tenant() -> None:
    desk, topic = make_desk()
    mine, other = approval_request(call="c1"), approval_request(call="c2")
    theirs = approval_request("globex", call="c1")
    for request in (mine, other, theirs):
        desk.on_approval_request(request)
    body = orjson.dumps(APPROVE)
    captured = signed("POST", url("acme", id_of(mine), decision=True), body)

    async with serving(desk) as client:
        moved = await post(client, url("acme", id_of(other), decision=True), body, captured)
        crossed = await post(client, url("globex", id_of(theirs), decision=True), body, captured)
        original = await post(client, url("acme", id_of(mine), decision=True), body, captured)
        replayed = await post(client, url("acme", id_of(mine), decision=True), body, captured)

    assert moved[0] == crossed[0] == 401
    assert original[0] == 202
    # Replayed as it is: the same decision of the same approval, nothing new published.
    assert (replayed[0], replayed[1]["decision_id"]) == (202, original[1]["decision_id"])
    assert [d["payload"]["approval_id"] for d in topic.decisions()] == [id_of(mine)]


async def test_reads_need_the_tenants_credentials() -> None:
    desk, _ = make_desk()
    request = approval_request()
    desk.on_approval_request(request)
    one = url("acme", id_of(request))

    async with serving(desk) as client:
        anonymous = [await get(client, url("acme"), {}), await get(client, one, {})]
        with_globex = [
            await get(client, url("acme"), signed("GET", url("acme"), tenant="globex")),
            await get(client, one, signed("GET", one, tenant="globex")),
        ]
        # Signed for the listing, used on the approval.
        moved = await get(client, one, signed("GET", url("acme")))
        allowed = [await get(client, url("acme")), await get(client, one)]

    for status, answer in [*anonymous, *with_globex, moved]:
        assert status == 401
        assert answer["error"]["code"] == "SIGNATURE_INVALID"
        assert "delete_rows" not in orjson.dumps(answer).decode()
    assert [status for status, _ in allowed] == [200, 200]


async def test_a_tenant_without_a_secret_is_refused_unless_unauthenticated_is_allowed() -> None:
    closed, _ = make_desk(secrets={"globex": SECRETS["globex"]})
    open_, _ = make_desk(secrets={"globex": SECRETS["globex"]}, allow_unauthenticated=True)
    for desk in (closed, open_):
        desk.on_approval_request(approval_request())

    async with serving(closed) as a, serving(open_) as b:
        refused = await get(a, url("acme"), {})
        served = await get(b, url("acme"), {})
        # A tenant with a secret still needs it.
        globex = await get(b, url("globex"), {})

    assert refused[0] == 401
    assert "has no API secret" in refused[1]["error"]["message"]
    assert served[0] == 200
    assert globex[0] == 401


async def test_a_rotated_secret_and_the_fallback_secret_both_sign() -> None:
    table = {
        "acme": (b"new-acme-secret-0123456789", b"old-acme-secret-0123456789"),
        "*": (b"fallback-secret-0123456789",),
    }
    secrets = TenantSecrets(table)
    assert await secrets.of("acme") == table["acme"]
    assert await secrets.of("initech") == table["*"]

    async def vault(tenant: str) -> str | None:
        return "vault-secret-0123456789ab" if tenant == "hooli" else None

    looked_up = TenantSecrets({"*": table["*"]}, vault)
    assert await looked_up.of("hooli") == (b"vault-secret-0123456789ab",)
    assert await looked_up.of("initech") == table["*"]


async def test_the_client_helpers_sign_and_raise_typed_errors() -> None:
    desk, topic = make_desk(approvers={"acme": {"alice"}})
    request = approval_request()
    desk.on_approval_request(request)
    approval_id = id_of(request)
    secret = SECRETS["acme"]

    async with serving(desk) as client:
        base = str(client.make_url(""))
        with pytest.raises(SignatureError):
            await approvals_http.decide(base, "acme", approval_id, "approve", approver="alice")
        with pytest.raises(SignatureError):
            await approvals_http.pending(base, "acme")
        with pytest.raises(ApproverNotAllowedError):
            await approvals_http.decide(
                base, "acme", approval_id, "approve", approver="bob", secret=secret
            )
        with pytest.raises(UnknownApprovalError):
            await approvals_http.decide(
                base, "acme", "appr:nope/run-1/x", "approve", approver="alice", secret=secret
            )
        with pytest.raises(InvalidInputError):
            await approvals_http.decide(
                base,
                "acme",
                approval_id,
                "maybe",  # type: ignore[arg-type]
                approver="alice",
                secret=secret,
            )
        listed = await approvals_http.pending(base, "acme", secret=secret)
        assert [a["id"] for a in listed] == [approval_id]
        shown = await approvals_http.show(base, "acme", approval_id, secret=secret)
        assert shown["status"] == "pending"
        decided = await approvals_http.decide(
            base, "acme", approval_id, "reject", approver="alice", feedback="no", secret=secret
        )
        with pytest.raises(ApprovalAlreadyResolvedError) as conflict:
            await approvals_http.decide(
                base, "acme", approval_id, "approve", approver="alice", secret=secret
            )

    assert (decided["outcome"], decided["feedback"]) == ("reject", "no")
    assert conflict.value.details["decision"]["decision_id"] == decided["decision_id"]
    assert not isinstance(conflict.value, ApprovalExpiredError)
    assert len(topic.sent) == 1


def test_request_signatures_cover_method_path_and_body() -> None:
    body = b'{"outcome":"approve","approver":"alice"}'
    path = approvals_http.decision_path("acme", "appr:t/r/c")
    headers = approvals_http.sign_request("s" * 20, "POST", path, body, timestamp=1_700_000_000)

    assert path == "/v1/tenants/acme/approvals/appr%3At%2Fr%2Fc/decision"
    assert headers[approvals_http.SIGNATURE_HEADER].startswith("v1=")
    stamp, given = (
        headers[approvals_http.TIMESTAMP_HEADER],
        headers[approvals_http.SIGNATURE_HEADER],
    )
    approvals_http.verify_request(["s" * 20], stamp, given, "POST", path, body, now=1_700_000_299)
    for method, where, sent in [
        ("GET", path, body),
        ("POST", approvals_http.decision_path("acme", "appr:t/r/d"), body),
        ("POST", path, body + b" "),
    ]:
        with pytest.raises(SignatureError):
            approvals_http.verify_request(["s" * 20], stamp, given, method, where, sent, now=1.7e9)


def test_slacks_published_example_verifies() -> None:
    # The example on Slack's "Verifying requests from Slack" page.
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
        b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397"
        b"700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14"
        b"d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

    assert approvals_http.slack_signature(secret, "1531420618", body) == expected
    # The slack-sdk's own verifier agrees.
    sdk = SignatureVerifier(secret)
    assert sdk.generate_signature(timestamp="1531420618", body=body) == expected
    approvals_http.verify_slack(secret, "1531420618", expected, body, now=1531420618 + 299)
    with pytest.raises(SignatureError, match="more than 300 s"):
        approvals_http.verify_slack(secret, "1531420618", expected, body, now=1531420618 + 301)
    with pytest.raises(SignatureError, match="does not match"):
        approvals_http.verify_slack(secret, "1531420618", expected, body + b"&", now=1531420618)


# --- the topics: folding, dead-letter reasons ------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "value", "reason", "says"),
    [
        (TOPICS.approval_requests, b"\xff\xfe", "INPUT_MALFORMED", "not a JSON object"),
        (TOPICS.approval_requests, None, "INPUT_MALFORMED", "not a JSON object"),
        (
            TOPICS.approval_requests,
            approval_decision("appr:x/r/c"),
            "INPUT_UNKNOWN_SCHEMA",
            "does not belong on this topic",
        ),
        (
            TOPICS.approval_requests,
            approval_request().replace(b'"kind":"plan"', b'"kind":"other"'),
            "INPUT_MALFORMED",
            "payload.kind",
        ),
        (
            TOPICS.approval_requests,
            approval_request().replace(b'"resourceId":"acme"', b'"resourceId":"globex"'),
            "INPUT_MALFORMED",
            "does not match the envelope's tenant",
        ),
        (
            TOPICS.approval_decisions,
            approval_decision("appr:x/r/c", outcome="maybe", signer=None),
            "INPUT_MALFORMED",
            "payload.outcome",
        ),
    ],
    ids=["bytes", "tombstone", "wrong-schema", "bad-kind", "tenant-mismatch", "bad-outcome"],
)
def test_approval_request_or_approval_decision_the_service_cannot_use_is_rejected_with_a_reason(
    topic: str, value: bytes | None, reason: str, says: str
) -> None:
    desk, _ = make_desk()

    hop = {
        TOPICS.approval_requests: desk.on_approval_request,
        TOPICS.approval_decisions: desk.on_approval_decision,
    }[topic]
    with pytest.raises(Rejected) as rejected:
        hop(value)

    assert rejected.value.reason == reason
    assert says in rejected.value.message
    assert len(desk.book) == 0


async def test_approval_decision_order_on_the_topic_decides_and_copies_change_nothing() -> None:
    desk, topic = make_desk()
    early, late = approval_request(call="c1"), approval_request(call="c2")
    # A decision read before its request (the two topics are read side by side).
    desk.on_approval_decision(approval_decision(id_of(early), "reject", "bot"))
    desk.on_approval_request(early)
    desk.on_approval_request(late)
    desk.on_approval_request(late)  # re-issued by a resumed run
    # Someone decided straight on the topic: that one comes first.
    desk.on_approval_decision(approval_decision(id_of(late), "reject", "bot"))

    async with serving(desk) as client:
        status, one = await get(client, url("acme", id_of(early)))
        assert (status, one["status"], one["decision"]["outcome"]) == (200, "decided", "reject")
        status, _ = await post(client, url("acme", id_of(late), decision=True), APPROVE)
        _, one = await get(client, url("acme", id_of(late)))

    assert status == 409
    assert (one["decision"]["outcome"], one["decision"]["approver"]) == ("reject", "bot")
    assert len(desk.book) == 2
    assert topic.sent == []


# --- the command line and the app ------------------------------------------------------------

APP_MODULE = """
from flowai_harness import define_runtime, define_specialist

agent = define_specialist(name="w", model="claude-haiku-4-5", prompt="p")
spec = define_runtime(tenant=("acme", "v1"), agents=[agent], providers={"anthropic": {}})

def app():
    return spec

app.approvers = {"acme": {"alice"}}
app.tenant_secrets = {"acme": "from-the-app-0123456789", "globex": "globex-from-app-0123456"}
app.slack_channels = {"acme": "#acme", "acme/*/delete_rows": "#dba"}

def old():
    return spec

old.signing_secret = "one-for-everyone-0123456789"
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import sys

    name = f"approvalsapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


async def test_policy_comes_from_the_app_and_the_secrets_file(
    app_module: str, tmp_path: Path
) -> None:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(
        orjson.dumps({"acme": ["file-new-0123456789ab", "file-old-0123456789ab"]}).decode()
    )
    secrets_file.chmod(0o600)

    policy = load_policy(f"{app_module}:app", environ={}, slack_channel="#approvals")
    from_file = load_policy(f"{app_module}:app", environ={}, secrets_file=str(secrets_file))
    plain = load_policy(f"{app_module}:spec", environ={})

    assert await policy.secrets.of("acme") == (b"from-the-app-0123456789",)
    assert await from_file.secrets.of("acme") == (
        b"file-new-0123456789ab",
        b"file-old-0123456789ab",
    )
    assert await from_file.secrets.of("globex") == (b"globex-from-app-0123456",)
    assert await policy.approvers.allows("acme", "alice", {})
    assert not await policy.approvers.allows("acme", "bob", {})
    assert not plain.secrets.configured
    assert await plain.approvers.allows("acme", "anyone", {})
    assert not await plain.approvers.allows("acme", "", {})
    route = policy.slack_routes.channel
    assert await route({"tenant": "acme", "agent": "clerk", "target": "delete_rows"}) == "#dba"
    assert await route({"tenant": "acme", "agent": "clerk", "target": "other"}) == "#acme"
    assert await route({"tenant": "globex", "agent": "clerk", "target": "x"}) == "#approvals"


@pytest.mark.parametrize(
    ("app", "environ", "secrets", "says"),
    [
        ("old", {}, None, "no longer accepted"),
        (
            "spec",
            {"FLOWAI_APPROVALS_SIGNING_SECRET": "one-for-everyone-0123456789"},
            None,
            "no longer accepted",
        ),
        ("spec", {}, "short", "at least 16 characters"),
        ("spec", {}, "list", "must map tenants"),
        ("spec", {}, "missing", "cannot read the tenant secrets file"),
        ("spec", {}, "not-json", "is not JSON"),
    ],
)
def test_unusable_secret_settings_are_refused_saying_what_to_do(
    app_module: str,
    tmp_path: Path,
    app: str,
    environ: dict[str, str],
    secrets: str | None,
    says: str,
) -> None:
    path = tmp_path / "secrets.json"
    content = {"short": '{"acme": "short"}', "list": '["acme"]', "not-json": "{acme"}.get(
        secrets or ""
    )
    if content is not None:
        path.write_text(content)

    with pytest.raises(AppLoadError, match=says):
        load_policy(
            f"{app_module}:{app}",
            environ=environ,
            secrets_file=None if secrets is None else str(path),
        )


def test_slack_routes_pick_the_most_specific_rule() -> None:
    routes = SlackRoutes(
        {
            "*": "#all",
            "acme": "#acme",
            "acme/clerk": "#clerks",
            "*/*/delete_rows": "#dba-everyone",
            "acme/*/delete_rows": "#dba",
            "acme/clerk/delete_rows": "#clerk-deletes",
        },
        default="#default",
    )

    async def channel(tenant: str, agent: str, target: str) -> str | None:
        return await routes.channel({"tenant": tenant, "agent": agent, "target": target})

    cases = [
        (("acme", "clerk", "delete_rows"), "#clerk-deletes"),
        (("acme", "night", "delete_rows"), "#dba"),
        (("acme", "clerk", "export"), "#clerks"),
        (("acme", "night", "export"), "#acme"),
        (("globex", "clerk", "delete_rows"), "#dba-everyone"),
        (("globex", "clerk", "export"), "#all"),
    ]
    assert [asyncio.run(channel(*parts)) for parts, _ in cases] == [want for _, want in cases]
    assert asyncio.run(SlackRoutes(default="#d").channel({"tenant": "x"})) == "#d"
    with pytest.raises(AppLoadError, match="write 'tenant'"):
        SlackRoutes({"a/b/c/d": "#x"})


def test_command_line_defaults_environment_and_the_decision_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWAI_APPROVALS_HTTP", "0.0.0.0:9090")
    monkeypatch.setenv("FLOWAI_TOPIC_PREFIX", "shop")
    key = tmp_path / "decision-key.pem"
    key.write_bytes(PRIVATE_PEM)
    public = tmp_path / "operator.pub.pem"
    public.write_bytes(PUBLIC_PEM)

    with pytest.raises(UsageError, match="has no key"):
        settings_from_args(build_parser().parse_args(["--app", "m:a"]))
    unsigned = settings_from_args(
        build_parser().parse_args(["--app", "m:a", "--allow-unsigned-decisions"])
    )
    monkeypatch.setenv("FLOWAI_DECISION_KEY", str(key))
    monkeypatch.setenv("FLOWAI_DECISION_PUBLIC_KEYS", str(public))
    settings = settings_from_args(build_parser().parse_args(["--app", "m:a"]))
    monkeypatch.setenv("FLOWAI_APPROVALS_TEST_HOLD", "after-publish")
    holding = settings_from_args(build_parser().parse_args(["--app", "m:a"]))
    monkeypatch.setenv("FLOWAI_APPROVALS_TEST_HOLD", "somewhere")
    with pytest.raises(UsageError, match="FLOWAI_APPROVALS_TEST_HOLD"):
        settings_from_args(build_parser().parse_args(["--app", "m:a"]))
    monkeypatch.delenv("FLOWAI_APPROVALS_TEST_HOLD")
    with pytest.raises(UsageError, match="cannot read the key file"):
        settings_from_args(
            build_parser().parse_args(["--app", "m:a", "--decision-key", str(tmp_path / "none")])
        )
    with pytest.raises(UsageError, match="not a PEM private key"):
        settings_from_args(
            build_parser().parse_args(["--app", "m:a", "--decision-key", str(public)])
        )

    assert (settings.host, settings.port, settings.prefix) == ("0.0.0.0", 9090, "shop")
    assert settings.decision_key == str(key)
    assert list(settings.trusted_keys) == [str(public)]
    assert unsigned.decision_key is None
    signer, verifier = settings.signing()
    assert signer is not None
    assert verifier is not None
    assert unsigned.signing() == (None, None)
    assert holding.hold_at == "after-publish"
    assert settings.slack is None
    assert parse_address("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError, match="host:port"):
        parse_address("8080")


def test_slack_needs_both_its_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLOWAI_ALLOW_UNSIGNED_DECISIONS", "1")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(UsageError, match="needs both"):
        settings_from_args(build_parser().parse_args(["--app", "m:a"]))
    signing = tmp_path / "signing"
    signing.write_text("from-a-file\n")
    settings = settings_from_args(
        build_parser().parse_args(
            [
                "--app",
                "m:a",
                "--slack-signing-secret-file",
                str(signing),
                "--slack-api-url",
                "http://x/api/",
            ]
        )
    )
    assert settings.slack is not None
    assert (settings.slack.bot_token, settings.slack.signing_secret) == ("xoxb-1", "from-a-file")
    assert settings.slack.api_url == "http://x/api/"


# --- the whole service on the real Kafka -----------------------------------------------------


def _env(name: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not set; start Kafka and Redis with scripts/services")
    pytest.skip(f"needs {name}: scripts/services/services start; . var/services/env")


@pytest.fixture
async def kafka_prefix(redis: Redis) -> AsyncIterator[tuple[str, bus.Topics]]:
    """Topics under a fresh prefix (2 partitions each); they and the prefix's Redis keys are
    deleted afterwards."""
    bootstrap = _env("FLOWAI_KAFKA_BOOTSTRAP")
    topics = bus.Topics(f"t{uuid.uuid4().hex[:10]}")
    await bus.ensure_topics(bootstrap, topics, partitions=2)
    yield bootstrap, topics
    keys = [key async for key in redis.scan_iter(match=f"{topics.prefix}:*", count=10_000)]
    if keys:
        await redis.delete(*keys)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(topics.all()))
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def running(
    bootstrap: str, topics: bus.Topics, policy: AppPolicy | None = None
) -> AsyncIterator[tuple[ApprovalsService, str]]:
    """The approvals service in this process, on a free port, until the block ends."""
    settings = ServiceSettings(
        bootstrap=bootstrap,
        redis_url=_env("FLOWAI_REDIS_URL"),
        port=0,
        prefix=topics.prefix,
        partitions=2,
        decision_key=PRIVATE_PEM,
    )
    service = ApprovalsService(
        policy
        or AppPolicy(ApproverPolicy(None), TenantSecrets({"acme": (SECRETS["acme"].encode(),)})),
        settings,
    )
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: _ready(service, task), what="the service to read the topics")
        assert service.address is not None
        yield service, f"http://127.0.0.1:{service.address[1]}"
    finally:
        service.stop()
        await asyncio.wait_for(task, 10)


async def _ready(service: ApprovalsService, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # raises what stopped it
    return service.desk is not None and service.desk.ready


async def wait_for(
    check: Callable[[], Awaitable[bool]], *, what: str, within: float = 20.0
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"waiting for {what}: {within} s passed"
        await asyncio.sleep(0.02)


async def produce(bootstrap: str, items: Sequence[tuple[str, bytes]]) -> None:
    producer = bus.producer(bootstrap)
    await producer.start()
    try:
        for topic, value in items:
            body = bus.peek(value) or {}
            key = (
                bus.thread_key(body["tenant"], body["thread_id"])
                if "tenant" in body
                else b"garbage"
            )
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every committed message of ``topic`` so far."""
    consumer = bus.consumer(bootstrap, topic)
    await consumer.start()
    try:
        found: list[dict[str, Any]] = []
        await wait_for(lambda: _assigned(consumer), what=f"the assignment of {topic}", within=10)
        partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found.extend(orjson.loads(record.value) for record in records)
        return found
    finally:
        await consumer.stop()


async def _assigned(consumer: Any) -> bool:
    if not consumer.assignment():
        await consumer.getmany(timeout_ms=50)
    return bool(consumer.assignment())


SECRET = SECRETS["acme"]


@pytest.mark.connected
async def test_the_book_is_rebuilt_from_the_topics_after_a_restart(
    kafka_prefix: tuple[str, bus.Topics],
) -> None:
    bootstrap, topics = kafka_prefix
    decided, pending, by_bot = (
        approval_request(call="c1"),
        approval_request(thread="thread-2", call="c2"),
        approval_request(thread="thread-3", call="c3"),
    )
    await produce(
        bootstrap,
        [
            (topics.approval_requests, decided),
            (topics.approval_requests, pending),
            (topics.approval_requests, by_bot),
            (topics.approval_requests, b"not an envelope"),
            (topics.approval_decisions, approval_decision(id_of(by_bot), thread="thread-3")),
            # Unsigned: the runtime would refuse it, and so does the book.
            (
                topics.approval_decisions,
                approval_decision(
                    id_of(pending), "approve", "mallory", thread="thread-2", signer=None
                ),
            ),
        ],
    )
    async with running(bootstrap, topics) as (first, base), aiohttp.ClientSession() as http:
        listed = await approvals_http.pending(base, "acme", secret=SECRET, session=http)
        assert sorted(a["id"] for a in listed) == sorted([id_of(decided), id_of(pending)])
        answer = await approvals_http.decide(
            base, "acme", id_of(decided), "approve", approver="alice", secret=SECRET, session=http
        )
        assert answer["confirmed"] is True
    assert first.dead_lettered == 1
    assert first.desk is not None
    assert first.desk.unverified == 1

    # A new instance knows only what the topics say.
    async with running(bootstrap, topics) as (second, base), aiohttp.ClientSession() as http:
        listed = await approvals_http.pending(base, "acme", secret=SECRET, session=http)
        assert [a["id"] for a in listed] == [id_of(pending)]
        with pytest.raises(ApprovalAlreadyResolvedError) as conflict:
            await approvals_http.decide(
                base, "acme", id_of(decided), "reject", approver="bob", secret=SECRET, session=http
            )
        assert conflict.value.details["decision"]["approver"] == "alice"
        assert second.desk is not None
        bot = second.desk.book.get("acme", id_of(by_bot))
        assert bot is not None
        assert bot.decision is not None
        assert bot.decision.approver == "bot"
    # Dead-lettered by the first instance already: not again.
    assert second.dead_lettered == 0

    decisions = await read_all(bootstrap, topics.approval_decisions)
    mine = [d for d in decisions if d["payload"]["approval_id"] == id_of(decided)]
    assert [(d["payload"]["outcome"], d["payload"]["approver"]) for d in mine] == [
        ("approve", "alice")
    ]
    assert VERIFIER.verify(mine[0]) == SIGNER.kid
    letters = await read_all(bootstrap, topics.dead_letters)
    assert [letter["payload"]["reason"] for letter in letters] == ["INPUT_MALFORMED"]
    assert letters[0]["payload"]["service"] == "approvals"
    assert letters[0]["payload"]["original"] == "not an envelope"


@pytest.mark.connected
async def test_approval_request_published_a_moment_ago_is_found_and_a_cancel_run_is_followed(
    kafka_prefix: tuple[str, bus.Topics],
) -> None:
    bootstrap, topics = kafka_prefix
    request, doomed = (
        approval_request(call="fresh"),
        approval_request(thread="thread-9", ts=bus.now_ms()),
    )
    async with running(bootstrap, topics) as (service, base):
        # A chat-ops bot reads the request on the topic and decides at once.
        await produce(
            bootstrap, [(topics.approval_requests, request), (topics.approval_requests, doomed)]
        )
        decided = await approvals_http.decide(
            base, "acme", id_of(request), "approve", approver="alice", secret=SECRET
        )
        cancel = {
            "schema": "flowai.v1.CancelRun",
            "id": "cancel-9",
            "tenant": "acme",
            "thread_id": "thread-9",
            "run_id": None,
            "causation_id": None,
            "ts": bus.now_ms(),
            "payload": {},
        }
        await produce(bootstrap, [(topics.queries, orjson.dumps(cancel))])

        async def cancelled() -> bool:
            shown = await approvals_http.show(base, "acme", id_of(doomed), secret=SECRET)
            return bool(shown["status"] == "cancelled")

        await wait_for(cancelled, what="the cancellation on queries")

    assert decided["approval_id"] == id_of(request)
    assert service.desk is not None
