"""Loading the user's app: ``--app module:attr``.

Owns :func:`import_object` (``module:attr``, attr may be dotted; the current directory is
importable, as with uvicorn) and :func:`load_spec` (the attribute is a RuntimeSpec, or a
zero-argument callable returning one). Every service, Studio, ``flowai mcp`` and the eval
commands load their app through here, so the rules and error messages are the same
everywhere; that is why it is not in :mod:`flowai_harness.kafka` (Studio and the evals run
embedded, without the kafka extra).

Must not import Kafka, the runtime, the native engine or any service.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .errors import AppLoadError
from .specs import RuntimeSpec

__all__ = ["import_object", "load_spec"]


def import_object(reference: str, *, option: str = "--app") -> Any:
    """Import ``module:attr``; raises :class:`AppLoadError` naming ``option`` when it fails."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(
            f"{option} {reference!r}: write it as module:attribute, e.g. myapp:runtime"
        )
    # The app usually sits next to where the service is started.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"{option} {reference!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(
                f"{option} {reference!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return target


def load_spec(reference: str, *, option: str = "--app") -> RuntimeSpec:
    """The RuntimeSpec ``reference`` names (directly or through a zero-argument callable)."""
    target = import_object(reference, option=option)
    spec = target() if callable(target) and not isinstance(target, RuntimeSpec) else target
    if not isinstance(spec, RuntimeSpec):
        raise AppLoadError(
            f"{option} {reference!r} must name the spec from define_runtime(...) or a "
            f"function returning it, got {type(spec).__name__}"
        )
    return spec
