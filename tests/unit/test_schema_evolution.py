"""schemas/v1 against the released contract (schemas/released/v1): nothing that breaks an old
reader, or a new reader of an old run log. The checker itself is pinned on small schemas,
one rule each, and on the real ones with a field removed, renamed, retyped or made
required."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from flowai_harness import __version__
from flowai_harness.schema_compat import breaking_changes, compare, main

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
RELEASED = SCHEMAS / "released" / "v1"
CURRENT = SCHEMAS / "v1"


def test_the_current_schemas_break_no_reader_of_the_released_ones() -> None:
    problems = breaking_changes(RELEASED, CURRENT)
    assert problems == [], "\n".join(problems)


def test_the_released_contract_names_a_version_not_after_this_one() -> None:
    released = (SCHEMAS / "released" / "VERSION").read_text().strip()
    as_tuple = lambda text: tuple(int(part) for part in text.split(".")[:3])  # noqa: E731
    assert as_tuple(released) <= as_tuple(__version__)
    assert sorted(p.name for p in RELEASED.glob("*.json"))


def _object(
    properties: dict[str, Any], required: list[str], strict: bool = False
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if strict:
        schema["additionalProperties"] = False
    return schema


STRING = {"type": "string"}
OPTIONAL_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (_object({"a": STRING}, ["a"]), _object({}, []), "a: the field was removed"),
        (
            _object({"a": STRING}, ["a"]),
            _object({"b": STRING}, ["b"]),
            "a: the field was removed",
        ),
        (_object({"a": STRING}, ["a"]), _object({"a": {"type": "integer"}}, ["a"]), "type changed"),
        (_object({"a": OPTIONAL_STRING}, []), _object({"a": STRING}, []), "no longer type null"),
        (_object({}, []), _object({"a": STRING}, ["a"]), "a: a new required field"),
        (
            _object({"a": OPTIONAL_STRING}, []),
            _object({"a": OPTIONAL_STRING}, ["a"]),
            "now required",
        ),
        (_object({"a": STRING}, ["a"]), _object({"a": STRING}, []), "no longer required"),
        (
            _object({"k": {"enum": ["x", "y"]}}, ["k"]),
            _object({"k": {"enum": ["x", "y", "z"]}}, ["k"]),
            'now also enum "z"',
        ),
        (
            _object({"k": {"const": "a"}}, ["k"]),
            _object({"k": {"const": "b"}}, ["k"]),
            "k: the type changed",
        ),
        (
            _object({"l": {"type": "array", "items": STRING}}, ["l"]),
            _object({"l": {"type": "array", "items": {"type": "number"}}}, ["l"]),
            "l[]: the type changed",
        ),
        (_object({}, [], strict=True), _object({"a": OPTIONAL_STRING}, [], strict=True), "unknown"),
        (_object({}, []), _object({}, [], strict=True), "now refuses unknown fields"),
    ],
)
def test_each_breaking_change_is_named(old: dict[str, Any], new: dict[str, Any], says: str) -> None:
    problems = compare(old, new, "M")
    assert any(says in problem for problem in problems), problems


def test_what_old_readers_can_read_is_allowed() -> None:
    old = _object({"a": STRING}, ["a"])
    new = _object({"a": {**STRING, "description": "now explained", "minLength": 1}}, ["a"])
    new["properties"]["b"] = OPTIONAL_STRING  # optional, on an open object
    new["title"] = "Renamed title"
    assert compare(old, new, "M") == []


def test_a_change_inside_a_definition_is_named_with_its_path() -> None:
    old = {
        "$defs": {"Body": _object({"code": STRING}, ["code"])},
        **_object({"body": {"$ref": "#/$defs/Body"}}, ["body"]),
    }
    new = copy.deepcopy(old)
    new["$defs"]["Body"]["properties"]["code"] = {"type": "integer"}
    assert compare(old, new, "M") == [
        "M.body (Body).code: the type changed (no longer type string; now also type integer)"
    ]


def _edit(tmp_path: Path, name: str, change: Any) -> Path:
    folder = tmp_path / "v1"
    shutil.copytree(CURRENT, folder)
    schema = json.loads((folder / name).read_text())
    change(schema)
    (folder / name).write_text(json.dumps(schema))
    return folder


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda s: s["properties"].pop("thread_id"), "ToolResult.thread_id: the field was removed"),
        (
            lambda s: s["properties"].__setitem__("ts", {"type": "string"}),
            "ToolResult.ts: the type changed",
        ),
        (
            lambda s: s["properties"].__setitem__("trace", STRING) or s["required"].append("trace"),
            "ToolResult.trace: a new required field",
        ),
    ],
)
def test_the_real_schemas_with_a_breaking_edit_fail(
    tmp_path: Path, change: Any, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = _edit(tmp_path, "ToolResult.json", change)
    assert any(says in problem for problem in breaking_changes(RELEASED, edited))
    assert main([str(RELEASED), str(edited)]) == 1
    assert says in capsys.readouterr().out


def test_a_removed_message_schema_fails(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(CURRENT, folder)
    (folder / "ModelDelta.json").unlink()
    assert breaking_changes(RELEASED, folder) == ["ModelDelta: the message schema was removed"]


def _with_event(schema: dict[str, Any], name: str, kind: str) -> None:
    """A new event type in the run log's union, as `make schemas` would write it."""
    schema["$defs"][name] = _object(
        {"type": {"const": kind, "type": "string"}, "data": {"type": "object"}}, ["type", "data"]
    )
    schema["properties"]["payload"]["oneOf"].insert(0, {"$ref": f"#/$defs/{name}"})
    schema["$defs"]["OtherEvent"]["properties"]["type"]["not"]["enum"].append(kind)


def test_a_new_event_type_does_not_break_readers_of_the_open_event_union(
    tmp_path: Path,
) -> None:
    edited = _edit(tmp_path, "RuntimeEvent.json", lambda s: _with_event(s, "NewEvent", "new"))
    assert breaking_changes(RELEASED, edited) == []


def test_a_removed_event_type_still_breaks(tmp_path: Path) -> None:
    def drop_fork(schema: dict[str, Any]) -> None:
        members = schema["properties"]["payload"]["oneOf"]
        members.remove({"$ref": "#/$defs/ForkEvent"})

    edited = _edit(tmp_path, "RuntimeEvent.json", drop_fork)
    problems = breaking_changes(RELEASED, edited)
    says = "RuntimeEvent.payload: the type changed (no longer ref ForkEvent"
    assert any(says in problem for problem in problems)


def test_a_new_member_of_a_closed_union_breaks() -> None:
    old = {"oneOf": [{"$ref": "#/$defs/A"}], "$defs": {"A": _object({"a": STRING}, ["a"])}}
    new = copy.deepcopy(old)
    new["oneOf"].append({"$ref": "#/$defs/B"})
    new["$defs"]["B"] = _object({"b": STRING}, ["b"])
    assert compare(old, new, "M") == ["M: the type changed (now also ref B)"]


def test_a_catch_all_that_stops_catching_breaks() -> None:
    def closed(schema: dict[str, Any]) -> None:
        schema["$defs"]["OtherEvent"]["properties"]["type"] = {"const": "other"}

    old = json.loads((CURRENT / "RuntimeEvent.json").read_text())
    new = copy.deepcopy(old)
    closed(new)
    assert any("OtherEvent" in p and "type changed" in p for p in compare(old, new, "RuntimeEvent"))
