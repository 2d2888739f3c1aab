"""The one driver: feeds an engine, sorts what it decides, answers its approval checks and
tells when time is due. The embedded runtime and the runtime service both drive the engine
through it; they differ only in how effects travel (in-process calls vs Kafka topics).

Owns :class:`Driver` and :class:`Decided`:

- :meth:`Driver.envelope` builds an input envelope (ids unique per driver, the one clock);
- :meth:`Driver.feed` hands inputs to the engine in one crossing and returns what it decided:
  run-log events (per thread), effects, rejections (each tied to the input it answers) and
  duplicates (inputs the thread already took, ignored). A dynamic approval rule
  (``ApprovalCheck``) is answered at once with the app's predicate, sync or async, with the
  runtime's ``services`` in its context, and the answer fed back in the same call, so both
  modes gate alike;
- :meth:`Driver.due` gives a ``DeadlineReached`` input for every thread whose time came
  (approval deadlines, model retries, model request timeouts).

Must not import the runtime, the bus or any service (they import this).
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from . import _native
from .messages import ApprovalCheck, ApprovalCheckResult, DeadlineReached, envelope

__all__ = ["Decided", "Driver", "now_ms"]

log = logging.getLogger("flowai.driver")

# How every ApprovalCheck effect begins (the engine writes ``schema`` first).
APPROVAL_CHECK: Final = b'{"schema":"' + ApprovalCheck.NAME.encode() + b'"'


def now_ms() -> int:
    """The runtime's one clock, in ms since the Unix epoch (deadlines compare against it)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Decided:
    """What one crossing decided, in the engine's order within each list."""

    # (thread id, run-log line), to append to the thread's log before anyone sees them.
    events: list[tuple[str, bytes]] = field(default_factory=list)
    # Effect envelopes for the outside world (approval checks were answered already).
    effects: list[bytes] = field(default_factory=list)
    # Unlogged error envelopes answering refused inputs (their causation_id names the input).
    rejections: list[bytes] = field(default_factory=list)
    # Inputs the thread had taken already (or answers it no longer waits for): ignored.
    duplicates: list[bytes] = field(default_factory=list)

    def extend(self, other: Decided) -> None:
        self.events.extend(other.events)
        self.effects.extend(other.effects)


class Driver:
    """Feeds one engine. Not thread-safe: one driver per event loop."""

    def __init__(
        self,
        engine: _native.Engine,
        *,
        tenant: str,
        predicates: Any,
        services: Mapping[str, Any],
        id_prefix: str | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.engine = engine
        self.tenant = tenant
        self._predicates = predicates
        self._services = services
        self._id_prefix = id_prefix or uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self.clock = clock

    def next_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    def envelope(
        self,
        schema: str,
        thread_id: str,
        payload: Any,
        *,
        id: str | None = None,
        causation_id: str | None = None,
        run_id: str | None = None,
    ) -> bytes:
        """An input envelope stamped with this driver's next id and the clock."""
        return envelope(
            schema,
            id=id or self.next_id(),
            tenant=self.tenant,
            thread_id=thread_id,
            payload=payload,
            ts=self.clock(),
            causation_id=causation_id,
            run_id=run_id,
        )

    async def feed(self, inputs: Sequence[bytes]) -> Decided:
        """Hand ``inputs`` to the engine (one crossing) and sort what it decided; approval
        checks are answered and fed back until none is left."""
        decided = Decided()
        checks: list[bytes] = []
        self._sort(self.engine.handle_many(list(inputs)), decided, checks)
        while checks:
            answers = [await self._answer_check(check) for check in checks]
            checks = []
            # Answers are the engine's own inputs: a rejection of one is not a caller's.
            follow = Decided()
            self._sort(self.engine.handle_many(answers), follow, checks)
            for rejected in follow.rejections:
                log.warning("engine refused an approval check answer: %s", rejected[:300])
            decided.extend(follow)
        return decided

    def _sort(
        self,
        outputs: list[tuple[int, str, bytes]],
        decided: Decided,
        checks: list[bytes],
    ) -> None:
        for kind, thread_id, data in outputs:
            if kind == _native.EVENT:
                decided.events.append((thread_id, data))
            elif kind == _native.EFFECT:
                if data.startswith(APPROVAL_CHECK):
                    checks.append(data)
                else:
                    decided.effects.append(data)
            elif kind == _native.REJECTION:
                decided.rejections.append(data)
            else:
                decided.duplicates.append(data)

    async def _answer_check(self, data: bytes) -> bytes:
        """Evaluate a dynamic approval rule (a predicate that raises means: ask a human)."""
        check = orjson.loads(data)
        payload = check["payload"]
        ctx = {
            "kind": payload.get("kind", "tool"),
            "target": payload.get("target", payload["tool"]),
            "tenant": check["tenant"],
            "agent": payload["agent"],
            "tool": payload["tool"],
            "thread_id": check["thread_id"],
            "services": self._services,
        }
        required = await self._predicates.aevaluate(payload["predicate"], payload["args"], ctx)
        return self.envelope(
            ApprovalCheckResult.NAME,
            check["thread_id"],
            {"check_id": payload["check_id"], "required": required},
            causation_id=check["id"],
            run_id=check.get("run_id"),
        )

    def due(self, now: int | None = None) -> list[bytes]:
        """A ``DeadlineReached`` input for every thread whose time came (stamped now)."""
        now = self.clock() if now is None else now
        return [
            self.envelope(DeadlineReached.NAME, thread_id, {}) for thread_id in self.engine.due(now)
        ]

    def next_deadline(self) -> int | None:
        """When the driver must be woken next (ms), if ever."""
        found = self.engine.next_deadline()
        return None if found is None else found[1]


def error_of(rejection: bytes) -> dict[str, Any]:
    """The ``{message, code}`` of a rejection envelope."""
    error: dict[str, Any] = orjson.loads(rejection)["payload"]["error"]
    return error
