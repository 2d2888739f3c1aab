"""examples/live_agent.py (run by `make demo`, and by `make demo-live` against the real API),
run as a user runs it: a fresh Python process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "live_agent.py"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_demo_agent_streams_its_answer_from_the_fake_server() -> None:
    done = run()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "through the fake provider server at http://127.0.0.1:" in out
    assert "[stock_level({'sku': 'SKU-1'}) -> {'sku': 'SKU-1', 'units': 4}]" in out
    assert "[stock_level({'sku': 'SKU-3'}) -> {'sku': 'SKU-3', 'units': 0}]" in out
    assert "so both need a reorder." in out
    assert "2 model calls" in out
    assert "[finish: 712 in, 70 out]" in out


def test_the_real_run_says_which_key_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    done = run("--real", env=env)
    assert done.returncode == 2
    assert "ANTHROPIC_API_KEY" in done.stderr
    assert "PROVIDER_CONFIG_INVALID" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("--real", "--provider", "openai", env=env)
    assert done.returncode == 2
    assert "OPENAI_API_KEY" in done.stderr
