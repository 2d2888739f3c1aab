"""A plan approval decided through the HTTP API resumes the run to completion (connected test 3
of issue 4), and a tool gate decided by the client's ``respond_to_approval``.

Real processes on the real Kafka and Redis: the runtime service, a tool worker and the
approvals service, all loading ``plan_approval_app:app``; the approvals service signs its
decisions with a key made for the test (the runtime gets the public key) and serves tenant
``acme`` with the secret ``SECRET``. A client (``connect``) runs the
query and follows the thread; at ``approval-required`` the test decides through the
approvals API (or publishes the decision with the client), and the run goes on to
``finish``. The app counts its side effects in Redis: each happens exactly once.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from kafka_helpers import PARTITIONS, RunLog
from plan_approval_app import STOCK
from processes import Service, until
from redis.asyncio import Redis

from flowai_harness import connect
from flowai_harness.errors import ApprovalAlreadyResolvedError, ApproverNotAllowedError
from flowai_harness.kafka import approvals_http, bus, decision_auth
from flowai_harness.references import reference_id

pytestmark = pytest.mark.connected

APP = "plan_approval_app:app"
SECRET = "acme-secret-for-the-plan-tests"
Event = dict[str, Any]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ask(agent: str, *calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A coordinator's script entry handing ``agent`` a script of tool calls."""
    nested = {"script": [{"tool": tool, "args": args} for tool, args in calls]}
    return {"tool": "call_agent", "args": {"agent": agent, "prompt": json.dumps(nested)}}


def conversation(*entries: dict[str, Any]) -> str:
    return json.dumps({"script": list(entries)})


def restock(plan_id: str) -> str:
    """Plan (a draft), then execute (stops at the gate): the scripted model copies the handle
    find_products returns (its id is the content address of the products)."""
    handle = {"kind": "product_set", "id": reference_id("acme", "product_set", STOCK)}
    body = {
        "reason": "below reorder point",
        "actions": [
            {"kind": "reorder_products", "products": handle, "quantity": 50},
            {"kind": "hold_inventory", "sku": "C-007", "reason": "QA first"},
        ],
    }
    return conversation(
        ask(
            "planner",
            ("find_products", {}),
            ("storePlan", {"specName": "restock", "planId": plan_id, "body": body}),
        ),
        ask("executor", ("executePlan", {"planId": plan_id})),
    )


async def start_services(
    spawn: Callable[..., Service],
    bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    keys: Path,
) -> tuple[list[Service], str]:
    """Runtime, tool worker and approvals processes; returns them and the API's base URL
    once the approvals service has read its topics."""
    common = ("--app", APP, "--bootstrap", bootstrap, "--prefix", topics.prefix)
    (keys / "secrets.json").write_bytes(orjson.dumps({"acme": SECRET}))
    # The session's deciding key pair comes with every spawned service (conftest.py): the
    # approvals service signs with it, the runtime trusts it, and so do the clients here.
    env = {
        "FLOWAI_TEST_NS": topics.prefix,
        "FLOWAI_REDIS_URL": redis_url,
        "FLOWAI_APPROVALS_TENANT_SECRETS": str(keys / "secrets.json"),
    }
    port = free_port()
    services = [
        spawn(
            "runtime", "-m", "services.runtime", *common, "--partitions", str(PARTITIONS), env=env
        ),
        spawn("tools", "-m", "services.tools", *common, "--redis", redis_url, env=env),
        spawn(
            "approvals",
            "-m",
            "services.approvals",
            *common,
            "--redis",
            redis_url,
            "--http",
            f"127.0.0.1:{port}",
            env=env,
        ),
    ]
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

    await until(healthy, within=30, what="the approvals service", services=services)
    return services, base


def of_type(events: list[Event], kind: str) -> list[Event]:
    return [event for event in events if event["type"] == kind]


def result_of(events: list[Event], tool: str) -> Any:
    [result] = [
        e["result"]
        for e in of_type(events, "tool-invocation")
        if e["toolName"] == tool and e["state"] == "result"
    ]
    return result


async def test_approval_request_of_a_plan_decided_through_the_http_api_resumes_the_run(
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    redis: Redis,
    spawn: Callable[..., Service],
    tmp_path: Path,
) -> None:
    services, base = await start_services(spawn, kafka_bootstrap, redis_url, topics, tmp_path)
    events: list[Event] = []
    decided: dict[str, Any] = {}

    async with (
        connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client,
        aiohttp.ClientSession() as http,
    ):
        stream = client.query(restock("restock-1"), "plan-thread")
        async with asyncio.timeout(60):
            async for event in stream:
                events.append(event)
                if event["type"] != "approval-required":
                    continue
                approval_id = event["data"]["id"]
                # Only the approvers the app names may decide for acme.
                with pytest.raises(ApproverNotAllowedError):
                    await approvals_http.decide(
                        base,
                        "acme",
                        approval_id,
                        "approve",
                        approver="mallory",
                        secret=SECRET,
                        session=http,
                    )
                decided = await approvals_http.decide(
                    base,
                    "acme",
                    approval_id,
                    "approve",
                    approver="alice",
                    secret=SECRET,
                    session=http,
                )
                # The first decision wins; bob comes second.
                with pytest.raises(ApprovalAlreadyResolvedError):
                    await approvals_http.decide(
                        base,
                        "acme",
                        approval_id,
                        "reject",
                        approver="bob",
                        secret=SECRET,
                        session=http,
                    )

    assert all(service.alive() for service in services), "\n".join(s.tail() for s in services)
    [required] = [e["data"] for e in of_type(events, "approval-required")]
    assert (required["kind"], required["target"], required["resourceId"]) == (
        "plan",
        "restock-1",
        "acme",
    )
    [decision] = [e["data"] for e in of_type(events, "approval-decision")]
    assert decision["id"] == required["id"] == decided["approval_id"]
    assert decision["outcome"] == {"outcome": "approve"}
    assert decision["approver"] == "alice"
    moves = [(e["data"]["from"], e["data"]["to"]) for e in of_type(events, "plan-status-change")]
    assert moves == [
        (None, "draft"),
        ("draft", "pending_approval"),
        ("pending_approval", "approved"),
        ("approved", "executing"),
        ("executing", "executed"),
    ]
    executed = result_of(events, "executePlan")
    assert executed["status"] == "executed"
    assert (executed["entitiesAffected"], executed["summary"]) == (2, "ordered A-100, C-007")
    kinds = [a["kind"] for a in executed["details"]["resolvedActions"]]
    assert kinds == ["reorder_products", "hold_inventory"]
    assert ends_finished(events)

    # The dispatcher ran once, with the products hydrated from the Redis reference store.
    ns = topics.prefix
    assert await redis.hgetall(f"{ns}:dispatched") == {b"restock-1": b"1"}
    assert await redis.lrange(f"{ns}:ordered", 0, -1) == [b"A-100", b"C-007"]

    # The approvals service shows it decided, by alice, and no longer pending.
    async with aiohttp.ClientSession() as http:
        assert await approvals_http.pending(base, "acme", secret=SECRET, session=http) == []
        shown = await approvals_http.show(base, "acme", decision["id"], secret=SECRET, session=http)
    assert (shown["status"], shown["decision"]["approver"]) == ("decided", "alice")


def ends_finished(events: list[Event]) -> bool:
    """The run finished (not errored): `finish`, then the entry agent's wrapping result."""
    return [e["type"] for e in events[-2:]] == ["finish", "tool-agent"]


async def test_approval_decision_by_the_client_at_a_tool_gate_runs_the_tool_once(
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    redis: Redis,
    spawn: Callable[..., Service],
    tmp_path: Path,
) -> None:
    services, base = await start_services(spawn, kafka_bootstrap, redis_url, topics, tmp_path)
    events: list[Event] = []
    prompt = conversation(ask("clerk", ("delete_rows", {"table": "orders"})))

    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        async with asyncio.timeout(60):
            async for event in client.query(prompt, "gate-thread"):
                events.append(event)
                if event["type"] == "approval-required":
                    # Nothing ran before the decision.
                    assert await redis.hgetall(f"{topics.prefix}:deleted") == {}
                    await client.respond_to_approval(event["data"]["id"], "approve", approver="bob")

    assert all(service.alive() for service in services)
    [required] = [e["data"] for e in of_type(events, "approval-required")]
    assert (required["kind"], required["target"]) == ("tool", "delete_rows")
    [decision] = [e["data"] for e in of_type(events, "approval-decision")]
    assert decision["approver"] == "bob"
    assert result_of(events, "delete_rows") == {"deleted": "orders", "times": 1}
    assert ends_finished(events)
    assert await redis.hgetall(f"{topics.prefix}:deleted") == {b"orders": b"1"}

    # The approvals service read bob's signed decision on the topic: the API refuses another.
    async def shown_decided() -> bool:
        async with aiohttp.ClientSession() as http:
            shown = await approvals_http.show(
                base, "acme", required["id"], secret=SECRET, session=http
            )
        return shown["decision"] is not None

    await until(shown_decided, within=10, what="the decision in the approvals service")
    async with aiohttp.ClientSession() as http:
        shown = await approvals_http.show(base, "acme", required["id"], secret=SECRET, session=http)
    assert shown["decision"]["approver"] == "bob"


async def test_deadline_reached_expires_an_approval_nobody_decides_and_the_run_goes_on(
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    redis: Redis,
    spawn: Callable[..., Service],
    tmp_path: Path,
) -> None:
    services, _ = await start_services(spawn, kafka_bootstrap, redis_url, topics, tmp_path)
    events: list[Event] = []
    prompt = conversation(ask("night_clerk", ("delete_rows", {"table": "orders"})))

    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        async with asyncio.timeout(60):
            async for event in client.query(prompt, "expiring-thread"):
                events.append(event)  # nobody decides: the runtime's deadline must

    assert all(service.alive() for service in services)
    [required] = [e["data"] for e in of_type(events, "approval-required")]
    assert required["expiresAt"] is not None
    [decision] = [e["data"] for e in of_type(events, "approval-decision")]
    assert (decision["outcome"], decision["reason"]) == ({"outcome": "reject"}, "timeout")
    assert result_of(events, "delete_rows")["error"]["code"] == "APPROVAL_REJECTED"
    assert ends_finished(events)
    assert await redis.hgetall(f"{topics.prefix}:deleted") == {}, "the tool never ran"


async def test_approval_check_of_a_dynamic_rule_is_evaluated_by_the_runtime_service(
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    redis: Redis,
    spawn: Callable[..., Service],
    tmp_path: Path,
) -> None:
    services, _ = await start_services(spawn, kafka_bootstrap, redis_url, topics, tmp_path)
    events: list[Event] = []
    prompt = conversation(
        ask("night_clerk", ("export_rows", {"rows": 10}), ("export_rows", {"rows": 500}))
    )

    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        async with asyncio.timeout(60):
            async for event in client.query(prompt, "rule-thread"):
                events.append(event)
                if event["type"] == "approval-required":
                    await client.respond_to_approval(
                        event["data"]["id"], "approve", approver="alice"
                    )

    assert all(service.alive() for service in services)
    # Only the big export stopped for a human; both ran once.
    [required] = [e["data"] for e in of_type(events, "approval-required")]
    assert required["payload"] == {"rows": 500}
    assert ends_finished(events)
    assert await redis.hgetall(f"{topics.prefix}:exported") == {b"10": b"1", b"500": b"1"}


async def test_approval_decision_written_straight_to_the_topic_opens_nothing(
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    redis: Redis,
    spawn: Callable[..., Service],
    run_log: RunLog,
    tmp_path: Path,
) -> None:
    """Whoever can write to approval-decisions cannot open a gate: an unsigned decision and one
    signed by a key the runtime does not trust are dead letters, and the tool does not run
    until a real decision comes."""
    services, base = await start_services(spawn, kafka_bootstrap, redis_url, topics, tmp_path)
    events: list[Event] = []
    prompt = conversation(ask("clerk", ("delete_rows", {"table": "orders"})))
    stranger = decision_auth.DecisionSigner.from_pem(decision_auth.generate_keys()[0])
    producer = bus.producer(kafka_bootstrap)
    await producer.start()
    try:
        async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
            async with asyncio.timeout(60):
                async for event in client.query(prompt, "forged-thread"):
                    events.append(event)
                    if event["type"] != "approval-required":
                        continue
                    approval = event["data"]["id"]
                    forged = {
                        "schema": "flowai.v1.ApprovalDecision",
                        "id": "forged-1",
                        "tenant": "acme",
                        "thread_id": "forged-thread",
                        "ts": bus.now_ms(),
                        "payload": {
                            "approval_id": approval,
                            "outcome": "approve",
                            "approver": "mallory",
                        },
                    }
                    key = bus.thread_key("acme", "forged-thread")
                    for body in (forged, stranger.signed({**forged, "id": "forged-2"})):
                        await producer.send_and_wait(
                            topics.approval_decisions, orjson.dumps(body), key=key
                        )

                    async def refused() -> bool:
                        await run_log.poll()
                        reasons = [letter["payload"]["reason"] for letter in run_log.letters]
                        return reasons.count("DECISION_UNVERIFIED") == 2

                    await until(refused, within=30, what="two dead letters", services=services)
                    # The gate is still shut; the approvals service decides it for real.
                    assert await redis.hgetall(f"{topics.prefix}:deleted") == {}
                    async with aiohttp.ClientSession() as http:
                        await approvals_http.decide(
                            base, "acme", approval, "approve", approver="alice",
                            secret=SECRET, session=http,
                        )  # fmt: skip
    finally:
        await producer.stop()

    [decision] = [e["data"] for e in of_type(events, "approval-decision")]
    assert decision["approver"] == "alice"
    assert result_of(events, "delete_rows") == {"deleted": "orders", "times": 1}
