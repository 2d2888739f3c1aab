"""MCP both ways, through the official ``mcp`` SDK.

Serving (the seed's surface): an agent's tools offered to any MCP client over stdio or
Streamable HTTP, each call going through the engine as a run of that agent
(:class:`~flowai_harness.mcp.serving.McpServer`; ``Runtime.list_mcp_tools``,
``Runtime.serve_mcp_stdio``, ``Runtime.serve_mcp_http``, and the thin wrappers here:
:func:`list_tools`, :func:`serve_stdio`, :func:`serve_http`, :func:`create_mcp_runtime`).

Using MCP servers: :func:`define_mcp_toolset` gives an agent an MCP server's tools as its
own (``toolkits=[define_mcp_toolset(...)]``; :mod:`.toolsets`).

Must not import the bus or any service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..specs import ToolkitSpec, ToolSource
from ..tools import ToolDefinition
from .serving import APPROVAL_REQUIRED, TRANSPORTS, McpServer, OriginCheck
from .toolsets import McpToolset, define_mcp_toolset

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = [
    "APPROVAL_REQUIRED",
    "TRANSPORTS",
    "McpServer",
    "McpToolset",
    "OriginCheck",
    "create_mcp_runtime",
    "define_mcp_toolset",
    "list_tools",
    "serve_http",
    "serve_stdio",
]


def list_tools(
    runtime: Runtime, *, agent: str, expose_agent_tools: bool = False
) -> list[dict[str, Any]]:
    """``runtime.list_mcp_tools(agent, expose_agent_tools=...)``."""
    return runtime.list_mcp_tools(agent, expose_agent_tools=expose_agent_tools)


def serve_stdio(
    runtime: Runtime,
    *,
    agent: str,
    thread_id: str | None = None,
    call_timeout_secs: float = 30,
    expose_agent_tools: bool = False,
) -> None:
    """``runtime.serve_mcp_stdio(agent, ...)``."""
    runtime.serve_mcp_stdio(
        agent,
        thread_id=thread_id,
        call_timeout_secs=call_timeout_secs,
        expose_agent_tools=expose_agent_tools,
    )


def serve_http(
    runtime: Runtime,
    *,
    agent: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = "/mcp",
    transport: str = "streamable-http",
    thread_id: str | None = None,
    call_timeout_secs: float = 30,
    expose_agent_tools: bool = False,
    allowed_origins: Iterable[str] | None = None,
    require_origin: bool = True,
) -> None:
    """``runtime.serve_mcp_http(agent, ...)``."""
    runtime.serve_mcp_http(
        agent,
        host=host,
        port=port,
        path=path,
        transport=transport,
        thread_id=thread_id,
        call_timeout_secs=call_timeout_secs,
        expose_agent_tools=expose_agent_tools,
        allowed_origins=allowed_origins,
        require_origin=require_origin,
    )


def create_mcp_runtime(
    *,
    tools: Iterable[ToolDefinition] = (),
    toolkits: Iterable[str | ToolkitSpec | ToolSource] | None = None,
    agent: str = "mcp",
    tenant: str = "flowai-mcp",
    data_environment: Mapping[str, Any] | None = None,
    services: Mapping[str, Any] | None = None,
) -> Runtime:
    """A runtime with one specialist, ``agent``, holding ``tools`` (and ``toolkits``), on
    the noop interpreter: made to serve tools over MCP, it needs no model credentials."""
    from ..runtime import create_runtime
    from ..specs import define_runtime, define_specialist

    specialist = define_specialist(
        name=agent,
        model="claude-haiku-4-5",
        prompt="Serves its tools over MCP.",
        tools=list(tools),
        toolkits=toolkits,
    )
    spec = define_runtime(tenant=(tenant, "v1"), agents=[specialist], providers={"anthropic": {}})
    return create_runtime(spec, services=services, data_environment=data_environment)
