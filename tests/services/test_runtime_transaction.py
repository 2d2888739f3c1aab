"""The runtime service's per-partition transaction, without Kafka.

A fake transactional producer records what one poll's transaction carries: events on the
input's partition number of the run log keyed ``tenant/thread_id``, effects on their topic
keyed by their id, dead letters with the engine's (or the service's) reason, and the input
offsets. Kafka's own behaviour (fencing, read_committed, rebalances) is covered by
tests/connected/test_runtime_service.py; FastStream's TestKafkaBroker does not apply here
because the service drives aiokafka directly (see the services.runtime.service docstring).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition
from services.runtime.service import RuntimeService, ServiceConfig, _Partition

from flowai_harness import (
    define_runtime,
    define_specialist,
    define_tenant,
    define_tool,
    messages,
)
from flowai_harness.kafka import bus, decision_auth

PARTITIONS = 3


@define_tool("add", {"a": int, "b": int})
def add(args: dict[str, Any], ctx: Any) -> dict[str, int]:
    return {"sum": args["a"] + args["b"]}


SPEC = define_runtime(
    tenant=define_tenant("acme", "v1"),
    agents=[define_specialist(name="worker", model="claude-haiku-4-5", prompt="p", tools=[add])],
    providers={"anthropic": {}},
)


class FakeBatch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: None, headers: Any) -> object:
        self.records.append((key, value, list(headers)))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class FakeProducer:
    """Records one transaction at a time: batches per (topic, partition), offsets, outcome."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, FakeBatch]] = []
        self.offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        self.group: str | None = None
        self.state = "idle"
        self.next_offset = 0

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def begin_transaction(self) -> None:
        assert self.state != "open"
        self.state = "open"

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        assert self.state == "open"
        self.sent.append((topic, partition, batch))
        base = self.next_offset
        self.next_offset += batch.record_count()

        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(type("Meta", (), {"offset": base})())
        return future

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], group: str
    ) -> None:
        self.offsets.update(offsets)
        self.group = group

    async def commit_transaction(self) -> None:
        self.state = "committed"

    async def abort_transaction(self) -> None:
        self.state = "aborted"

    def records(self, topic: str) -> list[tuple[int, bytes | None, dict[str, Any]]]:
        return [
            (partition, key, orjson.loads(value))
            for to, partition, batch in self.sent
            if to == topic
            for key, value, _ in batch.records
        ]


def make_service(
    spec: Any = SPEC, config: ServiceConfig | None = None
) -> tuple[RuntimeService, FakeProducer]:
    config = config or ServiceConfig(bootstrap="unused:1")
    runtime = RuntimeService(spec, {"kind": "scripted"}, config)
    topics = runtime.topics
    runtime._partition_count = PARTITIONS
    runtime._topic_partitions = dict.fromkeys(topics.all(), PARTITIONS)
    producer = FakeProducer()
    for number in range(PARTITIONS):
        inputs = [TopicPartition(topic, number) for topic in topics.runtime_inputs]
        part = _Partition(number, inputs, producer)  # type: ignore[arg-type]
        part.expected = dict.fromkeys(inputs, 0)
        runtime._partitions[number] = part
    return runtime, producer


@pytest.fixture
def service() -> tuple[RuntimeService, FakeProducer]:
    return make_service()


def record(topic: str, partition: int, offset: int, value: bytes, key: bytes | None = None) -> Any:
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, 0, len(value), ())


def query(thread_id: str, prompt: str, tenant: str = "acme", id: str = "q-1") -> bytes:
    return orjson.dumps(
        {
            "schema": "flowai.v1.Query",
            "id": id,
            "tenant": tenant,
            "thread_id": thread_id,
            "ts": 5,
            "payload": {"prompt": prompt},
        }
    )


def home(thread_id: str) -> int:
    return bus.partition_for(bus.thread_key("acme", thread_id), PARTITIONS)


async def test_query_events_go_to_the_inputs_partition_and_effects_to_their_topic(
    service: tuple[RuntimeService, FakeProducer],
) -> None:
    runtime, producer = service
    topics = runtime.topics
    number = home("t-1")
    tp = TopicPartition(topics.queries, number)
    prompt = json.dumps({"tool": "add", "args": {"a": 1, "b": 2}})
    await runtime._process(number, [(tp, [record(tp.topic, number, 7, query("t-1", prompt))])])

    assert producer.state == "committed"
    events = producer.records(topics.runtime_events)
    assert [payload["payload"]["type"] for _, _, payload in events] == [
        "run-start",
        "tool-agent",
        "step-start",
        "model-response",
        "tool-invocation",
    ]
    assert {(partition, key) for partition, key, _ in events} == {(number, b"acme/t-1")}
    [(partition, key, invocation)] = producer.records(topics.tool_invocations)
    assert key == invocation["id"].encode()
    assert partition == bus.partition_for(key, PARTITIONS)
    assert isinstance(messages.decode(orjson.dumps(invocation)), messages.ToolInvocation)
    assert producer.offsets == {tp: OffsetAndMetadata(8, "")}
    assert producer.group == "flowai.runtime"
    # The run-log end this instance knows: last event offset + the commit marker.
    assert runtime._partitions[number].log_end == 5 + 1
    assert "t-1" in runtime._partitions[number].threads


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff not json", "INPUT_MALFORMED"),
        (b"", "INPUT_MALFORMED"),
        (query("t-2", "hi", tenant="globex"), "TENANT_MISMATCH"),
        (
            orjson.dumps({**orjson.loads(query("t-2", "hi")), "schema": "flowai.v1.Nope"}),
            "INPUT_UNKNOWN_SCHEMA",
        ),
    ],
)
async def test_a_refused_input_becomes_a_dead_letter_with_its_reason(
    service: tuple[RuntimeService, FakeProducer], value: bytes, reason: str
) -> None:
    runtime, producer = service
    topics = runtime.topics
    number = home("t-2")
    tp = TopicPartition(topics.queries, number)
    await runtime._process(number, [(tp, [record(tp.topic, number, 3, value, key=b"k")])])

    assert producer.records(topics.runtime_events) == []
    [(partition, _, letter)] = producer.records(topics.dead_letters)
    assert partition == number
    parsed = messages.decode(orjson.dumps(letter))
    assert isinstance(parsed, messages.DeadLetter)
    assert parsed.payload.reason == reason
    assert parsed.payload.source == messages.DeadLetterSource(
        topic=topics.queries, partition=number, offset=3
    )
    assert parsed.payload.original_bytes() == value
    # The input is consumed all the same: the offset moves on in the same transaction.
    assert producer.offsets == {tp: OffsetAndMetadata(4, "")}


async def test_an_input_on_the_wrong_partition_is_refused_before_the_engine_sees_it(
    service: tuple[RuntimeService, FakeProducer],
) -> None:
    runtime, producer = service
    topics = runtime.topics
    wrong = (home("t-3") + 1) % PARTITIONS
    tp = TopicPartition(topics.queries, wrong)
    await runtime._process(wrong, [(tp, [record(tp.topic, wrong, 0, query("t-3", "{}"))])])

    [(_, key, letter)] = producer.records(topics.dead_letters)
    assert letter["payload"]["reason"] == "INPUT_WRONG_PARTITION"
    assert key == b"acme/t-3"
    assert not runtime._engine.has_thread("t-3")


async def test_records_seen_before_are_not_handled_twice(
    service: tuple[RuntimeService, FakeProducer],
) -> None:
    runtime, producer = service
    topics = runtime.topics
    number = home("t-4")
    tp = TopicPartition(topics.queries, number)
    first = [record(tp.topic, number, 0, query("t-4", "hello"))]
    await runtime._process(number, [(tp, first)])
    sent = len(producer.sent)
    # The same record handed out again (a fetch that raced a seek): nothing happens.
    await runtime._process(number, [(tp, first)])
    assert len(producer.sent) == sent


async def test_a_republished_input_is_counted_as_a_duplicate_not_run_again(
    service: tuple[RuntimeService, FakeProducer],
) -> None:
    runtime, producer = service
    topics = runtime.topics
    number = home("t-6")
    tp = TopicPartition(topics.queries, number)
    value = query("t-6", "hello")
    await runtime._process(number, [(tp, [record(tp.topic, number, 0, value)])])
    logged = len(producer.records(topics.runtime_events))

    # An upstream producer that retried after a timeout: the same envelope at a new offset.
    await runtime._process(number, [(tp, [record(tp.topic, number, 1, value)])])

    assert len(producer.records(topics.runtime_events)) == logged, "no second run"
    assert producer.records(topics.dead_letters) == [], "a duplicate is no dead letter"
    assert runtime.stats["duplicates"] == 1
    assert producer.offsets == {tp: OffsetAndMetadata(2, "")}, "the offset moves on"


async def test_a_failed_transaction_rebuilds_the_partition(
    service: tuple[RuntimeService, FakeProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, producer = service
    topics = runtime.topics
    number = home("t-5")
    tp = TopicPartition(topics.queries, number)
    resynced: list[int] = []

    async def fail() -> None:
        raise RuntimeError("broker went away")

    async def resync(n: int) -> None:
        resynced.append(n)

    monkeypatch.setattr(producer, "commit_transaction", fail)
    monkeypatch.setattr(runtime, "_resync", resync)
    await runtime._process(number, [(tp, [record(tp.topic, number, 0, query("t-5", "x"))])])
    assert producer.state == "aborted"
    assert resynced == [number]


# --- signed approval decisions ---------------------------------------------------------------

KEYS = decision_auth.generate_keys()
SIGNER = decision_auth.DecisionSigner.from_pem(KEYS[0])


@define_tool("pay", {"amount": int}, approval="always")
def pay(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"paid": args["amount"]}


GATED = define_runtime(
    tenant=define_tenant("acme", "v1"),
    agents=[define_specialist(name="clerk", model="claude-haiku-4-5", prompt="p", tools=[pay])],
    providers={"anthropic": {}},
)


async def at_the_gate(runtime: RuntimeService, thread_id: str) -> tuple[int, str]:
    """A run of ``thread_id`` waiting at its pay gate; returns (partition, approval id)."""
    number = home(thread_id)
    tp = TopicPartition(runtime.topics.queries, number)
    prompt = json.dumps({"tool": "pay", "args": {"amount": 5}})
    await runtime._process(number, [(tp, [record(tp.topic, number, 0, query(thread_id, prompt))])])
    return number, f"appr:{thread_id}/run-1/scripted-tool-1"


def decision(thread_id: str, approval_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "schema": "flowai.v1.ApprovalDecision",
        "id": f"d-{thread_id}-{len(extra)}",
        "tenant": "acme",
        "thread_id": thread_id,
        "ts": 6,
        "payload": {"approval_id": approval_id, "outcome": "approve", "approver": "alice", **extra},
    }


async def decide(runtime: RuntimeService, number: int, offset: int, body: dict[str, Any]) -> None:
    tp = TopicPartition(runtime.topics.approval_decisions, number)
    await runtime._process(number, [(tp, [record(tp.topic, number, offset, orjson.dumps(body))])])


def dead_letters(producer: FakeProducer, topics: bus.Topics) -> list[str]:
    return [letter["payload"]["reason"] for _, _, letter in producer.records(topics.dead_letters)]


async def test_approval_decision_signed_by_a_trusted_key_opens_the_gate() -> None:
    verifier = decision_auth.DecisionVerifier.from_pems([KEYS[1]])
    runtime, producer = make_service(GATED, ServiceConfig(bootstrap="unused:1", decisions=verifier))
    number, approval = await at_the_gate(runtime, "t-signed")
    await decide(runtime, number, 0, SIGNER.signed(decision("t-signed", approval)))
    kinds = [e["payload"]["type"] for _, _, e in producer.records(runtime.topics.runtime_events)]
    assert "approval-decision" in kinds
    assert len(producer.records(runtime.topics.tool_invocations)) == 1, "the tool goes out"
    assert dead_letters(producer, runtime.topics) == []


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: body, id="unsigned"),
        pytest.param(
            lambda body: decision_auth.DecisionSigner.from_pem(
                decision_auth.generate_keys()[0]
            ).signed(body),
            id="an-untrusted-key",
        ),
        pytest.param(
            lambda body: {
                **SIGNER.signed(body),
                "payload": {**SIGNER.signed(body)["payload"], "approver": "mallory"},
            },
            id="approver-changed",
        ),
        pytest.param(
            lambda body: {
                **SIGNER.signed({**body, "thread_id": "t-other"}),
                "thread_id": body["thread_id"],
            },
            id="moved-from-another-thread",
        ),
    ],
)
async def test_approval_decision_unverified_is_a_dead_letter_and_the_gate_stays_shut(
    forge: Any,
) -> None:
    verifier = decision_auth.DecisionVerifier.from_pems([KEYS[1]])
    runtime, producer = make_service(GATED, ServiceConfig(bootstrap="unused:1", decisions=verifier))
    number, approval = await at_the_gate(runtime, "t-forged")
    logged = len(producer.records(runtime.topics.runtime_events))
    await decide(runtime, number, 0, forge(decision("t-forged", approval)))
    assert dead_letters(producer, runtime.topics) == ["DECISION_UNVERIFIED"]
    assert len(producer.records(runtime.topics.runtime_events)) == logged, "nothing decided"
    assert producer.records(runtime.topics.tool_invocations) == []
    # The real decision still opens it.
    await decide(runtime, number, 1, SIGNER.signed(decision("t-forged", approval)))
    assert len(producer.records(runtime.topics.tool_invocations)) == 1
