"""The services' settings: every command line option is also a ``FLOWAI_*`` environment variable.

Owns :func:`bind_environment`, which a service's ``command.py`` calls on its finished
argument parser, and :func:`parse`, which builds, binds and parses in one step. For each
option it:

- names its environment variable: the one its help already names (``--bootstrap`` reads
  ``FLOWAI_KAFKA_BOOTSTRAP``), else ``FLOWAI_`` and the option's name in capitals
  (``--tool-timeout`` -> ``FLOWAI_TOOL_TIMEOUT``), and says so in ``--help``;
- when the variable is set, checks its value as the option would (its type, its choices, a
  flag's on/off words) and makes it the default, so the command line still wins;
- refuses a value that does not fit with a :class:`~flowai_harness.errors.SettingError`
  naming the variable, the option and what it takes, before the service starts anything.

Also owns the value checkers the services' numeric options use (:func:`positive_int`,
:func:`non_negative_int`, :func:`positive_float`, :func:`non_negative_float`), so a zero
concurrency or a negative timeout fails at start with the option's name instead of deep
inside a loop.

Must not import a service, the runtime or the native engine.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from .errors import SettingError

__all__ = [
    "ENV_PREFIX",
    "bind_environment",
    "env_name",
    "log_level",
    "non_negative_float",
    "non_negative_int",
    "parse",
    "positive_float",
    "positive_int",
]

ENV_PREFIX: Final = "FLOWAI_"
# "env FLOWAI_X" or "env SLACK_X" in an option's help names the variable it already reads.
_NAMED: Final = re.compile(r"\benv ([A-Z][A-Z0-9_]*)")
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def positive_int(text: str) -> int:
    """An integer above zero (an argparse ``type``)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of zero or more (an argparse ``type``; 0 usually turns a feature off)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of 0 or more, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A number of seconds (or a ratio) above zero (an argparse ``type``)."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A number of seconds, zero allowed (an argparse ``type``)."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {text!r}")
    return value


def log_level(text: str) -> str:
    """A logging level name (DEBUG, INFO, WARNING, ERROR, CRITICAL), any case."""
    level = text.strip().upper()
    if level not in _LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(_LEVELS)}, got {text!r}")
    return level


_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Checkers for the options every service shares (flowai_harness.kafka.bus adds them untyped).
_SHARED_TYPES: Final[dict[str, Callable[[str], Any]]] = {"log_level": log_level}


def env_name(action: argparse.Action) -> str | None:
    """The environment variable of an option (None for positionals and ``--help``)."""
    if not action.option_strings or isinstance(action, argparse._HelpAction):
        return None
    named = _NAMED.search(action.help or "")
    if named is not None:
        return named.group(1)
    longest = max(action.option_strings, key=len)
    # ``--no-create-topics`` is FLOWAI_NO_CREATE_TOPICS=1: the option's words, as written.
    stem = longest.lstrip("-")
    return ENV_PREFIX + stem.upper().replace("-", "_")


def bind_environment(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make every option of ``parser`` readable from its environment variable (see the
    module's docstring); returns the parser. Raises :class:`SettingError` for a set
    variable whose value the option would refuse."""
    for action in parser._actions:
        name = env_name(action)
        if name is None:
            continue
        if action.type is None and action.dest in _SHARED_TYPES:
            action.type = _SHARED_TYPES[action.dest]
        already = _NAMED.search(action.help or "") is not None
        if not already and action.help != argparse.SUPPRESS:
            note = f"env {name}"
            action.help = f"{action.help} ({note})" if action.help else note
        raw = os.environ.get(name)
        if raw is None or raw == "":
            continue
        value = _convert(action, name, raw)
        if already:
            # The option's own code read the variable already; checked here all the same,
            # so a bad value is named before anything starts.
            continue
        action.default = value
        action.required = False
    return parser


def parse(
    build: Callable[[str], argparse.ArgumentParser], argv: Sequence[str] | None, prog: str
) -> argparse.Namespace:
    """``build(prog)``, bound to the environment, then parsed (``--help`` exits as usual)."""
    return bind_environment(build(prog)).parse_args(argv)


def _option(action: argparse.Action) -> str:
    return "/".join(action.option_strings)


def _convert(action: argparse.Action, name: str, raw: str) -> Any:
    option = _option(action)
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        word = raw.strip().lower()
        if word in _TRUE:
            return isinstance(action, argparse._StoreTrueAction)
        if word in _FALSE:
            return not isinstance(action, argparse._StoreTrueAction)
        raise SettingError(
            f"{name}={raw!r} ({option}) is not a flag: use 1 (on) or 0 (off)",
            details={"variable": name, "option": option, "value": raw},
        )
    if isinstance(action, argparse._AppendAction):
        return [_one(action, name, option, item.strip()) for item in raw.split(",") if item.strip()]
    return _one(action, name, option, raw)


def _one(action: argparse.Action, name: str, option: str, raw: str) -> Any:
    convert = action.type if callable(action.type) else None
    try:
        value = convert(raw) if convert is not None else raw
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        kind = getattr(convert, "__name__", "value")
        why = str(exc) if isinstance(exc, argparse.ArgumentTypeError) else f"not a valid {kind}"
        raise SettingError(
            f"{name}={raw!r} ({option}): {why}",
            details={"variable": name, "option": option, "value": raw},
        ) from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(str(choice) for choice in action.choices)
        raise SettingError(
            f"{name}={raw!r} ({option}): must be one of {choices}",
            details={"variable": name, "option": option, "value": raw},
        )
    return value
