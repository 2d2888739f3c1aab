"""Thread snapshots through the native boundary: restore + tail = the whole log, and a
snapshot the engine cannot trust is refused with a typed error (never a wrong state)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from flowai_harness import _native
from flowai_harness.errors import (
    ReplayError,
    SnapshotCorruptedError,
    SnapshotError,
    SnapshotMismatchError,
    SnapshotVersionError,
)


def _golden(golden_dir: Path, name: str) -> list[bytes]:
    return (golden_dir / "acme" / f"{name}.jsonl").read_bytes().splitlines()


@pytest.mark.parametrize("name", ["tools", "routing", "conversation", "cancelled"])
def test_snapshot_at_every_line_then_the_tail_is_the_whole_log(golden_dir: Path, name: str) -> None:
    lines = _golden(golden_dir, name)
    whole = _native.replay(b"\n".join(lines) + b"\n")
    for k in range(1, len(lines) + 1):
        prefix = _native.replay(b"\n".join(lines[:k]) + b"\n")
        snapshot = prefix.save(name)
        assert snapshot is not None
        assert orjson.loads(snapshot)["seq"] == k
        tail = b"".join(line + b"\n" for line in lines[k:])
        restored = _native.replay_from(snapshot, tail)
        assert restored.snapshot(name) == whole.snapshot(name), f"cut at {k}"
        assert restored.last_seq(name) == len(lines)


def test_an_engine_restores_a_thread_and_folds_only_the_tail(golden_dir: Path) -> None:
    lines = _golden(golden_dir, "tools")
    snapshot = _native.replay(b"\n".join(lines[:5]) + b"\n").save("tools")
    assert snapshot is not None
    spec = orjson.dumps(
        {
            "tenant": {"resource_id": "acme", "version": "v1"},
            "agents": [
                {
                    "name": "calculator",
                    "role": "specialist",
                    "model": "claude-haiku-4-5",
                    "prompt": "p",
                }
            ],
            "providers": ["anthropic"],
        }
    )
    engine = _native.Engine(b'{"spec":' + spec + b',"interpreter":{"kind":"scripted"}}')
    assert engine.restore(snapshot) == 5
    assert engine.load_tail(b"\n".join(lines) + b"\n") == len(lines) - 5
    assert engine.last_seq("tools") == len(lines)
    with pytest.raises(ReplayError):
        engine.restore(snapshot)


def test_snapshots_the_engine_cannot_trust_are_refused_with_their_reason(
    golden_dir: Path,
) -> None:
    lines = _golden(golden_dir, "hello")
    snapshot = _native.replay(b"\n".join(lines) + b"\n").save("hello")
    assert snapshot is not None
    doc = orjson.loads(snapshot)
    newer = orjson.dumps({**doc, "snapshot": doc["snapshot"] + 1})
    damaged = snapshot.replace(b'"last_seq":', b'"last_seq":1')
    cases: list[tuple[bytes, type[SnapshotError]]] = [
        (newer, SnapshotVersionError),
        (damaged, SnapshotCorruptedError),
        (snapshot[: len(snapshot) // 2], SnapshotCorruptedError),
    ]
    for bad, error in cases:
        with pytest.raises(error) as caught:
            _native.replay_from(bad, b"")
        assert caught.value.code == error.code
    tail_of_another = _golden(golden_dir, "tools")[0] + b"\n"
    with pytest.raises(ReplayError):
        _native.replay_from(snapshot, tail_of_another)
    assert issubclass(SnapshotMismatchError, SnapshotError)
