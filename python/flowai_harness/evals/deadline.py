"""Awaiting something with a deadline that holds even when it ignores cancellation.

Owns :func:`within_deadline`: awaits an awaitable for at most ``timeout_secs``; past it the
awaitable is cancelled and :class:`DeadlineExceeded` is raised. A callee that swallows its
cancellation is given a short grace period and then abandoned (kept referenced until it ends,
its outcome retrieved), so an eval sample or a judge call can never hang the run.

Must not import anything from flowai_harness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Final, TypeVar

__all__ = ["DeadlineExceeded", "within_deadline"]

_T = TypeVar("_T")
# How long a cancelled callee may take to wind down before it is abandoned.
_CANCEL_GRACE_SECS: Final = 5.0
_abandoned: set[asyncio.Future[Any]] = set()


class DeadlineExceeded(Exception):
    """The awaited work did not finish before its deadline (it has been cancelled)."""


def _settle(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def _stop(task: asyncio.Future[Any], grace_secs: float) -> None:
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace_secs)
    if done:
        _settle(task)
    else:
        _abandoned.add(task)
        task.add_done_callback(_settle)


async def within_deadline(awaitable: Awaitable[_T], timeout_secs: float | None) -> _T:
    """``await awaitable``, for at most ``timeout_secs`` (None: no limit)."""
    if timeout_secs is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_secs)
    except asyncio.CancelledError:
        await _stop(task, _CANCEL_GRACE_SECS)
        raise
    if done:
        return task.result()
    await _stop(task, min(_CANCEL_GRACE_SECS, timeout_secs))
    raise DeadlineExceeded(f"did not finish within {timeout_secs:g} s")
