"""The Acme example as the seed's Studio app (``define_app``), for the entry-point tests."""

from __future__ import annotations

from examples.acme.studio import runtime

from flowai_harness.studio import define_app

app = define_app(name="acme", runtime_factory=runtime, description="Acme restocking")
