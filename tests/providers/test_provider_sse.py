"""The adapters' SSE decoder: events as the specification reads them, however the body is
cut into chunks."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from flowai_harness.providers.sse import SSEDecoder

BODY = (
    b": a comment the server sends to keep the connection open\n"
    b"event: message_start\n"
    b'data: {"type": "message_start"}\n'
    b"\n"
    b"event: ping\n"
    b"data:{}\n"
    b"\n"
    b"id: 7\n"
    b"retry: 100\n"
    b"data: first line\n"
    b"data: second line\n"
    b"\n\n\n"
    b"event: named-only\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
    b"data: cut off by the end of the body"
)
EVENTS = [
    ("message_start", b'{"type": "message_start"}'),
    ("ping", b"{}"),
    (None, b"first line\nsecond line"),
    ("named-only", b""),
    (None, b"[DONE]"),
]


def decode(chunks: list[bytes]) -> list[tuple[str | None, bytes]]:
    decoder = SSEDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def test_the_whole_body_at_once() -> None:
    assert decode([BODY]) == EVENTS


def test_every_line_ending_reads_the_same() -> None:
    assert decode([BODY.replace(b"\n", b"\r\n")]) == EVENTS
    assert decode([BODY.replace(b"\n", b"\r")]) == EVENTS


def test_one_byte_at_a_time() -> None:
    crlf = BODY.replace(b"\n", b"\r\n")
    assert decode([crlf[i : i + 1] for i in range(len(crlf))]) == EVENTS


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(BODY) * 2), max_size=30),
    ending=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_any_chunking_gives_the_same_events(cuts: list[int], ending: bytes) -> None:
    body = BODY.replace(b"\n", ending)
    points = sorted({0, len(body), *(cut % (len(body) + 1) for cut in cuts)})
    chunks = [body[a:b] for a, b in itertools.pairwise(points)]

    assert decode(chunks) == EVENTS
