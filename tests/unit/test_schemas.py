"""schemas/v1 is generated from flowai_harness.messages and committed: regenerate, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest

from flowai_harness import messages

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "v1"


def test_committed_schemas_match_the_models() -> None:
    generated = messages.json_schemas()
    committed = {path.name: path.read_bytes() for path in SCHEMAS_DIR.glob("*.json")}
    assert sorted(committed) == sorted(generated), "run `make schemas`"
    drifted = [name for name, data in generated.items() if committed[name] != data]
    assert not drifted, f"schemas/v1 drifted from messages.py: {drifted}; run `make schemas`"


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    assert messages.main(["--out", str(tmp_path)]) == 0
    assert messages.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "Query.json").write_text("{}")
    (tmp_path / "Stale.json").write_text("{}")
    assert messages.main(["--out", str(tmp_path), "--check"]) == 1
    assert messages.main(["--out", str(tmp_path)]) == 0
    assert not (tmp_path / "Stale.json").exists()


def test_every_schema_has_its_model_and_requires_schema_on_the_wire() -> None:
    for name, model in messages.SCHEMAS.items():
        assert name == f"flowai.v1.{model.__name__}"
        document = orjson.loads(messages.json_schemas()[f"{model.__name__}.json"])
        assert document["$id"] == name
        assert document["properties"]["schema"]["const"] == name
        assert "schema" in document["required"]


def test_round_trip_keeps_every_field() -> None:
    query = messages.Query(id="q-1", tenant="acme", thread_id="t-1", ts=5, payload={"prompt": "hi"})
    wire = query.to_bytes()
    assert wire.startswith(b'{"schema":"flowai.v1.Query"')
    assert messages.decode(wire) == query
    result = messages.ToolResult(
        id="r-1",
        tenant="acme",
        thread_id="t-1",
        ts=6,
        payload={"invocation_id": "i", "error": {"message": "boom", "code": "TOOL_FAILED"}},
    )
    assert "output" not in orjson.loads(result.to_bytes())["payload"]
    assert messages.decode(result.to_bytes()) == result


def test_engine_output_validates(golden_dir: Path) -> None:
    # Every logged event of the golden logs is a RuntimeEvent the model accepts.
    lines = [
        line
        for path in sorted((golden_dir / "acme").glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
        if line
    ]
    assert lines
    for line in lines:
        event = messages.decode(line)
        assert isinstance(event, messages.RuntimeEvent)
        assert event.seq is not None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"schema": "flowai.v1.Nope"}, "union_tag_invalid"),
        ({"schema": "flowai.v1.Query", "id": "x", "tenant": "a", "thread_id": "t"}, "missing"),
        (
            {
                "schema": "flowai.v1.Query",
                "id": "x",
                "tenant": "a",
                "thread_id": "t",
                "ts": 1,
                "payload": {"prompt": "p", "extra": 1},
            },
            "extra_forbidden",
        ),
    ],
)
def test_wrong_messages_are_refused(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        messages.decode(orjson.dumps(body))
    assert problem in {error["type"] for error in info.value.errors()}


def test_dead_letter_keeps_the_original_bytes() -> None:
    payload = messages.DeadLetterPayload(
        reason="INPUT_MALFORMED",
        message="not JSON",
        service="runtime",
        original="//8=",
        encoding="base64",
    )
    assert payload.original_bytes() == b"\xff\xff"
