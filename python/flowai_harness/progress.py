"""Progress of long work (log reads, replays, re-drives, rebuilds) for a person watching.

Owns :func:`progress` and :class:`Progress`. On a terminal it draws a rich progress bar; on
anything else (a pipe, a log file, CI) it writes a plain line at most every ``every`` seconds
and one at the end (work shorter than that prints nothing), so logs stay readable and
greppable. Either way it writes to stderr by
default, so what a command prints on stdout stays clean for pipes.

``rich`` comes with the ``kafka`` extra (the commands that show progress talk to Kafka); when
it is missing the plain lines are used on a terminal too. Must not import anything else from
flowai_harness: any module (the runtime, the services, the CLI) may use this one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, TextIO

__all__ = ["Progress", "progress"]

# Plain mode: a line at most this often (seconds), so a long job logs a handful of lines.
DEFAULT_EVERY: Final = 2.0


class Progress:
    """One job's progress: call :meth:`advance` as work is done; ``total`` may be unknown
    (None) or change as the job learns it (:meth:`set_total`)."""

    def __init__(
        self,
        description: str,
        total: int | None,
        *,
        unit: str,
        stream: TextIO,
        every: float,
        bar: Any = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self._stream = stream
        self._every = every
        self._bar = bar
        self._task: Any = None
        self._clock = clock
        self._started = clock()
        self._last_line = self._started
        if bar is not None:
            self._task = bar.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        """Count ``amount`` more units done."""
        self.done += amount
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            return
        now = self._clock()
        if now - self._last_line >= self._every:
            self._last_line = now
            self._line(now)

    def set_total(self, total: int | None) -> None:
        """The job now knows (or changed) how much there is to do."""
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def finish(self) -> None:
        """Say the job ended (a final line in plain mode; the bar completes)."""
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total or self.done)
            return
        now = self._clock()
        # Work shorter than one period stays quiet: nobody waited for it.
        if now - self._started >= self._every:
            self._line(now, final=True)

    def _line(self, now: float, *, final: bool = False) -> None:
        elapsed = now - self._started
        of = f"/{self.total}" if self.total is not None else ""
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        rate = f", {self.done / elapsed:,.0f} {self.unit}/s" if elapsed > 0 else ""
        state = "done" if final else "..."
        print(
            f"{self.description}: {self.done}{of} {self.unit}{percent} in {elapsed:.1f} s"
            f"{rate} {state}",
            file=self._stream,
            flush=True,
        )


@contextmanager
def progress(
    description: str,
    total: int | None = None,
    *,
    unit: str = "records",
    stream: TextIO | None = None,
    every: float = DEFAULT_EVERY,
    bar: bool | None = None,
) -> Iterator[Progress]:
    """``with progress("reading the run log", total) as p: ... p.advance(n)``.

    ``bar`` None picks by ``stream``: a rich bar on a terminal, plain lines otherwise; True or
    False forces one (True still falls back to lines when rich is not installed).
    """
    out = stream if stream is not None else sys.stderr
    use_bar = _isatty(out) if bar is None else bar
    rich_progress = _rich_progress(out) if use_bar else None
    if rich_progress is None:
        job = Progress(description, total, unit=unit, stream=out, every=every)
        try:
            yield job
        finally:
            job.finish()
        return
    with rich_progress:
        job = Progress(description, total, unit=unit, stream=out, every=every, bar=rich_progress)
        try:
            yield job
        finally:
            job.finish()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: no terminal
        return False


def _rich_progress(stream: TextIO) -> Any:
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress
    except ImportError:
        return None
    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=False,
    )
