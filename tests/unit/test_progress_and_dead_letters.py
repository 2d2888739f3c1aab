"""The progress helper's two faces, and the dead-letter tools' checks that need no broker:
time parsing, filters, and every re-drive refusal (what is sent is tested on Kafka in
tests/connected/test_dead_letters.py)."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from flowai_harness.errors import RedriveRefusedError, UsageError
from flowai_harness.kafka import bus
from flowai_harness.kafka.deadletters import Letter, LetterFilter, _plan, parse_time
from flowai_harness.progress import Progress, progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_writes_a_line_per_period_and_one_at_the_end() -> None:
    out = io.StringIO()
    clock = Clock()
    job = Progress("reading", 10, unit="records", stream=out, every=2.0, clock=clock)
    job.advance(3)  # within the first period: quiet
    clock.now += 2.5
    job.advance(3)
    clock.now += 0.5
    job.advance(4)  # within the period after the last line: quiet
    job.finish()
    lines = out.getvalue().splitlines()
    assert lines == [
        "reading: 6/10 records (60%) in 2.5 s, 2 records/s ...",
        "reading: 10/10 records (100%) in 3.0 s, 3 records/s done",
    ]


def test_short_work_prints_nothing_and_an_unknown_total_is_left_out() -> None:
    out = io.StringIO()
    with progress("quick", stream=out, bar=False) as job:
        job.advance(5)
    assert out.getvalue() == ""
    clock = Clock()
    job = Progress("open-ended", None, unit="letters", stream=out, every=1.0, clock=clock)
    clock.now += 1.0
    job.advance(2)
    assert out.getvalue() == "open-ended: 2 letters in 1.0 s, 2 letters/s ...\n"


def test_a_terminal_gets_a_rich_bar_and_a_pipe_gets_lines() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with progress("re-driving", 2, unit="letters", stream=screen) as job:
        job.advance(2)
    assert "re-driving" in screen.getvalue()
    assert "2/2" in screen.getvalue()
    pipe = io.StringIO()
    with progress("re-driving", 2, stream=pipe) as job:
        assert job._bar is None
        job.advance(2)


def test_times_parse_as_iso_ms_or_an_age() -> None:
    now = 1_800_000_000_000
    assert parse_time("2h", now_ms=now) == now - 7_200_000
    assert parse_time("30m", now_ms=now) == now - 1_800_000
    assert parse_time("1714564800000") == 1_714_564_800_000
    assert parse_time("2024-05-01T12:00:00Z") == 1_714_564_800_000
    assert parse_time("2024-05-01T12:00:00") == 1_714_564_800_000  # UTC when no zone
    with pytest.raises(UsageError, match="is not a time"):
        parse_time("yesterday")


def letter(**fields: Any) -> Letter:
    original = orjson.dumps(
        {"schema": "flowai.v1.Query", "id": "q-1", "tenant": "acme", "thread_id": "t1"}
    )
    values: dict[str, Any] = {
        "id": "dead-letter/runtime/flowai.queries/0/7",
        "ts": 1_000,
        "tenant": "acme",
        "thread_id": "t1",
        "reason": "INPUT_MALFORMED",
        "message": "no prompt",
        "service": "runtime",
        "source_topic": "flowai.queries",
        "source_partition": 0,
        "source_offset": 7,
        "original": original,
        "original_id": "q-1",
        "original_schema": "flowai.v1.Query",
    }
    values.update(fields)
    return Letter(**values)


def test_filters_match_topic_by_name_or_stem_and_times_half_open() -> None:
    one = letter()
    assert LetterFilter(topic="queries").matches(one, "flowai")
    assert LetterFilter(topic="flowai.queries").matches(one, "flowai")
    assert not LetterFilter(topic="tool-results").matches(one, "flowai")
    assert not LetterFilter(tenant="globex").matches(one, "flowai")
    assert LetterFilter(since=1_000, until=1_001).matches(one, "flowai")
    assert not LetterFilter(until=1_000).matches(one, "flowai")
    assert not LetterFilter(reason="TOOL_NOT_AVAILABLE", service="runtime").matches(one, "flowai")


def test_a_redrive_keeps_the_key_its_consumer_partitions_by() -> None:
    _, topic, key, body = _plan(letter(), None, False, "flowai")
    assert (topic, key) == ("flowai.queries", bus.thread_key("acme", "t1"))
    assert body == letter().original
    invocation = orjson.dumps(
        {"schema": "flowai.v1.ToolInvocation", "id": "acme/t1/run-1/c1", "tenant": "acme"}
    )
    _, _, key, _ = _plan(
        letter(original=invocation, source_topic="flowai.tool-invocations"), None, False, "flowai"
    )
    assert key == b"acme/t1/run-1/c1"


@pytest.mark.parametrize(
    ("changes", "replacement", "again", "why"),
    [
        ({"redrives": [{"operator": "ana", "ts": 5}]}, None, False, "re-driven already by ana"),
        ({"source_topic": None}, None, False, "does not say which topic"),
        ({"source_topic": "other.queries"}, None, False, "not under --prefix flowai"),
        ({}, b"not json", False, "must be a JSON envelope"),
        ({}, b'{"id": "q-2"}', False, "keep the id"),
    ],
)
def test_a_redrive_that_would_not_do_what_the_operator_wants_is_refused(
    changes: dict[str, Any], replacement: bytes | None, again: bool, why: str
) -> None:
    with pytest.raises(RedriveRefusedError, match=why):
        _plan(letter(**changes), replacement, again, "flowai")


def test_again_and_a_corrected_message_with_the_same_id_go_through() -> None:
    earlier = letter(redrives=[{"operator": "ana", "ts": 5}])
    fixed = orjson.dumps({"id": "q-1", "tenant": "acme", "thread_id": "t1", "payload": {}})
    _, _, _, body = _plan(earlier, fixed, True, "flowai")
    assert body == fixed
