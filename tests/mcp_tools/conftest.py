"""Fixtures of the MCP tests: the test MCP server (mcp_test_server.py) over stdio and over
Streamable HTTP, and the file its ``record`` tool counts side effects in.

- ``server_command``: the command line that starts the test server over stdio.
- ``record_log``: a fresh file for ``record`` (``MCP_TEST_LOG`` is set to it here; a stdio
  server gets only the SDK's safe variables, so a toolset passes it with ``env=``);
  ``mcp_helpers.recorded()`` reads it.
- ``http_server(*flags, token=None)``: starts the server over Streamable HTTP in a process
  of its own and returns its URL once it printed its port; killed at teardown.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from mcp_helpers import SERVER


@pytest.fixture
def server_command() -> list[str]:
    return [sys.executable, str(SERVER), "stdio"]


@pytest.fixture
def record_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "recorded.txt"
    path.touch()
    monkeypatch.setenv("MCP_TEST_LOG", str(path))
    return path


@pytest.fixture
async def http_server(record_log: Path) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    started: list[asyncio.subprocess.Process] = []

    async def start(*flags: str, token: str | None = None) -> str:
        env = {**os.environ, "MCP_TEST_LOG": str(record_log)}
        if token is not None:
            env["MCP_TEST_TOKEN"] = token
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVER), "http", *flags, env=env, stdout=asyncio.subprocess.PIPE
        )
        started.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"PORT "), f"the test server said {line!r} instead of its port"
        return f"http://127.0.0.1:{int(line.split()[1])}/mcp"

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
        await process.wait()
