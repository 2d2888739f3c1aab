"""flowai-harness on Kafka: what the services, the client and the operators' commands share.

Owns nothing itself; its modules are :mod:`~flowai_harness.kafka.bus` (topic names, keys,
partitions, producers and consumers, dead letters), :mod:`~flowai_harness.kafka.client` (the
runtime's API over Kafka: ``flowai_harness.connect``), :mod:`~flowai_harness.kafka.logread`
(the run-log reader), :mod:`~flowai_harness.kafka.deadletters` (``flowai dead-letters``),
:mod:`~flowai_harness.kafka.approvals_http` (the approvals API's requests and signatures),
:mod:`~flowai_harness.kafka.decision_auth` (signed approval decisions),
:mod:`~flowai_harness.kafka.telemetry`, :mod:`~flowai_harness.kafka.metrics` and
:mod:`~flowai_harness.kafka.observe` (traces, metrics, health and logs of the services), and
:mod:`~flowai_harness.kafka.asyncapi` (the AsyncAPI document of the topics).

The message models both modes use stay in :mod:`flowai_harness.messages`. Everything here
needs the ``kafka`` extra: importing this package without it raises
:class:`~flowai_harness.errors.MissingExtraError` (an ``ImportError``) naming what is missing
and how to install it, instead of a bare ``ModuleNotFoundError`` from deep inside a module.
Must not import the runtime, the native engine or any service.
"""

from __future__ import annotations

from importlib.util import find_spec

from ..errors import MissingExtraError

# The import names of the kafka extra's packages these modules use (pyproject.toml).
_REQUIRES = ("aiokafka", "redis", "aiohttp", "cryptography", "prometheus_client")

_missing = [name for name in _REQUIRES if find_spec(name) is None]
if _missing:
    raise MissingExtraError(
        f"flowai_harness.kafka needs the kafka extra, but {', '.join(_missing)} "
        f"{'is' if len(_missing) == 1 else 'are'} not installed: "
        "pip install 'flowai-harness[kafka]'",
        details={"missing": _missing},
    )
