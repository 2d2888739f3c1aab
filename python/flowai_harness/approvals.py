"""Approval rules: who must say yes before a plan runs or a tool's handler is called.

Owns the rule values (``"never"``, ``"always"``, :class:`RequireApprovers` (the two-person
rule: N distinct people must approve) or a predicate ``(args, ctx) -> bool``), the
runtime floor :class:`ApprovalPolicies`, the per-agent patch :class:`ApprovalPatch`, the
runtime-level :class:`ApprovalOverrides`, their JSON for the runtime spec (docs/wire.md,
"Plans, approval gates, references"), :class:`PredicateRegistry` (stable ids for predicates, so
a run paused in one process can be decided in another that declared the same spec), and
:func:`rule_from_json`, which reads back a rule the engine reports.

The engine decides which gate applies and which rule wins (it reports each agent's effective
rules when it compiles a spec); this module only declares rules and evaluates predicates when
the engine asks (``flowai.v1.ApprovalCheck``). Must not import anything from
``flowai_harness`` but ``errors``: tools, specs and prompts import this module.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, TypeAlias, TypeGuard

from .errors import ExtensionMismatchError, SpecError

__all__ = [
    "CHANNELS",
    "ApprovalOverrides",
    "ApprovalPatch",
    "ApprovalPolicies",
    "Channel",
    "DynamicRule",
    "Predicate",
    "PredicateRegistry",
    "RequireApprovers",
    "Rule",
    "RuleOrDefault",
    "as_patch",
    "check_rule",
    "describe_rule",
    "predicate_id",
    "rule_from_json",
    "rule_json",
]

# A predicate answers "is approval required?" for one call; raising means yes.
Predicate: TypeAlias = Callable[[Any, Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class DynamicRule:
    """The seed's ``{"kind": "dynamic", "value": id}``: a predicate given by id, whose function
    comes with ``create_runtime(approval_predicates={id: fn})``."""

    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise SpecError(
                f"a dynamic approval rule needs a non-empty predicate id, got {self.id!r}"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class RequireApprovers:
    """The two-person rule: ``approvers`` distinct people must approve before the call or the
    plan goes ahead. Each approve short of that shows as an ``approval-progress`` event and
    the run keeps waiting; any reject (or the deadline) closes the gate. Every decision on such
    a gate must name its ``approver``, and the same approver never counts twice.

    ``RequireApprovers(1)`` is ``"always"``. The dict form is ``{"kind": "always",
    "approvers_required": n}``.
    """

    approvers: int

    def __post_init__(self) -> None:
        n = self.approvers
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError(
                f"RequireApprovers needs a whole number of approvers >= 1 (2 for the "
                f"two-person rule), got {n!r}"
            )


Rule: TypeAlias = Literal["never", "always"] | RequireApprovers | Predicate | DynamicRule
# "default" inherits from the level below; only patches (an agent's approval=) may say it.
RuleOrDefault: TypeAlias = Rule | Literal["default"]
Channel = Literal["plans", "tools"]

CHANNELS: Final[tuple[Channel, ...]] = ("plans", "tools")


_RULE_DICT_KEYS: Final = frozenset({"kind", "value", "approvers_required"})


def check_rule(value: object, where: str, *, allow_default: bool = False) -> RuleOrDefault:
    """Return ``value`` if it is a rule (or ``"default"`` where allowed), else a SpecError.

    The seed's dict forms are accepted: ``{"kind": "never" | "always"}`` and ``{"kind":
    "dynamic", "value": id}`` (a :class:`DynamicRule`); and ``{"kind": "always",
    "approvers_required": n}`` (a :class:`RequireApprovers`). A quorum of one is
    ``"always"``."""
    if value == "never" or value == "always" or (allow_default and value == "default"):
        return value
    if isinstance(value, DynamicRule):
        return value
    if isinstance(value, RequireApprovers):
        return "always" if value.approvers == 1 else value
    if isinstance(value, Mapping) and set(value) <= _RULE_DICT_KEYS:
        kind = value.get("kind")
        if "approvers_required" in value:
            if kind != "always" or "value" in value:
                raise SpecError(
                    f"{where}: approvers_required goes with kind 'always' (N people must "
                    f"approve), got {dict(value)!r}; write {{'kind': 'always', "
                    "'approvers_required': 2}"
                )
            try:
                quorum = RequireApprovers(value["approvers_required"])
            except SpecError as exc:
                raise SpecError(f"{where}: approvers_required: {exc.message}") from None
            return check_rule(quorum, where)
        if kind in ("never", "always") and "value" not in value:
            return "never" if kind == "never" else "always"
        if kind == "dynamic":
            return DynamicRule(value.get("value"))  # type: ignore[arg-type]
    if callable(value) and not isinstance(value, (str, type)):
        return value
    choices = "'default', 'never', 'always'" if allow_default else "'never', 'always'"
    choices += ", RequireApprovers(n), {'kind': 'dynamic', 'value': id}"
    hint = (
        " ('default' is for agents, where it inherits the runtime's rule)"
        if value == "default"
        else ""
    )
    raise SpecError(
        f"{where}: an approval rule must be {choices} or a function (args, ctx) -> bool, "
        f"got {value!r}{hint}"
    )


def describe_rule(rule: RuleOrDefault) -> str:
    """A rule in a few words, for prompts and reprs: never, always, always (N approvers),
    dynamic or default."""
    if isinstance(rule, RequireApprovers):
        return f"always ({rule.approvers} approvers)"
    return rule if isinstance(rule, str) else "dynamic"


def dynamic_ids(rules: Iterable[object]) -> set[str]:
    """The predicate ids of the :class:`DynamicRule` among ``rules``."""
    return {rule.id for rule in rules if isinstance(rule, DynamicRule)}


def predicate_id(*parts: str) -> str:
    """The stable id of a predicate, from where it was declared.

    Ids are ``policy:<channel>``, ``agent:<agent>:<channel>`` (a tool's own is the seed's
    ``<name>_approval`` or its ``binding_id``),
    ``agent:<agent>:tool:<tool>``, ``override:agent:<agent>:<channel>`` and
    ``override:tool:<tool>``. Names cannot contain ``:``, so ids never collide.
    """
    return ":".join(parts)


def rule_json(rule: RuleOrDefault, pid: str) -> str | dict[str, str] | dict[str, int]:
    """A rule as the runtime spec carries it: ``"never"``, ``"always"``, ``"default"``,
    ``{"approvers": n}`` or ``{"predicate": id}`` (``pid`` for a function; a dynamic rule's
    own id)."""
    if isinstance(rule, DynamicRule):
        return {"predicate": rule.id}
    if isinstance(rule, RequireApprovers):
        return "always" if rule.approvers == 1 else {"approvers": rule.approvers}
    return rule if isinstance(rule, str) else {"predicate": pid}


def rule_from_json(value: object) -> Rule:
    """A rule as the engine reports it (``"never"``, ``"always"``, ``{"approvers": n}``,
    ``{"predicate": id}``) as a rule value: a predicate comes back as a :class:`DynamicRule`
    of its id (the registry holds its function)."""
    if value in ("never", "always"):
        return "always" if value == "always" else "never"
    if isinstance(value, Mapping):
        if isinstance(value.get("approvers"), int):
            return RequireApprovers(value["approvers"])
        if isinstance(value.get("predicate"), str):
            return DynamicRule(value["predicate"])
    raise ExtensionMismatchError(
        f"the engine reported {value!r} as an approval rule, which this package cannot read; "
        "rebuild the extension with `make build`"
    )


def _is_function(rule: object) -> TypeGuard[Predicate]:
    return callable(rule) and not isinstance(rule, (str, DynamicRule, RequireApprovers))


@dataclasses.dataclass(frozen=True, slots=True)
class ApprovalPatch:
    """One agent's rules per channel; ``"default"`` inherits the level below."""

    plans: RuleOrDefault = "default"
    tools: RuleOrDefault = "default"

    def __post_init__(self) -> None:
        for channel in CHANNELS:
            # The seed's dict forms become rules here, so nothing downstream sees a dict.
            rule = check_rule(getattr(self, channel), f"approval {channel}", allow_default=True)
            object.__setattr__(self, channel, rule)

    @property
    def is_default(self) -> bool:
        return self.plans == "default" and self.tools == "default"

    def to_json(self, id_prefix: str) -> dict[str, Any]:
        """``{"plans": rule | "default", "tools": rule | "default"}``; predicates get ids
        ``<id_prefix>:<channel>``."""
        return {
            channel: rule_json(getattr(self, channel), predicate_id(id_prefix, channel))
            for channel in CHANNELS
        }

    def predicates(self, id_prefix: str) -> dict[str, Predicate]:
        found: dict[str, Predicate] = {}
        for channel in CHANNELS:
            rule = getattr(self, channel)
            if _is_function(rule):
                found[predicate_id(id_prefix, channel)] = rule
        return found


def as_patch(value: object, where: str) -> ApprovalPatch:
    """``"default"``, a rule (both channels) or ``{"plans": ..., "tools": ...}``."""
    if isinstance(value, ApprovalPatch):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(str(key) for key in value if key not in CHANNELS)
        if unknown:
            raise SpecError(
                f"{where}: unknown approval channel {', '.join(map(repr, unknown))}; "
                "the channels are 'plans' and 'tools'"
            )
        rules = {
            channel: check_rule(
                value.get(channel, "default"), f"{where} {channel}", allow_default=True
            )
            for channel in CHANNELS
        }
        return ApprovalPatch(**rules)
    rule = check_rule(value, where, allow_default=True)
    return ApprovalPatch(plans=rule, tools=rule)


@dataclasses.dataclass(frozen=True, slots=True)
class ApprovalPolicies:
    """The runtime floor: what every plan and tool needs unless something more specific says
    otherwise. By default plans need approval and tools do not."""

    plans: Rule = "always"
    tools: Rule = "never"

    def __post_init__(self) -> None:
        for channel in CHANNELS:
            rule = check_rule(getattr(self, channel), f"approval policy {channel}")
            object.__setattr__(self, channel, rule)

    def to_json(self) -> dict[str, Any]:
        return {
            channel: rule_json(getattr(self, channel), predicate_id("policy", channel))
            for channel in CHANNELS
        }

    def predicates(self) -> dict[str, Predicate]:
        return {
            predicate_id("policy", channel): rule
            for channel in CHANNELS
            if _is_function(rule := getattr(self, channel))
        }


_EMPTY: Final[Mapping[str, Any]] = types.MappingProxyType({})


class ApprovalOverrides:
    """Runtime-level rules that win over everything an agent or tool declares.

    ``agents`` maps an agent name to a rule (both channels) or ``{"plans": ..., "tools":
    ...}``. ``tools`` maps an agent name to ``{tool: rule}`` (the seed's form: that agent's
    calls of that tool), or a tool name to a rule (every agent's calls of it). Names are
    checked by ``define_runtime``; unknown agents are refused.
    """

    __slots__ = ("agent_tools", "agents", "tools")

    agents: Mapping[str, ApprovalPatch]
    tools: Mapping[str, Rule]
    agent_tools: Mapping[str, Mapping[str, Rule]]

    def __init__(
        self,
        agents: Mapping[str, object] | None = None,
        tools: Mapping[str, object] | None = None,
    ) -> None:
        patches = {
            name: as_patch(value, f"approval override of agent {name!r}")
            for name, value in _named(agents, "agents").items()
        }
        rules: dict[str, Rule] = {}
        per_agent: dict[str, Mapping[str, Rule]] = {}
        for name, value in _named(tools, "tools").items():
            if isinstance(value, Mapping) and not _is_rule_dict(value):
                per_agent[name] = types.MappingProxyType(
                    {
                        tool: check_rule(rule, f"approval override of {name!r} tool {tool!r}")  # type: ignore[misc]
                        for tool, rule in _named(value, f"tools[{name!r}]").items()
                    }
                )
            else:
                rules[name] = check_rule(value, f"approval override of tool {name!r}")  # type: ignore[assignment]
        object.__setattr__(self, "agents", types.MappingProxyType(patches))
        object.__setattr__(self, "tools", types.MappingProxyType(rules))
        object.__setattr__(self, "agent_tools", types.MappingProxyType(per_agent))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ApprovalOverrides is frozen; build a new one")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApprovalOverrides):
            return NotImplemented
        return (
            dict(self.agents) == dict(other.agents)
            and dict(self.tools) == dict(other.tools)
            and {k: dict(v) for k, v in self.agent_tools.items()}
            == {k: dict(v) for k, v in other.agent_tools.items()}
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        tools: dict[str, Any] = dict(self.tools)
        tools.update({agent: dict(rules) for agent, rules in self.agent_tools.items()})
        return f"ApprovalOverrides(agents={dict(self.agents)!r}, tools={tools!r})"

    @property
    def is_empty(self) -> bool:
        return not self.agents and not self.tools and not self.agent_tools

    def rules(self) -> list[Rule]:
        """Every rule it holds (for collecting dynamic ids)."""
        found: list[Rule] = []
        for patch in self.agents.values():
            found.extend(r for r in (patch.plans, patch.tools) if r != "default")
        found.extend(self.tools.values())
        for per_tool in self.agent_tools.values():
            found.extend(per_tool.values())
        return found

    def to_json(self) -> dict[str, Any]:
        """``{"agents", "tools"}``, and ``"agent_tools"`` when the seed's per-agent form is
        used."""
        document: dict[str, Any] = {
            "agents": {
                name: patch.to_json(predicate_id("override", "agent", name))
                for name, patch in self.agents.items()
            },
            "tools": {
                name: rule_json(rule, predicate_id("override", "tool", name))
                for name, rule in self.tools.items()
            },
        }
        if self.agent_tools:
            document["agent_tools"] = {
                agent: {
                    tool: rule_json(rule, predicate_id("override", "agent", agent, "tool", tool))
                    for tool, rule in per_tool.items()
                }
                for agent, per_tool in self.agent_tools.items()
            }
        return document

    def predicates(self) -> dict[str, Predicate]:
        found: dict[str, Predicate] = {}
        for name, patch in self.agents.items():
            found.update(patch.predicates(predicate_id("override", "agent", name)))
        for name, rule in self.tools.items():
            if _is_function(rule):
                found[predicate_id("override", "tool", name)] = rule
        for agent, per_tool in self.agent_tools.items():
            for tool, rule in per_tool.items():
                if _is_function(rule):
                    found[predicate_id("override", "agent", agent, "tool", tool)] = rule
        return found


def _is_rule_dict(value: Mapping[str, object]) -> bool:
    """The seed's dict form of a rule, as opposed to a mapping of tool names."""
    return set(value) <= _RULE_DICT_KEYS and value.get("kind") in ("never", "always", "dynamic")


def _named(value: Mapping[str, object] | None, field: str) -> Mapping[str, object]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise SpecError(
            f"ApprovalOverrides {field} must be a mapping of name to rule, got "
            f"{type(value).__name__}; pass e.g. {field}={{'name': 'always'}}"
        )
    for name in value:
        if not isinstance(name, str) or not name:
            raise SpecError(f"ApprovalOverrides {field}: name {name!r} must be a non-empty string")
    return value


NO_OVERRIDES: Final = ApprovalOverrides()


# --- predicates -----------------------------------------------------------------------------


class PredicateRegistry:
    """The predicates of one runtime spec, by stable id.

    Ids come from where a predicate was declared (see :func:`predicate_id`), so the same spec
    gives the same ids in every process. :meth:`evaluate` answers the engine's
    ``ApprovalCheck``; a predicate that raises, returns something other than a bool, or an id
    this registry does not know all mean approval is required: a gate fails closed.
    """

    __slots__ = ("_predicates",)

    def __init__(self, predicates: Mapping[str, Predicate] | None = None) -> None:
        self._predicates: dict[str, Predicate] = {}
        for pid, predicate in (predicates or {}).items():
            self.register(pid, predicate)

    def register(self, pid: str, predicate: Predicate) -> None:
        if not callable(predicate):
            raise SpecError(f"approval predicate {pid!r} must be a function (args, ctx) -> bool")
        kept = self._predicates.get(pid)
        if kept is not None and kept != predicate:
            raise SpecError(
                f"approval predicate {pid!r} is declared twice with different functions; "
                "declare it once"
            )
        self._predicates[pid] = predicate

    def update(self, predicates: Mapping[str, Predicate]) -> None:
        for pid, predicate in predicates.items():
            self.register(pid, predicate)

    def __contains__(self, pid: object) -> bool:
        return pid in self._predicates

    def __len__(self) -> int:
        return len(self._predicates)

    def __getitem__(self, pid: str) -> Predicate:
        return self._predicates[pid]

    def ids(self) -> list[str]:
        return sorted(self._predicates)

    def evaluate(self, pid: str, args: Any, ctx: Any) -> bool:
        """Is approval required? Calls the predicate; async predicates need :meth:`aevaluate`
        (called here, their coroutine is closed and approval is required)."""
        predicate = self._predicates.get(pid)
        if predicate is None:
            return True
        try:
            result = predicate(args, ctx)
        except Exception:
            return True
        if inspect.iscoroutine(result):
            result.close()
            return True
        return result if isinstance(result, bool) else True

    async def aevaluate(self, pid: str, args: Any, ctx: Any) -> bool:
        """:meth:`evaluate` for sync and ``async def`` predicates alike."""
        predicate = self._predicates.get(pid)
        if predicate is None:
            return True
        try:
            result = predicate(args, ctx)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            return True
        return result if isinstance(result, bool) else True

    def __repr__(self) -> str:
        return f"PredicateRegistry({self.ids()!r})"
