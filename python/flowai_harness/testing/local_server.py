"""A server on a loopback port for the fakes the tests point real clients at.

Owns :class:`LocalServer`: an aiohttp application on ``host:port`` (port 0: any free one),
started and stopped with the fake (``async with``), with its base ``url``. A fake adds its
routes in :meth:`LocalServer.routes`.

Needs aiohttp (the ``dev`` and ``kafka`` extras). Must not import the runtime, the native
engine or any service.
"""

from __future__ import annotations

from types import TracebackType
from typing import ClassVar, Self

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "flowai_harness.testing needs aiohttp for its servers: pip install 'flowai-harness[dev]'"
    ) from exc

__all__ = ["LocalServer"]


class LocalServer:
    """One aiohttp server on a loopback port; subclasses add their routes."""

    # Cancel a handler when its client goes away (how a fake learns a stream was aborted).
    handler_cancellation: ClassVar[bool] = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        runner = web.AppRunner(
            app,
            handler_cancellation=self.handler_cancellation,
            access_log=None,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, reuse_address=True)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"
