"""``python -m services.approvals --app module:attr``: the same as ``flowai serve approvals``."""

from .command import main

raise SystemExit(main(prog="python -m services.approvals"))
