"""From one run's seed-shaped event list to what eval scoring and the artifact need.

Owns :func:`project_run` (and :func:`sample_output_from_events`, its scoring half). It reads
the stream a ``Runtime.query`` yields (SEED-REFERENCE.md §2), walking the ``tool-agent``
call/result pairs as a stack of agents (the entry agent's wrapping pair is depth 1, a
sub-agent's tools depth 2, ...):

- ``tool-invocation`` with ``state: "call"`` (``toolName``, ``toolInvocationId``, ``args``):
  ``actual_trajectory`` (every call, in order, at any depth; a repeated id within one agent
  frame counts once) and the tool events of ``extra["trajectoryEvents"]``;
- ``tool-agent`` with ``state: "call"`` (``agentName``, ``toolInvocationId``): the agent events
  of ``trajectoryEvents``, named by ``agentName``; ``state: "result"`` closes that frame;
- the last ``storePlan`` call: ``extra["plannedActions"]`` from ``args.body.actions``, each
  flat action becoming ``{"type": action[discriminator], "payload": the other fields}``
  (``references`` is not payload);
- the last ``executePlan`` result carrying them: ``extra["resolvedActions"]`` from
  ``result.details.resolvedActions`` (or a top-level ``result.resolvedActions``), each
  ``{"type", "payload"}`` as the seed has them or ``{discriminator, "payload"}`` as this
  engine has them;
- ``text`` events of the entry agent (depth <= the entry depth): ``response_text``, joined;
- the entry agent's last ``data-cost-summary`` (``totalPromptTokens``, ... and ``agents[]``
  with ``agentName``, ``model`` and the tokens, under ``usage`` as the seed has them or
  beside them with ``provider`` and USD ``cost`` as this engine has them): token usage and
  one model invocation per agent;
  without it, the entry agent's ``finish`` ``usage`` (``promptTokens``, ``completionTokens``,
  ``cacheReadInputTokens``, ``cacheCreationInputTokens``);
- the entry agent's last ``data-latency-summary`` (``totalDurationMs``, ``ttftMs``,
  ``phases.llmTimeMs``, ``phases.toolTimeMs``): the sample latency;
- an ``error`` event (``error.message``): the run failed.

Every other event type is ignored. Must not import the runtime, the native extension, the
scorers or the runner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from pydantic import ValidationError

from .artifact import ModelInvocation, SampleLatency, TokenUsageSummary
from .models import (
    PLANNED_ACTIONS_EXTRA_KEY,
    RESOLVED_ACTIONS_EXTRA_KEY,
    TRAJECTORY_EVENTS_EXTRA_KEY,
    RawSampleOutput,
    ResolvedAction,
)

__all__ = ["RunProjection", "project_run", "sample_output_from_events"]

STORE_PLAN: Final = "storePlan"
EXECUTE_PLAN: Final = "executePlan"
# Provider of an agent's model calls: (agent name, model id) -> provider key, if known.
ProviderFor = Callable[[str, str], str | None]


@dataclasses.dataclass(frozen=True, slots=True)
class RunProjection:
    """What one run's events say: the scorer input and the run's usage, latency and error."""

    output: RawSampleOutput
    token_usage: TokenUsageSummary
    model_invocations: list[ModelInvocation]
    latency: SampleLatency | None
    error: str | None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _planned_actions(args: Mapping[str, Any], discriminator: str) -> list[dict[str, Any]] | None:
    actions = _mapping(args.get("body")).get("actions")
    if not isinstance(actions, list):
        return None
    planned: list[dict[str, Any]] = []
    for action in actions:
        if not isinstance(action, Mapping) or not isinstance(action.get(discriminator), str):
            continue
        payload = {
            key: value for key, value in action.items() if key not in (discriminator, "references")
        }
        planned.append({"type": action[discriminator], "payload": payload})
    return planned


def _resolved_actions(result: object, discriminator: str) -> list[dict[str, Any]] | None:
    body = _mapping(result)
    actions = _mapping(body.get("details")).get("resolvedActions", body.get("resolvedActions"))
    if not isinstance(actions, list):
        return None
    resolved: list[dict[str, Any]] = []
    for action in actions:
        action = _mapping(action)
        if "type" not in action and isinstance(action.get(discriminator), str):
            # This engine's shape: {kind, payload (the action, kind included), references}.
            payload = {
                key: value
                for key, value in _mapping(action.get("payload")).items()
                if key != discriminator
            }
            action = {"type": action[discriminator], "payload": payload}
        try:
            resolved.append(ResolvedAction.model_validate(action).to_wire())
        except ValidationError:
            continue
    return resolved


# Token fields of a cost summary's totals and of a per-agent or `finish` usage, in the order
# input, output, cache read, cache write.
_TOTAL_KEYS: Final = (
    "totalPromptTokens",
    "totalCompletionTokens",
    "totalCacheReadInputTokens",
    "totalCacheCreationInputTokens",
)
_USAGE_KEYS: Final = (
    "promptTokens",
    "completionTokens",
    "cacheReadInputTokens",
    "cacheCreationInputTokens",
)


def _usage(
    data: Mapping[str, Any], keys: tuple[str, str, str, str] = _USAGE_KEYS
) -> TokenUsageSummary:
    input_key, output_key, read_key, write_key = keys
    return TokenUsageSummary(
        input_tokens=_int(data.get(input_key)),
        output_tokens=_int(data.get(output_key)),
        cached_tokens=_int(data.get(read_key)),
        cache_creation_tokens=_int(data.get(write_key)),
    )


def _invocations(
    cost_summary: Mapping[str, Any], provider_for: ProviderFor | None
) -> list[ModelInvocation]:
    agents = cost_summary.get("agents")
    unpriced = cost_summary.get("unpriced")
    unpriced = set(unpriced) if isinstance(unpriced, list) else set()
    invocations: list[ModelInvocation] = []
    for entry in agents if isinstance(agents, list) else ():
        entry = _mapping(entry)
        agent = str(entry.get("agentName") or "").strip() or "unknown"
        model = str(entry.get("model") or "").strip() or "unknown"
        # The seed nests an agent's tokens under `usage`; this engine puts them beside
        # `agentName`, with its `provider` and USD `cost` (0 and listed unpriced when unknown).
        usage = _usage(_mapping(entry.get("usage")) or entry)
        provider = entry.get("provider")
        cost = entry.get("cost")
        invocations.append(
            ModelInvocation(
                agent=agent,
                provider=provider
                if isinstance(provider, str) and provider
                else (provider_for(agent, model) if provider_for else None),
                model=model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cached_tokens,
                cache_creation_tokens=usage.cache_creation_tokens,
                estimated_cost_usd=float(cost)
                if isinstance(cost, int | float) and model not in unpriced
                else None,
            )
        )
    return invocations


def _latency(data: Mapping[str, Any]) -> SampleLatency:
    phases = _mapping(data.get("phases"))
    return SampleLatency(
        total_ms=_int(data.get("totalDurationMs")),
        first_token_ms=_optional_int(data.get("ttftMs")),
        model_ms=_optional_int(phases.get("llmTimeMs")),
        tool_ms=_optional_int(phases.get("toolTimeMs")),
    )


def project_run(
    events: Iterable[Mapping[str, Any]],
    *,
    plan_discriminator: str = "kind",
    provider_for: ProviderFor | None = None,
) -> RunProjection:
    """Project one run's events (see the module docstring for what is read).

    ``plan_discriminator`` is the plan's action discriminator field (``kind`` unless the
    PlanSpec says otherwise); ``provider_for`` names the provider of each agent's model
    calls in the model invocations.
    """
    frames: list[tuple[str, str]] = []  # (agent name, its tool-agent invocation id)
    entry_depth: int | None = None
    seen_calls: set[str] = set()
    seen_agents: set[str] = set()
    call_names: dict[str, str] = {}
    trajectory: list[str] = []
    trajectory_events: list[dict[str, Any]] = []
    texts: list[str] = []
    planned: list[dict[str, Any]] | None = None
    resolved: list[dict[str, Any]] | None = None
    finish_usage: Mapping[str, Any] | None = None
    cost_summary: Mapping[str, Any] | None = None
    latency_summary: Mapping[str, Any] | None = None
    error: str | None = None

    for event in events:
        kind = event.get("type")
        state = event.get("state")
        if entry_depth is None and kind in ("tool-agent", "tool-invocation", "text"):
            # The seed wraps the entry agent in a tool-agent pair; a bare stream has none.
            entry_depth = 1 if kind == "tool-agent" and state == "call" else 0
        at_entry = len(frames) <= (entry_depth or 0)
        if kind == "tool-agent":
            invocation_id = str(event.get("toolInvocationId", ""))
            if state == "call" and invocation_id not in seen_agents:
                seen_agents.add(invocation_id)
                agent_event: dict[str, Any] = {
                    "kind": "agent",
                    "name": str(event.get("agentName", "")),
                    "invocationId": invocation_id,
                    "depth": len(frames) + 1,
                }
                if frames:
                    agent_event["agent"] = frames[-1][0]
                trajectory_events.append(agent_event)
                frames.append((agent_event["name"], invocation_id))
            elif state == "result":
                ids = [frame_id for _, frame_id in frames]
                if invocation_id in ids:
                    del frames[len(ids) - 1 - ids[::-1].index(invocation_id) :]
        elif kind == "tool-invocation":
            call_id = str(event.get("toolInvocationId", ""))
            scope = "/".join(frame_id for _, frame_id in frames)
            scoped_id = f"{scope}::{call_id}" if scope else call_id
            if state == "call" and scoped_id not in seen_calls:
                seen_calls.add(scoped_id)
                name = str(event.get("toolName", ""))
                call_names[scoped_id] = name
                trajectory.append(name)
                tool_event: dict[str, Any] = {
                    "kind": "tool",
                    "name": name,
                    "invocationId": call_id,
                    "depth": len(frames),
                }
                if frames:
                    tool_event["agent"] = frames[-1][0]
                trajectory_events.append(tool_event)
                stored = (
                    _planned_actions(_mapping(event.get("args")), plan_discriminator)
                    if name == STORE_PLAN
                    else None
                )
                planned = planned if stored is None else stored
            elif state == "result":
                name = str(event.get("toolName") or call_names.get(scoped_id, ""))
                executed = (
                    _resolved_actions(event.get("result"), plan_discriminator)
                    if name == EXECUTE_PLAN
                    else None
                )
                resolved = resolved if executed is None else executed
        elif kind == "text" and at_entry:
            text = event.get("text")
            if isinstance(text, str):
                texts.append(text)
        elif kind == "finish" and at_entry:
            finish_usage = _mapping(event.get("usage"))
        elif kind == "data-cost-summary" and at_entry:
            cost_summary = _mapping(event.get("data"))
        elif kind == "data-latency-summary" and at_entry:
            latency_summary = _mapping(event.get("data"))
        elif kind == "error":
            body = event.get("error")
            message = _mapping(body).get("message") if isinstance(body, Mapping) else body
            error = str(message or "the run failed without a message")

    extra: dict[str, Any] = {}
    if planned is not None:
        extra[PLANNED_ACTIONS_EXTRA_KEY] = planned
    if resolved is not None:
        extra[RESOLVED_ACTIONS_EXTRA_KEY] = resolved
    if trajectory_events:
        extra[TRAJECTORY_EVENTS_EXTRA_KEY] = trajectory_events
    if cost_summary is not None:
        token_usage = _usage(cost_summary, _TOTAL_KEYS)
    elif finish_usage is not None:
        token_usage = _usage(finish_usage)
    else:
        token_usage = TokenUsageSummary()
    return RunProjection(
        output=RawSampleOutput(
            actual_trajectory=trajectory,
            response_text="".join(texts) if texts else None,
            extra=extra,
        ),
        token_usage=token_usage,
        model_invocations=_invocations(cost_summary, provider_for) if cost_summary else [],
        latency=_latency(latency_summary) if latency_summary is not None else None,
        error=error,
    )


def sample_output_from_events(
    events: Iterable[Mapping[str, Any]], *, plan_discriminator: str = "kind"
) -> RawSampleOutput:
    """The scorer input of one run: trajectory, response text and the ``extra`` payloads
    (``plannedActions``, ``resolvedActions``, ``trajectoryEvents``) its events carry."""
    return project_run(events, plan_discriminator=plan_discriminator).output
