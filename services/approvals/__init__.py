"""The approvals service: approval requests from Kafka, decisions from humans over HTTP and
Slack, signed, back to Kafka.

``flowai serve approvals --app module:attr`` (or ``python -m services.approvals --app ...``)
runs :func:`main`. Modules: :mod:`.pending` (the approvals folded from the topics),
:mod:`.policy` (who may decide, the tenants' API secrets, Slack channels), :mod:`.desk`
(listing and deciding: publish first, the topic decides), :mod:`.http` (the aiohttp API),
:mod:`.slack` (posting to Slack and its clicks), :mod:`.postings` (which Slack message shows
which approval, in Redis), :mod:`.service` (the Kafka loop and the server), :mod:`.command`
(the command line).

Must not import another service (runtime, tools) or drive the engine.
"""

from .command import main

__all__ = ["main"]
