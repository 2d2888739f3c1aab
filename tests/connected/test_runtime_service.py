"""The runtime service as a separate process on the real Kafka.

Connected tests 1, 4 and 6 of issue 4: an upstream producer that knows only the JSON Schema
starts a run and the client follows the thread; a runtime killed with SIGKILL mid-run is
replaced and every run finishes with no lost and no duplicated event; bad inputs on every
input topic become dead letters with their reason while the service keeps going.
Tools are answered by the in-test responder (``tool_responder``), which runs the handlers
through :mod:`flowai_harness.toolcall` exactly like a tool worker, except in the kill -9 test,
which runs the real tool worker (``services.tools``, with Redis).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import REPO, RunLog, ToolResponder, runtime_args
from processes import Service, until
from redis.asyncio import Redis

from flowai_harness import connect, create_runtime, messages
from flowai_harness.kafka import bus, decision_auth

pytestmark = pytest.mark.connected


def script(*steps: tuple[str, dict[str, Any]]) -> str:
    return json.dumps({"script": [{"tool": tool, "args": args} for tool, args in steps]})


def upstream_query(thread_id: str, prompt: str, query_id: str) -> dict[str, Any]:
    """A Query written by hand from schemas/v1/Query.json (no flowai code involved)."""
    return {
        "schema": "flowai.v1.Query",
        "id": query_id,
        "tenant": "acme",
        "thread_id": thread_id,
        "run_id": None,
        "causation_id": None,
        "ts": 1_732_400_000_000,
        "payload": {"prompt": prompt, "agent": None},
    }


def check_against_schema(body: dict[str, Any], schema: dict[str, Any]) -> None:
    """The structural part of JSON Schema an upstream producer relies on: required fields
    present, no field the schema does not declare, the const schema name."""
    assert set(schema["required"]) <= set(body) <= set(schema["properties"])
    assert body["schema"] == schema["properties"]["schema"]["const"]
    payload = schema["$defs"][schema["properties"]["payload"]["$ref"].rsplit("/", 1)[-1]]
    assert set(payload["required"]) <= set(body["payload"]) <= set(payload["properties"])


async def plain_producer(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    return producer


def ends_finished(events: list[dict[str, Any]]) -> bool:
    """The run finished (not errored): `finish`, then the entry agent's wrapping result."""
    return [e["type"] for e in events[-2:]] == ["finish", "tool-agent"]


def check_thread_log(entries: list[dict[str, Any]], runs: int) -> None:
    """seq 1..N, each exactly once, ``runs`` runs each started once and ended once."""
    seqs = [entry["seq"] for entry in entries]
    assert seqs == list(range(1, len(entries) + 1)), seqs
    kinds = Counter(entry["payload"]["type"] for entry in entries)
    assert kinds["run-start"] == runs
    assert kinds["finish"] + kinds["error"] == runs
    last = entries[-1]["payload"]
    assert last["type"] == "error" or (last["type"] == "tool-agent" and "targetAgent" not in last)


async def test_query_from_an_upstream_producer_is_logged_and_the_client_follows_the_thread(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
    tool_responder: ToolResponder,
) -> None:
    runtime = spawn("runtime", *runtime_args(kafka_bootstrap, topics.prefix))
    thread = "upstream-thread"
    first = script(("add", {"a": 2, "b": 3}))
    body = upstream_query(thread, first, "upstream-q-1")
    check_against_schema(body, json.loads((REPO / "schemas/v1/Query.json").read_text()))

    producer = await plain_producer(kafka_bootstrap)
    try:
        # Key tenant/thread_id, default partitioner: nothing else is needed from flowai.
        await producer.send_and_wait(
            topics.queries, json.dumps(body).encode(), key=f"acme/{thread}".encode()
        )
    finally:
        await producer.stop()

    async def finished() -> bool:
        await run_log.poll()
        return run_log.finished(thread)

    await until(finished, within=30, what="the upstream query's run", services=[runtime])
    entries = run_log.thread(thread)
    check_thread_log(entries, runs=1)
    assert entries[0]["causation_id"] == "upstream-q-1"
    for entry in entries:
        assert isinstance(messages.decode(orjson.dumps(entry)), messages.RuntimeEvent)
    [result] = [
        e["payload"]
        for e in entries
        if e["payload"]["type"] == "tool-invocation" and e["payload"]["state"] == "result"
    ]
    assert result["result"] == {"sum": 5}

    second = script(("add", {"a": 4, "b": 5}), ("slow", {"ms": 1}))
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        remote = [event async for event in client.query(second, thread)]

    # The same two queries on the embedded runtime stream the same events (times aside).
    from flowai_test_app import spec

    embedded = create_runtime(spec, interpreter="scripted")
    _ = [event async for event in embedded.query(first, thread)]
    local = [event async for event in embedded.query(second, thread)]

    def comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if e["type"] != "data-latency-summary"]

    assert comparable(remote) == comparable(local)
    assert ends_finished(remote)

    async def logged_twice() -> bool:
        await run_log.poll()
        return sum(e["payload"]["type"] == "finish" for e in run_log.thread(thread)) == 2

    await until(logged_twice, within=10, what="the second run in the log", services=[runtime])
    check_thread_log(run_log.thread(thread), runs=2)

    # `flowai replay` prints the same timeline.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowai_harness.cli",
        "replay",
        thread,
        "--tenant",
        "acme",
        "--bootstrap",
        kafka_bootstrap,
        "--prefix",
        topics.prefix,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert [int(line.split()[0]) for line in lines] == [e["seq"] for e in run_log.thread(thread)]
    assert any("add -> " in line for line in lines)


async def test_runtime_killed_mid_run_is_replaced_without_losing_or_duplicating_events(
    kafka_bootstrap: str,
    redis_url: str,
    redis: Redis,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
) -> None:
    # The real tool worker answers the tools (its Redis keys live under the prefix).
    tools = spawn(
        "tools",
        "-m",
        "services.tools",
        "--app",
        "flowai_test_app:spec",
        "--bootstrap",
        kafka_bootstrap,
        "--redis",
        redis_url,
        "--prefix",
        topics.prefix,
        "--concurrency",
        "32",
    )
    # Static membership: the replacement (same instance id) takes the partitions at once.
    flags = ("--instance-id", "runtime-a", "--session-timeout-ms", "6000")
    first = spawn("runtime-first", *runtime_args(kafka_bootstrap, topics.prefix, *flags))
    threads = [f"crash-{n}" for n in range(24)]
    steps = tuple(("slow", {"ms": 120}) for _ in range(4))
    producer = await plain_producer(kafka_bootstrap)
    try:
        for n, thread in enumerate(threads):
            body = upstream_query(thread, script(*steps), f"crash-q-{n}")
            await producer.send(
                topics.queries, orjson.dumps(body), key=bus.thread_key("acme", thread)
            )
        await producer.flush()
    finally:
        await producer.stop()

    async def mid_run() -> bool:
        await run_log.poll()
        done = sum(run_log.finished(thread) for thread in threads)
        return len(run_log.entries) >= 3 * len(threads) and done < len(threads) // 2

    await until(mid_run, within=30, what="runs in flight", services=[first, tools])
    first.kill()
    finished_before = sum(run_log.finished(thread) for thread in threads)
    second = spawn("runtime-second", *runtime_args(kafka_bootstrap, topics.prefix, *flags))

    async def all_finished() -> bool:
        await run_log.poll()
        return all(run_log.finished(thread) for thread in threads)

    await until(all_finished, within=45, what="every run to finish", services=[second, tools])

    # Read the whole log again, from scratch, as any read_committed consumer sees it.
    fresh = await RunLog.read_whole(kafka_bootstrap, topics)
    ids = [entry["id"] for entry in fresh.entries]
    assert len(ids) == len(set(ids)), "an event was logged twice"
    for thread in threads:
        entries = fresh.thread(thread)
        check_thread_log(entries, runs=1)
        assert ends_finished([entry["payload"] for entry in entries])
        assert _results(entries) == [{"slept": 120}] * 4
    # The second process rebuilt the threads from the log, and had work left to do.
    assert "replayed" in second.log.read_text()
    assert finished_before < len(threads) // 2


def _results(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        entry["payload"]["result"]
        for entry in entries
        if entry["payload"]["type"] == "tool-invocation" and entry["payload"]["state"] == "result"
    ]


async def test_bad_inputs_become_dead_letters_and_the_service_keeps_going(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
    tool_responder: ToolResponder,
) -> None:
    runtime = spawn("runtime", *runtime_args(kafka_bootstrap, topics.prefix))
    unknown_thread = {
        "schema": "flowai.v1.ToolResult",
        "id": "result-for-nobody",
        "tenant": "acme",
        "thread_id": "never-seen",
        "run_id": "run-1",
        "causation_id": None,
        "ts": 1,
        "payload": {"invocation_id": "acme/never-seen/run-1/x", "output": 1},
    }
    wrong_schema = {**upstream_query("wrong-schema", "hi", "wrong-1"), "schema": "flowai.v1.Nope"}
    other_tenant = {**upstream_query("theirs", "hi", "globex-1"), "tenant": "globex"}
    bad: list[tuple[str, bytes, bytes | None, str]] = [
        (topics.queries, b"\xff\xfe not json", b"junk", "INPUT_MALFORMED"),
        (topics.queries, orjson.dumps(wrong_schema), b"acme/wrong-schema", "INPUT_UNKNOWN_SCHEMA"),
        (topics.queries, orjson.dumps(other_tenant), b"globex/theirs", "TENANT_MISMATCH"),
        (topics.tool_results, orjson.dumps(unknown_thread), b"acme/never-seen", "UNKNOWN_THREAD"),
        (topics.tool_results, b"[1, 2", None, "INPUT_MALFORMED"),
        (topics.approval_decisions, b"{}", b"x", "INPUT_MALFORMED"),
    ]
    producer = await plain_producer(kafka_bootstrap)
    try:
        for topic, value, key, _ in bad:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    async def dead_lettered() -> bool:
        await run_log.poll()
        return len(run_log.letters) >= len(bad)

    await until(dead_lettered, within=30, what="a dead letter per bad input", services=[runtime])
    letters = [messages.decode(orjson.dumps(letter)) for letter in run_log.letters]
    assert len(letters) == len(bad)
    seen = {}
    for letter in letters:
        assert isinstance(letter, messages.DeadLetter)
        payload = letter.payload
        assert payload.service == "runtime"
        assert payload.source is not None
        seen[(payload.source.topic, payload.original_bytes())] = payload
    for topic, value, _, reason in bad:
        payload = seen[(topic, value)]
        assert payload.reason == reason, (payload.reason, payload.message)
        assert payload.message
    assert seen[(topics.queries, bad[0][1])].encoding == "base64"

    # The service kept going: another thread's run completes.
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        events = [e async for e in client.query(script(("add", {"a": 1, "b": 1})), "after-bad")]
    assert ends_finished(events)
    assert runtime.alive()


async def test_a_refused_query_ends_the_client_stream_with_the_engine_error(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    tool_responder: ToolResponder,
) -> None:
    runtime = spawn("runtime", *runtime_args(kafka_bootstrap, topics.prefix))
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        slow = client.query(script(("slow", {"ms": 3000})), "busy")
        stream = slow.__aiter__()
        first = await asyncio.wait_for(stream.__anext__(), 30)
        assert (first["type"], first["state"]) == ("tool-agent", "call")
        refused = [e async for e in client.query("{}", "busy")]
        assert refused == [
            {
                "type": "error",
                "error": {"code": "THREAD_BUSY", "message": refused[0]["error"]["message"]},
            }
        ]
        slow.cancel()
        rest = [event async for event in stream]
        (finish,) = [event for event in rest if event["type"] == "finish"]
        assert finish["finishReason"] == "cancelled"
        assert ends_finished(rest)
    assert runtime.alive()


async def test_approval_decision_from_respond_to_approval_is_signed_for_the_thread(
    kafka_bootstrap: str, topics: bus.Topics, decision_keys: tuple[Path, Path]
) -> None:
    private, public = decision_keys
    consumer = bus.consumer(kafka_bootstrap, topics.approval_decisions)
    await consumer.start()
    try:
        async with connect(
            kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix, decision_key=str(private)
        ) as client:
            decision_id = await client.respond_to_approval(
                "appr:review-thread/run-1/call-9",
                "revise",
                feedback="smaller batch",
                partial={"limit": 10},
                approver="ana@example.com",
            )
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert record.key == b"acme/review-thread"
    decision = messages.decode(record.value)
    assert isinstance(decision, messages.ApprovalDecision)
    assert decision.id == decision_id
    assert decision.thread_id == "review-thread"
    assert decision.payload.model_dump(exclude={"signature"}) == {
        "approval_id": "appr:review-thread/run-1/call-9",
        "outcome": "revise",
        "feedback": "smaller batch",
        "partial": {"limit": 10},
        "approver": "ana@example.com",
    }
    # Signed with the client's deciding key: a runtime that trusts it accepts the decision.
    verifier = decision_auth.DecisionVerifier.from_pems([str(public)])
    assert verifier.verify(orjson.loads(record.value)) == verifier.key_ids[0]


async def test_partitions_move_between_runtimes_and_threads_continue_where_they_were(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
    tool_responder: ToolResponder,
) -> None:
    flags = ("--session-timeout-ms", "6000")
    first = spawn(
        "runtime-a", *runtime_args(kafka_bootstrap, topics.prefix, "--instance-id", "a", *flags)
    )
    threads = [f"moving-{n}" for n in range(12)]

    async def run_everywhere(runs: int, services: list[Service]) -> None:
        async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:

            async def one(thread: str) -> None:
                events = [
                    e async for e in client.query(script(("add", {"a": runs, "b": 0})), thread)
                ]
                assert ends_finished(events), events[-1]

            await asyncio.wait_for(asyncio.gather(*(one(t) for t in threads)), 40)

        async def logged() -> bool:
            await run_log.poll()
            return all(
                sum(e["payload"]["type"] == "finish" for e in run_log.thread(t)) == runs
                for t in threads
            )

        await until(logged, within=20, what=f"run {runs} in the log", services=services)
        for thread in threads:
            check_thread_log(run_log.thread(thread), runs=runs)

    def owns(service: Service) -> list[str]:
        return [
            line for line in service.log.read_text().splitlines() if " owns partitions " in line
        ]

    await run_everywhere(1, [first])
    second = spawn(
        "runtime-b", *runtime_args(kafka_bootstrap, topics.prefix, "--instance-id", "b", *flags)
    )

    async def shared() -> bool:
        mine = owns(second)
        return bool(mine) and "owns partitions []" not in mine[-1] and len(owns(first)) >= 2

    await until(shared, within=30, what="the partitions to be shared", services=[first, second])
    await run_everywhere(2, [first, second])

    assert second.stop_gracefully() == 0

    async def all_back() -> bool:
        return owns(first)[-1].split(" owns partitions ")[1].startswith("[0, 1, 2]")

    await until(all_back, within=30, what="the first runtime to own everything", services=[first])
    await run_everywhere(3, [first])


async def flowai(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``python -m flowai_harness.cli ARGS`` (``env`` over this environment): (exit status,
    stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowai_harness.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_topics_create_is_idempotent(
    kafka_bootstrap: str, prefix: str, single_broker: bool
) -> None:
    flags = ("--allow-unreplicated",) if single_broker else ()

    async def create() -> list[str]:
        code, out, err = await flowai(
            "topics",
            "create",
            "--prefix",
            prefix,
            "--partitions",
            "2",
            "--bootstrap",
            kafka_bootstrap,
            *flags,
        )
        assert code == 0, err
        return out.splitlines()

    first = await create()
    assert first == [f"{topic}: created" for topic in bus.Topics(prefix).all()]
    again = await create()
    assert again == [f"{topic}: exists" for topic in bus.Topics(prefix).all()]
    assert await bus.partition_counts(kafka_bootstrap, bus.Topics(prefix).all()) == dict.fromkeys(
        bus.Topics(prefix).all(), 2
    )


async def topic_names(bootstrap: str, prefix: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {name for name in await admin.list_topics() if name.startswith(f"{prefix}.")}
    finally:
        await admin.close()


async def test_an_unreplicated_run_log_is_refused_unless_allowed(
    kafka_bootstrap: str,
    prefix: str,
    spawn: Callable[..., Service],
    single_broker: bool,
) -> None:
    if not single_broker:
        pytest.skip("one broker is the cluster where a run log can only have one replica")
    refuse = {"FLOWAI_ALLOW_UNREPLICATED": "0"}
    # `flowai topics create` creates nothing and says what to do.
    code, _, err = await flowai(
        "topics", "create", "--prefix", prefix, "--bootstrap", kafka_bootstrap, env=refuse
    )
    assert code == 2
    assert "RUN_LOG_UNREPLICATED" in err
    assert "would be created with replication factor 1 (the cluster has 1 broker)" in err
    assert "--allow-unreplicated" in err
    assert await topic_names(kafka_bootstrap, prefix) == set()

    # Neither does the runtime service.
    runtime = spawn("runtime-refused", *runtime_args(kafka_bootstrap, prefix), env=refuse)
    assert runtime.process.wait(30) == 2
    assert "RUN_LOG_UNREPLICATED" in runtime.log.read_text()
    assert await topic_names(kafka_bootstrap, prefix) == set()

    # Told, it creates them; an existing one-replica run log is refused again without it,
    # also when the service does not create topics.
    code, _, err = await flowai(
        "topics", "create", "--prefix", prefix, "--bootstrap", kafka_bootstrap,
        "--partitions", "3", "--allow-unreplicated",
    )  # fmt: skip
    assert code == 0, err
    for extra in ((), ("--no-create-topics",)):
        again = spawn(
            "runtime-existing", *runtime_args(kafka_bootstrap, prefix, *extra), env=refuse
        )
        assert again.process.wait(30) == 2
        assert "has replication factor 1" in again.log.read_text()
    tools = spawn(
        "tools-refused",
        "-m", "services.tools", "--app", "flowai_test_app:spec", "--prefix", prefix,
        "--bootstrap", kafka_bootstrap, "--partitions", "3",
        env=refuse,
    )  # fmt: skip
    assert tools.process.wait(30) == 2
    assert "RUN_LOG_UNREPLICATED" in tools.log.read_text()

    allowed = spawn(
        "runtime-allowed",
        *runtime_args(kafka_bootstrap, prefix, "--allow-unreplicated"),
        env=refuse,
    )
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=prefix) as client:
        events = await asyncio.wait_for(collect(client.query("hello", "allowed")), 60)
    assert ends_finished(events)
    assert allowed.alive()
    assert "accepted because unreplicated topics are allowed" in allowed.log.read_text()


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [event async for event in stream]


async def test_the_runtime_refuses_to_start_without_a_way_to_check_decisions(
    kafka_bootstrap: str, prefix: str, spawn: Callable[..., Service]
) -> None:
    no_keys = {"FLOWAI_DECISION_PUBLIC_KEYS": "", "FLOWAI_ALLOW_UNSIGNED_DECISIONS": "0"}
    runtime = spawn("runtime-no-keys", *runtime_args(kafka_bootstrap, prefix), env=no_keys)
    assert runtime.process.wait(30) == 2
    said = runtime.log.read_text()
    assert "approval decisions must be signed" in said
    assert "--decision-public-key" in said
    assert "Traceback" not in said
