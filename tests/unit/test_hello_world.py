"""The README hello world (examples/hello.py), run as a user runs it: a fresh Python process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from streams import check_stream, labels, of_type

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


def test_hello_world_prints_the_seeds_seven_events_in_order(
    hello_events: list[dict[str, Any]],
) -> None:
    check_stream(hello_events)
    assert labels(hello_events) == [
        "tool-agent/call",
        "step-start",
        "text",
        "text",
        "data-latency-summary",
        "finish",
        "tool-agent/result",
    ]
    wrapper_call, wrapper_result = hello_events[0], hello_events[-1]
    assert wrapper_call["agentName"] == wrapper_result["agentName"] == "hello_coordinator"
    assert wrapper_call["toolInvocationId"] == wrapper_result["toolInvocationId"]
    echo, answer = of_type(hello_events, "text")
    assert echo["text"] == "Received: Say hello"
    assert answer["text"] == "hello from the Rust runtime"


def test_hello_world_latency_is_all_zero_but_its_one_llm_call(
    hello_events: list[dict[str, Any]],
) -> None:
    (latency,) = of_type(hello_events, "data-latency-summary")
    data = latency["data"]
    assert data["totalDurationMs"] == 0
    assert data["phases"] == {"llmCalls": 1, "llmTimeMs": 0, "subAgentTimeMs": 0, "toolTimeMs": 0}
    assert (data["toolTimings"], data["retryCount"], data["hadTimeout"]) == ([], 0, False)


def test_hello_world_finishes_with_the_seeds_usage(hello_events: list[dict[str, Any]]) -> None:
    (finish,) = of_type(hello_events, "finish")
    assert finish["finishReason"] == "stop"
    assert finish["usage"] == {
        "promptTokens": 50,
        "completionTokens": 25,
        "totalTokens": 75,
        "cacheReadInputTokens": 0,
        "cacheCreationInputTokens": 0,
    }
