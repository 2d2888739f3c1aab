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


def check_stream(events: Sequence[Event], *, complete: bool = True) -> None:
    """Assert the ordering rules of one run's stream.

    A tool's call comes before its result, each once; what a tool emits comes between them;
    at most one terminal event (``finish`` or ``error``) and nothing after it; the internal
    ``run-start`` is never streamed. ``complete``: the stream was drained, so it ends with a
    terminal event.
    """
    called: set[str] = set()
    answered: set[str] = set()
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
                answered.add(tool_id)
        elif kind in _EMITTED:
            tool_id = event["toolInvocationId"]
            assert tool_id in called, f"event {index}: {kind} of {tool_id} before its call"
            assert tool_id not in answered, f"event {index}: {kind} of {tool_id} after its result"
    if complete:
        assert events, "a drained stream yields at least its terminal event"
        assert events[-1]["type"] in _TERMINAL, f"stream ends with {events[-1]['type']}"


async def drain(stream: AsyncIterable[Event]) -> list[Event]:
    """Every event of ``stream``, checked with :func:`check_stream`."""
    events = [event async for event in stream]
    check_stream(events)
    return events


def of_type(events: Sequence[Event], kind: str, **fields: Any) -> list[Event]:
    """The events of type ``kind`` whose payload has all of ``fields``."""
    return [
        event
        for event in events
        if event["type"] == kind and all(event.get(k) == v for k, v in fields.items())
    ]
