"""Fixtures for the connected tests: the real Kafka and Redis started by scripts/services.

- ``kafka_bootstrap`` / ``redis_url``: from ``FLOWAI_KAFKA_BOOTSTRAP`` / ``FLOWAI_REDIS_URL``;
  when missing the tests are skipped, unless ``CI`` is set: then they fail.
- ``prefix``: a fresh topic prefix (``t<hex>``, also the Redis key namespace) per test, so
  tests never see each other's messages; its topics and keys are deleted afterwards.
- ``redis``: an asyncio Redis client (bytes replies).
- ``single_broker``: whether that Kafka is one broker. The run log cannot be replicated on
  one, so the fixtures say so explicitly: ``service_env`` (the environment every spawned
  service gets) sets ``FLOWAI_ALLOW_UNREPLICATED`` to 1 on one broker and to 0 otherwise,
  and ``topics`` passes ``allow_unreplicated`` the same way. A test module on another
  cluster overrides ``service_env``.
- ``three_brokers`` (session): a three-broker cluster and a Redis of the tests' own
  (:class:`cluster.Cluster`), started on first use and stopped at the end of the session,
  for the tests marked ``brokers3``; they take the same skip rule as the others.
- ``spawn(name, *python_args, env=...)``: starts ``python <args>`` from the repository root
  with tests/connected importable (the test apps) and ``service_env`` (then ``env``) in its
  environment, output to a log; every process is killed (kill -9) at teardown.
- ``topics`` (every topic of ``prefix`` created, PARTITIONS each), ``run_log`` (a follower of
  the run log, dead letters and tool invocations) and ``tool_responder`` (a minimal in-test
  tool worker) for the runtime-service tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from cluster import Cluster
from kafka_helpers import HERE, PARTITIONS, REPO, RunLog, ToolResponder
from processes import Service
from redis.asyncio import Redis

from flowai_harness import connect
from flowai_harness.kafka import bus, decision_auth
from flowai_harness.kafka.client import Client


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    message = (
        f"{name} is not set: start Kafka and Redis with `make services-up`, then "
        "`set -a; . var/services/env; set +a`"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _required_env("FLOWAI_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _required_env("FLOWAI_REDIS_URL")


@pytest.fixture(scope="session")
def single_broker(kafka_bootstrap: str) -> bool:
    return broker_count(kafka_bootstrap) == 1


def broker_count(bootstrap: str) -> int:
    async def count() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return len((await admin.describe_cluster())["brokers"])
        finally:
            await admin.close()

    return asyncio.run(count())


@pytest.fixture(scope="session")
def three_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _required_env("FLOWAI_KAFKA_BOOTSTRAP")  # the services are up: the same skip rule
    cluster = Cluster(tmp_path_factory.mktemp("three-brokers"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def decision_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A deciding key pair for the session: the approvals service (and this process's
    clients, through FLOWAI_DECISION_KEY) sign decisions with the private key; the runtimes
    trust the public one."""
    folder = tmp_path_factory.mktemp("decision-keys")
    private, public = decision_auth.generate_keys()
    (folder / "decision-key.pem").write_bytes(private)
    (folder / "decision-key.pub.pem").write_bytes(public)
    return folder / "decision-key.pem", folder / "decision-key.pub.pem"


@pytest.fixture(autouse=True)
def deciding_client(decision_keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients these tests connect sign their decisions with the session's key (only
    while a connected test runs: other tests see the environment as it was)."""
    monkeypatch.setenv("FLOWAI_DECISION_KEY", str(decision_keys[0]))


@pytest.fixture
def service_env(single_broker: bool, decision_keys: tuple[Path, Path]) -> dict[str, str]:
    """What every spawned service gets in its environment on this cluster: whether the run
    log may have one replica, and the decision keys (the runtime trusts the public key, the
    approvals service signs with the private one)."""
    private, public = decision_keys
    return {
        "FLOWAI_ALLOW_UNREPLICATED": "1" if single_broker else "0",
        "FLOWAI_DECISION_PUBLIC_KEYS": str(public),
        "FLOWAI_DECISION_KEY": str(private),
    }


@pytest.fixture
async def prefix(kafka_bootstrap: str) -> AsyncIterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        mine = [topic for topic in bus.Topics(name).all() if topic in existing]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@pytest.fixture
async def redis(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=10_000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def spawn(tmp_path: Path, service_env: dict[str, str]) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(name: str, *args: str, env: Mapping[str, str] | None = None) -> Service:
        log = tmp_path / f"{name}-{len(started)}.log"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO)]),
            "PYTHONUNBUFFERED": "1",
            # A crash in native code prints its Python stack instead of vanishing.
            "PYTHONFAULTHANDLER": "1",
            **service_env,
            **(env or {}),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        service = Service(name, process, log)
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


@pytest.fixture
async def topics(kafka_bootstrap: str, prefix: str, single_broker: bool) -> bus.Topics:
    names = bus.Topics(prefix)
    await bus.ensure_topics(
        kafka_bootstrap, names, partitions=PARTITIONS, allow_unreplicated=single_broker
    )
    return names


@pytest.fixture
async def run_log(kafka_bootstrap: str, topics: bus.Topics) -> AsyncIterator[RunLog]:
    log = RunLog(kafka_bootstrap, topics)
    await log.start()
    yield log
    await log.close()


@pytest.fixture
async def client(kafka_bootstrap: str, topics: bus.Topics) -> AsyncIterator[Client]:
    """A client of tenant acme on this test's topics."""
    async with connect(kafka_bootstrap, tenant="acme", topic_prefix=topics.prefix) as acme:
        yield acme


@pytest.fixture
async def tool_responder(kafka_bootstrap: str, topics: bus.Topics) -> AsyncIterator[ToolResponder]:
    sys.path.insert(0, str(HERE))
    try:
        from flowai_test_app import spec
    finally:
        sys.path.remove(str(HERE))
    responder = ToolResponder(kafka_bootstrap, topics, spec)
    await responder.start()
    yield responder
    await responder.close()
