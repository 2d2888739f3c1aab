"""What the MCP tests share besides fixtures: where the test server and app live, and the
side effects the test server's ``record`` tool left."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER = HERE / "mcp_test_server.py"


def recorded(path: Path) -> list[str]:
    """The keys ``record`` calls wrote to ``path``, in order."""
    return path.read_text().splitlines()
