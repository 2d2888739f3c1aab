"""``python -m services.runtime --app module:attr``: the same as ``flowai serve runtime``."""

from .command import main

raise SystemExit(main(prog="python -m services.runtime"))
