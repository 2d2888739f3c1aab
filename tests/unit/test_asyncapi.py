"""schemas/asyncapi.yaml is generated from flowai_harness.kafka.asyncapi and committed:
regenerate and compare, check it is a well-formed AsyncAPI 3.0 document, and check what it
says against the bus and the services' own code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from services.runtime.service import _KEYED_BY_ID, ServiceConfig
from services.tools.service import ServiceSettings

from flowai_harness import messages
from flowai_harness.kafka import asyncapi, bus

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
DOCUMENT = SCHEMAS_DIR / "asyncapi.yaml"

# Inputs and effects the runtime answers in its own process (the driver answers ApprovalCheck
# with the app's predicates, deadlines are made by the runtime itself): every other
# message of flowai_harness.messages travels on a topic.
IN_PROCESS = {
    "flowai.v1.ApprovalCheck",
    "flowai.v1.ApprovalCheckResult",
    "flowai.v1.DeadlineReached",
}

# The fixed fields of the AsyncAPI 3.0.0 objects the document uses, and of the Kafka bindings
# 0.5.0 (specification extensions, x-..., are allowed everywhere).
FIELDS = {
    "root": {
        "asyncapi",
        "id",
        "info",
        "servers",
        "defaultContentType",
        "channels",
        "operations",
        "components",
    },
    "info": {
        "title",
        "version",
        "description",
        "termsOfService",
        "contact",
        "license",
        "tags",
        "externalDocs",
    },
    "tag": {"name", "description", "externalDocs"},
    "server": {
        "host",
        "protocol",
        "protocolVersion",
        "pathname",
        "description",
        "title",
        "summary",
        "variables",
        "security",
        "tags",
        "externalDocs",
        "bindings",
    },
    "serverVariable": {"enum", "default", "description", "examples"},
    "channel": {
        "address",
        "messages",
        "title",
        "summary",
        "description",
        "servers",
        "parameters",
        "tags",
        "externalDocs",
        "bindings",
    },
    "parameter": {"enum", "default", "description", "examples", "location"},
    "operation": {
        "action",
        "channel",
        "title",
        "summary",
        "description",
        "security",
        "tags",
        "externalDocs",
        "bindings",
        "traits",
        "messages",
        "reply",
    },
    "message": {
        "headers",
        "payload",
        "correlationId",
        "contentType",
        "name",
        "title",
        "summary",
        "description",
        "tags",
        "externalDocs",
        "bindings",
        "examples",
        "traits",
    },
    "messageTrait": {
        "headers",
        "correlationId",
        "contentType",
        "name",
        "title",
        "summary",
        "description",
        "tags",
        "externalDocs",
        "bindings",
        "examples",
    },
    "multiFormatSchema": {"schemaFormat", "schema"},
    "components": {
        "schemas",
        "servers",
        "channels",
        "operations",
        "messages",
        "securitySchemes",
        "serverVariables",
        "parameters",
        "correlationIds",
        "replies",
        "replyAddresses",
        "externalDocs",
        "tags",
        "operationTraits",
        "messageTraits",
        "serverBindings",
        "channelBindings",
        "operationBindings",
        "messageBindings",
    },
    "kafkaChannel": {"topic", "partitions", "replicas", "topicConfiguration", "bindingVersion"},
    "kafkaTopicConfiguration": {
        "cleanup.policy",
        "retention.ms",
        "retention.bytes",
        "delete.retention.ms",
        "max.message.bytes",
        "confluent.key.schema.validation",
        "confluent.key.subject.name.strategy",
        "confluent.value.schema.validation",
        "confluent.value.subject.name.strategy",
    },
    "kafkaOperation": {"groupId", "clientId", "bindingVersion"},
    "kafkaMessage": {
        "key",
        "schemaIdLocation",
        "schemaIdPayloadEncoding",
        "schemaLookupStrategy",
        "bindingVersion",
    },
}
ID = re.compile(r"^[A-Za-z0-9_.\-]+$")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT.read_bytes())
    assert isinstance(loaded, dict)
    return loaded


def fields(value: Any, kind: str, where: str) -> None:
    assert isinstance(value, dict), f"{where} is not an object"
    unknown = {key for key in value if not key.startswith("x-")} - FIELDS[kind]
    assert not unknown, f"{where}: {sorted(unknown)} are not fields of an AsyncAPI {kind}"


def resolve(document: dict[str, Any], ref: str) -> Any:
    """What an in-document ``$ref`` points at, following references to references."""
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref} does not resolve (at {part!r})"
        assert part in node, f"{ref} does not resolve (at {part!r})"
        node = node[part]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return resolve(document, node["$ref"])
    return node


def refs(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if "$ref" in node:
            yield path, node["$ref"]
        for key, value in node.items():
            yield from refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from refs(value, f"{path}/{index}")


def default_address(channel: dict[str, Any], prefix: str = bus.DEFAULT_PREFIX) -> str:
    address: str = channel["address"]
    return address.replace("{prefix}", prefix)


def operations_of(document: dict[str, Any], role: str, action: str) -> list[dict[str, Any]]:
    return [
        op
        for op in document["operations"].values()
        if op["action"] == action and {"name": role} in op["tags"]
    ]


def channel_stem(op: dict[str, Any]) -> str:
    ref: str = op["channel"]["$ref"]
    return ref.removeprefix("#/channels/")


def carried(document: dict[str, Any], stem: str) -> set[str]:
    return {
        resolve(document, ref["$ref"])["name"]
        for ref in document["channels"][stem]["messages"].values()
    }


# --- generated and committed -----------------------------------------------------------------


def test_committed_document_matches_a_fresh_generation() -> None:
    assert DOCUMENT.read_bytes() == asyncapi.render(asyncapi.build()), "run `make schemas`"


def test_rendering_is_deterministic_and_reads_back_as_built() -> None:
    built = asyncapi.build()
    assert asyncapi.render(built) == asyncapi.render(asyncapi.build())
    assert yaml.safe_load(asyncapi.render(built)) == built


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    assert asyncapi.main(["--out", str(out), "--check"]) == 1
    assert asyncapi.main(["--out", str(out)]) == 0
    assert asyncapi.main(["--out", str(out), "--check"]) == 0
    out.write_bytes(out.read_bytes().replace(b"read_committed", b"read_uncommitted"))
    assert asyncapi.main(["--out", str(out), "--check"]) == 1
    assert asyncapi.main(["--out", str(out)]) == 0
    assert out.read_bytes() == DOCUMENT.read_bytes()


# --- a well-formed AsyncAPI 3.0 document -----------------------------------------------------


def test_objects_have_only_asyncapi_fields(document: dict[str, Any]) -> None:
    fields(document, "root", "the document")
    assert document["asyncapi"] == "3.0.0"
    fields(document["info"], "info", "info")
    assert document["info"]["title"]
    assert document["info"]["version"]
    for tag in document["info"]["tags"]:
        fields(tag, "tag", "an info tag")
    for name, server in document["servers"].items():
        fields(server, "server", f"server {name}")
        assert server["protocol"] == "kafka"
        for variable in re.findall(r"{(\w+)}", server["host"]):
            fields(server["variables"][variable], "serverVariable", f"server variable {variable}")
    fields(document["components"], "components", "components")
    for name, parameter in document["components"]["parameters"].items():
        fields(parameter, "parameter", f"parameter {name}")
    for name, trait in document["components"]["messageTraits"].items():
        fields(trait, "messageTrait", f"message trait {name}")
    for name, message in document["components"]["messages"].items():
        fields(message, "message", f"message {name}")
        fields(message["payload"], "multiFormatSchema", f"payload of {name}")
        fields(message["bindings"]["kafka"], "kafkaMessage", f"kafka binding of {name}")
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    for stem, channel in document["channels"].items():
        fields(channel, "channel", f"channel {stem}")
        kafka = channel["bindings"]["kafka"]
        fields(kafka, "kafkaChannel", f"kafka binding of channel {stem}")
        assert kafka["partitions"] >= 1
        assert kafka["replicas"] >= 1
        if "topicConfiguration" in kafka:
            fields(kafka["topicConfiguration"], "kafkaTopicConfiguration", f"{stem} configuration")
            assert set(kafka["topicConfiguration"].get("cleanup.policy", [])) <= {
                "delete",
                "compact",
            }
    for op_id, op in document["operations"].items():
        fields(op, "operation", f"operation {op_id}")
        assert op["action"] in ("send", "receive"), op_id
        for tag in op["tags"]:
            fields(tag, "tag", f"a tag of {op_id}")
        if "bindings" in op:
            fields(op["bindings"]["kafka"], "kafkaOperation", f"kafka binding of {op_id}")
    for section in ("channels", "operations"):
        for key in document[section]:
            assert ID.match(key), f"{section} id {key!r}"
    for section, entries in document["components"].items():
        for key in entries:
            assert ID.match(key), f"components/{section} id {key!r}"


def test_every_ref_resolves(document: dict[str, Any]) -> None:
    seen_files = 0
    for where, ref in refs(document):
        if ref.startswith("#"):
            resolve(document, ref)
            continue
        target = (DOCUMENT.parent / ref).resolve()
        assert target.is_file(), f"{where}: {ref} is not a file beside {DOCUMENT.name}"
        schema = orjson.loads(target.read_bytes())
        message = resolve(document, "#" + where.removesuffix("/payload/schema"))
        assert schema["$id"] == message["name"], f"{where}: {ref} is not {message['name']}"
        assert target.name in messages.json_schemas(), f"{ref} is not a generated schema"
        seen_files += 1
    assert seen_files == len(document["components"]["messages"])


def test_channel_addresses_match_their_parameters(document: dict[str, Any]) -> None:
    for stem, channel in document["channels"].items():
        placeholders = set(re.findall(r"{(\w+)}", channel["address"]))
        assert placeholders == set(channel.get("parameters", {})), stem
        for name, parameter in channel["parameters"].items():
            assert resolve(document, parameter["$ref"])["default"] == bus.DEFAULT_PREFIX, name


def test_every_topic_is_a_channel(document: dict[str, Any]) -> None:
    channels = list(document["channels"].values())
    assert sorted(default_address(c) for c in channels) == sorted(bus.Topics().all())
    assert sorted(default_address(c, "acme") for c in channels) == sorted(bus.Topics("acme").all())


def test_every_message_that_travels_is_described_on_a_channel(document: dict[str, Any]) -> None:
    described = {message["name"] for message in document["components"]["messages"].values()}
    assert described == set(messages.SCHEMAS) - IN_PROCESS
    on_channels = set().union(*(carried(document, stem) for stem in document["channels"]))
    assert on_channels == described
    for name in IN_PROCESS:
        assert bus.Topics().effect_topic(name) is None, f"{name} is routed to a topic"


def test_operations_use_existing_channels_and_their_messages(document: dict[str, Any]) -> None:
    for op_id, op in document["operations"].items():
        stem = channel_stem(op)
        assert stem in document["channels"], f"{op_id}: no channel {stem}"
        assert op["messages"], op_id
        for ref in op["messages"]:
            # AsyncAPI 3: an operation's messages are a subset of its channel's.
            assert ref["$ref"].startswith(f"#/channels/{stem}/messages/"), (op_id, ref)
            resolve(document, ref["$ref"])
    for stem in document["channels"]:
        actions = {
            op["action"] for op in document["operations"].values() if channel_stem(op) == stem
        }
        assert "receive" in actions, f"nobody receives {stem}"


# --- what it says, against the code ----------------------------------------------------------


def transactional_channels() -> set[str]:
    """What the runtime writes in its transactions: the run log, every effect, dead letters,
    the thread index and snapshots."""
    topics = bus.Topics()
    effects = {topics.effect_topic(name) for name in messages.SCHEMAS} - {None}
    names = {topics.runtime_events, topics.dead_letters, topics.threads, topics.snapshots} | effects
    return {str(name).removeprefix(f"{bus.DEFAULT_PREFIX}.") for name in names}


def test_transactional_channels_say_readers_must_read_committed(document: dict[str, Any]) -> None:
    transactional = transactional_channels()
    assert transactional == {
        "runtime-events",
        "tool-invocations",
        "plan-steps",
        "model-requests",
        "approval-requests",
        "dead-letters",
        "threads",
        "snapshots",
    }
    for stem, channel in document["channels"].items():
        says = "isolation.level=read_committed" in channel["description"]
        assert says == (stem in transactional), stem
    info = document["info"]["description"]
    assert "isolation.level=read_committed" in info
    assert "duplicated events" in info
    for stem in transactional:
        assert f"`{stem}`" in info
    runtime_writes = {channel_stem(op) for op in operations_of(document, "runtime", "send")}
    assert runtime_writes == transactional


def test_delivery_guarantees_are_stated(document: dict[str, Any]) -> None:
    info = document["info"]["description"]
    assert "effectively once per id" in info
    assert "24 hours by default" in info


def test_keys_are_the_services_keys(document: dict[str, Any]) -> None:
    by_id = set()
    for message in document["components"]["messages"].values():
        key = message["bindings"]["kafka"]["key"]["description"]
        if "own `id`" in key:
            by_id.add(message["name"])
        else:
            assert "`tenant/thread_id`" in key, message["name"]
    assert by_id == set(_KEYED_BY_ID)


def test_effects_and_results_are_on_the_topics_the_bus_routes_them_to(
    document: dict[str, Any],
) -> None:
    topics = bus.Topics()
    for name in messages.SCHEMAS:
        topic = topics.effect_topic(name)
        if topic is None:
            continue
        stem = topic.removeprefix(f"{bus.DEFAULT_PREFIX}.")
        assert name in carried(document, stem)
        sent = [op for op in operations_of(document, "runtime", "send") if channel_stem(op) == stem]
        assert sent, f"the runtime sends nothing on {stem}"
    for role, schema in (("tools", "flowai.v1.ToolResult"), ("models", "flowai.v1.ModelResult")):
        stem = topics.result_topic(schema).removeprefix(f"{bus.DEFAULT_PREFIX}.")
        ops = [op for op in operations_of(document, role, "send") if channel_stem(op) == stem]
        assert [resolve(document, ref["$ref"])["name"] for op in ops for ref in op["messages"]] == [
            schema
        ]


def test_consumer_groups_are_the_services_groups(document: dict[str, Any]) -> None:
    topics = bus.Topics()

    def groups(role: str) -> dict[str, str]:
        return {
            f"{bus.DEFAULT_PREFIX}.{channel_stem(op)}": op["bindings"]["kafka"]["groupId"][
                "default"
            ]
            for op in operations_of(document, role, "receive")
            if "bindings" in op
        }

    runtime = ServiceConfig(bootstrap="kafka:9092").group
    assert groups("runtime") == dict.fromkeys(topics.runtime_inputs, runtime)
    settings = ServiceSettings(bootstrap="kafka:9092", redis_url="redis://redis:6379/0")
    assert groups("tools") == dict.fromkeys(
        (topics.tool_invocations, topics.plan_steps), settings.group_id
    )
    assert groups("models") == {topics.model_requests: settings.model_group_id}
    for role in ("approvals", "client", "observers"):
        assert groups(role) == {}, f"{role} reads without a consumer group"
