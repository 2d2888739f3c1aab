"""Dead letters an operator can act on: find them, look at one, and re-drive it.

Owns :class:`LetterFilter`, :class:`Letter`, :func:`read_letters` (every dead letter on
``<prefix>.dead-letters``, read_committed, with the re-drives recorded for each),
:func:`find_letter` and :func:`redrive`, which the ``flowai dead-letters list|show|redrive``
commands call.

Re-drive republishes a dead letter's message to the topic it was read from, after the
operator fixed the cause (deployed the missing tool, trusted the key, corrected the upstream
producer). It is the original bytes, or a corrected message the operator gives, which must
keep the original envelope id: the id is every consumer's idempotency key, so a message
re-driven twice, or one that was in fact handled, is still handled once. The key is the one
the original had to have (``tenant/thread_id``, or the envelope id for tool invocations,
plan steps and model requests), so it lands on the partition its consumer owns. After the
broker acknowledged the message, a ``flowai.v1.Redrive`` record on the dead-letters topic
says who re-drove which letter, when, and where it went; a letter already re-driven is
refused unless asked again. If the command dies between the two, the message went out
unrecorded, never the reverse.

Imports aiokafka (the ``kafka`` extra). Must not import the runtime, the native engine, the
client or any service.
"""

from __future__ import annotations

import base64
import datetime
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import orjson
from aiokafka import TopicPartition

from ..errors import DeadLetterNotFoundError, RedriveRefusedError, UsageError
from ..messages import DeadLetter, Redrive
from ..progress import progress
from . import bus
from .logread import LogReader

__all__ = [
    "Letter",
    "LetterFilter",
    "Redriven",
    "add_parser",
    "find_letter",
    "letter_line",
    "matching",
    "parse_time",
    "read_letters",
    "redrive",
    "run",
]

_RELATIVE: Final = re.compile(r"(\d+)([smhd])")
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which dead letters to show: every field left None matches everything. ``topic`` is
    the source topic, by full name or by stem (``queries``); times are ms since the epoch."""

    topic: str | None = None
    reason: str | None = None
    tenant: str | None = None
    service: str | None = None
    since: int | None = None
    until: int | None = None

    def matches(self, letter: Letter, prefix: str) -> bool:
        source = letter.source_topic
        if self.topic is not None and source not in (self.topic, f"{prefix}.{self.topic}"):
            return False
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.tenant is not None and letter.tenant != self.tenant:
            return False
        if self.service is not None and letter.service != self.service:
            return False
        if self.since is not None and letter.ts < self.since:
            return False
        return self.until is None or letter.ts < self.until


@dataclass(slots=True)
class Letter:
    """One dead letter: why, from where, the message, and every re-drive of it so far."""

    id: str
    ts: int
    tenant: str | None
    thread_id: str | None
    reason: str
    message: str
    service: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    original: bytes
    original_id: str | None
    original_schema: str | None
    redrives: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_envelope(cls, body: dict[str, Any]) -> Letter:
        payload = body["payload"]
        source = payload.get("source") or {}
        original = payload.get("original", "")
        data = (
            base64.b64decode(original)
            if payload.get("encoding") == "base64"
            else str(original).encode()
        )
        return cls(
            id=body["id"],
            ts=int(body.get("ts") or 0),
            tenant=body.get("tenant"),
            thread_id=body.get("thread_id"),
            reason=str(payload.get("reason")),
            message=str(payload.get("message", "")),
            service=str(payload.get("service")),
            source_topic=source.get("topic"),
            source_partition=source.get("partition"),
            source_offset=source.get("offset"),
            original=data,
            original_id=payload.get("original_id"),
            original_schema=payload.get("original_schema"),
        )

    def to_json(self) -> dict[str, Any]:
        """For ``--json``: the fields, with the message decoded when it is JSON."""
        try:
            original: Any = orjson.loads(self.original)
        except orjson.JSONDecodeError:
            try:
                original = self.original.decode()
            except UnicodeDecodeError:
                original = {"base64": base64.b64encode(self.original).decode()}
        return {
            "id": self.id,
            "ts": self.ts,
            "tenant": self.tenant,
            "thread_id": self.thread_id,
            "reason": self.reason,
            "message": self.message,
            "service": self.service,
            "source": None
            if self.source_topic is None
            else {
                "topic": self.source_topic,
                "partition": self.source_partition,
                "offset": self.source_offset,
            },
            "original_id": self.original_id,
            "original_schema": self.original_schema,
            "original": original,
            "redrives": self.redrives,
        }


@dataclass(frozen=True, slots=True)
class Redriven:
    """Where a re-driven message went, and the record of it."""

    letter_id: str
    topic: str
    partition: int
    offset: int
    record: dict[str, Any]


def parse_time(text: str, *, now_ms: int | None = None) -> int:
    """``2026-05-01T12:00:00Z`` (ISO 8601; UTC when no zone), ``1714564800000`` (ms) or
    ``30m`` / ``2h`` / ``1d`` (that long ago) as ms since the epoch."""
    now = bus.now_ms() if now_ms is None else now_ms
    text = text.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        return now - int(relative.group(1)) * _SECONDS[relative.group(2)] * 1000
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is not a time: use ISO 8601 (2026-05-01T12:00:00Z), ms since the "
            "epoch, or an age such as 30m, 2h, 1d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


async def read_letters(
    bootstrap: str,
    prefix: str,
    filter: LetterFilter | None = None,
    *,
    stream: TextIO | None = None,
) -> list[Letter]:
    """Every dead letter of ``prefix`` that ``filter`` matches, oldest first, each with its
    re-drives; shows progress on ``stream`` (default stderr) while it reads."""
    topics = bus.Topics(prefix)
    count = await bus.partition_count(bootstrap, topics.dead_letters)
    tps = [TopicPartition(topics.dead_letters, p) for p in range(count)]
    offsets = bus.consumer(bootstrap, client_id="flowai-dead-letters")
    reader = LogReader(bootstrap, client_id="flowai-dead-letters")
    await offsets.start()
    try:
        await reader.start()
        begins = await offsets.beginning_offsets(tps)
        ends = await offsets.end_offsets(tps)  # read_committed: the last stable offsets
        ranges = {tp: (begins[tp], ends[tp]) for tp in tps}
        letters: dict[str, Letter] = {}
        redrives: list[dict[str, Any]] = []
        total = sum(end - begin for begin, end in ranges.values())
        with progress("reading dead letters", total, stream=stream) as shown:
            async for tp, log in reader.read_each(ranges):
                for value in log.values:
                    body = bus.peek(value) or {}
                    if body.get("schema") == DeadLetter.NAME:
                        letter = Letter.from_envelope(body)
                        letters[letter.id] = letter
                    elif body.get("schema") == Redrive.NAME:
                        redrives.append(body)
                # Offsets count transaction markers too; the bar ends at the total anyway.
                begin, end = ranges[tp]
                shown.advance(end - begin)
    finally:
        await offsets.stop()
        await reader.close()
    for record in redrives:
        payload = record.get("payload") or {}
        redriven = letters.get(str(payload.get("dead_letter_id")))
        if redriven is not None:
            redriven.redrives.append({"ts": record.get("ts"), "id": record.get("id"), **payload})
    chosen = filter or LetterFilter()
    found = [letter for letter in letters.values() if chosen.matches(letter, prefix)]
    return sorted(found, key=lambda letter: (letter.ts, letter.id))


async def find_letter(
    bootstrap: str, prefix: str, letter_id: str, *, stream: TextIO | None = None
) -> Letter:
    """The dead letter ``letter_id``; :class:`DeadLetterNotFoundError` if there is none."""
    for letter in await read_letters(bootstrap, prefix, stream=stream):
        if letter.id == letter_id:
            return letter
    raise DeadLetterNotFoundError(
        f"no dead letter {letter_id!r} on {prefix}.dead-letters; "
        "`flowai dead-letters list` shows their ids"
    )


async def redrive(
    bootstrap: str,
    prefix: str,
    letters: Sequence[Letter],
    *,
    operator: str,
    note: str | None = None,
    replacement: bytes | None = None,
    again: bool = False,
    stream: TextIO | None = None,
) -> list[Redriven]:
    """Republish each letter's message (or ``replacement``, for a single letter) to its
    source topic, then record the re-drive; returns where each went.

    Everything is checked before anything is sent: raises
    :class:`~flowai_harness.errors.RedriveRefusedError` when a letter has no source topic,
    was re-driven already (unless ``again``), or the replacement is not an envelope that
    keeps the original id.
    """
    if not operator:
        raise UsageError("say who re-drives: --operator NAME (or FLOWAI_OPERATOR)")
    if replacement is not None and len(letters) != 1:
        raise UsageError("a corrected message replaces one dead letter's message: name one id")
    topics = bus.Topics(prefix)
    plans = [_plan(letter, replacement, again, prefix) for letter in letters]
    counts = await bus.partition_counts(
        bootstrap, {topic for _, topic, _, _ in plans} | {topics.dead_letters}
    )
    producer = bus.producer(bootstrap, client_id="flowai-redrive")
    await producer.start()
    done: list[Redriven] = []
    try:
        with progress("re-driving dead letters", len(plans), unit="letters", stream=stream) as p:
            for letter, topic, key, body in plans:
                partition = bus.partition_for(key, counts[topic]) if key is not None else None
                sent = await producer.send_and_wait(
                    topic,
                    body,
                    key=key,
                    partition=partition,
                    headers=[(bus.TRACEPARENT, bus.new_traceparent().encode())],
                )
                record = _redrive_record(
                    letter, operator, note, topic, sent.partition, sent.offset, replacement
                )
                letter_key = (
                    bus.thread_key(letter.tenant, letter.thread_id)
                    if letter.tenant is not None and letter.thread_id is not None
                    else None
                )
                await producer.send_and_wait(
                    topics.dead_letters,
                    orjson.dumps(record),
                    key=letter_key,
                    partition=(
                        bus.partition_for(letter_key, counts[topics.dead_letters])
                        if letter_key is not None
                        else None
                    ),
                )
                letter.redrives.append(
                    {"ts": record["ts"], "id": record["id"], **record["payload"]}
                )
                done.append(Redriven(letter.id, topic, sent.partition, sent.offset, record))
                p.advance()
    finally:
        await producer.stop()
    return done


def _plan(
    letter: Letter, replacement: bytes | None, again: bool, prefix: str
) -> tuple[Letter, str, bytes | None, bytes]:
    """(letter, topic, key, bytes) of one re-drive, or why it cannot be done."""
    if letter.redrives and not again:
        last = letter.redrives[-1]
        raise RedriveRefusedError(
            f"dead letter {letter.id} was re-driven already by {last.get('operator')} at "
            f"{_iso(last.get('ts'))}; its message id stays the idempotency key, so another "
            "copy is harmless but pointless unless the cause changed: pass --again to re-drive "
            "it anyway"
        )
    topic = letter.source_topic
    if topic is None:
        raise RedriveRefusedError(
            f"dead letter {letter.id} does not say which topic its message came from, so it "
            "cannot be re-driven; publish a corrected message to the right topic yourself"
        )
    if not topic.startswith(f"{prefix}."):
        raise RedriveRefusedError(
            f"dead letter {letter.id} came from {topic}, which is not under --prefix {prefix}"
        )
    body = letter.original if replacement is None else replacement
    fields = bus.peek(body)
    if replacement is not None:
        if fields is None or not isinstance(fields.get("id"), str):
            raise RedriveRefusedError(
                "the corrected message must be a JSON envelope with an `id` (the schema files "
                "under schemas/v1 say what it needs)"
            )
        if letter.original_id is not None and fields["id"] != letter.original_id:
            raise RedriveRefusedError(
                f"the corrected message has id {fields['id']!r} but the dead letter's message "
                f"had {letter.original_id!r}: keep the id, so consumers that did handle the "
                "original recognise the copy"
            )
    return letter, topic, _key_of(fields, letter), body


def _key_of(fields: dict[str, Any] | None, letter: Letter) -> bytes | None:
    # The message's own key rule; the dead letter names the thread when the message does not.
    return bus.record_key(
        {"tenant": letter.tenant, "thread_id": letter.thread_id, **(fields or {})}
    )


def _redrive_record(
    letter: Letter,
    operator: str,
    note: str | None,
    topic: str,
    partition: int,
    offset: int,
    replacement: bytes | None,
) -> dict[str, Any]:
    now = bus.now_ms()
    return {
        "schema": Redrive.NAME,
        "id": f"redrive/{letter.id}/{now}-{time.monotonic_ns() % 1_000_000}",
        "tenant": letter.tenant,
        "thread_id": letter.thread_id,
        "run_id": None,
        "causation_id": letter.id,
        "ts": now,
        "payload": {
            "dead_letter_id": letter.id,
            "original_id": letter.original_id,
            "operator": operator,
            "note": note,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "replaced": replacement is not None,
        },
    }


def _iso(ms: Any) -> str:
    if not isinstance(ms, int):
        return "?"
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).isoformat(timespec="seconds")


def letter_line(letter: Letter) -> str:
    """``time  reason  service  source  tenant/thread  id  [re-driven N]`` for one letter."""
    source = (
        f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
        if letter.source_topic is not None
        else "-"
    )
    where = f"{letter.tenant or '-'}/{letter.thread_id or '-'}"
    redriven = f"  re-driven x{len(letter.redrives)}" if letter.redrives else ""
    message = " ".join(letter.message.split())
    if len(message) > 80:
        message = message[:77] + "..."
    return (
        f"{_iso(letter.ts)}  {letter.reason:<24} {letter.service:<9} {source}  {where}  "
        f"{letter.id}{redriven}\n    {message}"
    )


def matching(letters: Iterable[Letter], ids: Sequence[str]) -> list[Letter]:
    """The letters with ``ids``, in that order; :class:`DeadLetterNotFoundError` for the
    first id that is not there."""
    by_id = {letter.id: letter for letter in letters}
    chosen: list[Letter] = []
    for letter_id in ids:
        letter = by_id.get(letter_id)
        if letter is None:
            raise DeadLetterNotFoundError(
                f"no dead letter {letter_id!r} (or it does not match the filters); "
                "`flowai dead-letters list` shows their ids"
            )
        chosen.append(letter)
    return chosen


# --- the command line (``flowai dead-letters``; cli.py registers it) ---------------------------


def add_parser(commands: Any, *, bootstrap: str, prefix: str) -> None:
    """Add ``dead-letters list|show|redrive`` to the ``flowai`` subcommands."""
    import argparse
    import os

    letters = commands.add_parser(
        "dead-letters",
        help="list, show and re-drive dead letters",
        description="Messages the services could not handle, with the reason. Re-drive "
        "republishes one (same id) after you fixed the cause, and records who did it.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap", default=bootstrap)
    common.add_argument("--prefix", default=prefix)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--topic", help="source topic, full name or stem (queries)")
    filters.add_argument("--reason", help="the stable code, e.g. INPUT_MALFORMED")
    filters.add_argument("--tenant")
    filters.add_argument("--service", help="runtime, tools or approvals")
    filters.add_argument("--since", help="ISO 8601 time, ms since the epoch, or an age (2h)")
    filters.add_argument("--until", help="same forms as --since")
    actions = letters.add_subparsers(dest="dead_letters_command", required=True)
    listing = actions.add_parser("list", parents=[common, filters], help="the dead letters")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", parents=[common], help="one dead letter in full")
    show.add_argument("letter_id")
    again = actions.add_parser(
        "redrive",
        parents=[common, filters],
        help="republish dead letters' messages to their topics",
        description="Republish each named dead letter's message (or, with --all, every one "
        "the filters match) to the topic it came from, with its original id, and record the "
        "re-drive on the dead-letters topic.",
    )
    again.add_argument("letter_ids", nargs="*", metavar="ID")
    again.add_argument("--all", action="store_true", help="every letter the filters match")
    again.add_argument(
        "--operator",
        default=os.environ.get("FLOWAI_OPERATOR") or os.environ.get("USER"),
        help="who re-drives (env FLOWAI_OPERATOR, else USER); recorded with the re-drive",
    )
    again.add_argument("--note", help="why, recorded with the re-drive")
    again.add_argument(
        "--replace",
        metavar="FILE",
        help="send this corrected message (a JSON envelope with the original id) instead",
    )
    again.add_argument("--again", action="store_true", help="re-drive letters re-driven before")


async def run(args: Any) -> int:
    """The ``flowai dead-letters`` command whose arguments ``add_parser`` parsed."""
    import asyncio
    import sys
    from pathlib import Path

    command = args.dead_letters_command
    if command == "show":
        letter = await find_letter(args.bootstrap, args.prefix, args.letter_id)
        print(orjson.dumps(letter.to_json(), option=orjson.OPT_INDENT_2).decode())
        return 0
    chosen = LetterFilter(
        topic=args.topic,
        reason=args.reason,
        tenant=args.tenant,
        service=args.service,
        since=None if args.since is None else parse_time(args.since),
        until=None if args.until is None else parse_time(args.until),
    )
    if command == "list":
        found = await read_letters(args.bootstrap, args.prefix, chosen)
        for letter in found:
            if args.json:
                print(orjson.dumps(letter.to_json()).decode())
            else:
                print(letter_line(letter))
        if not found and not args.json:
            print(f"no dead letters on {args.prefix}.dead-letters match", file=sys.stderr)
        return 0
    if bool(args.letter_ids) == bool(args.all):
        raise UsageError("name the dead letters to re-drive (ids), or pass --all with filters")
    found = await read_letters(args.bootstrap, args.prefix, chosen)
    targets = found if args.all else matching(found, args.letter_ids)
    replacement = None
    if args.replace is not None:
        try:
            replacement = await asyncio.to_thread(Path(args.replace).read_bytes)
        except OSError as exc:
            raise UsageError(f"cannot read --replace {args.replace}: {exc.strerror}") from None
    done = await redrive(
        args.bootstrap,
        args.prefix,
        targets,
        operator=args.operator or "",
        note=args.note,
        replacement=replacement,
        again=args.again,
    )
    for item in done:
        print(f"{item.letter_id} -> {item.topic}[{item.partition}]@{item.offset}")
    if not done:
        print("nothing to re-drive", file=sys.stderr)
    return 0
