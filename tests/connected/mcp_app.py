"""The app the MCP connected test runs in service processes (``--app mcp_app:make_spec``) and
in the test process.

Agent ``forecaster`` (tenant ``acme``) gets the tools of the test MCP server
(tests/mcp_tools/mcp_test_server.py) twice: over stdio, started by the toolset (prefix
``wx_``), and over Streamable HTTP at ``MCP_TEST_URL`` (prefix ``web_``, only ``forecast`` and
``shout``). ``record`` writes its side effect to ``MCP_TEST_LOG``. Read when the spec is made,
so the test can set both before a service starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flowai_harness import RuntimeSpec, define_mcp_toolset, define_runtime, define_specialist

SERVER = Path(__file__).resolve().parents[1] / "mcp_tools" / "mcp_test_server.py"


def make_spec() -> RuntimeSpec:
    stdio = define_mcp_toolset(
        "weather",
        command=[sys.executable, str(SERVER), "stdio"],
        env={"MCP_TEST_LOG": os.environ["MCP_TEST_LOG"]},
        prefix="wx_",
    )
    http = define_mcp_toolset(
        "web", url=os.environ["MCP_TEST_URL"], tools=["forecast", "shout"], prefix="web_"
    )
    forecaster = define_specialist(
        name="forecaster",
        model="claude-haiku-4-5",
        prompt="Answer with the tools.",
        toolkits=[stdio, http],
    )
    return define_runtime(tenant=("acme", "v1"), agents=[forecaster], providers={"anthropic": {}})
