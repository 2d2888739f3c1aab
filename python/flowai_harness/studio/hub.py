"""Where a Studio backend puts what it sees, and where the HTTP streams take it from.

Owns :class:`Hub` (the :class:`~.index.RunIndex` plus its subscribers), :class:`Item` and
:class:`Subscription`. A backend calls :meth:`Hub.logged` with each run-log envelope (in log
order per thread) and :meth:`Hub.live` with what a run shows but never logs (a live model's
text as it streams, a refused query's error). Every subscriber gets every item after it
subscribed, in order; a stream that first subscribes and then reads the index from a seq
therefore misses nothing (the index answers what came before, the subscription what comes
after, and the seq drops what both hold).

A subscriber that falls this far behind is dropped (its stream ends and the browser
reconnects from its last seq) rather than let memory grow without bound.

Must not import the runtime, Kafka or FastAPI.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final, Literal

from .index import Change, RunIndex

__all__ = ["Hub", "Item", "Subscription"]

# Items a subscriber may have waiting before it is dropped.
MAX_BACKLOG: Final = 10_000


@dataclass(frozen=True)
class Item:
    """One thing that happened: a logged envelope (with what it changed) or a live event."""

    kind: Literal["logged", "live"]
    thread_id: str
    envelope: dict[str, Any] | None = None
    change: Change | None = None
    event: dict[str, Any] | None = None


class Subscription:
    """A queue of items; ``overflowed`` once it was dropped for falling behind."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self.overflowed = False

    def put(self, item: Item) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= MAX_BACKLOG:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(item)

    async def get(self, within: float | None = None) -> Item | None:
        """The next item; None when dropped. Raises TimeoutError after ``within`` seconds."""
        return await asyncio.wait_for(self.queue.get(), within)

    def close(self) -> None:
        self._hub._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Hub:
    """The run index of one tenant and everyone following it."""

    def __init__(self) -> None:
        self.index = RunIndex()
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self._subscribers.add(subscription)
        return subscription

    def logged(self, envelope: dict[str, Any]) -> None:
        """A run-log envelope; folded into the index and passed on if it is new."""
        change = self.index.add(envelope)
        if change is None:
            return
        item = Item("logged", change.thread_id, envelope=envelope, change=change)
        for subscription in list(self._subscribers):
            subscription.put(item)

    def live(self, thread_id: str, event: dict[str, Any]) -> None:
        """An event a run shows and does not log."""
        item = Item("live", thread_id, event=event)
        for subscription in list(self._subscribers):
            subscription.put(item)
