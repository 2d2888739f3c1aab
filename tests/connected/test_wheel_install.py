"""The built wheel runs the three services anywhere: no checkout needed.

Builds the wheel with maturin, installs it with the ``kafka`` extra in a fresh venv in a
temporary folder (outside the repository), and starts ``flowai serve runtime``, ``tools``
and ``approvals`` from that venv, configured only through ``FLOWAI_*`` environment
variables, with nothing of the repository on their path: the app is a module written next
to the venv. One query then goes through all three: the runtime asks for a gated tool, the
approvals service takes the decision over HTTP and signs it, the tool worker runs the tool,
and the run finishes.

Slow (a release build and a pip install): one test, and the wheel is built once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kafka_helpers import PARTITIONS, REPO
from processes import Service, until

from flowai_harness import connect
from flowai_harness.kafka import approvals_http, bus

pytestmark = pytest.mark.connected

APP = '''
"""The app the installed services load: one clerk, one gated tool."""

from typing import Any

from flowai_harness import define_runtime, define_specialist, define_tool


@define_tool("pay", {"amount": int}, description="Pay an amount.", approval="always")
def pay(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"paid": args["amount"]}


clerk = define_specialist("clerk", model="claude-haiku-4-5", prompt="Pay.", tools=[pay])
spec = define_runtime(("acme", "v1"), agents=[clerk], providers={"anthropic": {}})
'''


def _run(args: list[str], **kwargs: Any) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def build_wheel(out: Path) -> Path:
    """The wheel ``maturin build`` makes of this checkout (``FLOWAI_TEST_WHEEL=path`` reuses
    one built already, when iterating on this test)."""
    given = os.environ.get("FLOWAI_TEST_WHEEL")
    if given:
        return Path(given)
    maturin = Path(sys.executable).with_name("maturin")
    _run([str(maturin), "build", "--release", "--quiet", "--out", str(out)], cwd=REPO)
    [wheel] = out.glob("flowai_harness-*.whl")
    return wheel


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.timeout(1800)
async def test_the_installed_wheel_serves_a_query_through_the_three_services(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    redis_url: str,
    topics: bus.Topics,
    decision_keys: tuple[Path, Path],
    single_broker: bool,
) -> None:
    place = tmp_path_factory.mktemp("installed")
    assert REPO not in place.parents
    wheel = build_wheel(place / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    for service in ("runtime", "tools", "approvals"):
        assert f"services/{service}/__init__.py" in names
    # Every module of the services, as the repository has them (new ones included).
    shipped = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "services").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert shipped <= names, sorted(shipped - names)
    # A namespace package: another distribution's `services` namespace is not overwritten.
    assert "services/__init__.py" not in names

    venv = place / "venv"
    python = shutil.which("python3") or sys.executable
    _run([python, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel}[kafka]"], cwd=place)
    app_dir = place / "app"
    app_dir.mkdir()
    (app_dir / "wheel_app.py").write_text(textwrap.dedent(APP))

    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLOWAI_", "PYTHON", "VIRTUAL_ENV"))
    }
    environment.update(
        PYTHONPATH=str(app_dir),
        PYTHONUNBUFFERED="1",
        FLOWAI_APP="wheel_app:spec",
        FLOWAI_KAFKA_BOOTSTRAP=kafka_bootstrap,
        FLOWAI_REDIS_URL=redis_url,
        FLOWAI_TOPIC_PREFIX=topics.prefix,
        FLOWAI_PARTITIONS=str(PARTITIONS),
        FLOWAI_ALLOW_UNREPLICATED="1" if single_broker else "0",
        FLOWAI_DECISION_PUBLIC_KEYS=str(decision_keys[1]),
        FLOWAI_DECISION_KEY=str(decision_keys[0]),
    )
    # Imported from the venv, not from a checkout.
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import json, flowai_harness, services.runtime, services.tools, "
            "services.approvals as a; print(json.dumps([flowai_harness.__file__, a.__file__]))",
        ],
        cwd=app_dir,
        env=environment,
    )
    for path in json.loads(where):
        assert Path(path).is_relative_to(venv), path

    port = free_port()
    started: list[Service] = []

    def serve(name: str, *args: str, **env: str) -> Service:
        log = place / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(venv / "bin" / "flowai"), "serve", name, *args],
                cwd=app_dir,
                env={**environment, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        service = Service(name, process, log)
        started.append(service)
        return service

    try:
        serve("runtime")
        serve("tools")
        serve(
            "approvals",
            FLOWAI_APPROVALS_HTTP=f"127.0.0.1:{port}",
            FLOWAI_APPROVALS_ALLOW_UNAUTHENTICATED="1",
        )
        base = f"http://127.0.0.1:{port}"

        async def approvals_up() -> bool:
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as got:
                    return got.status == 200
            except aiohttp.ClientError:
                return False

        await until(approvals_up, within=60, what="the approvals service", services=started)
        events: list[dict[str, Any]] = []
        prompt = json.dumps({"script": [{"tool": "pay", "args": {"amount": 3}}]})
        async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as client:
            async with asyncio.timeout(120):
                async for event in client.query(prompt, "wheel-thread", agent="clerk"):
                    events.append(event)
                    if event["type"] == "approval-required":
                        await approvals_http.decide(
                            base, "acme", event["data"]["id"], "approve", approver="alice"
                        )
        types = [event["type"] for event in events]
        assert "approval-required" in types
        results = [e for e in events if e["type"] == "tool-invocation" and e["state"] == "result"]
        assert [result["result"] for result in results] == [{"paid": 3}], types
        assert types[-1] == "tool-agent", types
        assert all(service.alive() for service in started), "\n".join(
            service.tail() for service in started
        )
    finally:
        for service in started:
            service.stop_gracefully()
