"""Draining a stream with the ordering rules every stream must keep (docs/wire.md "Events").

Every test that drains a stream through :func:`drain` checks these rules without saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Any

Event = dict[str, Any]

_TERMINAL = ("finish", "error")
_CALLS = ("tool-invocation", "tool-agent")
_EMITTED = ("custom", "tool-progress")


def check_stream(
    events: Sequence[Event], *, complete: bool = True, after: Sequence[Event] = ()
) -> None:
    """Assert the ordering rules of one run's stream.

    A tool's call comes before its result, each once; what a tool emits comes between them;
    at most one terminal event (``finish`` or ``error``) and nothing after it; the internal
    ``run-start`` is never streamed. An approval gate (``approval-required``) comes after its
    call and before its one ``approval-decision``, and the gated call's result comes after the
    decision. ``complete``: the stream was drained, so it ends with a terminal event.
    ``after``: the events of the same run streamed before (by another stream or process),
    for a stream that continues a run.
    """
    events = [*after, *events]
    called: set[str] = set()
    answered: set[str] = set()
    gates: dict[str, str] = {}  # approval id -> the gated call's id
    undecided: set[str] = set()  # calls waiting at their gate
    for index, event in enumerate(events):
        kind = event["type"]
        assert kind != "run-start", f"event {index}: run-start is internal, never streamed"
        if index > 0:
            before = events[index - 1]["type"]
            assert before not in _TERMINAL, f"event {index} ({kind}) comes after {before}"
        if kind in _CALLS:
            tool_id = event["toolInvocationId"]
            if event["state"] == "call":
                assert tool_id not in called, f"event {index}: second call {tool_id}"
                called.add(tool_id)
            else:
                assert event["state"] == "result", event
                assert tool_id in called, f"event {index}: result of {tool_id} before its call"
                assert tool_id not in answered, f"event {index}: second result for {tool_id}"
                assert tool_id not in undecided, f"event {index}: result of {tool_id} at its gate"
                answered.add(tool_id)
        elif kind in _EMITTED:
            tool_id = event["toolInvocationId"]
            assert tool_id in called, f"event {index}: {kind} of {tool_id} before its call"
            assert tool_id not in answered, f"event {index}: {kind} of {tool_id} after its result"
        elif kind == "approval-required":
            tool_id = event["correlationId"]
            assert tool_id in called, f"event {index}: gate of {tool_id} before its call"
            assert tool_id not in answered, f"event {index}: gate of {tool_id} after its result"
            assert event["id"] not in gates, f"event {index}: second gate {event['id']}"
            gates[event["id"]] = tool_id
            undecided.add(tool_id)
        elif kind == "approval-decision":
            tool_id = gates.get(event["id"], "")
            assert tool_id, f"event {index}: decision of {event['id']} before its gate"
            assert tool_id in undecided, f"event {index}: second decision of {event['id']}"
            undecided.discard(tool_id)
    if complete:
        assert events, "a drained stream yields at least its terminal event"
        assert events[-1]["type"] in _TERMINAL, f"stream ends with {events[-1]['type']}"


async def drain(stream: AsyncIterable[Event], *, after: Sequence[Event] = ()) -> list[Event]:
    """Every event of ``stream``, checked with :func:`check_stream` (``after``: the run's
    events streamed before this stream took over)."""
    events = [event async for event in stream]
    check_stream(events, after=after)
    return events


def of_type(events: Sequence[Event], kind: str, **fields: Any) -> list[Event]:
    """The events of type ``kind`` whose payload has all of ``fields``."""
    return [
        event
        for event in events
        if event["type"] == kind and all(event.get(k) == v for k, v in fields.items())
    ]
