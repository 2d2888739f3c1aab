"""compose.yaml and the Dockerfile, checked without Docker (there is no engine here).

The YAML must parse, name the right images and wire the services to Kafka and Redis on the
compose network; the service command lines must parse with the services' own argument
parsers, in the environment compose gives them; the tool workers must be scalable (no fixed
name, no host port); Redis must persist the tool ledger (AOF, fsync every second); the
group members (runtime, tool workers) must have a stable instance id by default; the one
Kafka node must be declared as such (the run log cannot be replicated on it).
"""

from __future__ import annotations

import re
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from services.approvals.command import build_parser as approvals_parser
from services.runtime.command import parser as runtime_parser
from services.tools.command import build_parser as tools_parser

from flowai_harness.kafka import bus

REPO = Path(__file__).resolve().parents[2]


def interpolate(value: Any) -> Any:
    """Apply compose's ``${NAME:-default}`` with nothing set in the environment."""
    if isinstance(value, str):
        return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return interpolate(document)


def test_compose_has_kafka_redis_and_the_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka",
        "redis",
        "runtime",
        "tools",
        "models",
        "approvals",
        "decision-keys",
    }
    # Model workers need provider keys: they start with the `live` profile only.
    assert compose["services"]["models"]["profiles"] == ["live"]
    assert all("profiles" not in s for n, s in compose["services"].items() if n != "models")
    assert set(compose["volumes"]) == {"kafka-data", "redis-data", "decision-keys"}


def test_decisions_are_signed_with_a_pair_made_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    keys = services["decision-keys"]
    # The image's own key maker, idempotent: a restart keeps the pair in the volume.
    assert keys["image"] == services["runtime"]["image"]
    assert keys["command"] == ["keygen", "--out", "/keys", "--if-missing"]
    assert keys["volumes"] == ["decision-keys:/keys"]
    # The approvals service signs with the private key; the runtime checks with the public
    # one (and never needs the private key).
    assert services["approvals"]["environment"]["FLOWAI_DECISION_KEY"] == "/keys/decision-key.pem"
    runtime_env = services["runtime"]["environment"]
    assert runtime_env["FLOWAI_DECISION_PUBLIC_KEYS"] == "/keys/decision-key.pub.pem"
    assert "FLOWAI_DECISION_KEY" not in runtime_env
    assert "FLOWAI_ALLOW_UNSIGNED_DECISIONS" not in runtime_env
    for name in ("runtime", "approvals"):
        assert "decision-keys:/keys:ro" in services[name]["volumes"]
        assert services[name]["depends_on"]["decision-keys"] == {
            "condition": "service_completed_successfully"
        }


def test_kafka_is_a_single_kraft_node_reachable_on_the_compose_network(
    compose: dict[str, Any],
) -> None:
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]

    assert kafka["image"] == "apache/kafka:4.1.1"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols)
    assert set(advertised) <= set(listeners) - {env["KAFKA_CONTROLLER_LISTENER_NAMES"]}
    assert advertised["PLAINTEXT"] == "kafka:9092"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # One node: every internal topic must be satisfiable with one replica.
    for name, value in env.items():
        if name.endswith(("REPLICATION_FACTOR", "MIN_ISR")):
            assert value == 1, name
    assert "kafka:9092" in " ".join(kafka["healthcheck"]["test"])


def models_parser() -> Any:
    """`flowai serve models ...` is the tools service's parser with `--role models`."""

    class Parser:
        def parse_args(self, argv: list[str]) -> Any:
            return tools_parser().parse_args(["--role", "models", *argv])

    return Parser()


@pytest.mark.parametrize("name", ["runtime", "tools", "models", "approvals"])
def test_services_share_one_image_and_reach_kafka_and_redis(
    compose: dict[str, Any], name: str
) -> None:
    services = compose["services"]
    service = services[name]
    env = service["environment"]

    assert service["image"] == services["runtime"]["image"]
    assert service["build"] == {"context": ".", "args": {"APP_DIR": "examples"}}
    assert service["command"][:3] == ["serve", name, "--app"]
    assert (
        env["FLOWAI_KAFKA_BOOTSTRAP"]
        == services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        .split(",")[0]
        .split("://")[1]
    )
    assert env["FLOWAI_REDIS_URL"].startswith("redis://redis:6379/")
    assert {k: v for k, v in service["depends_on"].items() if k != "decision-keys"} == {
        "kafka": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    # The app is baked at /srv/app and mounted over it; the module named by --app is there.
    mount = service["volumes"][0]
    source, target, _mode = mount.split(":")
    module = service["command"][3].split(":")[0]
    assert target == "/srv/app"
    assert (REPO / source / f"{module}.py").is_file()


@pytest.mark.parametrize("name", ["tools", "models"])
def test_workers_are_scalable(compose: dict[str, Any], name: str) -> None:
    workers = compose["services"][name]

    assert "container_name" not in workers
    assert "ports" not in workers
    assert "hostname" not in workers


def test_service_command_lines_parse_with_the_services_parsers(compose: dict[str, Any]) -> None:
    services = compose["services"]

    tools = tools_parser().parse_args(services["tools"]["command"][2:])
    runtime = runtime_parser().parse_args(services["runtime"]["command"][2:])
    models = models_parser().parse_args(services["models"]["command"][2:])

    assert tools.app == runtime.app == models.app == "service_app:runtime"
    assert tools.concurrency == 8
    assert tools.tool_timeout == 30.0
    assert models.role == "models"
    assert models.model_concurrency == 64


def test_redis_keeps_an_append_only_file_fsynced_every_second(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]

    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    # The append-only file is written under /data, which is a volume.
    assert redis["volumes"] == ["redis-data:/data"]


@pytest.mark.parametrize(
    ("name", "parser"),
    [("runtime", runtime_parser), ("tools", tools_parser), ("models", models_parser)],
)
def test_group_members_get_a_stable_instance_id_by_default(
    compose: dict[str, Any], name: str, parser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = compose["services"][name]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))

    args = parser().parse_args(service["command"][2:])

    # The container's hostname: kept across restarts of the container, its own per replica.
    assert service["environment"]["FLOWAI_INSTANCE_ID"] == "{hostname}"
    assert bus.expand_instance_id(args.instance_id) == socket.gethostname()
    assert "hostname" not in service  # else every replica would share one id


def test_approvals_read_every_partition_so_have_no_instance_id(compose: dict[str, Any]) -> None:
    approvals = compose["services"]["approvals"]

    assert "FLOWAI_INSTANCE_ID" not in approvals["environment"]
    args = approvals_parser().parse_args(approvals["command"][2:])
    assert not hasattr(args, "instance_id")


def test_approvals_in_compose_sign_decisions_and_serve_the_api_as_a_development_setup(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    approvals = compose["services"]["approvals"]
    for key, value in approvals["environment"].items():
        monkeypatch.setenv(key, str(value))

    args = approvals_parser().parse_args(approvals["command"][2:])

    # Decisions are signed with the key the decision-keys service made (in the volume).
    assert args.decision_key == "/keys/decision-key.pem"
    assert args.allow_unsigned_decisions is False
    # Without tenant secrets the API (on 127.0.0.1 only) serves tenants without one.
    assert args.allow_unauthenticated is True
    assert args.tenant_secrets is None
    assert approvals["ports"] == ["127.0.0.1:8080:8080"]


@pytest.mark.parametrize(
    ("name", "parser"),
    [
        ("runtime", runtime_parser),
        ("tools", tools_parser),
        ("models", models_parser),
        ("approvals", approvals_parser),
    ],
)
def test_one_kafka_node_is_declared_to_every_service_that_creates_topics(
    compose: dict[str, Any], name: str, parser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_nodes = len(
        compose["services"]["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    )
    service = compose["services"][name]
    monkeypatch.delenv("FLOWAI_ALLOW_UNREPLICATED", raising=False)
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))

    args = parser().parse_args(service["command"][2:])

    assert kafka_nodes == 1
    assert args.allow_unreplicated is True
    # Nothing pins a replication factor: on a real cluster the defaults apply.
    assert args.replication is None
    assert args.min_insync_replicas is None


def test_dockerfile_builds_the_wheel_and_runs_flowai() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())

    assert "maturin build --release" in dockerfile
    assert "ARG APP_DIR=examples" in dockerfile
    # The app only: the services come with the wheel.
    assert "PYTHONPATH=/srv/app" in dockerfile
    assert "COPY services ./services" in dockerfile
    assert project["tool"]["maturin"]["include"] == [
        {"path": "services/**/*.py", "format": ["sdist", "wheel"]}
    ]
    assert 'ENTRYPOINT ["flowai"]' in dockerfile
    assert project["project"]["scripts"]["flowai"] == "flowai_harness.cli:main"
    # Everything the build stage copies exists.
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.MULTILINE):
        for path in source.split():
            if not path.startswith("$"):
                assert (REPO / path).exists(), path


@pytest.mark.parametrize("name", ["runtime", "tools", "models", "approvals"])
def test_each_service_is_checked_through_its_readiness_endpoint(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose.yaml serves /healthz, /readyz and /metrics on every service and its
    healthcheck asks /readyz on that port; the settings parse as the service reads them."""
    from flowai_harness import settings as flowai_settings

    service = compose["services"][name]
    env = service["environment"]
    host, _, port = env["FLOWAI_METRICS"].rpartition(":")
    assert host == "0.0.0.0"
    check = " ".join(service["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in check
    assert service["healthcheck"]["test"][:2] == ["CMD", "python"]
    for variable, value in env.items():
        monkeypatch.setenv(variable, str(value))
    build = {
        "runtime": runtime_parser,
        "tools": tools_parser,
        "models": tools_parser,
        "approvals": approvals_parser,
    }[name]
    args = flowai_settings.bind_environment(build()).parse_args(service["command"][2:])
    assert args.metrics == f"0.0.0.0:{port}"
    assert args.log_format == "text"
    assert args.traces == "off"
