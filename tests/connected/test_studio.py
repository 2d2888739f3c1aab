"""Studio on the runtime service (``flowai studio --kafka``): it shows the tenant's run log as
it stood when it started and as it goes on, runs a chat by publishing a query, decides an
approval by publishing a signed decision that resumes the run, and shows a decision made
elsewhere (the client, as chat-ops or the CLI would) at once.

Runtime and tool worker load ``plan_approval_app:app``; Studio signs with the session's
deciding key (``FLOWAI_DECISION_KEY`` from ``service_env``), which the runtime trusts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from kafka_helpers import PARTITIONS
from processes import Service, until
from test_plan_approval import APP, ask, conversation, free_port, restock

from flowai_harness import connect
from flowai_harness.kafka import bus

pytestmark = [pytest.mark.connected, pytest.mark.usefixtures("deciding_client")]


async def test_studio_follows_the_run_log_and_decides_through_kafka(
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
) -> None:
    common = ("--app", APP, "--bootstrap", kafka_bootstrap, "--prefix", topics.prefix)
    env = {"FLOWAI_TEST_NS": topics.prefix, "FLOWAI_REDIS_URL": redis_url}
    services = [
        spawn(
            "runtime", "-m", "services.runtime", *common, "--partitions", str(PARTITIONS), env=env
        ),
        spawn("tools", "-m", "services.tools", *common, "--redis", redis_url, env=env),
    ]
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        # A run paused at the plan gate before Studio starts.
        async with asyncio.timeout(60):
            async for event in client.query(restock("restock-1"), "plan-thread"):
                if event["type"] == "approval-required":
                    plan_approval = event["data"]["id"]
                    break

        port = free_port()
        studio = spawn(
            "studio",
            "-m",
            "flowai_harness.studio",
            "--kafka",
            kafka_bootstrap,
            "--tenant",
            "acme",
            "--prefix",
            topics.prefix,
            "--app",
            APP,
            "--port",
            str(port),
            env=env,
        )
        services.append(studio)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:

            async def get(path: str) -> Any:
                async with http.get(base + path) as response:
                    assert response.status == 200, await response.text()
                    return await response.json()

            async def answers() -> bool:
                try:
                    await get("/api/status")
                except aiohttp.ClientError:
                    return False
                return True

            await until(answers, within=30, what="Studio", services=services)
            status = await get("/api/status")
            assert (status["mode"], status["tenant"]) == ("distributed", "acme")

            # What the log held at start is there at once.
            [thread] = await get("/api/threads")
            assert (thread["threadId"], thread["status"]) == ("plan-thread", "awaiting-approval")
            [pending] = await get("/api/approvals")
            assert (pending["id"], pending["kind"], pending["target"]) == (
                plan_approval,
                "plan",
                "restock-1",
            )

            # State at the gate, folded from the log, and a fork from it through the service:
            # the fork waits at the same gate under its own approval id; the source is
            # untouched. A fork the engine refuses (seq 1 is mid-run) is answered at once.
            events = await get("/api/threads/plan-thread/events")
            gate_seq = next(e["seq"] for e in events if e["payload"]["type"] == "approval-required")
            state = await get(f"/api/threads/plan-thread/state?at={gate_seq}")
            assert (state["seq"], state["status"]) == (gate_seq, "awaiting-approval")
            async with http.post(
                f"{base}/api/threads/plan-thread/fork",
                json={"at": gate_seq, "newThreadId": "plan-fork"},
            ) as response:
                assert response.status == 201, await response.text()
                fork = await response.json()
            assert (fork["threadId"], fork["source"], fork["seq"]) == (
                "plan-fork",
                "plan-thread",
                gate_seq,
            )
            assert fork["approvalId"] not in (None, plan_approval)
            async with http.post(
                f"{base}/api/threads/plan-thread/fork", json={"at": 1}
            ) as response:
                assert response.status == 409, await response.text()
                assert (await response.json())["error"]["code"] == "FORK_UNAVAILABLE"
            assert (await get("/api/threads/plan-thread"))["status"] == "awaiting-approval"
            async with http.post(
                f"{base}/api/approvals/{fork['approvalId']}/decision",
                json={"outcome": "reject", "approver": "alice", "feedback": "not the fork"},
            ) as response:
                assert response.status == 202, await response.text()

            async def fork_decided() -> bool:
                return (await get("/api/threads/plan-fork"))["status"] != "awaiting-approval"

            await until(fork_decided, within=30, what="the fork's rejection", services=services)

            # A chat publishes a query; its gate shows in the inbox as the log goes on.
            prompt = conversation(ask("clerk", ("delete_rows", {"table": "orders"})))
            async with http.post(
                f"{base}/api/chat", json={"prompt": prompt, "threadId": "clerk-thread"}
            ) as response:
                assert response.status == 202, await response.text()

            async def clerk_gate() -> bool:
                waiting = await get("/api/approvals")
                return any(a["threadId"] == "clerk-thread" for a in waiting)

            await until(clerk_gate, within=30, what="the clerk's gate in Studio", services=services)
            [tool_approval] = [
                a["id"] for a in await get("/api/approvals") if a["threadId"] == "clerk-thread"
            ]

            # Decided in Studio: a signed decision on Kafka resumes the run to its end.
            async with http.post(
                f"{base}/api/approvals/{plan_approval}/decision",
                json={"outcome": "approve", "approver": "alice", "feedback": "fine"},
            ) as response:
                assert response.status == 202, await response.text()

            async def plan_done() -> bool:
                return bool((await get("/api/threads/plan-thread"))["status"] == "finished")

            await until(plan_done, within=30, what="the plan run to finish", services=services)
            decided = {a["id"]: a for a in await get("/api/approvals?status=all")}
            assert decided[plan_approval]["status"] == "approve"
            assert decided[plan_approval]["approver"] == "alice"
            events = await get("/api/threads/plan-thread/events")
            results = [
                e["payload"]["result"]
                for e in events
                if e["payload"]["type"] == "tool-invocation"
                and e["payload"].get("toolName") == "executePlan"
                and e["payload"]["state"] == "result"
            ]
            assert results[0]["status"] == "executed"
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

            # Decided elsewhere (the client): Studio shows it as soon as it is logged.
            await client.respond_to_approval(tool_approval, "reject", "not today", None, "bob")

            async def tool_rejected() -> bool:
                found = {a["id"]: a for a in await get("/api/approvals?status=all")}
                return bool(found[tool_approval]["status"] == "reject")

            await until(tool_rejected, within=30, what="the rejection in Studio", services=services)
            assert await get("/api/approvals") == []
