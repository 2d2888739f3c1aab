"""Golden replay: the committed run logs (tests/golden/acme) replay to the committed snapshots
(tests/golden/expected), the broken ones fail loudly, and the scenarios still produce them.

The Rust engine tests replay the same files; a failure in both means the log format or the
engine's decisions changed. Regenerate with `python tests/golden/scenarios.py`, then review
the diff.
"""

from __future__ import annotations

import json
import shutil
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowai_harness import CorruptedLogError, ReplayDivergenceError, ReplayError, Runtime

GOLDEN = Path(__file__).parent / "golden"
THREADS = sorted(path.stem for path in (GOLDEN / "acme").glob("*.jsonl"))
REGENERATE = (
    "run `python tests/golden/scenarios.py` and review the diff (git diff tests/golden): "
    "a changed golden log means the log format or the engine's decisions changed"
)

OpenRuntime = Callable[..., Runtime]


@pytest.fixture
def golden_copy(tmp_path: Path) -> Path:
    """The committed logs, copied so that nothing a test does can touch them."""
    copy = tmp_path / "golden"
    for part in ("acme", "broken"):
        shutil.copytree(GOLDEN / part, copy / part)
    return copy


def expected(thread_id: str) -> Any:
    return json.loads((GOLDEN / "expected" / f"{thread_id}.json").read_text())


def test_every_golden_log_has_an_expected_snapshot() -> None:
    snapshots = sorted(path.stem for path in (GOLDEN / "expected").glob("*.json"))

    assert THREADS
    assert snapshots == THREADS


@pytest.mark.parametrize("thread_id", THREADS)
def test_golden_log_replays_to_its_expected_snapshot(
    thread_id: str, golden_copy: Path, open_runtime: OpenRuntime, scenarios: types.ModuleType
) -> None:
    log = golden_copy / "acme" / f"{thread_id}.jsonl"
    committed = log.read_bytes()
    runtime = open_runtime(scenarios.spec(), interpreter="scripted", log_path=golden_copy)

    replay = runtime.replay(thread_id)

    assert replay.snapshot == expected(thread_id)
    assert replay.lines == len(committed.splitlines())
    assert log.read_bytes() == committed  # replay only reads


@pytest.mark.parametrize(
    ("thread_id", "error", "line"),
    [("truncated", CorruptedLogError, 6), ("divergent", ReplayDivergenceError, 3)],
)
def test_broken_golden_log_fails_naming_the_file_and_the_line(
    thread_id: str,
    error: type[ReplayError],
    line: int,
    golden_copy: Path,
    open_runtime: OpenRuntime,
    scenarios: types.ModuleType,
) -> None:
    runtime = open_runtime(
        scenarios.spec(), interpreter="scripted", log_path=golden_copy / "broken"
    )

    with pytest.raises(error) as caught:
        runtime.replay(thread_id)

    assert caught.value.line == line
    assert caught.value.path is not None
    assert caught.value.path.endswith(f"{thread_id}.jsonl")
    assert f"line {line}" in str(caught.value)


def _payloads(log: Path) -> list[dict[str, Any]]:
    """The logged payloads, without what depends on the clock (latency in milliseconds, and
    when a model retry is due)."""
    payloads = [json.loads(line)["payload"] for line in log.read_bytes().splitlines()]
    for payload in payloads:
        if payload["type"] in ("model-response", "model-failure"):
            payload.pop("latencyMs", None)
            payload.pop("ttftMs", None)
            payload.get("recovery", {}).pop("at", None)
        if payload["type"] == "data-latency-summary":
            data = payload["data"]
            payload["data"] = {
                "llmCalls": data["phases"]["llmCalls"],
                "tools": [t["toolName"] for t in data["toolTimings"]],
                "retryCount": data["retryCount"],
            }
    return payloads


@pytest.fixture
async def regenerated(
    scenarios: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The golden logs and snapshots as the scenarios produce them today, under tmp_path."""
    monkeypatch.setattr(scenarios, "HERE", tmp_path)  # write_expected writes under HERE
    await scenarios.generate(tmp_path)
    scenarios.write_expected(tmp_path)
    return tmp_path


# scenarios.py is a script: its runtimes keep their log files open until they are collected.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_golden_snapshots_are_what_the_scenarios_produce(regenerated: Path) -> None:
    fresh = {p.stem: json.loads(p.read_text()) for p in (regenerated / "expected").glob("*.json")}
    committed = {thread_id: expected(thread_id) for thread_id in THREADS}

    drifted = sorted(t for t in fresh.keys() | committed.keys() if fresh.get(t) != committed.get(t))
    if drifted:
        pytest.fail(f"golden snapshots drifted for {', '.join(drifted)}: {REGENERATE}")


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_golden_logs_are_what_the_scenarios_log(regenerated: Path) -> None:
    fresh = sorted(path.stem for path in (regenerated / "acme").glob("*.jsonl"))
    drifted = [
        thread_id
        for thread_id in sorted(set(fresh) | set(THREADS))
        if thread_id not in fresh
        or thread_id not in THREADS
        or _payloads(regenerated / "acme" / f"{thread_id}.jsonl")
        != _payloads(GOLDEN / "acme" / f"{thread_id}.jsonl")
    ]
    if drifted:
        pytest.fail(f"golden logs drifted for {', '.join(drifted)}: {REGENERATE}")
