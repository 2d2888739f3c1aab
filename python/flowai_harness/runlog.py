"""Where an embedded runtime keeps its run logs: in memory, or in append-only local files.

A run log is a thread's ordered list of ``flowai.v1.RuntimeEvent`` lines (JSON, one per line),
the only state there is: the engine rebuilds a thread by folding them. This module stores and
reads those bytes; it never interprets them. Must not import the runtime or the native engine.

File layout under ``log_path``: ``<tenant>/<thread id, percent-encoded>.jsonl``. Lines are
written per engine step and flushed to the OS at once; ``fsync`` decides when they are forced to
disk: ``"boundary"`` (default) at every run end and approval gate, ``"always"`` after every
write, ``"never"`` leaves it to the OS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Literal, Protocol
from urllib.parse import quote, unquote

from .errors import SpecError

FsyncPolicy = Literal["always", "boundary", "never"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("always", "boundary", "never")


class RunLog(Protocol):
    """Storage of run-log lines per thread."""

    def read(self, thread_id: str) -> bytes | None:
        """The thread's whole log (newline-terminated lines), or None if it has none."""

    def append(self, thread_id: str, lines: list[bytes], *, boundary: bool) -> None:
        """Append lines; ``boundary`` marks a point that must survive a crash."""

    def thread_ids(self) -> list[str]:
        """Every thread with a log."""

    def describe(self, thread_id: str) -> str:
        """Where the thread's log lives, for error messages."""

    def close(self) -> None:
        """Release open files."""


class MemoryRunLog:
    """Run logs held in this process; gone when it exits."""

    __slots__ = ("_threads",)

    def __init__(self) -> None:
        self._threads: dict[str, list[bytes]] = {}

    def read(self, thread_id: str) -> bytes | None:
        lines = self._threads.get(thread_id)
        if not lines:
            return None
        return b"\n".join(lines) + b"\n"

    def append(self, thread_id: str, lines: list[bytes], *, boundary: bool) -> None:
        log = self._threads.get(thread_id)
        if log is None:
            self._threads[thread_id] = list(lines)
        else:
            log.extend(lines)

    def thread_ids(self) -> list[str]:
        return list(self._threads)

    def describe(self, thread_id: str) -> str:
        return f"<memory:{thread_id}>"

    def close(self) -> None:
        pass


class FileRunLog:
    """Run logs in append-only ``.jsonl`` files under one directory per tenant."""

    __slots__ = ("_dir", "_files", "_fsync")

    def __init__(self, root: str | os.PathLike[str], tenant: str, fsync: FsyncPolicy) -> None:
        if fsync not in FSYNC_POLICIES:
            raise SpecError(
                f"fsync={fsync!r} is not a policy; use one of {', '.join(FSYNC_POLICIES)}"
            )
        self._dir = Path(root) / quote(tenant, safe="")
        self._dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, BinaryIO] = {}
        self._fsync = fsync

    def _path(self, thread_id: str) -> Path:
        # Percent-encoding keeps any thread id a single, reversible file name.
        return self._dir / (quote(thread_id, safe="") + ".jsonl")

    def read(self, thread_id: str) -> bytes | None:
        try:
            data = self._path(thread_id).read_bytes()
        except FileNotFoundError:
            return None
        return data or None

    def append(self, thread_id: str, lines: list[bytes], *, boundary: bool) -> None:
        file = self._files.get(thread_id)
        if file is None:
            file = self._files[thread_id] = open(self._path(thread_id), "ab")  # noqa: SIM115
        file.write(b"\n".join(lines) + b"\n")
        file.flush()
        if self._fsync == "always" or (boundary and self._fsync == "boundary"):
            os.fsync(file.fileno())

    def thread_ids(self) -> list[str]:
        return sorted(unquote(path.stem) for path in self._dir.glob("*.jsonl"))

    def describe(self, thread_id: str) -> str:
        return str(self._path(thread_id))

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()
