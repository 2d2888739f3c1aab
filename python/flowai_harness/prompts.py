"""Layered prompts: an agent's instructions in fixed sections, with a cache key.

Owns :func:`layered_prompt` and :class:`LayeredPrompt` (sections ``# Identity``,
``# Communication``, ``# Operational Rules``, ``# Tools``, ``# Domain Knowledge``, ``# Safety``,
``# Output Format``, ``# Examples``, always in that order, empty ones left out), the Markdown
tool table, and :func:`render_agent_prompt`, which ``define_runtime`` uses to put each agent's
own tools and their effective approval rules into its prompt.

The text is deterministic (structured values as sorted JSON, tools sorted by name), so equal
inputs give equal ``cache_key`` values and provider prompt caches keep hitting. Must not import
specs, the runtime or the native extension.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from .approvals import RuleOrDefault, describe_rule
from .errors import SpecError
from .references import to_json_safe
from .tools import ToolDefinition

__all__ = ["SECTIONS", "LayeredPrompt", "layered_prompt", "render_agent_prompt", "tool_table"]

# (keyword, heading) in the order the sections appear.
SECTIONS: Final = (
    ("identity", "Identity"),
    ("communication", "Communication"),
    ("operational_rules", "Operational Rules"),
    ("tools", "Tools"),
    ("domain_knowledge", "Domain Knowledge"),
    ("safety", "Safety"),
    ("output_format", "Output Format"),
    ("examples", "Examples"),
)
_ORDER: Final = {heading: index for index, (_, heading) in enumerate(SECTIONS)}
_TOOLS: Final = "Tools"


@dataclasses.dataclass(frozen=True, slots=True)
class LayeredPrompt:
    """A prompt built by :func:`layered_prompt`: its ``text`` and ``cache_key`` (the SHA-256
    hex of the text). ``sections`` keeps the (heading, body) pairs so a section can be
    replaced."""

    text: str
    cache_key: str
    sections: tuple[tuple[str, str], ...] = dataclasses.field(default=(), repr=False)

    @classmethod
    def from_sections(cls, sections: Iterable[tuple[str, str]]) -> LayeredPrompt:
        ordered = tuple(sorted(sections, key=lambda section: _ORDER[section[0]]))
        text = "\n\n".join(f"# {heading}\n{body}" for heading, body in ordered)
        return cls(text=text, cache_key=_sha256(text), sections=ordered)

    def with_section(self, heading: str, body: str) -> LayeredPrompt:
        """A copy with section ``heading`` set to ``body`` (left out when ``body`` is empty)."""
        if heading not in _ORDER:
            raise SpecError(f"layered prompt: no section {heading!r}; use one of {list(_ORDER)}")
        kept = [section for section in self.sections if section[0] != heading]
        if body.strip():
            kept.append((heading, body))
        return LayeredPrompt.from_sections(kept)

    def __str__(self) -> str:
        return self.text


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def layered_prompt(
    *,
    identity: Any,
    communication: Any = None,
    operational_rules: Any = None,
    tools: Any = None,
    domain_knowledge: Any = None,
    safety: Any = None,
    output_format: Any = None,
    examples: Any = None,
) -> LayeredPrompt:
    """Build a prompt from fixed sections; ``identity`` is required.

    A string is used as it is; a mapping, list or Pydantic value becomes indented JSON with
    sorted keys; ``tools`` (ToolDefinitions or ``{"name", "description", "approval"}``
    mappings) becomes a name-sorted table ``| tool | description | approval |``. Empty
    sections are left out.
    """
    values = {
        "identity": identity,
        "communication": communication,
        "operational_rules": operational_rules,
        "tools": tools,
        "domain_knowledge": domain_knowledge,
        "safety": safety,
        "output_format": output_format,
        "examples": examples,
    }
    sections = []
    for keyword, heading in SECTIONS:
        value = values[keyword]
        body = tool_table(value) if keyword == "tools" else _body(keyword, value)
        if body:
            sections.append((heading, body))
    if not sections or sections[0][0] != "Identity":
        raise SpecError(
            "layered_prompt: identity must not be empty; say who the agent is, e.g. "
            "identity='You are the planner of Acme's inventory team.'"
        )
    return LayeredPrompt.from_sections(sections)


def _body(keyword: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip("\n").rstrip() if value.strip() else ""
    try:
        safe = to_json_safe(value)
    except TypeError as exc:
        raise SpecError(
            f"layered_prompt: {keyword} must be a string or JSON-like data (mapping, list, "
            f"Pydantic value), got {type(value).__name__}: {exc}"
        ) from None
    if safe in ({}, []):
        return ""
    return orjson.dumps(safe, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


# --- tool tables ----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _row(tool: object, approvals: Mapping[str, RuleOrDefault]) -> tuple[str, str, str]:
    if isinstance(tool, ToolDefinition):
        name, description, rule = tool.name, tool.description, tool.approval
    elif isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
        name = tool["name"]
        description = str(tool.get("description") or "")
        rule = tool.get("approval", "default")
    else:
        raise SpecError(
            f"tool table: expected a ToolDefinition or a mapping with a 'name', got {tool!r}"
        )
    return name, description, describe_rule(approvals.get(name, rule))


def tool_table(tools: Any, approvals: Mapping[str, RuleOrDefault] | None = None) -> str:
    """A Markdown table of tools sorted by name: ``| tool | description | approval |``.

    ``approvals`` (tool name -> rule) replaces a tool's own rule, e.g. with the rule that
    actually applies to one agent; predicates show as ``dynamic``. A string is returned as is.
    """
    if tools is None:
        return ""
    if isinstance(tools, str):
        return tools.strip("\n").rstrip() if tools.strip() else ""
    if isinstance(tools, (Mapping, ToolDefinition)) or not isinstance(tools, Iterable):
        raise SpecError(
            "layered_prompt: tools must be a list of ToolDefinitions or "
            f"{{'name', 'description', 'approval'}} mappings, got {type(tools).__name__}"
        )
    rows = sorted(_row(tool, approvals or {}) for tool in tools)
    if not rows:
        return ""
    lines = ["| tool | description | approval |", "| --- | --- | --- |"]
    lines.extend(f"| {_cell(n)} | {_cell(d)} | {_cell(a)} |" for n, d, a in rows)
    return "\n".join(lines)


_TOOLS_HEADING: Final = re.compile(r"^# Tools[ \t]*$", re.MULTILINE)
_NEXT_HEADING: Final = re.compile(r"^# \S", re.MULTILINE)


def render_agent_prompt(
    prompt: str | LayeredPrompt,
    tools: Iterable[ToolDefinition | Mapping[str, Any]],
    approvals: Mapping[str, RuleOrDefault] | None = None,
) -> str:
    """The prompt text with its ``# Tools`` section showing ``tools`` (with the rules in
    ``approvals``, by tool name).

    A LayeredPrompt gets the section at its fixed place; a string gets its ``# Tools``
    section replaced, or one appended. Without tools the section is left out.
    """
    table = tool_table(list(tools), approvals)
    if isinstance(prompt, LayeredPrompt):
        if prompt.sections:
            return prompt.with_section(_TOOLS, table).text
        prompt = prompt.text
    heading = _TOOLS_HEADING.search(prompt)
    if heading is None:
        return f"{prompt.rstrip()}\n\n# {_TOOLS}\n{table}" if table else prompt
    following = _NEXT_HEADING.search(prompt, heading.end())
    end = following.start() if following else len(prompt)
    before, after = prompt[: heading.start()].rstrip(), prompt[end:].lstrip("\n")
    section = f"# {_TOOLS}\n{table}" if table else ""
    return "\n\n".join(part for part in (before, section, after.rstrip()) if part)
