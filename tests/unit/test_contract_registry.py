"""The contract registry: each message model says its schema name, topic, role and key rule,
and the bus's topic names, routes and keys come from it; no code outside messages.py names a
message type with a string."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flowai_harness import messages
from flowai_harness.errors import BusError
from flowai_harness.kafka import bus

ROOT = Path(__file__).resolve().parents[2]


def test_topic_names_come_from_the_models() -> None:
    topics = bus.Topics("acme")
    assert topics.all() == (
        "acme.queries",
        "acme.runtime-events",
        "acme.tool-invocations",
        "acme.plan-steps",
        "acme.tool-results",
        "acme.model-requests",
        "acme.model-results",
        "acme.model-deltas",
        "acme.approval-requests",
        "acme.approval-decisions",
        "acme.dead-letters",
        "acme.threads",
        "acme.snapshots",
    )
    assert topics.runtime_inputs == (
        "acme.queries",
        "acme.tool-results",
        "acme.model-results",
        "acme.approval-decisions",
    )
    for stem, models in messages.TOPICS.items():
        for model in models:
            assert topics.of(model) == f"acme.{stem}"


def test_effects_are_routed_to_their_models_topic() -> None:
    topics = bus.Topics()
    routed = {
        model.__name__: topics.effect_topic(model.NAME) for model in messages.SCHEMAS.values()
    }
    assert {name: topic for name, topic in routed.items() if topic is not None} == {
        "ToolInvocation": "flowai.tool-invocations",
        "PlanStep": "flowai.plan-steps",
        "ModelRequest": "flowai.model-requests",
        "ApprovalRequest": "flowai.approval-requests",
    }
    assert topics.result_topic(messages.ModelResult.NAME) == "flowai.model-results"
    assert topics.result_topic(messages.ToolResult.NAME) == "flowai.tool-results"


def test_messages_answered_in_process_have_no_topic() -> None:
    assert [model.__name__ for model in messages.IN_PROCESS] == [
        "ApprovalCheck",
        "ApprovalCheckResult",
        "DeadlineReached",
    ]
    for model in messages.IN_PROCESS:
        with pytest.raises(BusError, match=model.NAME):
            bus.Topics().of(model)


def test_record_keys_follow_each_models_key_rule() -> None:
    assert sorted(messages.KEYED_BY_ID) == [
        "flowai.v1.ModelRequest",
        "flowai.v1.PlanStep",
        "flowai.v1.ToolInvocation",
    ]
    fields = {"id": "acme/t1/r1/c1", "tenant": "acme", "thread_id": "t1"}
    for model in messages.SCHEMAS.values():
        key = bus.record_key({**fields, "schema": model.NAME})
        assert key == (b"acme/t1/r1/c1" if model.KEY == "id" else b"acme/t1"), model.NAME
    assert bus.record_key({"schema": messages.Query.NAME, "id": "q1", "tenant": "acme"}) is None


def test_decode_knows_every_registered_message() -> None:
    fork = messages.ForkThread(
        id="f1",
        tenant="acme",
        thread_id="t2",
        ts=1,
        payload=messages.ForkThreadPayload(source_thread_id="t1", at=3),
    )
    assert messages.decode(fork.to_bytes()) == fork


def _string_constants(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str | bytes)
        and id(node) not in docstrings
    ]


def test_no_code_names_a_message_type_with_a_string() -> None:
    found = []
    for folder in ("python", "services", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "python/flowai_harness/messages.py":
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, value in _string_constants(tree):
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                if "flowai.v1." in text:
                    found.append(f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}")
    assert found == [], "use Model.NAME from flowai_harness.messages instead:\n" + "\n".join(found)
