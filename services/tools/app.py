"""The user's app as a tool worker runs it: its tools, host services and action dispatcher.

Owns :class:`ToolApp` and :func:`load_app`. ``--app module:attr`` names a RuntimeSpec (its
tools carry the handlers) or a zero-argument callable returning one (loaded by
:mod:`flowai_harness.apps`, like every service); ``--services module:attr`` names a mapping
(or a zero-argument callable returning one) of host objects that handlers get as
``ctx.services``; an ``action_dispatcher`` attribute of the app object runs plan steps
(``fn(actions, ctx)``, sync or async, as ``create_runtime(action_dispatcher=fn)``).

Sync handlers and dispatchers are wrapped to run in a thread: a blocking one must not stop the
event loop, which renews claims, heartbeats to Kafka and runs the other invocations.

Must not import Kafka, Redis or the rest of the service.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowai_harness.apps import import_object, load_spec
from flowai_harness.errors import AppLoadError
from flowai_harness.specs import RuntimeSpec
from flowai_harness.toolcall import ActionDispatcher
from flowai_harness.tools import ToolContext, ToolDefinition

__all__ = ["ToolApp", "load_app"]

log = logging.getLogger("flowai.tools")


@dataclass(frozen=True)
class ToolApp:
    """What a tool worker runs: tools by name (with handlers), services, the dispatcher."""

    spec: RuntimeSpec
    tools: Mapping[str, ToolDefinition]
    services: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    action_dispatcher: ActionDispatcher | None = None
    # Declared tools this worker cannot run (no handler): answered with TOOL_NOT_AVAILABLE.
    missing: tuple[str, ...] = ()

    @classmethod
    def from_spec(
        cls,
        spec: RuntimeSpec,
        *,
        services: Mapping[str, Any] | None = None,
        action_dispatcher: ActionDispatcher | None = None,
    ) -> ToolApp:
        tools: dict[str, ToolDefinition] = {}
        missing: list[str] = []
        for tool in spec.tools:
            if tool.handler is None:
                missing.append(tool.name)
            else:
                tools[tool.name] = tool if tool.is_async else tool.bind(_in_thread(tool.handler))
        if action_dispatcher is not None and not callable(action_dispatcher):
            raise AppLoadError(
                f"action_dispatcher must be a function fn(actions, ctx), got {action_dispatcher!r}"
            )
        return cls(
            spec=spec,
            tools=types.MappingProxyType(tools),
            services=types.MappingProxyType(dict(services or {})),
            action_dispatcher=None
            if action_dispatcher is None
            else _dispatch_in_thread(action_dispatcher),
            missing=tuple(missing),
        )


def _in_thread(handler: Callable[[Any, ToolContext], Any]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(handler)
    async def run(args: Any, ctx: ToolContext) -> Any:
        return await asyncio.to_thread(handler, args, ctx)

    return run


def _dispatch_in_thread(dispatcher: ActionDispatcher) -> ActionDispatcher:
    if inspect.iscoroutinefunction(dispatcher) or inspect.iscoroutinefunction(
        getattr(dispatcher, "__call__", None)  # noqa: B004 - an async callable object
    ):
        return dispatcher

    @functools.wraps(dispatcher)
    async def run(actions: list[dict[str, Any]], ctx: dict[str, Any]) -> Any:
        output = await asyncio.to_thread(dispatcher, actions, ctx)
        # A sync function may still hand back an awaitable (a coroutine of a helper).
        return await output if inspect.isawaitable(output) else output

    return run


def load_app(app: str, services: str | None = None) -> ToolApp:
    """Load ``--app`` (and ``--services``) into a :class:`ToolApp`."""
    spec = load_spec(app)
    host: Mapping[str, Any] = {}
    if services is not None:
        found = import_object(services, option="--services")
        host = found() if callable(found) else found
        if not isinstance(host, Mapping):
            raise AppLoadError(
                f"--services {services!r} must name a mapping of name to host object (or a "
                f"function returning one), got {type(host).__name__}"
            )
    # The hook for plan steps: an attribute of the app object (the spec, or the function
    # returning it; the import is cached, so this finds the same object load_spec did).
    dispatcher = getattr(spec, "action_dispatcher", None) or getattr(
        import_object(app), "action_dispatcher", None
    )
    loaded = ToolApp.from_spec(spec, services=host, action_dispatcher=dispatcher)
    if loaded.missing:
        log.warning(
            "tools without a handler in %s: %s; their invocations get a TOOL_NOT_AVAILABLE result",
            app,
            ", ".join(loaded.missing),
        )
    return loaded
