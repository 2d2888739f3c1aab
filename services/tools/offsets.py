"""Which consumed offsets a tool worker may commit, while records finish out of order.

Owns :class:`OffsetTracker`. Records of one partition run concurrently and finish in any
order, but a Kafka commit says "everything below this offset is done": so a partition's
commit position is the lowest offset still in flight (or one past the highest finished one
when nothing is). A record that never finishes (its worker died) holds the position, and the
next owner of the partition gets it again.

Pure bookkeeping: no Kafka, no Redis, no asyncio. Must not import the rest of the service.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["OffsetTracker"]

P = TypeVar("P", bound=Hashable)


@dataclass
class _Partition:
    # Offsets started and not yet finished, plus finished ones above the lowest unfinished;
    # Kafka hands a partition's records out in increasing offset order.
    started: list[int] = field(default_factory=list)
    finished: set[int] = field(default_factory=set)
    head: int = 0  # index in ``started`` of the lowest offset not yet finished
    position: int | None = None  # next offset to commit, None until something finished
    committed: int | None = None


class OffsetTracker(Generic[P]):
    """Commit positions per partition for records that finish out of order."""

    def __init__(self) -> None:
        self._partitions: dict[P, _Partition] = {}

    def start(self, partition: P, offset: int) -> None:
        """Record ``offset`` as in flight; offsets of a partition must start in order."""
        state = self._partitions.setdefault(partition, _Partition())
        if state.started and offset <= state.started[-1]:
            raise ValueError(
                f"offset {offset} of {partition!r} started after {state.started[-1]}: "
                "a partition's records must start in offset order"
            )
        state.started.append(offset)

    def finish(self, partition: P, offset: int) -> None:
        """Record ``offset`` as done (its result published, or it was dead-lettered).

        A partition dropped by :meth:`forget` (revoked meanwhile) is ignored: the new owner
        commits it.
        """
        state = self._partitions.get(partition)
        if state is None:
            return
        state.finished.add(offset)
        started = state.started
        while state.head < len(started) and started[state.head] in state.finished:
            state.finished.discard(started[state.head])
            state.position = started[state.head] + 1
            state.head += 1
        # Drop the finished prefix now and then, so the list does not grow without end.
        if state.head > 1024 and state.head * 2 > len(started):
            del started[: state.head]
            state.head = 0

    def to_commit(self) -> dict[P, int]:
        """Positions that moved since :meth:`committed` was last told about them."""
        return {
            partition: state.position
            for partition, state in self._partitions.items()
            if state.position is not None and state.position != state.committed
        }

    def committed(self, positions: dict[P, int]) -> None:
        """Note that ``positions`` (from :meth:`to_commit`) are committed."""
        for partition, position in positions.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = position

    def in_flight(self, partition: P) -> int:
        """How many records of ``partition`` started and have not finished."""
        state = self._partitions.get(partition)
        return 0 if state is None else len(state.started) - state.head

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop the state of partitions this worker no longer owns (after a rebalance)."""
        for partition in partitions:
            self._partitions.pop(partition, None)
