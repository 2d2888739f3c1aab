"""The README hello world (examples/hello.py), run as a user runs it: a fresh Python process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from streams import check_stream, of_type

HELLO = Path(__file__).parents[2] / "examples" / "hello.py"


@pytest.fixture(scope="module")
def hello_events() -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(HELLO)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"examples/hello.py failed:\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert lines, "examples/hello.py printed nothing"
    events = [ast.literal_eval(line) for line in lines]
    assert all(isinstance(event, dict) for event in events), done.stdout
    return events


def test_hello_world_prints_the_mock_response_as_the_final_text(
    hello_events: list[dict[str, Any]],
) -> None:
    texts = of_type(hello_events, "text")

    assert texts
    assert "hello from the Rust runtime" in texts[-1]["text"]


def test_hello_world_finishes_once_after_the_text(hello_events: list[dict[str, Any]]) -> None:
    answer = [event["type"] for event in hello_events if event["type"] in ("text", "finish")]

    assert answer.count("finish") == 1
    assert answer[-1] == "finish"
    finish = hello_events[-1]
    steps = of_type(hello_events, "step-start")
    assert finish["finishReason"] == "stop"
    assert finish["usage"]["inputTokens"] == sum(s["usage"]["inputTokens"] for s in steps)
    assert finish["usage"]["outputTokens"] == sum(s["usage"]["outputTokens"] for s in steps)
    assert finish["usage"]["totalTokens"] == (
        finish["usage"]["inputTokens"] + finish["usage"]["outputTokens"]
    )


def test_hello_world_stream_keeps_its_order(hello_events: list[dict[str, Any]]) -> None:
    kinds = [event["type"] for event in hello_events]

    check_stream(hello_events)
    assert kinds[0] == "step-start"
    assert kinds.index("step-start") < kinds.index("text")
    # The run's summaries close it, just before finish.
    assert kinds[-3:] == ["data-latency-summary", "data-cost-summary", "finish"]
    assert of_type(hello_events, "step-start")[0]["agent"] == "hello_coordinator"
