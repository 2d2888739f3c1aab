"""The approvals service: its HTTP API, the first-decision-wins claim, the approver policy,
signed chat-ops requests, and the book rebuilt from the topics.

Most tests run the service's desk and aiohttp app in this process on the real Redis (claims),
with approval requests fed in as the topics would and a recording publisher in place of the
producer. The ``connected`` ones at the end run the whole service (Kafka loop, HTTP server)
on the real Kafka under a fresh topic prefix: rebuilding after a restart, dead letters, and
finding a request published a moment ago.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from aiohttp import test_utils
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis
from services.approvals.claims import DecisionClaims
from services.approvals.command import build_parser, parse_address, settings_from_args
from services.approvals.desk import ApprovalDesk, Rejected
from services.approvals.http import create_app
from services.approvals.policy import AppPolicy, ApproverPolicy, load_policy
from services.approvals.service import ApprovalsService, ServiceSettings

from flowai_harness import approvals_http, bus, messages
from flowai_harness.errors import (
    AppLoadError,
    ApprovalAlreadyResolvedError,
    ApprovalExpiredError,
    ApproverNotAllowedError,
    InvalidInputError,
    SignatureError,
    UnknownApprovalError,
)

TOPICS = bus.Topics("unit")
SECRET = "s3cret-for-tests"
NOW = 1_700_000_000_000


# --- fixtures and helpers --------------------------------------------------------------------


def _env(name: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not set; start Kafka and Redis with scripts/services")
    pytest.skip(f"needs {name}: scripts/services/services start; . var/services/env")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(_env("FLOWAI_REDIS_URL"))
    yield client
    await client.aclose()


@pytest.fixture
async def namespace(redis: Redis) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}:approvals"
    yield name
    keys = [key async for key in redis.scan_iter(match=f"{name}:*", count=10_000)]
    if keys:
        await redis.delete(*keys)


@dataclass
class Recorder:
    """Stands in for the Kafka producer."""

    sent: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    fail_next: int = 0

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unreachable (test)")
        self.sent.append((topic, key, value))

    def decisions(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for topic, _, value in self.sent]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def approval_request(
    tenant: str = "acme",
    thread: str = "thread-1",
    call: str = "scripted-tool-2",
    *,
    expires_at: int | None = None,
    kind: str = "plan",
) -> bytes:
    """An ApprovalRequest as the engine emits it (its envelope id is the approval id)."""
    approval_id = f"appr:{thread}/run-1/{call}"
    return orjson.dumps(
        {
            "schema": "flowai.v1.ApprovalRequest",
            "id": approval_id,
            "tenant": tenant,
            "thread_id": thread,
            "run_id": "run-1",
            "causation_id": f"{tenant}/{thread}/9",
            "ts": NOW - 1000,
            "payload": {
                "type": "approval-required",
                "id": approval_id,
                "kind": kind,
                "target": "p1",
                "payload": {"planId": "p1", "actions": [{"kind": "reorder"}]},
                "resourceId": tenant,
                "threadId": thread,
                "correlationId": call,
                "expiresAt": expires_at,
            },
        }
    )


def approval_decision(
    approval_id: str,
    outcome: str = "reject",
    approver: str = "bot",
    tenant: str = "acme",
    thread: str = "thread-1",
) -> bytes:
    """A decision published straight to the topic (``Client.respond_to_approval``)."""
    return orjson.dumps(
        {
            "schema": "flowai.v1.ApprovalDecision",
            "id": f"direct-{uuid.uuid4().hex[:8]}",
            "tenant": tenant,
            "thread_id": thread,
            "run_id": None,
            "causation_id": None,
            "ts": NOW,
            "payload": {"approval_id": approval_id, "outcome": outcome, "approver": approver},
        }
    )


def id_of(request: bytes) -> str:
    approval_id: str = orjson.loads(request)["id"]
    return approval_id


def make_desk(
    redis: Redis,
    namespace: str,
    *,
    approvers: object = None,
    secret: str | None = None,
    clock: Callable[[], int] | None = None,
    publisher: Recorder | None = None,
) -> tuple[ApprovalDesk, Recorder]:
    policy = AppPolicy(
        approvers=ApproverPolicy.from_app(approvers),
        signing_secret=None if secret is None else secret.encode(),
    )
    recorder = publisher or Recorder()
    desk = ApprovalDesk(
        policy,
        DecisionClaims(redis, namespace=namespace),
        recorder,
        TOPICS,
        clock=clock or Clock(),
    )
    return desk, recorder


@contextlib.asynccontextmanager
async def serving(desk: ApprovalDesk) -> AsyncIterator[test_utils.TestClient[Any, Any]]:
    async with test_utils.TestClient(test_utils.TestServer(create_app(desk))) as client:
        yield client


def url(tenant: str, approval_id: str | None = None, *, decision: bool = False) -> str:
    if approval_id is None:
        return f"/v1/tenants/{tenant}/approvals"
    if decision:
        return approvals_http.decision_path(tenant, approval_id)
    return f"/v1/tenants/{tenant}/approvals/{quote(approval_id, safe='')}"


async def post(
    client: test_utils.TestClient[Any, Any],
    path: str,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(path, data=raw, headers=dict(headers or {}))
    return response.status, orjson.loads(await response.read())


async def get(client: test_utils.TestClient[Any, Any], path: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(path)
    return response.status, orjson.loads(await response.read())


APPROVE = {"outcome": "approve", "approver": "alice"}


# --- listing, reading, deciding --------------------------------------------------------------


async def test_list_get_and_decide(redis: Redis, namespace: str) -> None:
    desk, recorder = make_desk(redis, namespace)
    first, second = approval_request(call="c1"), approval_request(thread="thread-2", call="c2")
    for request in (first, second, approval_request("globex", call="c3")):
        desk.observe(TOPICS.approval_requests, request)

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
            "payload": {"planId": "p1", "actions": [{"kind": "reorder"}]},
            "correlation_id": "c1",
            "requested_at": NOW - 1000,
            "expires_at": None,
            "status": "pending",
            "decision": None,
        }

        body = {"outcome": "revise", "approver": "alice", "feedback": "fewer", "partial": {"q": 1}}
        status, decided = await post(client, url("acme", id_of(first), decision=True), body)
        assert status == 202
        assert decided["approval_id"] == id_of(first)
        assert (decided["outcome"], decided["approver"], decided["feedback"]) == (
            "revise",
            "alice",
            "fewer",
        )

        [(topic, key, value)] = recorder.sent
        assert topic == TOPICS.approval_decisions
        assert key == b"acme/thread-1"  # lands on the partition of the runtime owning it
        message = messages.decode(value)
        assert isinstance(message, messages.ApprovalDecision)
        assert message.id == decided["decision_id"]
        assert (message.tenant, message.thread_id, message.run_id) == ("acme", "thread-1", "run-1")
        assert message.causation_id == id_of(first)
        assert message.ts == NOW
        assert message.payload.model_dump(exclude_none=True) == {
            "approval_id": id_of(first),
            "outcome": "revise",
            "feedback": "fewer",
            "partial": {"q": 1},
            "approver": "alice",
        }

        status, one = await get(client, url("acme", id_of(first)))
        assert (one["status"], one["decision"]["approver"]) == ("decided", "alice")
        status, listing = await get(client, url("acme"))
        assert [a["id"] for a in listing["approvals"]] == [id_of(second)]


async def test_first_decision_wins_between_concurrent_requests_and_instances(
    redis: Redis, namespace: str
) -> None:
    # Two instances of the service (each with its own book), one Redis.
    desks = [make_desk(redis, namespace) for _ in range(2)]
    request = approval_request()
    for desk, _ in desks:
        desk.observe(TOPICS.approval_requests, request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desks[0][0]) as a, serving(desks[1][0]) as b:
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
    published = [d for _, recorder in desks for d in recorder.decisions()]
    assert [d["id"] for d in published] == [winner["decision_id"]]


async def test_unknown_and_another_tenants_ids_read_the_same(redis: Redis, namespace: str) -> None:
    desk, recorder = make_desk(redis, namespace)
    theirs = approval_request("globex")
    desk.observe(TOPICS.approval_requests, theirs)

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
    assert recorder.sent == []


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
    redis: Redis, namespace: str, approvers: object, allowed: str | None, refused: str
) -> None:
    desk, recorder = make_desk(redis, namespace, approvers=approvers)
    request = approval_request()
    desk.observe(TOPICS.approval_requests, request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        status, body = await post(client, path, {"outcome": "approve", "approver": refused})
        assert status == 403
        assert body["error"]["code"] == "APPROVER_NOT_ALLOWED"
        assert refused in body["error"]["message"]
        if allowed is not None:
            status, _ = await post(client, path, {"outcome": "approve", "approver": allowed})
            assert status == 202
    assert len(recorder.sent) == (allowed is not None)


async def test_async_approver_check_gets_the_approval_and_a_raising_one_refuses(
    redis: Redis, namespace: str
) -> None:
    seen: list[tuple[str, str]] = []

    async def check(approver: str, approval: Mapping[str, Any]) -> bool:
        seen.append((approver, approval["kind"]))
        if approver == "mallory":
            raise RuntimeError("directory down")
        return approval["kind"] == "plan"

    desk, _ = make_desk(redis, namespace, approvers={"acme": check})
    request = approval_request()
    desk.observe(TOPICS.approval_requests, request)
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
async def test_bad_bodies_are_400_saying_what_is_wrong(
    redis: Redis, namespace: str, body: Any, says: str
) -> None:
    desk, recorder = make_desk(redis, namespace)
    request = approval_request()
    desk.observe(TOPICS.approval_requests, request)

    async with serving(desk) as client:
        status, answer = await post(client, url("acme", id_of(request), decision=True), body)

    assert status == 400
    assert answer["error"]["code"] == "INPUT_MALFORMED"
    assert says in answer["error"]["message"]
    assert recorder.sent == []


async def test_expired_approval_is_marked_and_cannot_be_decided(
    redis: Redis, namespace: str
) -> None:
    clock = Clock()
    desk, recorder = make_desk(redis, namespace, clock=clock)
    request = approval_request(expires_at=NOW + 500)
    desk.observe(TOPICS.approval_requests, request)

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
    assert recorder.sent == []


async def test_a_failed_publish_gives_the_claim_back(redis: Redis, namespace: str) -> None:
    desk, recorder = make_desk(redis, namespace)
    recorder.fail_next = 1
    request = approval_request()
    desk.observe(TOPICS.approval_requests, request)
    path = url("acme", id_of(request), decision=True)

    async with serving(desk) as client:
        failed = await post(client, path, APPROVE)
        retried = await post(client, path, APPROVE)

    assert failed[0] == 503
    assert failed[1]["error"]["code"] == "BUS_ERROR"
    assert retried[0] == 202
    assert len(recorder.sent) == 1


async def test_not_ready_until_the_topics_are_read(redis: Redis, namespace: str) -> None:
    desk, _ = make_desk(redis, namespace)
    desk.ready = False

    async with serving(desk) as client:
        health = await get(client, "/healthz")
        listing = await get(client, url("acme"))
        desk.ready = True
        ready = await get(client, "/healthz")

    assert health[0] == listing[0] == 503
    assert listing[1]["error"]["code"] == "NOT_READY"
    assert ready == (200, {"ready": True, "approvals": 0})


# --- signed chat-ops requests ----------------------------------------------------------------


def signed(body: bytes, *, secret: str = SECRET, age: float = 0) -> dict[str, str]:
    return approvals_http.sign(secret, int(time.time() - age), body)


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        (lambda body: {}, "the request is not signed"),
        (lambda body: signed(body, secret="wrong"), "does not match its body"),
        (lambda body: signed(b'{"outcome":"reject","approver":"alice"}'), "does not match"),
        (lambda body: signed(body, age=301), "more than 300 s from now"),
        (lambda body: signed(body, age=-301), "more than 300 s from now"),
        (
            lambda body: {**signed(body), approvals_http.TIMESTAMP_HEADER: "soon"},
            "must be an integer of Unix seconds",
        ),
    ],
    ids=["missing", "wrong-secret", "other-body", "stale", "future", "bad-timestamp"],
)
async def test_decisions_must_be_signed_when_a_secret_is_set(
    redis: Redis, namespace: str, headers: Callable[[bytes], dict[str, str]], says: str
) -> None:
    desk, recorder = make_desk(redis, namespace, secret=SECRET)
    request = approval_request()
    desk.observe(TOPICS.approval_requests, request)
    body = orjson.dumps(APPROVE)

    async with serving(desk) as client:
        status, answer = await post(
            client, url("acme", id_of(request), decision=True), body, headers(body)
        )

    assert status == 401
    assert answer["error"]["code"] == "SIGNATURE_INVALID"
    assert says in answer["error"]["message"]
    assert recorder.sent == []


async def test_the_client_helper_signs_and_raises_typed_errors(
    redis: Redis, namespace: str
) -> None:
    desk, recorder = make_desk(redis, namespace, secret=SECRET, approvers={"acme": {"alice"}})
    request = approval_request()
    desk.observe(TOPICS.approval_requests, request)
    approval_id = id_of(request)

    async with serving(desk) as client:
        base = str(client.make_url(""))
        with pytest.raises(SignatureError):
            await approvals_http.decide(base, "acme", approval_id, "approve", approver="alice")
        with pytest.raises(ApproverNotAllowedError):
            await approvals_http.decide(
                base, "acme", approval_id, "approve", approver="bob", secret=SECRET
            )
        with pytest.raises(UnknownApprovalError):
            await approvals_http.decide(
                base, "globex", approval_id, "approve", approver="alice", secret=SECRET
            )
        with pytest.raises(InvalidInputError):
            await approvals_http.decide(
                base,
                "acme",
                approval_id,
                "maybe",  # type: ignore[arg-type]
                approver="alice",
                secret=SECRET,
            )
        assert [a["id"] for a in await approvals_http.pending(base, "acme")] == [approval_id]
        decided = await approvals_http.decide(
            base, "acme", approval_id, "reject", approver="alice", feedback="no", secret=SECRET
        )
        with pytest.raises(ApprovalAlreadyResolvedError) as conflict:
            await approvals_http.decide(
                base, "acme", approval_id, "approve", approver="alice", secret=SECRET
            )

    assert (decided["outcome"], decided["feedback"]) == ("reject", "no")
    assert conflict.value.details["decision"]["decision_id"] == decided["decision_id"]
    assert not isinstance(conflict.value, ApprovalExpiredError)
    assert len(recorder.sent) == 1


def test_sign_and_verify_agree_and_compare_in_constant_time() -> None:
    body = b'{"outcome":"approve","approver":"alice"}'
    headers = approvals_http.sign(SECRET, 1_700_000_000, body)

    assert headers[approvals_http.SIGNATURE_HEADER].startswith("v0=")
    approvals_http.verify(
        SECRET,
        headers[approvals_http.TIMESTAMP_HEADER],
        headers[approvals_http.SIGNATURE_HEADER],
        body,
        now=1_700_000_000 + 299,
    )
    # The Slack-style base string: v0:{timestamp}:{body}.
    expected = approvals_http.signature(SECRET.encode(), "1700000000", body)
    assert headers[approvals_http.SIGNATURE_HEADER] == expected


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
            approval_decision("appr:x/r/c", outcome="maybe"),
            "INPUT_MALFORMED",
            "payload.outcome",
        ),
    ],
    ids=["bytes", "tombstone", "wrong-schema", "bad-kind", "tenant-mismatch", "bad-outcome"],
)
def test_messages_the_service_cannot_use_are_rejected_with_a_reason(
    redis: Redis, namespace: str, topic: str, value: bytes | None, reason: str, says: str
) -> None:
    desk, _ = make_desk(redis, namespace)

    with pytest.raises(Rejected) as rejected:
        desk.observe(topic, value)

    assert rejected.value.reason == reason
    assert says in rejected.value.message
    assert len(desk.book) == 0


async def test_the_topics_order_decides_and_copies_change_nothing(
    redis: Redis, namespace: str
) -> None:
    desk, recorder = make_desk(redis, namespace)
    early, late = approval_request(call="c1"), approval_request(call="c2")
    # A decision read before its request (the two topics are read side by side).
    desk.observe(TOPICS.approval_decisions, approval_decision(id_of(early), "reject", "bot"))
    desk.observe(TOPICS.approval_requests, early)
    desk.observe(TOPICS.approval_requests, late)
    desk.observe(TOPICS.approval_requests, late)  # re-issued by a resumed run

    async with serving(desk) as client:
        status, one = await get(client, url("acme", id_of(early)))
        assert (status, one["status"], one["decision"]["outcome"]) == (200, "decided", "reject")
        status, _ = await post(client, url("acme", id_of(late), decision=True), APPROVE)
        assert status == 202
        # Someone published a decision straight to the topic before ours: the runtime
        # honours that one, so the book does too once it reads it.
        desk.observe(TOPICS.approval_decisions, approval_decision(id_of(late), "reject", "bot"))
        desk.observe(TOPICS.approval_decisions, recorder.sent[0][2])
        _, one = await get(client, url("acme", id_of(late)))

    assert (one["decision"]["outcome"], one["decision"]["approver"]) == ("reject", "bot")
    assert len(desk.book) == 2


# --- the command line and the app ------------------------------------------------------------

APP_MODULE = """
from flowai_harness import define_runtime, define_specialist

agent = define_specialist(name="w", model="claude-haiku-4-5", prompt="p")
spec = define_runtime(tenant=("acme", "v1"), agents=[agent], providers={"anthropic": {}})

def app():
    return spec

app.approvers = {"acme": {"alice"}}
app.signing_secret = "from-the-app"
"""


@pytest.fixture
def app_module(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import sys

    name = f"approvalsapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


async def test_policy_comes_from_the_app_and_the_environment(app_module: str) -> None:
    policy = load_policy(f"{app_module}:app", environ={})
    plain = load_policy(f"{app_module}:spec", environ={})
    overridden = load_policy(
        f"{app_module}:app", environ={"FLOWAI_APPROVALS_SIGNING_SECRET": "from-env"}
    )

    assert policy.signing_secret == b"from-the-app"
    assert await policy.approvers.allows("acme", "alice", {})
    assert not await policy.approvers.allows("acme", "bob", {})
    assert plain.signing_secret is None
    assert await plain.approvers.allows("acme", "anyone", {})
    assert not await plain.approvers.allows("acme", "", {})
    assert overridden.signing_secret == b"from-env"


def test_command_line_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWAI_APPROVALS_HTTP", "0.0.0.0:9090")
    monkeypatch.setenv("FLOWAI_TOPIC_PREFIX", "shop")

    settings = settings_from_args(build_parser().parse_args(["--app", "m:a"]))

    assert (settings.host, settings.port, settings.prefix) == ("0.0.0.0", 9090, "shop")
    assert parse_address("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError, match="host:port"):
        parse_address("8080")


# --- the whole service on the real Kafka -----------------------------------------------------


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
    )
    service = ApprovalsService(policy or AppPolicy(ApproverPolicy(None)), settings)
    task = asyncio.create_task(service.run())
    try:
        await wait_for(lambda: _ready(service), what="the service to read the topics")
        assert service.address is not None
        yield service, f"http://127.0.0.1:{service.address[1]}"
    finally:
        service.stop()
        await asyncio.wait_for(task, 10)


async def _ready(service: ApprovalsService) -> bool:
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
        ],
    )
    async with running(bootstrap, topics) as (first, base), aiohttp.ClientSession() as http:
        listed = await approvals_http.pending(base, "acme", session=http)
        assert sorted(a["id"] for a in listed) == sorted([id_of(decided), id_of(pending)])
        await approvals_http.decide(
            base, "acme", id_of(decided), "approve", approver="alice", session=http
        )
    assert first.dead_lettered == 1

    # A new instance knows only what the topics say.
    async with running(bootstrap, topics) as (second, base), aiohttp.ClientSession() as http:
        listed = await approvals_http.pending(base, "acme", session=http)
        assert [a["id"] for a in listed] == [id_of(pending)]
        with pytest.raises(ApprovalAlreadyResolvedError) as conflict:
            await approvals_http.decide(
                base, "acme", id_of(decided), "reject", approver="bob", session=http
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
    letters = await read_all(bootstrap, topics.dead_letters)
    assert [letter["payload"]["reason"] for letter in letters] == ["INPUT_MALFORMED"]
    assert letters[0]["payload"]["service"] == "approvals"
    assert letters[0]["payload"]["original"] == "not an envelope"


@pytest.mark.connected
async def test_a_request_published_a_moment_ago_is_found(
    kafka_prefix: tuple[str, bus.Topics],
) -> None:
    bootstrap, topics = kafka_prefix
    request = approval_request(call="fresh")
    async with running(bootstrap, topics) as (_, base):
        # A chat-ops bot reads the request on the topic and decides at once.
        await produce(bootstrap, [(topics.approval_requests, request)])
        decided = await approvals_http.decide(
            base, "acme", id_of(request), "approve", approver="alice"
        )

    assert decided["approval_id"] == id_of(request)
