"""compose.yaml and the Dockerfile, checked without Docker (there is no engine here).

The YAML must parse, name the right images and wire the services to Kafka and Redis on the
compose network; the service command lines must parse with the services' own argument
parsers; the tool workers must be scalable (no fixed name, no host port).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from services.runtime.command import parser as runtime_parser
from services.tools.command import build_parser as tools_parser

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


def test_compose_has_kafka_redis_and_the_three_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "redis", "runtime", "tools", "approvals"}
    assert set(compose["volumes"]) == {"kafka-data", "redis-data"}


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


@pytest.mark.parametrize("name", ["runtime", "tools", "approvals"])
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
    assert service["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    # The app is baked at /srv/app and mounted over it; the module named by --app is there.
    [mount] = service["volumes"]
    source, target, _mode = mount.split(":")
    module = service["command"][3].split(":")[0]
    assert target == "/srv/app"
    assert (REPO / source / f"{module}.py").is_file()


def test_tool_workers_are_scalable(compose: dict[str, Any]) -> None:
    tools = compose["services"]["tools"]

    assert "container_name" not in tools
    assert "ports" not in tools
    assert "hostname" not in tools


def test_service_command_lines_parse_with_the_services_parsers(compose: dict[str, Any]) -> None:
    services = compose["services"]

    tools = tools_parser().parse_args(services["tools"]["command"][2:])
    runtime = runtime_parser().parse_args(services["runtime"]["command"][2:])

    assert tools.app == runtime.app == "service_app:runtime"
    assert tools.concurrency == 8
    assert tools.tool_timeout == 30.0


def test_dockerfile_builds_the_wheel_and_runs_flowai() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())

    assert "maturin build --release" in dockerfile
    assert "ARG APP_DIR=examples" in dockerfile
    assert "PYTHONPATH=/srv/flowai:/srv/app" in dockerfile
    assert 'ENTRYPOINT ["flowai"]' in dockerfile
    assert project["project"]["scripts"]["flowai"] == "flowai_harness.cli:main"
    # Everything the build stage copies exists.
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.MULTILINE):
        for path in source.split():
            if not path.startswith("$"):
                assert (REPO / path).exists(), path
