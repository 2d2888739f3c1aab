"""Server-sent events from a streamed HTTP body, decoded for the adapters.

Owns :class:`SSEDecoder`, which turns the body's byte chunks into ``(event name, data)`` pairs
as the SSE specification reads them: events end at a blank line; lines end with ``\\r\\n``,
``\\n`` or ``\\r`` (a ``\\r`` at the end of a chunk waits for the next one, which may bring its
``\\n``); ``event:`` names the event, ``data:`` lines are joined with ``\\n``, one space after
the colon is dropped, comment lines (``:``) and other fields are ignored; an event cut off by
the end of the body is dropped. JSON decoding is the caller's (orjson), so this stays bytes.

The adapters read the body themselves rather than through the SDKs' typed stream classes:
the official SDKs still build, send and authenticate the request and raise their typed errors
for HTTP failures, but their per-event model construction costs more than the whole rest of
a tool step (``bench/provider_overhead.py`` prints both). Must not import the SDKs, the
runtime or the native engine.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SSEDecoder"]

_CR: Final = b"\r"
_LF: Final = b"\n"


def _event(block: bytes) -> tuple[str | None, bytes] | None:
    # The providers' usual shapes, one data line with or without an event line, read with
    # a few slices; anything else goes through the general reading below.
    if block.startswith(b"data: ") and _LF not in block:
        return None, block[6:]
    if block.startswith(b"event: "):
        end = block.find(_LF)
        if end > 0 and block.startswith(b"data: ", end + 1) and _LF not in block[end + 1 :]:
            return block[7:end].decode("utf-8", "replace"), block[end + 7 :]
    name: str | None = None
    data: list[bytes] = []
    for line in block.split(_LF):
        if not line or line[0] == 58:  # ":" starts a comment
            continue
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and name is None:
        return None
    return name, _LF.join(data)


class SSEDecoder:
    """Incremental: :meth:`feed` takes the next chunk of the body and returns the events it
    completed, as ``(event name or None, data)``. Synchronous, so reading a stream costs one
    loop over the body's chunks and no extra async generator."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        pending = self._pending + chunk
        held = b""
        if pending.endswith(_CR):
            # Its \n may come with the next chunk; splitting now would see a blank line.
            pending, held = pending[:-1], _CR
        if _CR in pending:
            pending = pending.replace(b"\r\n", _LF).replace(_CR, _LF)
        blocks = pending.split(b"\n\n")
        self._pending = blocks.pop() + held
        events = []
        for block in blocks:
            event = _event(block)
            if event is not None:
                events.append(event)
        return events
