"""The runtime service's local store of evicted threads: one SQLite file per instance.

Owns :class:`ThreadStore`. For each thread of the partitions this instance owns it keeps the
latest snapshot (as the compacted ``snapshots`` topic has it, or as this instance wrote it on
eviction) and the thread-index entry (``threads`` topic) the next index record must repeat,
so a thread out of the engine costs a row on disk and nothing in memory. It is a cache of
those two topics, in the shape of a Kafka Streams state store over its changelog: for each
partition and topic it remembers how far it mirrored the topic, and a takeover reads only
what came after (all of it when the file is missing, or when the topic no longer holds that
offset). Losing the file loses nothing but the time to read the topics again.

Why SQLite: it is in the standard library (no binary to fetch, nothing to build), keeps one
file that survives ``kill -9`` (WAL journal), and a point lookup by thread id costs tens of
microseconds, well inside the latency an input to an evicted thread may add. RocksDB would
write faster in bulk, but needs a third-party binding for a load this store does not have.

Must not import other services, the engine or Kafka clients: it stores bytes and numbers.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Final

__all__ = ["IndexEntry", "ThreadStore", "store_path"]

# (run-log offset at or before the thread's first event, created ms, last status indexed).
IndexEntry = tuple[int, int | None, str]

SNAPSHOTS: Final = "snapshots"
THREADS: Final = "threads"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS threads (
    partition INTEGER NOT NULL,
    thread_id TEXT NOT NULL,
    seq INTEGER,
    snapshot BLOB,
    log_offset INTEGER,
    created INTEGER,
    status TEXT,
    PRIMARY KEY (partition, thread_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mirrored (
    partition INTEGER NOT NULL,
    topic TEXT NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (partition, topic)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    partition INTEGER PRIMARY KEY,
    run_log_offset INTEGER NOT NULL
);
"""


def store_path(state_dir: str | os.PathLike[str], group: str, instance_id: str | None) -> Path:
    """The store file of one instance: named by its group and static instance id (a
    restarted instance finds its file again), else by its process id."""
    name = instance_id or f"pid{os.getpid()}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{group}.{name}")
    return Path(state_dir) / f"{safe}.sqlite"


class ThreadStore:
    """Snapshots and index entries of threads out of memory, by partition (see module)."""

    def __init__(self, path: str | os.PathLike[str], *, remove_on_close: bool = False) -> None:
        self.path = Path(path)
        # A store named by process id is of no use to the next process: a clean stop removes
        # it rather than leave one file per run in the state directory.
        self._remove_on_close = remove_on_close
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One asyncio thread uses it; autocommit off, each method commits its own work.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A crash may lose the last writes, never corrupt the file; what it loses the topics
        # still hold (an eviction writes here only after its snapshot committed to Kafka).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()
        if self._remove_on_close:
            for suffix in ("", "-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    # --- mirroring the topics ----------------------------------------------------------------

    def mirrored(self, partition: int, topic: str) -> int | None:
        """The next offset of ``topic`` (SNAPSHOTS or THREADS) partition ``partition`` not
        mirrored yet (None: nothing was)."""
        row = self._db.execute(
            "SELECT next_offset FROM mirrored WHERE partition = ? AND topic = ?",
            (partition, topic),
        ).fetchone()
        return None if row is None else int(row[0])

    def forget_partition(self, partition: int) -> None:
        """Drop all of a partition (its topics are read again from their beginning)."""
        with self._transaction():
            for table in ("threads", "mirrored", "checkpoints"):
                self._db.execute(f"DELETE FROM {table} WHERE partition = ?", (partition,))

    def mirror_snapshots(
        self,
        partition: int,
        snapshots: Iterable[tuple[str, int | None, bytes]],
        checkpoint: int | None,
        next_offset: int,
    ) -> None:
        """Record snapshot records read from the topic (in order: the last of a thread wins)
        and the partition's latest checkpoint, up to ``next_offset``."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO threads (partition, thread_id, seq, snapshot) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (partition, thread_id) DO UPDATE SET seq = excluded.seq, "
                "snapshot = excluded.snapshot",
                ((partition, thread_id, seq, snap) for thread_id, seq, snap in snapshots),
            )
            if checkpoint is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?)", (partition, checkpoint)
                )
            self._set_mirrored(partition, SNAPSHOTS, next_offset)

    def mirror_index(
        self, partition: int, entries: Iterable[tuple[str, IndexEntry]], next_offset: int
    ) -> None:
        """Record thread-index records read from the topic, up to ``next_offset``."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO threads (partition, thread_id, log_offset, created, status) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (partition, thread_id) DO UPDATE SET "
                "log_offset = excluded.log_offset, created = excluded.created, "
                "status = excluded.status",
                ((partition, t, *entry) for t, entry in entries),
            )
            self._set_mirrored(partition, THREADS, next_offset)

    def checkpoint(self, partition: int) -> int | None:
        """The run-log offset of the partition's latest mirrored checkpoint."""
        row = self._db.execute(
            "SELECT run_log_offset FROM checkpoints WHERE partition = ?", (partition,)
        ).fetchone()
        return None if row is None else int(row[0])

    # --- threads -----------------------------------------------------------------------------

    def put(
        self,
        partition: int,
        threads: Iterable[tuple[str, int | None, bytes, IndexEntry | None]],
    ) -> None:
        """Keep evicted threads: (thread id, seq, snapshot, index entry or None)."""
        with self._transaction():
            for thread_id, seq, snapshot, entry in threads:
                self._db.execute(
                    "INSERT INTO threads (partition, thread_id, seq, snapshot) VALUES "
                    "(?, ?, ?, ?) ON CONFLICT (partition, thread_id) DO UPDATE SET "
                    "seq = excluded.seq, snapshot = excluded.snapshot",
                    (partition, thread_id, seq, snapshot),
                )
                if entry is not None:
                    self._db.execute(
                        "UPDATE threads SET log_offset = ?, created = ?, status = ? "
                        "WHERE partition = ? AND thread_id = ?",
                        (*entry, partition, thread_id),
                    )

    def snapshot(self, partition: int, thread_id: str) -> bytes | None:
        """The thread's latest snapshot here (None: it has none)."""
        row = self._db.execute(
            "SELECT snapshot FROM threads WHERE partition = ? AND thread_id = ?",
            (partition, thread_id),
        ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def covered(self, partition: int, thread_id: str) -> int | None:
        """The last seq the thread's stored snapshot covers (None: it has none here)."""
        row = self._db.execute(
            "SELECT seq FROM threads WHERE partition = ? AND thread_id = ? AND snapshot "
            "IS NOT NULL",
            (partition, thread_id),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def index_entry(self, partition: int, thread_id: str) -> IndexEntry | None:
        """The thread's index entry here (None: the index never named it)."""
        row = self._db.execute(
            "SELECT log_offset, created, status FROM threads WHERE partition = ? AND thread_id = ?",
            (partition, thread_id),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return int(row[0]), row[1], str(row[2] or "")

    def count(self, partition: int) -> int:
        """How many threads of the partition have a snapshot here."""
        row = self._db.execute(
            "SELECT count(*) FROM threads WHERE partition = ? AND snapshot IS NOT NULL",
            (partition,),
        ).fetchone()
        return int(row[0])

    # --- internals ---------------------------------------------------------------------------

    def _set_mirrored(self, partition: int, topic: str, next_offset: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO mirrored VALUES (?, ?, ?)", (partition, topic, next_offset)
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``with``: BEGIN ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, kind: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")
