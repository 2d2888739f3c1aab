"""Serving one agent's tools to MCP clients: :class:`McpServer` (stdio and Streamable HTTP).

Owns what an MCP client sees of an agent: its tool list (the agent's own tools, and with
``expose_agent_tools`` the built-in tools its role and toolkits give it, never
``call_agent``), and how a ``tools/call`` is answered. A call is not a handler call: it goes
through the engine as one run of the agent (``Runtime.run_tool``), so the arguments are
validated, the approval rules apply and every event is logged in the server's thread. Calls
take turns (one run at a time in a thread). A call that reaches an approval gate is not left
waiting for a person: its run is cancelled and the client gets a tool error saying the tool
needs approval. Streamable HTTP checks the ``Origin`` header as the MCP specification asks
(:class:`OriginCheck`); legacy HTTP+SSE is not offered.

Must not import the bus or any service; imports the runtime only for typing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import mcp_types
import orjson
from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ResultCode, SpecError, UnknownAgentError, UsageError

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["APPROVAL_REQUIRED", "TRANSPORTS", "McpServer", "OriginCheck"]

# Only these; the legacy HTTP+SSE transport is not offered.
TRANSPORTS: Final = ("stdio", "streamable-http")
# The code of the tool error a gated tool answers with over MCP.
APPROVAL_REQUIRED: Final = "APPROVAL_REQUIRED"
MCP_CALL_FAILED: Final = "MCP_CALL_FAILED"
_HIDDEN_BUILTINS: Final = frozenset({"call_agent"})


class McpServer:
    """One agent's tools as an MCP server. ``Runtime.serve_mcp_stdio`` /
    ``serve_mcp_http`` build one; from async code use :meth:`run_stdio` and :meth:`http`."""

    def __init__(
        self,
        runtime: Runtime,
        agent: str,
        *,
        thread_id: str | None = None,
        call_timeout_secs: float = 30,
        expose_agent_tools: bool = False,
    ) -> None:
        spec_agent = next((a for a in runtime.spec.agents if a.name == agent), None)
        if spec_agent is None:
            raise UnknownAgentError(
                f"no agent named {agent!r} to serve over MCP; this runtime's agents are: "
                f"{', '.join(sorted(a.name for a in runtime.spec.agents))}"
            )
        if (
            isinstance(call_timeout_secs, bool)
            or not isinstance(call_timeout_secs, (int, float))
            or call_timeout_secs <= 0
        ):
            raise SpecError(f"call_timeout_secs must be seconds > 0, got {call_timeout_secs!r}")
        self.runtime = runtime
        self.agent = agent
        self.thread_id = thread_id or f"mcp-{agent}"
        self.call_timeout_secs = float(call_timeout_secs)
        self._tools = _offered_tools(runtime, agent, expose_agent_tools)
        self._turn = asyncio.Lock()
        # The HTTP server task while http() runs.
        self._serving: asyncio.Task[None] | None = None

    # --- what a client sees ---------------------------------------------------------------

    def list_tools(self) -> list[dict[str, Any]]:
        """The tools offered: ``{name, description, inputSchema, outputSchema?}`` each."""
        return [dict(tool) for tool in self._tools.values()]

    async def call_tool(self, name: str, arguments: Any) -> mcp_types.CallToolResult:
        """Answer one ``tools/call``: a run of the agent that calls ``name`` with
        ``arguments``, logged in this server's thread. Never raises for what the tool or the
        engine did: that is a tool error result."""
        if name not in self._tools:
            return _error(
                f"this server has no tool {name!r}; it offers "
                f"{', '.join(sorted(self._tools)) or 'no tools'}",
                "UNKNOWN_TOOL",
            )
        async with self._turn:
            return await self._run(name, {} if arguments is None else arguments)

    async def _run(self, name: str, arguments: Any) -> mcp_types.CallToolResult:
        stream = self.runtime.run_tool(self.agent, name, arguments, thread_id=self.thread_id)
        outcome: dict[str, Any] | None = None
        gate: dict[str, Any] | None = None
        failure: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(self.call_timeout_secs):
                async for event in stream:
                    kind = event.get("type")
                    if kind == "approval-required" and gate is None:
                        gate = event.get("data", {})
                        # Nobody can approve over MCP: end the run (it logs its cancellation).
                        stream.cancel()
                    elif (
                        kind == "tool-invocation"
                        and event.get("state") == "result"
                        and event.get("toolName") == name
                    ):
                        outcome = event
                    elif kind == "error":
                        failure = event.get("error") or {}
        except TimeoutError:
            return _error(
                f"tool {name!r} did not finish within {self.call_timeout_secs:g} s; its run was "
                "cancelled",
                ResultCode.TOOL_TIMEOUT,
            )
        finally:
            await stream.aclose()
        if gate is not None:
            return _error(
                f"tool {name!r} needs approval before it runs (approval {gate.get('id')}); an "
                "MCP call cannot wait for a person, so it did not run. Call it from a query "
                "where someone can approve it, or change its approval rule",
                APPROVAL_REQUIRED,
            )
        if outcome is not None:
            return _result(outcome.get("result"), bool(outcome.get("isError")), self._tools[name])
        if failure is not None:
            return _error(
                str(failure.get("message", "the run failed")), failure.get("code", MCP_CALL_FAILED)
            )
        return _error(f"the run calling {name!r} ended without its result", MCP_CALL_FAILED)

    # --- the SDK server -------------------------------------------------------------------

    def sdk_server(self) -> Server[Any]:
        """The SDK's low-level server answering ``tools/list`` and ``tools/call``."""
        listed = [
            mcp_types.Tool(
                name=tool["name"],
                description=tool["description"],
                input_schema=tool["inputSchema"],
                output_schema=tool.get("outputSchema"),
            )
            for tool in self._tools.values()
        ]

        async def on_list_tools(ctx: Any, params: Any) -> mcp_types.ListToolsResult:
            return mcp_types.ListToolsResult(tools=listed)

        async def on_call_tool(
            ctx: Any, params: mcp_types.CallToolRequestParams
        ) -> mcp_types.CallToolResult:
            return await self.call_tool(params.name, params.arguments)

        return Server(
            f"flowai-{self.agent}",
            description=f"The tools of agent {self.agent!r} (flowai-harness)",
            on_list_tools=on_list_tools,
            on_call_tool=on_call_tool,
        )

    # --- stdio ----------------------------------------------------------------------------

    async def run_stdio(self) -> None:
        """Serve over this process's stdin/stdout until the client closes stdin."""
        server = self.sdk_server()
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    def serve_stdio(self) -> None:
        """:meth:`run_stdio` on an event loop of its own (blocks)."""
        _blocking(self.run_stdio())

    # --- Streamable HTTP ------------------------------------------------------------------

    def http_app(
        self,
        *,
        path: str = "/mcp",
        allowed_origins: Iterable[str] | None = None,
        require_origin: bool = True,
        host: str = "127.0.0.1",
        port: int = 8765,
    ) -> ASGIApp:
        """The ASGI app serving Streamable HTTP at ``path``, behind the Origin check."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise SpecError(f"path must start with '/', got {path!r}")
        app = self.sdk_server().streamable_http_app(
            streamable_http_path=path,
            # Origins are checked by OriginCheck, with this server's own rules.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            host=host,
        )
        if not require_origin:
            return app
        origins = _own_origins(host, port) if allowed_origins is None else list(allowed_origins)
        return OriginCheck(app, origins)

    @contextlib.asynccontextmanager
    async def http(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        path: str = "/mcp",
        transport: str = "streamable-http",
        allowed_origins: Iterable[str] | None = None,
        require_origin: bool = True,
    ) -> AsyncIterator[str]:
        """Serve over Streamable HTTP while the block runs; yields the endpoint URL
        (``port=0`` picks a free port). The socket is bound before the block starts, so a
        client may connect at once."""
        import uvicorn

        if transport != "streamable-http":
            raise UsageError(
                f"transport {transport!r} is not offered over HTTP; use 'streamable-http' "
                "(the legacy HTTP+SSE transport is not supported)"
            )
        listener = _listen(host, port)
        bound = listener.getsockname()[1]
        app = self.http_app(
            path=path,
            allowed_origins=allowed_origins,
            require_origin=require_origin,
            host=host,
            port=bound,
        )
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="none"))
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[listener]))
        self._serving = task
        try:
            yield f"http://{_url_host(host)}:{bound}{path}"
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()

    async def run_http(self, **options: Any) -> None:
        """Serve over Streamable HTTP until cancelled or stopped by SIGINT / SIGTERM
        (options as :meth:`http`)."""
        async with self.http(**options):
            serving = self._serving
            assert serving is not None
            await asyncio.shield(serving)

    def serve_http(self, **options: Any) -> None:
        """:meth:`run_http` on an event loop of its own (blocks until interrupted)."""
        with contextlib.suppress(KeyboardInterrupt):
            _blocking(self.run_http(**options))


class OriginCheck:
    """ASGI middleware: a request whose ``Origin`` header is not allowed is refused with 403
    (the MCP specification's rule against DNS rebinding). A request without an Origin comes
    from a client that is not a browser page and passes. ``"*"`` allows every origin."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origin = _header(scope, b"origin")
            if origin is not None and not self._allows(origin):
                body = (
                    f"Origin {origin!r} is not allowed to use this MCP server; start it with "
                    "allowed_origins (--allow-origin) naming that origin"
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _allows(self, origin: str) -> bool:
        return "*" in self.allowed or origin.rstrip("/").lower() in self.allowed


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def _own_origins(host: str, port: int) -> list[str]:
    """The origins of pages served by this very server's address (loopback: every loopback
    name)."""
    names = [_url_host(host)]
    if _is_loopback(host):
        names = ["127.0.0.1", "localhost", "[::1]"]
    return [f"{scheme}://{name}:{port}" for name in names for scheme in ("http", "https")]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
        listener.listen(128)
        listener.setblocking(False)
    except OSError as exc:
        listener.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc}") from exc
    return listener


def _blocking(work: Any) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(work)
        return
    work.close()
    raise UsageError(
        "serve_mcp_stdio / serve_mcp_http block and run an event loop of their own; inside "
        "async code use flowai_harness.mcp.McpServer(runtime, agent, ...).run_stdio() or "
        "its http(...) context"
    )


def _result(value: Any, is_error: bool, tool: Mapping[str, Any]) -> mcp_types.CallToolResult:
    if is_error:
        error = value.get("error", {}) if isinstance(value, dict) else {}
        return _error(str(error.get("message", value)), str(error.get("code", MCP_CALL_FAILED)))
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    structured = value if isinstance(value, dict) or "outputSchema" in tool else None
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(text=text)], structured_content=structured
    )


def _error(message: str, code: str) -> mcp_types.CallToolResult:
    return mcp_types.CallToolResult(
        content=[mcp_types.TextContent(text=f"[{code}] {message}")], is_error=True
    )


def _offered_tools(runtime: Runtime, agent: str, with_builtins: bool) -> dict[str, dict[str, Any]]:
    spec_agent = next(a for a in runtime.spec.agents if a.name == agent)
    offered: dict[str, dict[str, Any]] = {}
    for tool in spec_agent.tools:
        entry: dict[str, Any] = {
            "name": tool.name,
            "description": tool.description,
            "inputSchema": tool.input_schema,
        }
        if tool.output_schema is not None:
            entry["outputSchema"] = tool.output_schema
        offered[tool.name] = entry
    if with_builtins:
        # The engine says which tools it offers the agent's model, built-in ones included.
        for offer in runtime.spec.compiled_agents()[agent]["tools"]:
            name = offer["name"]
            if name not in offered and name not in _HIDDEN_BUILTINS:
                offered[name] = {
                    "name": name,
                    "description": offer["description"],
                    "inputSchema": offer["input_schema"],
                }
    return offered
