"""MCP servers' tools as agent tools: :func:`define_mcp_toolset` and :class:`McpToolset`.

A toolset names one MCP server (a command started over stdio, or a Streamable HTTP URL) and
which of its tools an agent gets (all, or a named subset, optionally prefixed). At
``define_runtime`` the server's ``tools/list`` is read once and every tool becomes an ordinary
:class:`~flowai_harness.tools.ToolDefinition`: its schemas are compiled by the engine like any
tool's (one it cannot enforce is refused there, naming the tool), approval rules apply per
tool, and results are logged, so a replay never calls the server again. On the Kafka services
the same definitions run on the tool workers, under their effectively-once machinery.

A call goes over one session per event loop, opened on the first call and kept open: a stdio
server is started then and restarted on the call after it went away. Whatever goes wrong
becomes a tool error result the model sees, never a crashed run: the server's own error result
(``MCP_TOOL_ERROR``), a JSON-RPC error or a malformed answer (``MCP_PROTOCOL_ERROR``), a server
that cannot be reached or died (``MCP_SERVER_UNAVAILABLE``, retried by tool workers), no answer
in time (``TOOL_TIMEOUT``).

Must not import the runtime, the native extension, the bus or any service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import mcp_types
import pydantic
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from ..approvals import check_rule
from ..errors import (
    McpProtocolError,
    McpServerError,
    McpServerUnavailableError,
    McpToolError,
    SpecError,
    ToolTimeoutError,
)
from ..tools import NAME_PATTERN, RESERVED_TOOL_NAMES, Approval, ToolContext, ToolDefinition

__all__ = ["McpToolset", "define_mcp_toolset"]

log = logging.getLogger("flowai.mcp")

_T = TypeVar("_T")
# tools/list pages followed at most (a server whose cursor never ends cannot hang the start).
_MAX_PAGES: Final = 100


class McpToolset:
    """One MCP server's tools, for an agent's ``toolkits=[...]``. Build it with
    :func:`define_mcp_toolset`.

    :meth:`tool_definitions` reads the server's tool list once (``define_runtime`` calls it)
    and gives the agent tools; :meth:`aclose` ends this event loop's session with the server
    (``Runtime.aclose()`` calls it).
    """

    def __init__(
        self,
        name: str,
        *,
        command: tuple[str, ...] | None,
        url: str | None,
        headers: Mapping[str, str],
        env: Mapping[str, str] | None,
        cwd: str | None,
        tools: tuple[str, ...] | None,
        prefix: str,
        approval: Approval | Mapping[str, Approval],
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self.name = name
        self.command = command
        self.url = url
        self.headers = dict(headers)
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.tools = tools
        self.prefix = prefix
        self.approval = approval
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._definitions: tuple[ToolDefinition, ...] | None = None
        # One session per event loop: a session's tasks belong to the loop that opened it.
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Session] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        where = self.url if self.url is not None else " ".join(self.command or ())
        return f"McpToolset({self.name!r}, {where!r})"

    @property
    def server(self) -> str:
        """The server as a person would name it: its URL or its command line."""
        return self.url if self.url is not None else " ".join(self.command or ())

    # --- start: the tool list -------------------------------------------------------------

    def tool_definitions(self) -> tuple[ToolDefinition, ...]:
        """The agent tools this toolset gives, from the server's ``tools/list`` (read once,
        then kept: every runtime of this process sees the same tools)."""
        if self._definitions is None:
            listed = _in_own_loop(self._list_tools)
            self._definitions = self._define(listed)
        return self._definitions

    async def _list_tools(self) -> list[mcp_types.Tool]:
        listed: list[mcp_types.Tool] = []
        try:
            async with asyncio.timeout(self.connect_timeout), self._client() as client:
                cursor: str | None = None
                for _ in range(_MAX_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except TimeoutError:
            raise McpServerError(
                f"MCP toolset {self.name!r}: the server {self.server!r} did not list its tools "
                f"within {self.connect_timeout:g} s; check that it starts and speaks MCP, or "
                "raise connect_timeout="
            ) from None
        except McpServerError:
            raise
        except Exception as exc:
            raise McpServerError(
                f"MCP toolset {self.name!r}: cannot list the tools of {self.server!r}: "
                f"{_describe(exc)}; check the command or URL and that the server speaks MCP"
            ) from exc
        return listed

    def _define(self, listed: Sequence[mcp_types.Tool]) -> tuple[ToolDefinition, ...]:
        by_name = {tool.name: tool for tool in listed}
        wanted = list(by_name) if self.tools is None else list(self.tools)
        missing = sorted(set(wanted) - set(by_name))
        if missing:
            raise McpServerError(
                f"MCP toolset {self.name!r}: tools={list(self.tools or ())!r} names "
                f"{', '.join(map(repr, missing))}, which {self.server!r} does not list; it "
                f"lists {', '.join(sorted(by_name)) or 'no tools'}"
            )
        rules = self._rules(set(by_name))
        definitions = []
        for remote in wanted:
            tool = by_name[remote]
            name = self.prefix + remote
            if not NAME_PATTERN.fullmatch(name) or name in RESERVED_TOOL_NAMES:
                raise McpServerError(
                    f"MCP toolset {self.name!r}: tool {remote!r} of {self.server!r} would be "
                    f"the agent tool {name!r}, which is not a usable tool name (letters, digits, "
                    "_ and -, at most 64, not a built-in tool's name); give prefix= or leave it "
                    "out with tools=[...]"
                )
            try:
                definitions.append(
                    ToolDefinition(
                        name=name,
                        input_schema=dict(tool.input_schema),
                        description=tool.description or tool.title or "",
                        output_schema=None
                        if tool.output_schema is None
                        else dict(tool.output_schema),
                        approval=rules.get(remote, "default"),
                        handler=_McpTool(self, remote),
                    )
                )
            except SpecError as exc:
                raise McpServerError(
                    f"MCP toolset {self.name!r}: tool {remote!r} of {self.server!r} cannot be "
                    f"an agent tool: {exc.message}"
                ) from exc
        return tuple(definitions)

    def _rules(self, listed: set[str]) -> dict[str, Approval]:
        if not isinstance(self.approval, Mapping):
            return dict.fromkeys(listed, self.approval)
        unknown = sorted(set(self.approval) - listed)
        if unknown:
            raise McpServerError(
                f"MCP toolset {self.name!r}: approval= names {', '.join(map(repr, unknown))}, "
                f"which {self.server!r} does not list; name its tools as the server does "
                "(without the prefix)"
            )
        return dict(self.approval)

    # --- calls ----------------------------------------------------------------------------

    async def call(self, tool: str, args: Any) -> Any:
        """Call the server's ``tool`` (its own name) with ``args``; returns the tool's output
        as the model sees it, or raises a typed error that becomes a tool error result."""
        session = await self._session()
        try:
            async with asyncio.timeout(self.timeout):
                result = await session.client.call_tool(tool, args or {})
        except TimeoutError:
            raise ToolTimeoutError(
                f"MCP tool {tool!r} of {self.server!r} did not answer within {self.timeout:g} s"
            ) from None
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                await session.close()
                raise McpServerUnavailableError(
                    f"MCP server {self.server!r} went away during the call to {tool!r}; it is "
                    "started again on the next call"
                ) from exc
            raise McpProtocolError(
                f"MCP server {self.server!r} refused the call to {tool!r}: {exc.message} "
                f"(JSON-RPC error {exc.code})"
            ) from exc
        except pydantic.ValidationError as exc:
            raise McpProtocolError(
                f"MCP server {self.server!r} answered the call to {tool!r} with a result that "
                f"is not MCP: {_describe(exc)}"
            ) from exc
        return _output(self.server, tool, result)

    async def _session(self) -> _Session:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            session = self._sessions[loop] = _Session(self)
        await session.ensure_open()
        return session

    async def aclose(self) -> None:
        """End this event loop's session with the server (a stdio server is stopped)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    def _client(self) -> contextlib.AbstractAsyncContextManager[Client]:
        """A connected SDK client (entered by the caller)."""
        return _connect(self)


@contextlib.asynccontextmanager
async def _connect(toolset: McpToolset) -> Any:
    async with contextlib.AsyncExitStack() as stack:
        if toolset.url is not None:
            http = await stack.enter_async_context(
                create_mcp_http_client(headers=toolset.headers or None)
            )
            server: Any = streamable_http_client(toolset.url, http_client=http)
        else:
            command = toolset.command or ()
            server = StdioServerParameters(
                command=command[0], args=list(command[1:]), env=toolset.env, cwd=toolset.cwd
            )
        # The tool list is read at start and kept with the spec; a cache would only hide a
        # server that changed.
        yield await stack.enter_async_context(Client(server, cache=None))


class _Session:
    """A session with the server held open by a task of its own: the SDK's context managers
    must be entered and left in one task, while calls come from many."""

    def __init__(self, toolset: McpToolset) -> None:
        self._toolset = toolset
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        assert self._client is not None, "ensure_open() first"
        return self._client

    async def ensure_open(self) -> None:
        async with self._lock:
            if self._task is not None and not self._task.done() and self._client is not None:
                return
            await self._close()
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._hold(ready, self._stop))
            try:
                async with asyncio.timeout(self._toolset.connect_timeout):
                    await asyncio.shield(ready)
            except TimeoutError:
                await self._close()
                raise McpServerUnavailableError(
                    f"MCP server {self._toolset.server!r} did not connect within "
                    f"{self._toolset.connect_timeout:g} s"
                ) from None
            except Exception as exc:
                await self._close()
                raise McpServerUnavailableError(
                    f"cannot connect to MCP server {self._toolset.server!r}: {_describe(exc)}"
                ) from exc

    async def _hold(self, ready: asyncio.Future[None], stop: asyncio.Event) -> None:
        try:
            async with self._toolset._client() as client:
                self._client = client
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP session with %s ended: %s", self._toolset.server, _describe(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None

    async def close(self) -> None:
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        task, stop = self._task, self._stop
        self._task = self._stop = None
        self._client = None
        if task is None or stop is None:
            return
        stop.set()
        try:
            # The SDK stops a stdio server within a few seconds (stdin closed, then signals).
            async with asyncio.timeout(10):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class _McpTool:
    """The handler of one MCP tool: an ordinary async tool handler."""

    __slots__ = ("_toolset", "tool")

    def __init__(self, toolset: McpToolset, tool: str) -> None:
        self._toolset = toolset
        self.tool = tool

    async def __call__(self, args: Any, ctx: ToolContext) -> Any:
        return await self._toolset.call(self.tool, args)

    def __repr__(self) -> str:
        return f"<MCP tool {self.tool!r} of {self._toolset.server!r}>"


def _output(server: str, tool: str, result: mcp_types.CallToolResult) -> Any:
    """What the model sees of a tool result: its structured content when it has one, else
    its text (one block: the text; several: joined), else the content blocks as JSON."""
    texts = [block.text for block in result.content if isinstance(block, mcp_types.TextContent)]
    if result.is_error:
        message = "\n".join(texts) or "the tool reported an error without a message"
        raise McpToolError(f"MCP tool {tool!r} of {server!r} failed: {message}")
    if result.structured_content is not None:
        return result.structured_content
    if len(texts) == len(result.content) and texts:
        return texts[0] if len(texts) == 1 else "\n".join(texts)
    return [
        block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
    ]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text


def _in_own_loop(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``work`` to completion on an event loop of its own (in a thread, so it works
    whether or not the caller is inside a running loop)."""

    def run() -> _T:
        async def main() -> _T:
            return await work()

        return asyncio.run(main())

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowai-mcp") as pool:
        return pool.submit(run).result()


def define_mcp_toolset(
    name: str,
    *,
    command: Iterable[str] | str | None = None,
    url: str | None = None,
    headers: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    tools: Iterable[str] | None = None,
    prefix: str | None = None,
    approval: Approval | Mapping[str, Approval] = "default",
    timeout: float = 30.0,
    connect_timeout: float = 30.0,
) -> McpToolset:
    """An MCP server's tools for an agent: pass the result in ``toolkits=[...]``.

    Give the server as ``command=["python", "server.py"]`` (started over stdio; ``env`` adds
    environment variables to the SDK's safe defaults, ``cwd`` is its working directory) or
    ``url="http://host:port/mcp"`` (Streamable HTTP; ``headers`` go with every request, e.g.
    ``{"Authorization": "Bearer ..."}``). ``tools=[...]`` takes only those of its tools (by
    the server's names; default: all), ``prefix`` is put before each name the agent sees.
    ``approval`` is one rule for every tool (``"never"``, ``"always"``, a predicate...) or
    ``{server tool name: rule}``. ``timeout`` bounds each call (seconds), ``connect_timeout``
    starting and reaching the server.

    Nothing is started here: ``define_runtime`` reads the server's tool list.
    """
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"define_mcp_toolset: name must be a non-empty string, got {name!r}")
    where = f"MCP toolset {name!r}"
    if (command is None) == (url is None):
        raise SpecError(
            f"{where}: give the server as command=[...] (stdio) or url='http://...' "
            "(Streamable HTTP), exactly one of them"
        )
    argv: tuple[str, ...] | None = None
    if command is not None:
        argv = (command,) if isinstance(command, str) else tuple(command)
        if not argv or not all(isinstance(part, str) and part for part in argv):
            raise SpecError(
                f"{where}: command must be a non-empty list of strings, e.g. "
                f"['python', 'server.py'], got {command!r}"
            )
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise SpecError(f"{where}: url must be an http:// or https:// URL, got {url!r}")
    if headers and url is None:
        raise SpecError(f"{where}: headers= go with url=; a stdio server takes env= instead")
    subset: tuple[str, ...] | None = None
    if tools is not None:
        if isinstance(tools, str):
            raise SpecError(f"{where}: tools must be a list of tool names, got {tools!r}")
        subset = tuple(tools)
        if not subset or len(set(subset)) != len(subset):
            raise SpecError(f"{where}: tools must list each wanted tool once, got {subset!r}")
    if prefix is not None and not isinstance(prefix, str):
        raise SpecError(f"{where}: prefix must be a string, got {prefix!r}")
    if isinstance(approval, Mapping):
        for tool, rule in approval.items():
            check_rule(rule, f"{where}: approval[{tool!r}]", allow_default=True)
    else:
        check_rule(approval, f"{where}: approval", allow_default=True)
    for field, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise SpecError(f"{where}: {field} must be a number of seconds > 0, got {value!r}")
    return McpToolset(
        name,
        command=argv,
        url=url,
        headers=dict(headers or {}),
        env=env,
        cwd=cwd,
        tools=subset,
        prefix=prefix or "",
        approval=approval,
        timeout=float(timeout),
        connect_timeout=float(connect_timeout),
    )
