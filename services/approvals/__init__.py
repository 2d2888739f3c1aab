"""The approvals service: approval requests from Kafka, decisions from humans over HTTP.

``flowai serve approvals --app module:attr`` (or ``python -m services.approvals --app ...``)
runs :func:`main`. Modules: :mod:`.pending` (the approvals folded from the topics),
:mod:`.policy` (who may decide; the signing secret), :mod:`.claims` (first decision wins, in
Redis), :mod:`.desk` (listing and deciding), :mod:`.http` (the aiohttp API), :mod:`.service`
(the Kafka loop and the server), :mod:`.command` (the command line).

Must not import another service (runtime, tools) or drive the engine.
"""

from .command import main

__all__ = ["main"]
