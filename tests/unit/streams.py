"""Draining a stream with the ordering rules every stream must keep (SEED-REFERENCE §2,
docs/wire.md "The run log and its events").

Every test that drains a stream through :func:`drain` checks these rules without saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Any

Event = dict[str, Any]

_INTERNAL = ("run-start", "model-response")
_EMITTED = ("custom", "tool-progress")
# What may follow `finish` (the seed: summaries and the entry agent's wrapping result).
_AFTER_FINISH = ("data-latency-summary", "data-cost-summary", "tool-agent")


def is_wrapper(event: Event) -> bool:
    """The entry agent's own `tool-agent` pair (no `targetAgent`: nobody called it)."""
    return event["type"] == "tool-agent" and "targetAgent" not in event


def check_stream(
    events: Sequence[Event], *, complete: bool = True, after: Sequence[Event] = ()
) -> None:
    """Assert the ordering rules of one run's stream.

    A tool's call comes before its result, each once; what a tool emits comes between them;
    ``finish`` comes at most once, followed only by summaries and the entry agent's wrapping
    ``tool-agent`` result; nothing follows ``error``; internal events (``run-start``,
    ``model-response``) are never streamed. An approval gate (``approval-required``) comes
    after its call and before its one ``approval-decision`` (with any ``approval-progress`` of
    a gate that needs several approvers in between), and the gated call's result comes after
    the decision. ``complete``: the stream was drained, so it ends the run (``error``,
    or ``finish`` and the wrapper's result). ``after``: the events of the same run streamed
    before (by another stream or process), for a stream that continues a run.
    """
    events = [*after, *events]
    called: dict[str, str] = {}  # call id -> kind
    answered: set[str] = set()
    gates: dict[str, str] = {}  # approval id -> the gated call's id
    undecided: set[str] = set()  # calls waiting at their gate
    open_calls: list[str] = []  # tool-invocation calls without a result, in order
    finished = False
    for index, event in enumerate(events):
        kind = event["type"]
        assert kind not in _INTERNAL, f"event {index}: {kind} is internal, never streamed"
        if index > 0:
            before = events[index - 1]["type"]
            assert before != "error", f"event {index} ({kind}) comes after error"
        if finished:
            assert kind in _AFTER_FINISH, f"event {index} ({kind}) comes after finish"
            if kind == "tool-agent":
                assert is_wrapper(event), event
                assert event["state"] == "result", event
        if kind == "finish":
            assert not finished, f"event {index}: a second finish"
            finished = True
        if kind in ("tool-invocation", "tool-agent"):
            tool_id = event["toolInvocationId"]
            if event["state"] == "call":
                assert tool_id not in called, f"event {index}: second call {tool_id}"
                called[tool_id] = kind
                if kind == "tool-invocation":
                    open_calls.append(tool_id)
            else:
                assert event["state"] == "result", event
                assert tool_id in called, f"event {index}: result of {tool_id} before its call"
                assert tool_id not in answered, f"event {index}: second result for {tool_id}"
                assert tool_id not in undecided, f"event {index}: result of {tool_id} at its gate"
                answered.add(tool_id)
                if tool_id in open_calls:
                    open_calls.remove(tool_id)
        elif kind in _EMITTED:
            tool_id = event["toolInvocationId"]
            assert tool_id in called, f"event {index}: {kind} of {tool_id} before its call"
            assert tool_id not in answered, f"event {index}: {kind} of {tool_id} after its result"
        elif kind == "approval-required":
            data = event["data"]
            # A tool's gate names its call; a plan's names the plan (its executePlan call is
            # the one out).
            tool_id = data["correlationId"] if data["kind"] == "tool" else open_calls[-1]
            assert tool_id in called, f"event {index}: gate of {tool_id} before its call"
            assert tool_id not in answered, f"event {index}: gate of {tool_id} after its result"
            assert data["id"] not in gates, f"event {index}: second gate {data['id']}"
            gates[data["id"]] = tool_id
            undecided.add(tool_id)
        elif kind == "approval-progress":
            tool_id = gates.get(event["data"]["id"], "")
            assert tool_id in undecided, f"event {index}: progress of a gate that is not open"
        elif kind == "approval-decision":
            approval = event["data"]["id"]
            tool_id = gates.get(approval, "")
            assert tool_id, f"event {index}: decision of {approval} before its gate"
            assert tool_id in undecided, f"event {index}: second decision of {approval}"
            undecided.discard(tool_id)
    if complete:
        assert events, "a drained stream yields at least its terminal event"
        last = events[-1]
        assert last["type"] == "error" or (finished and is_wrapper(last)), (
            f"stream ends with {last['type']}"
        )


async def drain(stream: AsyncIterable[Event], *, after: Sequence[Event] = ()) -> list[Event]:
    """Every event of ``stream``, checked with :func:`check_stream` (``after``: the run's
    events streamed before this stream took over)."""
    events = [event async for event in stream]
    check_stream(events, after=after)
    return events


def of_type(events: Sequence[Event], kind: str, **fields: Any) -> list[Event]:
    """The events of type ``kind`` whose payload (or its ``data``) has all of ``fields``."""
    return [
        event
        for event in events
        if event["type"] == kind
        and all(
            event.get(
                k, event.get("data", {}).get(k) if isinstance(event.get("data"), dict) else None
            )
            == v
            for k, v in fields.items()
        )
    ]


def labels(events: Sequence[Event]) -> list[str]:
    """`type`, or `type/state` for the two-phase events, in order."""
    return [f"{e['type']}/{e['state']}" if "state" in e else e["type"] for e in events]


def finish(events: Sequence[Event]) -> Event:
    """The run's one `finish` event."""
    found = [event for event in events if event["type"] == "finish"]
    assert len(found) == 1, f"expected one finish, got {len(found)}"
    return found[0]


def terminal(events: Sequence[Event]) -> Event:
    """The event that ended the run's decisions: `finish` or `error`."""
    found = [event for event in events if event["type"] in ("finish", "error")]
    assert found, "the run did not end"
    return found[-1]
