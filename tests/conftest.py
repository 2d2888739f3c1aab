"""Fixtures shared by every test tier: the golden scenarios module and its directory."""

from __future__ import annotations

import importlib.util
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowai_harness import Runtime, RuntimeSpec, create_runtime

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """tests/golden: the committed logs (acme/), snapshots (expected/) and broken logs."""
    return GOLDEN


@pytest.fixture(scope="session")
def scenarios() -> types.ModuleType:
    """tests/golden/scenarios.py, imported by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("golden_scenarios", GOLDEN / "scenarios.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def open_runtime() -> Iterator[Callable[..., Runtime]]:
    """``create_runtime``, closed when the test ends: file run logs hold their files open."""
    opened: list[Runtime] = []

    def open_(spec: RuntimeSpec, **options: Any) -> Runtime:
        runtime = create_runtime(spec, **options)
        opened.append(runtime)
        return runtime

    yield open_
    for runtime in opened:
        runtime.close()
