"""Approvals on the three services and the real broker: a kill -9 at each step of deciding,
the attacks issue 11 names, and an approval decided from (the fake) Slack.

Real processes on the real Kafka and Redis: the runtime service, a tool worker and one or two
approvals services, all loading ``slack_approval_app:app``. The approvals service signs
decisions with a key made for the test (the runtime gets its public key in
``FLOWAI_DECISION_PUBLIC_KEYS``) and takes each tenant's API secret from a secrets file.
The fake Slack runs in this process; the approvals services' slack-sdk reaches it over
HTTP, and it delivers clicks, signed as Slack signs them, to an approvals service.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from kafka_helpers import PARTITIONS
from processes import Service, until
from redis.asyncio import Redis
from slack_approval_app import SLACK_ALICE

from flowai_harness import connect
from flowai_harness.errors import (
    ApprovalAlreadyResolvedError,
    ApproverNotAllowedError,
    SignatureError,
    UnknownApprovalError,
)
from flowai_harness.kafka import approvals_http, bus
from flowai_harness.kafka.decision_auth import DecisionVerifier, generate_keys
from flowai_harness.testing.fake_slack import FakeSlack

pytestmark = pytest.mark.connected

APP = "slack_approval_app:app"
SECRETS = {"acme": "acme-secret-for-the-connected-tests", "globex": "globex-secret-for-these-tests"}
Event = dict[str, Any]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def clerk_deletes(table: str) -> str:
    """A coordinator's script: the clerk deletes ``table`` (a gated tool)."""
    nested = {"script": [{"tool": "delete_rows", "args": {"table": table}}]}
    ask = {"tool": "call_agent", "args": {"agent": "clerk", "prompt": json.dumps(nested)}}
    return json.dumps({"script": [ask]})


@dataclass
class Deployment:
    """What the services of a test share: where they are, and the key and secrets files."""

    spawn: Callable[..., Service]
    bootstrap: str
    redis_url: str
    topics: bus.Topics
    keys: Path
    services: list[Service]
    public_pem: bytes

    def common(self) -> tuple[str, ...]:
        return ("--app", APP, "--bootstrap", self.bootstrap, "--prefix", self.topics.prefix)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "FLOWAI_TEST_NS": self.topics.prefix,
            "FLOWAI_REDIS_URL": self.redis_url,
            "FLOWAI_DECISION_PUBLIC_KEYS": str(self.keys / "decision-key.pub.pem"),
            **extra,
        }

    def start_workers(self) -> None:
        self.services.append(
            self.spawn(
                "runtime",
                "-m",
                "services.runtime",
                *self.common(),
                "--partitions",
                str(PARTITIONS),
                env=self.env(),
            )
        )
        self.services.append(
            self.spawn(
                "tools",
                "-m",
                "services.tools",
                *self.common(),
                "--redis",
                self.redis_url,
                env=self.env(),
            )
        )

    async def start_approvals(self, name: str = "approvals", **env: str) -> tuple[Service, str]:
        """An approvals service; returns it and its base URL once it has read the topics."""
        port = free_port()
        service = self.spawn(
            name,
            "-m",
            "services.approvals",
            *self.common(),
            "--redis",
            self.redis_url,
            "--http",
            f"127.0.0.1:{port}",
            "--decision-key",
            str(self.keys / "decision-key.pem"),
            "--tenant-secrets",
            str(self.keys / "secrets.json"),
            "--slack-lease",
            "2",
            env=self.env(**env),
        )
        self.services.append(service)
        base = f"http://127.0.0.1:{port}"

        async def healthy() -> bool:
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{base}/healthz") as response,
                ):
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await until(healthy, within=30, what=f"{name} to read the topics", services=[service])
        return service, base


@pytest.fixture
def deployment(
    spawn: Callable[..., Service],
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    tmp_path: Path,
) -> Deployment:
    keys = tmp_path / "keys"
    keys.mkdir()
    private_pem, public_pem = generate_keys()
    (keys / "decision-key.pem").write_bytes(private_pem)
    (keys / "decision-key.pub.pem").write_bytes(public_pem)
    secrets = keys / "secrets.json"
    secrets.write_bytes(orjson.dumps(SECRETS))
    secrets.chmod(0o600)
    return Deployment(spawn, kafka_bootstrap, redis_url, topics, keys, [], public_pem)


def of_type(events: list[Event], kind: str) -> list[Event]:
    return [event for event in events if event["type"] == kind]


def finished(events: list[Event]) -> bool:
    """The run finished (not errored): `finish`, then the entry agent's wrapping result."""
    return [e["type"] for e in events[-2:]] == ["finish", "tool-agent"]


async def decisions_on_the_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every committed decision so far."""
    consumer = bus.consumer(bootstrap)
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[dict[str, Any]] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found.extend(orjson.loads(record.value) for record in records)
        return found
    finally:
        await consumer.stop()


def logged(service: Service, text: str) -> Callable[[], Any]:
    async def check() -> bool:
        return service.log.exists() and text in service.log.read_text(errors="replace")

    return check


# --- kill -9 while deciding ------------------------------------------------------------------


@pytest.mark.parametrize("step", ["before-publish", "after-publish"])
async def test_approval_decision_killed_at_any_step_loses_nothing_and_blocks_nothing(
    deployment: Deployment, redis: Redis, step: str
) -> None:
    deployment.start_workers()
    holding, base = await deployment.start_approvals(
        "approvals-held", FLOWAI_APPROVALS_TEST_HOLD=step
    )
    services = deployment.services
    events: list[Event] = []
    secret = SECRETS["acme"]
    answers: dict[str, Any] = {}

    async with connect(
        deployment.bootstrap, tenant="acme", topic_prefix=deployment.topics.prefix
    ) as client:
        async with asyncio.timeout(90):
            async for event in client.query(clerk_deletes("orders"), f"crash-{step}"):
                events.append(event)
                if event["type"] != "approval-required":
                    continue
                approval_id = event["data"]["id"]
                attempt = asyncio.create_task(
                    approvals_http.decide(
                        base, "acme", approval_id, "approve", approver="alice", secret=secret
                    )
                )
                await until(
                    logged(holding, f"holding at {step}"),
                    within=30,
                    what=f"the approvals service to reach {step}",
                    services=services,
                )
                holding.kill()
                with pytest.raises(aiohttp.ClientError):
                    await attempt  # the answer is lost with the process
                services.remove(holding)
                _, base = await deployment.start_approvals("approvals-restarted")
                # The approver tries again, on the instance that took over.
                answers["retry"] = await approvals_http.decide(
                    base, "acme", approval_id, "approve", approver="alice", secret=secret
                )
                with pytest.raises(ApprovalAlreadyResolvedError) as late:
                    await approvals_http.decide(
                        base, "acme", approval_id, "reject", approver="bob", secret=secret
                    )
                answers["late"] = late.value.details["decision"]

    assert all(service.alive() for service in services), "\n".join(s.tail() for s in services)
    assert finished(events), events[-3:]
    [decision] = [e["data"] for e in of_type(events, "approval-decision")]
    assert (decision["outcome"], decision["approver"]) == ({"outcome": "approve"}, "alice")
    assert await redis.hgetall(f"{deployment.topics.prefix}:deleted") == {b"orders": b"1"}
    retry, late = answers["retry"], answers["late"]
    assert retry["confirmed"] is True
    assert late["decision_id"] == retry["decision_id"]
    # Published once (before the kill, or at the retry); a copy would carry the same id.
    published = await decisions_on_the_topic(
        deployment.bootstrap, deployment.topics.approval_decisions
    )
    assert [d["id"] for d in published] == [retry["decision_id"]]
    assert DecisionVerifier.from_pems([deployment.public_pem]).verify(published[0])


# --- the attacks of issue 11 -----------------------------------------------------------------


async def test_approval_decision_cannot_be_moved_and_reads_need_the_tenants_credentials(
    deployment: Deployment,
) -> None:
    deployment.start_workers()
    _, base = await deployment.start_approvals()
    services = deployment.services
    secret = SECRETS["acme"]
    required: dict[str, str] = {}

    async with connect(
        deployment.bootstrap, tenant="acme", topic_prefix=deployment.topics.prefix
    ) as client:

        async def follow(thread: str, table: str) -> list[Event]:
            seen: list[Event] = []
            async for event in client.query(clerk_deletes(table), thread):
                seen.append(event)
                if event["type"] == "approval-required":
                    required[thread] = event["data"]["id"]
            return seen

        runs = [
            asyncio.create_task(follow("attack-a", "orders")),
            asyncio.create_task(follow("attack-b", "customers")),
        ]

        async def both_waiting() -> bool:
            return len(required) == 2

        await until(both_waiting, within=60, what="two approvals", services=services)
        first, second = required["attack-a"], required["attack-b"]
        body = orjson.dumps({"outcome": "approve", "approver": "alice"})
        captured = approvals_http.sign_request(
            secret, "POST", approvals_http.decision_path("acme", first), body
        )

        async with aiohttp.ClientSession() as http:

            async def send(
                method: str, path: str, headers: dict[str, str], data: bytes = b""
            ) -> int:
                import yarl

                target = yarl.URL(base + path, encoded=True)
                async with http.request(
                    method, target, data=data or None, headers=headers
                ) as answer:
                    return answer.status

            # A captured signed decision, replayed onto another approval and another tenant.
            moved = await send("POST", approvals_http.decision_path("acme", second), captured, body)
            crossed = await send(
                "POST", approvals_http.decision_path("globex", first), captured, body
            )
            # Reads without the tenant's credentials, or with another tenant's.
            anonymous = await send("GET", approvals_http.approvals_path("acme"), {})
            globex = await send(
                "GET",
                approvals_http.approval_path("acme", first),
                approvals_http.sign_request(
                    SECRETS["globex"], "GET", approvals_http.approval_path("acme", first)
                ),
            )
            # An approver the policy does not name.
            with pytest.raises(ApproverNotAllowedError):
                await approvals_http.decide(
                    base, "acme", first, "approve", approver="mallory", secret=secret, session=http
                )
            with pytest.raises(SignatureError):
                await approvals_http.pending(base, "acme", secret=SECRETS["globex"], session=http)
            with pytest.raises(UnknownApprovalError):
                await approvals_http.show(
                    base, "globex", first, secret=SECRETS["globex"], session=http
                )
            # The captured request itself decides its own approval, once.
            original = await send(
                "POST", approvals_http.decision_path("acme", first), captured, body
            )
            listed = await approvals_http.pending(base, "acme", secret=secret, session=http)
            assert [a["id"] for a in listed] == [second]
            await approvals_http.decide(
                base,
                "acme",
                second,
                "reject",
                approver="bob",
                feedback="no",
                secret=secret,
                session=http,
            )

        async with asyncio.timeout(60):
            results = await asyncio.gather(*runs)

    assert (moved, crossed, anonymous, globex, original) == (401, 401, 401, 401, 202)
    assert all(service.alive() for service in services)
    approved, rejected = results
    assert finished(approved)
    assert finished(rejected)
    [a_decision] = [e["data"] for e in of_type(approved, "approval-decision")]
    [b_decision] = [e["data"] for e in of_type(rejected, "approval-decision")]
    assert (a_decision["approver"], b_decision["approver"]) == ("alice", "bob")
    assert b_decision["outcome"]["outcome"] == "reject"


# --- Slack -----------------------------------------------------------------------------------


async def test_approval_request_posted_to_slack_is_decided_by_a_click_and_the_message_follows(
    deployment: Deployment, redis: Redis
) -> None:
    async with FakeSlack() as slack:
        slack_env = {
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": slack.signing_secret,
            "FLOWAI_SLACK_API_URL": slack.api_url,
            "FLOWAI_SLACK_CHANNEL": "#approvals",
        }
        deployment.start_workers()
        # Two approvals instances: the request is posted once.
        first, base = await deployment.start_approvals("approvals-a", **slack_env)
        second, _ = await deployment.start_approvals("approvals-b", **slack_env)
        slack.interactivity_url = f"{base}/slack/events"
        services = deployment.services
        events: list[Event] = []

        async with connect(
            deployment.bootstrap, tenant="acme", topic_prefix=deployment.topics.prefix
        ) as client:
            async with asyncio.timeout(90):
                async for event in client.query(clerk_deletes("orders"), "slack-thread"):
                    events.append(event)
                    if event["type"] != "approval-required":
                        continue
                    [call] = await slack.wait_for("chat.postMessage", within=30)
                    for service in (first, second):
                        await until(
                            logged(service, event["data"]["id"]),
                            within=30,
                            what=f"{service.name} to have handled the Slack message",
                            services=services,
                        )
                    [message] = slack.messages
                    # Someone the policy does not name clicks first: told, nothing decided.
                    status, _ = await slack.click(message, "flowai_approve", user_id="U0MALLORY")
                    assert status == 200
                    await slack.wait_for("chat.postEphemeral", within=30)
                    status, _ = await slack.click(message, "flowai_approve", user_id=SLACK_ALICE)
                    assert status == 200

        [update] = await slack.wait_for("chat.update", within=30)

    assert all(service.alive() for service in services), "\n".join(s.tail() for s in services)
    assert call.args["channel"] == "#dba"
    assert len(slack.calls_of("chat.postMessage")) == 1
    assert finished(events)
    [decision] = [e["data"] for e in of_type(events, "approval-decision")]
    assert decision["approver"] == f"slack:{SLACK_ALICE}"
    assert await redis.hgetall(f"{deployment.topics.prefix}:deleted") == {b"orders": b"1"}
    assert update.args["ts"] == message.ts
    shown = orjson.dumps(message.blocks).decode()
    assert f"*Approved* by <@{SLACK_ALICE}>" in shown
    assert message.buttons() == {}
    [told] = slack.ephemerals
    assert "may not decide" in told["text"]
