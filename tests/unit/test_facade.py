"""The facade a user reads: ``import flowai_harness`` gives the public API and nothing of the
Kafka side (no aiokafka, no redis, no services); the Kafka side lives in
``flowai_harness.kafka`` behind a guard that names the missing extra."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import flowai_harness


def _python(code: str) -> Any:
    """Run ``code`` in a fresh interpreter; what it prints last, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_importing_the_package_imports_nothing_of_kafka_or_the_services() -> None:
    loaded = _python(
        "import flowai_harness, sys, json; "
        "print(json.dumps(sorted(name for name in sys.modules "
        "if name.split('.')[0] in ('aiokafka', 'redis', 'services') "
        "or name.startswith('flowai_harness.kafka'))))"
    )
    assert loaded == []


def test_client_and_connect_load_when_first_used() -> None:
    loaded = _python(
        "import flowai_harness, sys, json; "
        "before = 'flowai_harness.kafka.client' in sys.modules; "
        "connect = flowai_harness.connect; "
        "print(json.dumps([before, 'flowai_harness.kafka.client' in sys.modules, "
        "connect.__module__]))"
    )
    assert loaded == [False, True, "flowai_harness.kafka.client"]
    for name in ("Client", "RemoteEventStream", "connect"):
        assert name in flowai_harness.__all__
    from flowai_harness.kafka.client import Client, connect

    assert flowai_harness.Client is Client
    assert flowai_harness.connect is connect


def test_every_public_name_resolves() -> None:
    for name in flowai_harness.__all__:
        assert getattr(flowai_harness, name) is not None, name


def test_the_kafka_subpackage_without_the_extra_says_what_to_install() -> None:
    # None in sys.modules is how Python marks a module as not importable.
    outcome = _python(
        "import sys, json; sys.modules['aiokafka'] = None; sys.modules['redis'] = None\n"
        "try:\n"
        "    import flowai_harness.kafka.bus\n"
        "except ImportError as exc:\n"
        "    print(json.dumps([type(exc).__name__, getattr(exc, 'code', None), str(exc)]))\n"
        "else:\n"
        "    print(json.dumps(None))"
    )
    assert outcome is not None, "flowai_harness.kafka imported without aiokafka and redis"
    kind, code, message = outcome
    assert (kind, code) == ("MissingExtraError", "EXTRA_MISSING")
    assert "aiokafka, redis are not installed" in message
    assert "pip install 'flowai-harness[kafka]'" in message


def test_the_embedded_runtime_works_without_the_kafka_extra() -> None:
    events = _python(
        "import asyncio, sys, json; sys.modules['aiokafka'] = None; sys.modules['redis'] = None\n"
        "from flowai_harness import TestingConfig, create_runtime, define_runtime, "
        "define_specialist\n"
        "agent = define_specialist('clerk', model='claude-haiku-4-5', prompt='Answer.')\n"
        "spec = define_runtime(('acme', 'v1'), agents=[agent], "
        "providers={'anthropic': {'apiKey': 'unused'}})\n"
        "runtime = create_runtime(spec, testing=TestingConfig(mock_response='hi'))\n"
        "async def main():\n"
        "    return [event['type'] async for event in runtime.query('hello', thread_id='t1')]\n"
        "print(json.dumps(asyncio.run(main())))"
    )
    assert "text" in events
    assert "finish" in events
