"""Studio: a browser UI on the run log (chat, runs, approvals, costs), for both modes.

Exports the seed's app definitions (:func:`define_app`, :func:`define_workspace_runtime`,
:class:`FlowAIApp`, :class:`WorkspaceRuntimeBinding`) and :func:`create_studio_app`,
:func:`run_studio_server`. The server and its dependencies (the ``studio`` extra: FastAPI,
uvicorn) load only when a server is made, so defining an app needs neither.

Must not import Kafka at import time (the distributed backend loads it when asked for).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .apps import FlowAIApp, WorkspaceRuntimeBinding, define_app, define_workspace_runtime

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "FlowAIApp",
    "WorkspaceRuntimeBinding",
    "create_studio_app",
    "define_app",
    "define_workspace_runtime",
    "run_studio_server",
]


def create_studio_app(target: Any, *, token: str | None = None, serve_page: bool = True) -> FastAPI:
    """The Studio FastAPI app for a runtime, a spec, a runtime factory or a define_app app
    (embedded; specs get the scripted interpreter)."""
    from .apps import RuntimeChoice, build_runtime
    from .embedded import EmbeddedBackend
    from .server import create_studio_app as create

    if isinstance(target, FlowAIApp):
        target = target.workspace(None)
    backend = EmbeddedBackend(build_runtime(target, RuntimeChoice(), what="Studio"))
    return create(backend, token=token, serve_page=serve_page)


def run_studio_server(
    target: Any, *, host: str = "127.0.0.1", port: int = 4111, token: str | None = None
) -> None:
    """Serve Studio for ``target`` until interrupted (the seed's ``run_studio_server``)."""
    import uvicorn

    from .command import check_bind

    check_bind(host, token)
    uvicorn.run(create_studio_app(target, token=token), host=host, port=port, log_level="warning")
