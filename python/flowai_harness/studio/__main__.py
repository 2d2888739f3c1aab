"""``python -m flowai_harness.studio``: the same as ``flowai studio``."""

from .command import main

raise SystemExit(main())
