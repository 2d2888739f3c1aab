"""The interface between the Studio server and a runtime, whichever mode it runs in.

Owns :class:`StudioBackend` (what the HTTP API needs from a runtime), :class:`AgentInfo`,
:func:`agents_of` and :func:`check_chat_target`. Two implementations: :mod:`.embedded` (a
runtime in this process) and :mod:`.distributed` (the runtime service over Kafka). Both feed
the same :class:`~.hub.Hub` with run-log envelopes, so pages and streams never know the mode.

Optional features are announced in :attr:`StudioBackend.capabilities` and only called when
announced: ``"replay-at"`` (:meth:`StudioBackend.state_at`, "state at this event") and
``"fork"`` (:meth:`StudioBackend.fork`, "fork from here").

Must not import FastAPI, Kafka or the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..errors import RunStateError, ThreadBusyError, UnknownAgentError
from ..evals.models import EvalRequest
from ..evals.runner import EvalStream
from ..specs import RuntimeSpec
from .hub import Hub

__all__ = ["AgentInfo", "StudioBackend", "agents_of", "check_chat_target", "check_idle"]

Outcome = Literal["approve", "reject", "revise"]


@dataclass(frozen=True)
class AgentInfo:
    name: str
    role: str
    model: str
    routes: tuple[str, ...]
    tools: tuple[str, ...]
    # Whether a person can chat with it directly (the coordinator, or a specialist).
    chat: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "model": self.model,
            "routes": list(self.routes),
            "tools": list(self.tools),
            "chat": self.chat,
        }


def agents_of(spec: RuntimeSpec) -> list[AgentInfo]:
    agents = []
    only = len(spec.agents) == 1
    for agent in spec.agents:
        agents.append(
            AgentInfo(
                name=agent.name,
                role=agent.role,
                model=agent.model,
                routes=tuple(agent.routes or ()),
                tools=tuple(tool.name for tool in agent.tools),
                chat=only or agent.role in ("coordinator", "specialist"),
            )
        )
    return agents


def check_chat_target(agents: list[AgentInfo], name: str | None) -> str | None:
    """The agent a chat runs (None: the coordinator); refuses planners and executors, which
    only run when the coordinator routes to them (as the seed's Studio does)."""
    if name is None:
        return None
    for agent in agents:
        if agent.name == name:
            if not agent.chat:
                raise RunStateError(
                    f"agent {name!r} is a {agent.role}: it runs when the coordinator routes to "
                    "it; chat with the coordinator or a specialist",
                    code="AGENT_NOT_CHATTABLE",
                )
            return None if agent.role == "coordinator" else name
    raise UnknownAgentError(
        f"no agent named {name!r}; this app's agents are: "
        f"{', '.join(agent.name for agent in agents)}"
    )


def check_idle(hub: Hub, thread_id: str, *, driving: bool) -> None:
    """Refuse a chat on a thread whose run is still going (``driving``: Studio drives one
    there), before anything is published or started."""
    thread = hub.index.threads.get(thread_id)
    status = thread.as_json()["status"] if thread is not None else "idle"
    if driving or status in ("running", "awaiting-approval"):
        raise ThreadBusyError(
            f"thread {thread_id!r} has a run in progress ({status}); wait for it, decide "
            "its approval, or cancel it before sending another message"
        )


class StudioBackend(Protocol):
    """What the Studio server needs from a runtime."""

    tenant: str
    hub: Hub
    # Optional features this backend has: "replay-at" (state_at), "fork".
    capabilities: frozenset[str]

    @property
    def mode(self) -> Literal["embedded", "distributed"]: ...

    def agents(self) -> list[AgentInfo]: ...

    def who_may_decide(self) -> str:
        """Who may decide this Studio's approvals, in words for the inbox."""
        ...

    async def start(self) -> None:
        """Load what the run log holds into the hub, then follow it."""
        ...

    async def close(self) -> None: ...

    async def chat(self, prompt: str, thread_id: str, agent: str | None) -> None:
        """Start a run; its events reach the hub. Raises for a refusal known at once."""
        ...

    async def cancel(self, thread_id: str) -> None: ...

    async def decide(
        self,
        approval_id: str,
        outcome: Outcome,
        *,
        approver: str,
        feedback: str | None,
        partial: Any,
    ) -> None:
        """Decide an approval; the decision reaches the hub through the run log."""
        ...

    async def state_at(self, thread_id: str, seq: int) -> dict[str, Any]:
        """The thread's folded state right after its event ``seq`` (``replay-at``):
        ``{threadId, seq, status, state}``. ``UnknownThreadError``, or ``InvalidInputError``
        for a seq outside the log."""
        ...

    async def fork(self, thread_id: str, seq: int, new_thread_id: str | None) -> dict[str, Any]:
        """A new thread whose history is ``thread_id``'s up to its event ``seq`` (``fork``):
        ``{threadId, source, seq, status, approvalId}`` (``approvalId``: the gate the fork
        waits at, if it was forked at one). ``UnknownThreadError``, or
        ``ForkUnavailableError`` mid-run, past the end or onto an existing thread."""
        ...

    def stream_eval(self, request: EvalRequest, approval_policy: str | None) -> EvalStream:
        """Run an eval whose samples are runs of this runtime (their threads reach the
        hub like any other)."""
        ...
