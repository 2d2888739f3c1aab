"""The judge's model call through the live provider path, from a runtime's provider settings.

Owns :class:`LiveJudge`: the ``complete(request) -> result`` the judge (:mod:`.judge`)
takes, answering each judge ModelRequest the way the runtime answers an agent's: through
:func:`flowai_harness.modelcall.call_model` and the provider adapters (the official SDKs).
It uses the runtime's providers when it has live ones; otherwise it builds its own from the
spec's ``providers`` settings on the first judge call (and closes them in :meth:`aclose`).
Settings that cannot make a provider (a placeholder key under a testing interpreter, say)
give every judge call an ``auth`` failure naming the problem, so the judge fails closed
with ``judge_execution_failed`` rather than reading anything as a verdict.

Replay-as-eval sends the requests a change made new through the same class
(``who``/``where`` name the caller in its failures). Also owns :func:`judge_model_for`, the
judge's default model: the coordinator's, else the first agent's (the seed's rule). Must not
import the runtime or the native extension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import FlowaiError
from ..modelcall import Complete, DeltaSink, call_model
from .runner import judge_provider_for_model

__all__ = ["LiveJudge", "judge_model_for"]


def judge_model_for(agents: Sequence[Any]) -> tuple[str, str] | None:
    """``(provider, model)`` of the coordinator, else of the first agent; None without agents.
    ``agents`` are :class:`~flowai_harness.specs.AgentSpec` values."""
    if not agents:
        return None
    chosen = next((agent for agent in agents if agent.role == "coordinator"), agents[0])
    model = str(chosen.model)
    return (chosen.provider or judge_provider_for_model(model), model)


class LiveJudge:
    """Judge calls through live providers: the runtime's, or ones built from its settings."""

    def __init__(
        self,
        providers: Mapping[str, Complete] | None,
        settings: Mapping[str, Mapping[str, Any]] | None,
        *,
        who: str = "the judge",
        where: str = "eval judge",
    ) -> None:
        self._providers: Mapping[str, Complete] | None = providers or None
        self._settings = settings
        self._owned: dict[str, Any] = {}
        self._problem: str | None = None
        self._who = who
        self._where = where

    def _ready(self) -> Mapping[str, Complete] | None:
        if self._providers is None and self._problem is None:
            from ..providers import build_providers

            try:
                self._owned = dict(build_providers(self._settings or {}))
            except FlowaiError as error:
                self._problem = (
                    f"{self._who} has no live provider: {error}; give the runtime's "
                    "providers a real key (apiKey or apiKeyEnv)"
                )
            else:
                self._providers = self._owned
        return self._providers

    async def complete(
        self, request: dict[str, Any], *, on_delta: DeltaSink | None = None
    ) -> dict[str, Any]:
        """One ModelRequest payload -> its ModelResult payload (never raises for a provider
        problem)."""
        providers = self._ready()
        if providers is None:
            return {
                "request_id": request["request_id"],
                "failure": {
                    "kind": "auth",
                    "message": self._problem,
                    "provider": request.get("provider"),
                    "model": request.get("model"),
                },
            }
        return await call_model(providers, request, on_delta=on_delta, where=self._where)

    async def aclose(self) -> None:
        """Close the providers this judge built (never the runtime's)."""
        owned, self._owned = self._owned, {}
        if owned:
            from ..providers import close_providers

            await close_providers(owned)
            self._providers = None
