"""Where an embedded runtime keeps its run logs: in memory, or in append-only local files.

A run log is a thread's ordered list of ``flowai.v1.RuntimeEvent`` lines (JSON, one per line),
the only state there is: the engine rebuilds a thread by folding them. This module stores and
reads those bytes; it never interprets them. Must not import the runtime or the native engine.

File layout under ``log_path``: ``<tenant>/<thread id, percent-encoded>.jsonl``. Lines are
written per engine step and flushed to the OS at once; ``fsync`` decides when they are forced to
disk: ``"boundary"`` (default) at every run end and approval gate, ``"always"`` after every
write, ``"never"`` leaves it to the OS.

Snapshots (:class:`SnapshotStore`) live beside the logs: ``<tenant>/<thread>.snapshot`` holds
the engine's latest snapshot of the thread and the log position it covers (the log's byte
length then), so a thread comes back from its snapshot and the lines after it. A snapshot is
only an optimisation: it is replaced atomically and never fsynced, since one lost or torn in a
crash is refused by the engine's checksum (or found behind the log) and the whole log replays.
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

    def position(self, thread_id: str) -> int:
        """Where the thread's log ends now (opaque to callers; 0 for none)."""

    def read_after(self, thread_id: str, position: int) -> bytes:
        """The thread's lines after ``position`` (one :meth:`position` returned)."""

    def release(self, thread_id: str) -> None:
        """Close what is open for the thread (it was evicted); the next append reopens it."""

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

    def position(self, thread_id: str) -> int:
        return len(self._threads.get(thread_id, ()))

    def read_after(self, thread_id: str, position: int) -> bytes:
        lines = self._threads.get(thread_id, [])[position:]
        return b"".join(line + b"\n" for line in lines)

    def release(self, thread_id: str) -> None:
        pass

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

    def position(self, thread_id: str) -> int:
        try:
            return self._path(thread_id).stat().st_size
        except FileNotFoundError:
            return 0

    def read_after(self, thread_id: str, position: int) -> bytes:
        try:
            with open(self._path(thread_id), "rb") as file:
                file.seek(position)
                return file.read()
        except FileNotFoundError:
            return b""

    def release(self, thread_id: str) -> None:
        file = self._files.pop(thread_id, None)
        if file is not None:
            file.close()

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()


class SnapshotStore(Protocol):
    """The latest snapshot of each thread, with the log position it covers."""

    def read(self, thread_id: str) -> tuple[int, bytes] | None:
        """``(log position, snapshot bytes)``, or None when the thread has none."""

    def write(self, thread_id: str, position: int, snapshot: bytes) -> None:
        """Replace the thread's snapshot."""

    def drop(self, thread_id: str) -> None:
        """Forget the thread's snapshot (one the engine refused)."""


class MemorySnapshotStore:
    """Snapshots held in this process (for threads evicted from the engine)."""

    __slots__ = ("_snapshots",)

    def __init__(self) -> None:
        self._snapshots: dict[str, tuple[int, bytes]] = {}

    def read(self, thread_id: str) -> tuple[int, bytes] | None:
        return self._snapshots.get(thread_id)

    def write(self, thread_id: str, position: int, snapshot: bytes) -> None:
        self._snapshots[thread_id] = (position, snapshot)

    def drop(self, thread_id: str) -> None:
        self._snapshots.pop(thread_id, None)


class FileSnapshotStore:
    """``<tenant>/<thread>.snapshot`` beside the logs: a first line with the log position,
    then the snapshot."""

    __slots__ = ("_dir",)

    def __init__(self, root: str | os.PathLike[str], tenant: str) -> None:
        self._dir = Path(root) / quote(tenant, safe="")
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, thread_id: str) -> Path:
        return self._dir / (quote(thread_id, safe="") + ".snapshot")

    def read(self, thread_id: str) -> tuple[int, bytes] | None:
        try:
            data = self._path(thread_id).read_bytes()
        except FileNotFoundError:
            return None
        head, _, snapshot = data.partition(b"\n")
        if not head.isdigit():
            # Damaged beyond its checksum's reach: the engine would refuse it anyway.
            return (0, b"")
        return int(head), snapshot

    def write(self, thread_id: str, position: int, snapshot: bytes) -> None:
        path = self._path(thread_id)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(b"%d\n" % position + snapshot)
        os.replace(partial, path)

    def drop(self, thread_id: str) -> None:
        self._path(thread_id).unlink(missing_ok=True)
