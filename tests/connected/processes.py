"""Service processes started by connected tests, and waiting on what they do.

:class:`Service` wraps a process (``kill`` is kill -9) and its log; :func:`until` waits for a
condition with a deadline and fails with the services' logs. The ``spawn`` fixture in
conftest.py starts them and kills them at teardown.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest


class Service:
    """A service process started by a test; its output goes to ``log``."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown, no commit, no goodbye to the consumer group."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop_gracefully(self, within: float = 20.0) -> int:
        """SIGTERM, then wait for the exit status (kill -9 after ``within`` seconds)."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (pid {self.pid}) ---\n" + "\n".join(text.splitlines()[-lines:])


async def until(
    check: Callable[[], Awaitable[bool]],
    *,
    within: float,
    what: str,
    services: Sequence[Service] = (),
    every: float = 0.05,
) -> None:
    """Wait until ``check()`` is true; fail after ``within`` seconds with the services' logs."""
    deadline = time.monotonic() + within
    while not await check():
        dead = [service for service in services if not service.alive()]
        if dead or time.monotonic() > deadline:
            why = (
                ", ".join(f"{s.name} exited (code {s.process.returncode})" for s in dead)
                if dead
                else f"{within:g} s passed"
            )
            logs = "\n".join(service.tail() for service in services)
            pytest.fail(f"waiting for {what}: {why}\n{logs}")
        await asyncio.sleep(every)
