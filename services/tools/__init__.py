"""The tool worker service: tool invocations and plan steps from Kafka, run effectively once.

``flowai serve tools --app module:attr`` (or ``python -m services.tools --app ...``) runs
:func:`main`. Modules: :mod:`.app` (loading the user's app), :mod:`.claims` (Redis claims and
recorded results), :mod:`.offsets` (commit positions), :mod:`.worker` (one message),
:mod:`.service` (the Kafka loop), :mod:`.command` (the command line).

Must not import another service (runtime, approvals) or drive the engine.
"""

from .command import main

__all__ = ["main"]
