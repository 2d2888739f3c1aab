"""The Acme agents in Studio: `flowai studio --app examples.acme.studio:runtime`.

`runtime` is a runtime factory: Studio gives it the interpreter it was asked for
(`--interpreter`, default scripted) and where to keep run logs (`--log-path`). The orders the
dispatcher places are kept in ORDERS for the life of the process.
"""

from __future__ import annotations

import os
from typing import Any

from flowai_harness import TestingConfig, create_runtime
from flowai_harness.runtime import Runtime

from .app import build_spec, make_dispatcher

ORDERS: list[dict[str, Any]] = []


def runtime(
    log_path: str | os.PathLike[str] | None = None,
    interpreter: Any = "scripted",
    testing: TestingConfig | None = None,
) -> Runtime:
    return create_runtime(
        build_spec(),
        interpreter=interpreter,
        testing=testing,
        action_dispatcher=make_dispatcher(ORDERS),
        log_path=log_path,
    )
