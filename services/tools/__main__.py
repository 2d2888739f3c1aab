"""``python -m services.tools --app module:attr``: the same as ``flowai serve tools``."""

from .command import main

raise SystemExit(main(prog="python -m services.tools"))
