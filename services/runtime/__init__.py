"""The runtime service: Kafka inputs -> the embedded engine -> run log + effects, transactionally.

Run it with ``python -m services.runtime --app module:attr`` or ``flowai serve runtime``
(:func:`main`). Modules: :mod:`.service` (the transactional loop, rebuild on assignment; what
it guarantees and how), :mod:`.command` (the command line).

Must not import another service (tools, approvals).
"""

from .command import main
from .service import RuntimeService, ServiceConfig

__all__ = ["RuntimeService", "ServiceConfig", "main"]
