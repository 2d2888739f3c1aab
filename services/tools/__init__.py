"""The worker service: tool invocations, plan steps and model requests from Kafka, each
answered effectively once.

``flowai serve tools --app module:attr [--role tools|models|all]`` (or ``python -m
services.tools ...``; ``flowai serve models`` is ``--role models``) runs :func:`main`.
Modules: :mod:`.app` (loading the user's app), :mod:`.claims` (Redis claims and recorded
results), :mod:`.offsets` (commit positions), :mod:`.once` (effectively once around one
message), :mod:`.worker` (a tool call or plan step), :mod:`.models` (a model call),
:mod:`.service` (the Kafka loops), :mod:`.command` (the command line).

Must not import another service (runtime, approvals) or drive the engine.
"""

from .command import main

__all__ = ["main"]
