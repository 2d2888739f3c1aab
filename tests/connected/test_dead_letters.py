"""Dead letters an operator can act on, end to end on the real Kafka (issue 12).

A malformed query becomes a dead letter; ``flowai dead-letters list`` finds it by topic,
reason, tenant and time, ``show`` prints it whole; the operator re-drives a corrected copy
(same id) with ``redrive --replace``, the runtime runs it once, the re-drive is recorded (who,
when, where), and a second re-drive of the same message changes nothing downstream.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka_helpers import RunLog, ToolResponder, runtime_args
from processes import Service, until

from flowai_harness import connect
from flowai_harness.kafka import bus
from flowai_harness.kafka.deadletters import LetterFilter, parse_time, read_letters

pytestmark = pytest.mark.connected


def query(thread_id: str, query_id: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "schema": "flowai.v1.Query",
            "id": query_id,
            "tenant": "acme",
            "thread_id": thread_id,
            "run_id": None,
            "causation_id": None,
            "ts": bus.now_ms(),
            "payload": payload,
        }
    )


async def flowai(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowai_harness.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 50)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_dead_letter_is_listed_shown_and_redriven_once(
    kafka_bootstrap: str,
    topics: bus.Topics,
    spawn: Callable[..., Service],
    run_log: RunLog,
    tool_responder: ToolResponder,
    tmp_path: Path,
) -> None:
    runtime = spawn("runtime", *runtime_args(kafka_bootstrap, topics.prefix))
    started = bus.now_ms()
    where = ("--bootstrap", kafka_bootstrap, "--prefix", topics.prefix)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        # No prompt: the runtime cannot run it. And a broken decision on another topic.
        await producer.send_and_wait(
            topics.queries, query("dl", "bad-q-1", {"agent": None}), key=b"acme/dl"
        )
        await producer.send_and_wait(topics.approval_decisions, b"{}", key=b"x")
    finally:
        await producer.stop()

    async def both_dead() -> bool:
        await run_log.poll()
        return len(run_log.letters) == 2

    await until(both_dead, within=30, what="two dead letters", services=[runtime])
    [letter] = [x for x in run_log.letters if x["payload"]["original_id"] == "bad-q-1"]
    [decision] = [x for x in run_log.letters if x is not letter]
    reason = letter["payload"]["reason"]
    assert letter["thread_id"] == "dl"

    code, out, err = await flowai("dead-letters", "list", *where)
    assert code == 0, err
    assert letter["id"] in out
    assert decision["id"] in out
    both = sorted([letter["id"], decision["id"]])
    for narrowing, expected in (
        (("--topic", "queries"), [letter["id"]]),
        (("--topic", topics.queries), [letter["id"]]),
        (("--topic", "approval-decisions"), [decision["id"]]),
        (("--tenant", "acme"), [letter["id"]]),
        (("--reason", reason), both),
        (("--reason", "NO_SUCH_REASON"), []),
        (("--since", "1h"), both),
        (("--until", str(started - 1)), []),
        (("--service", "runtime", "--tenant", "acme"), [letter["id"]]),
    ):
        code, out, err = await flowai("dead-letters", "list", *where, *narrowing, "--json")
        assert code == 0, err
        assert sorted(json.loads(line)["id"] for line in out.splitlines()) == expected, narrowing

    code, out, err = await flowai("dead-letters", "show", letter["id"], *where)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["original"]["id"] == "bad-q-1"
    assert shown["source"]["topic"] == topics.queries
    assert shown["redrives"] == []

    # A corrected message must keep the id: consumers recognise copies by it.
    fixed = tmp_path / "fixed.json"
    prompt = json.dumps({"script": [{"tool": "add", "args": {"a": 20, "b": 22}}]})
    fixed.write_bytes(query("dl", "bad-q-2", {"prompt": prompt, "agent": None}))
    code, _, err = await flowai(
        "dead-letters", "redrive", letter["id"], *where, "--replace", str(fixed), "--operator", "o"
    )
    assert code == 2
    assert "keep the id" in err

    fixed.write_bytes(query("dl", "bad-q-1", {"prompt": prompt, "agent": None}))
    redrive = (
        "dead-letters", "redrive", letter["id"], *where, "--replace", str(fixed),
        "--operator", "ops@acme", "--note", "added the prompt",
    )  # fmt: skip
    code, out, err = await flowai(*redrive)
    assert code == 0, err
    assert out.startswith(f"{letter['id']} -> {topics.queries}[")

    async def ran() -> bool:
        await run_log.poll()
        return run_log.finished("dl")

    await until(ran, within=30, what="the re-driven query's run", services=[runtime])
    [result] = [
        e["payload"]
        for e in run_log.thread("dl")
        if e["payload"]["type"] == "tool-invocation" and e["payload"]["state"] == "result"
    ]
    assert result["result"] == {"sum": 42}

    # Again: refused without --again; with it, the same id reaches the runtime, which
    # ignores the copy. A later query on the thread shows the copy was read by then.
    code, _, err = await flowai(*redrive)
    assert code == 2
    assert "re-driven already by ops@acme" in err
    code, _, err = await flowai(*redrive, "--again")
    assert code == 0, err
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
        after = [e async for e in client.query(prompt, "dl")]
    assert after[-2]["type"] == "finish"
    await run_log.poll()
    runs = [e for e in run_log.thread("dl") if e["payload"]["type"] == "run-start"]
    assert runs[0]["causation_id"] == "bad-q-1"
    assert len(runs) == 2  # the re-driven query once, then the later query
    kinds = [x["schema"] for x in run_log.letters if x["payload"]["original_id"] == "bad-q-1"]
    assert sorted(kinds) == ["flowai.v1.DeadLetter", "flowai.v1.Redrive", "flowai.v1.Redrive"]

    # The record of the re-drives: who, when, where, and that it was a corrected copy.
    [found] = await read_letters(
        kafka_bootstrap, topics.prefix, LetterFilter(tenant="acme", since=parse_time("1h"))
    )
    assert [r["operator"] for r in found.redrives] == ["ops@acme", "ops@acme"]
    first = found.redrives[0]
    assert first["note"] == "added the prompt"
    assert first["replaced"] is True
    assert first["topic"] == topics.queries
    assert first["original_id"] == "bad-q-1"
    assert started <= first["ts"] <= bus.now_ms()
    code, out, err = await flowai("dead-letters", "list", *where, "--topic", "queries")
    assert code == 0, err
    assert "re-driven x2" in out


async def test_redrive_without_a_name_or_a_source_is_a_usage_error(
    kafka_bootstrap: str, topics: bus.Topics
) -> None:
    where = ("--bootstrap", kafka_bootstrap, "--prefix", topics.prefix)
    code, _, err = await flowai("dead-letters", "redrive", *where, "--operator", "o")
    assert code == 2
    assert "name the dead letters" in err
    code, _, err = await flowai("dead-letters", "show", "dead-letter/none", *where)
    assert code == 2
    assert "no dead letter 'dead-letter/none'" in err
    code, _, err = await flowai("dead-letters", "list", *where, "--since", "yesterday")
    assert code == 2
    assert "is not a time" in err
