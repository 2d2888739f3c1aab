"""What ``flowai eval run SUITE`` runs: an :class:`EvalSuite`, found by its reference.

Owns :class:`EvalSuite` (a runtime, an eval request and how to judge the run) and
:func:`load_suite`. A SUITE is one of

- ``module:attr`` naming an :class:`EvalSuite`, or a zero-argument function (sync or async)
  returning one; its ``runtime`` is a :class:`~flowai_harness.Runtime` or such a function;
- a JSON file holding an eval request (the seed's JSON shape, as ``EvalRequest.to_wire()``
  writes it), run on the runtime ``--runtime module:attr`` names;
- a replay suite file written by ``flowai eval from-log`` (``"kind":
  "flowai.replay-suite/v1"``), re-run against the spec ``--app module:attr`` names (the
  changed code and prompts; see :mod:`.replay`).

Must not import the runtime or the native extension (a suite names its runtime).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ..apps import import_object
from ..errors import UsageError
from .models import EvalRequest, validated

__all__ = ["EvalSuite", "load_suite", "resolve"]


@dataclasses.dataclass(frozen=True, slots=True)
class EvalSuite:
    """An eval to run from the command line.

    - ``runtime``: the runtime the samples run on (or a zero-argument function, sync or
      async, returning it); ``flowai eval run`` closes it when done.
    - ``request``: the eval request (a model, a mapping or JSON text).
    - ``approval_policy``: ``"approve"`` (default), ``"reject"`` or ``"fail"``.
    - ``min_pass_rate``: the share of test cases that must reach the config's
      ``pass_threshold`` for the run to pass (exit 0); default all of them.
    """

    runtime: Any
    request: EvalRequest | Mapping[str, Any] | str
    approval_policy: str | None = None
    min_pass_rate: float = 1.0
    name: str | None = None


async def resolve(value: Any) -> Any:
    """``value``, or what it returns when it is a zero-argument function (awaited if async)."""
    if callable(value) and not hasattr(value, "stream_eval"):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


def _request_file(reference: str, runtime: str | None) -> EvalSuite | None:
    """The suite of an eval request file, or None when ``reference`` is not a file."""
    path = Path(reference)
    if not (reference.endswith(".json") or path.is_file()):
        return None
    if not path.is_file():
        raise UsageError(f"suite file {reference!r} does not exist")
    try:
        body = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise UsageError(f"suite file {reference!r} is not JSON: {error}") from None
    if runtime is None:
        raise UsageError(
            f"{reference} is an eval request; name the runtime it runs on with "
            "--runtime module:attr (a Runtime, or a function returning one)"
        )
    request = validated(EvalRequest, body, what=f"the eval request in {reference}")
    return EvalSuite(runtime=import_object(runtime, option="--runtime"), request=request)


async def load_suite(reference: str, *, runtime: str | None = None) -> EvalSuite:
    """The suite ``reference`` names (see the module docstring); ``runtime`` is the
    ``--runtime module:attr`` a request file runs on."""
    from_file = _request_file(reference, runtime)
    if from_file is not None:
        return from_file
    suite = await resolve(import_object(reference, option="SUITE"))
    if not isinstance(suite, EvalSuite):
        raise UsageError(
            f"SUITE {reference!r} must name an EvalSuite(runtime=..., request=...) or a "
            f"function returning one, got {type(suite).__name__}"
        )
    return suite
