"""The AsyncAPI 3.0 document of the bus: every topic, the messages on it, their keys, and which
service sends and receives what.

Owns :func:`build` (the document, as a dict), :func:`render` (its YAML bytes) and the generator
``python -m flowai_harness.kafka.asyncapi --out schemas/asyncapi.yaml`` (``make schemas`` runs it
after the JSON Schemas; ``--check`` reports drift; a test regenerates it and compares).

What the code says as data is taken from the code: the topics, the messages each carries,
their keys and the messages that never travel on a topic from the message models' registry
(:data:`~flowai_harness.messages.TOPICS`), topic names from
:class:`~flowai_harness.kafka.bus.Topics` (which topics the runtime consumes, where each effect and
each result goes), partitions, replication and topic settings from :mod:`~flowai_harness.kafka.bus`,
the payload schemas by reference to ``schemas/v1/*.json`` (the files
:func:`~flowai_harness.messages.json_schemas` generates; the document sits beside ``v1/``).
What only the services' code says (consumer group names, who sends and receives what) is
written here once, from docs/services.md and the services, and tests/unit/test_asyncapi.py
checks it against the services.

The payloads are JSON Schema 2020-12 files. AsyncAPI 3.0 names no schema format for 2020-12,
and its own schema format reads ``discriminator`` as a string (Pydantic writes OpenAPI's
object), so the payloads are declared ``application/schema+json;version=draft-07``: the
keywords these files use (no ``$ref`` with siblings, no ``prefixItems``, ``$defs`` reached
only through ``$ref`` pointers) mean the same in both drafts.

Imports :mod:`~flowai_harness.kafka.bus` (so the ``kafka`` extra) and
:mod:`~flowai_harness.messages`; PyYAML (the ``dev`` extra) only when rendering. Must not
import the runtime, the native engine, the client or any service.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from .._version import __version__
from ..messages import (
    IN_PROCESS,
    SCHEMA_VERSION,
    SCHEMAS,
    TOPICS,
    KeyRule,
    ModelResult,
    ToolResult,
    doc_markdown,
    schema_name,
)
from . import bus

__all__ = ["ASYNCAPI_VERSION", "KAFKA_BINDING_VERSION", "build", "main", "render"]

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
_PAYLOAD_FORMAT: Final = "application/schema+json;version=draft-07"
_DEFAULT_OUT: Final = Path("schemas") / "asyncapi.yaml"
_HEADER: Final = (
    b"# Generated from flowai_harness.kafka.bus and flowai_harness.messages by `make schemas`\n"
    b"# (python -m flowai_harness.kafka.asyncapi); do not edit by hand.\n"
)

# What each topic carries, by stem, as the message models say (messages.TOPICS). The runtime
# takes any input schema on any input topic; these are the topics the services and the client
# publish them to.
_CARRIES: Final[Mapping[str, tuple[str, ...]]] = {
    stem: tuple(model.__name__ for model in models) for stem, models in TOPICS.items()
}

_THREAD_KEY: Final = (
    "`tenant/thread_id`, with the default (murmur2) partitioner, so every message about a "
    "thread lands on the partition number of its run log"
)
_OWN_ID_KEY: Final = "the envelope's own `id`, so the work spreads over the partitions"
_DEAD_LETTER_KEY: Final = (
    "`tenant/thread_id` of the original message when it names them, else the original record's key"
)

_KEYS: Final[Mapping[KeyRule, str]] = {
    "thread": _THREAD_KEY,
    "id": _OWN_ID_KEY,
    "dead-letter": _DEAD_LETTER_KEY,
}

_READ_COMMITTED: Final = (
    "**Read it committed.** The runtime writes this topic inside Kafka transactions: consume "
    "it with `isolation.level=read_committed` (kcat: `-X isolation.level=read_committed`; "
    'aiokafka: `isolation_level="read_committed"`). A transaction that a crash cut short is '
    "aborted, and the runtime that takes the partition over writes its records again; a "
    "`read_uncommitted` reader (the default of the Java consumer, of kcat and of most "
    "clients) also sees the aborted copies, which look exactly like duplicated messages."
)

_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "queries": (
        "Inputs that start and stop runs: `Query` (run an agent on a prompt in a thread) and "
        "`CancelRun`, from the client and any upstream producer, read by the runtime. A new "
        "thread's input on another partition than its key hashes to is dead-lettered "
        "(`INPUT_WRONG_PARTITION`). A producer that retries sends the same envelope id: the "
        "runtime ignores an input whose id the thread has already seen (within 24 hours, by "
        "default)."
    ),
    "runtime-events": (
        "The run log: each thread's events in order (`id` `{tenant}/{thread_id}/{seq}`, "
        "`seq` 1, 2, 3, ... without gaps) and the only state of the service. "
        "The runtime rebuilds a partition's threads from it when it takes the partition over; "
        "the client, `flowai replay` and any observer follow runs on it."
    ),
    "tool-invocations": (
        "Effects: run one tool. The tool workers run each invocation effectively once per id "
        "(a redelivery gets the recorded result) and answer on `tool-results`."
    ),
    "plan-steps": (
        "Effects: run an approved plan's actions through the app's action dispatcher. The tool "
        "workers run each step once and answer with a `ToolResult` whose `invocation_id` is "
        "the step's id, on `tool-results`."
    ),
    "tool-results": (
        "Inputs: the outcome of a tool invocation or a plan step (`ToolResult`), and events a "
        "tool emitted while it runs (`ToolProgress`; this version's tool workers send their "
        "events inside the `ToolResult`). A result published twice is harmless: the runtime "
        "takes the first and ignores the repeat."
    ),
    "model-requests": (
        "Effects: one model turn, published only by a runtime with `--interpreter live` (the "
        "deterministic interpreters answer in the engine). The model workers call the "
        "provider effectively once per id (a redelivery gets the recorded answer, not a second "
        "paid call) and answer on `model-results`."
    ),
    "model-results": (
        "Inputs: a model's answer or failure, from the model workers. A result published "
        "twice is harmless: the runtime takes the first."
    ),
    "model-deltas": (
        "A model call's text as it streams, for display: every delta is published before the "
        "call's result, `seq` counts them per request. Not an input of any service; the run "
        "log keeps each turn's whole message."
    ),
    "approval-requests": (
        "Effects: a human must decide (the `approval-required` event's data). Every instance of "
        "the approvals service reads all of it at every start; a chat-ops bot reads it with a "
        "consumer group of its own and decides through the approvals API."
    ),
    "approval-decisions": (
        "Inputs: a decision on an approval request, read by the runtime that owns the thread. "
        "Published by the approvals service (the first decision wins), "
        "by the client's `respond_to_approval` or by any upstream producer; the approvals "
        "service reads it back, so a decision made elsewhere counts there too."
    ),
    "snapshots": (
        "Compacted. The runtime's snapshot of each thread (every N events and at each run "
        "end) and a checkpoint per partition, written in the transaction of the run-log "
        "events they cover; a runtime taking a partition over restores them and folds only "
        "the run log after the checkpoint. Never the truth: a snapshot the engine cannot "
        "read makes it replay the whole partition."
    ),
    "dead-letters": (
        "Messages a service could not use: the reason (a stable code), a message saying what "
        "was wrong and what to do, the original bytes and where they were read. The runtime "
        "writes its dead letters on the input's partition number, so a client following a "
        "thread sees its refused query; the tool workers, model workers and approvals service "
        "write theirs with an idempotent producer. `flowai dead-letters redrive` re-publishes "
        "a dead letter's message (same id) and records a `Redrive` here."
    ),
    "threads": (
        "The thread index, compacted: per thread the run-log partition, an offset at or "
        "before its first event, its last seq and status. The runtime writes it in the "
        "transaction of the events it describes (when the status changes or the thread "
        "rests); the client's `follow` and `threads()` read it instead of the whole run log."
    ),
}


@dataclass(frozen=True, slots=True)
class _Operation:
    role: str
    action: Literal["send", "receive"]
    stem: str
    description: str
    messages: tuple[str, ...] | None = None  # None: every message of the channel
    group: str | None = None  # consumer group, "{prefix}.<name>"
    group_option: str = "--group"


_ROLES: Final[Mapping[str, str]] = {
    "runtime": (
        "`flowai serve runtime`: embeds the engine; consumes the inputs, writes the run log, "
        "the effects and its dead letters in one Kafka transaction per partition and poll."
    ),
    "tools": "`flowai serve tools` (role `tools`): the tool workers, one consumer group.",
    "models": (
        "`flowai serve models` (the tools service with `--role models`): the model workers, a "
        "consumer group of their own."
    ),
    "approvals": (
        "`flowai serve approvals`: the pending approvals rebuilt from the topics, and the HTTP "
        "API that decides them."
    ),
    "client": "`flowai_harness.connect(...)`: the embedded runtime's API over Kafka.",
    "upstream": "Any Kafka producer that publishes queries or decisions.",
    "observers": (
        "Any reader of what the services write: `flowai replay`, audit and monitoring "
        "consumers, chat-ops bots, operators reading dead letters."
    ),
}


def _operations(topics: bus.Topics) -> list[_Operation]:
    stem = _stem  # the channel ids are the topics' stems
    effects = [topic for name in SCHEMAS if (topic := topics.effect_topic(name)) is not None]
    runtime_group = bus.group_name("{prefix}", bus.RUNTIME_GROUP)
    tools_group = bus.group_name("{prefix}", bus.TOOLS_GROUP)
    models_group = bus.group_name("{prefix}", bus.MODELS_GROUP)
    ops = [
        _Operation(
            "runtime",
            "receive",
            stem(name),
            "Consumer group `<prefix>.runtime` (`--group`) over all the runtime's inputs, "
            "`read_committed`, range assignor: the member that owns partition p of one input "
            "topic owns p of all of them, and of the run log. A partition's inputs are handled "
            "in offset order; what they cause and their offsets are committed in one "
            "transaction.",
            group=runtime_group,
        )
        for name in topics.runtime_inputs
    ]
    ops.append(
        _Operation(
            "runtime",
            "receive",
            stem(topics.runtime_events),
            "Rebuild: when the runtime takes a partition over, it reads that run-log partition "
            "from the beginning to the last stable offset (`read_committed`, no consumer "
            "group) before it handles any of the partition's inputs; with snapshots, only "
            "from the partition's last checkpoint.",
        )
    )
    ops.append(
        _Operation(
            "runtime",
            "receive",
            stem(topics.snapshots),
            "Rebuild: the same partition number, read whole (`read_committed`), before the "
            "run log: each thread's latest snapshot and the latest checkpoint.",
        )
    )
    ops.append(
        _Operation(
            "runtime",
            "receive",
            stem(topics.threads),
            "With the run log on assignment: the partition's thread index, so the offsets "
            "where its threads start survive a takeover.",
        )
    )
    ops += [
        _Operation(
            "runtime",
            "send",
            stem(name),
            "In the transaction of the input's partition (transactional id `<group>.<p>`), "
            "with the input offsets: all of it is visible to `read_committed` readers, or "
            "none of it.",
        )
        for name in (
            topics.runtime_events,
            *effects,
            topics.dead_letters,
            topics.threads,
            topics.snapshots,
        )
    ]
    ops += [
        _Operation(
            "tools",
            "receive",
            stem(name),
            "Consumer group `<prefix>.tools` (`--group`), `read_committed`. Messages of a "
            "partition run concurrently; a partition's offset is committed up to the first "
            "message whose result is not yet published.",
            group=tools_group,
        )
        for name in (topics.tool_invocations, topics.plan_steps)
    ]
    ops += [
        _Operation(
            "tools",
            "send",
            stem(topics.result_topic(ToolResult.NAME)),
            "After the result is recorded in Redis; idempotent producer, `acks=all`.",
            messages=("ToolResult",),
        ),
        _Operation("tools", "send", stem(topics.dead_letters), "Idempotent producer."),
        _Operation(
            "models",
            "receive",
            stem(topics.model_requests),
            "Consumer group `<prefix>.models` (`--model-group`), `read_committed`.",
            group=models_group,
            group_option="--model-group",
        ),
        _Operation(
            "models",
            "send",
            stem(topics.result_topic(ModelResult.NAME)),
            "After the answer is recorded in Redis; idempotent producer, `acks=all`.",
        ),
        _Operation(
            "models",
            "send",
            stem(topics.model_deltas),
            "While the provider streams, before the result (`--no-stream-deltas` turns it off).",
        ),
        _Operation("models", "send", stem(topics.dead_letters), "Idempotent producer."),
    ]
    ops += [
        _Operation(
            "approvals",
            "receive",
            stem(name),
            "Every partition from the beginning at each start, `read_committed`, no consumer "
            "group and no commits: each instance keeps the whole book.",
        )
        for name in (topics.approval_requests, topics.approval_decisions)
    ]
    ops += [
        _Operation(
            "approvals",
            "send",
            stem(topics.approval_decisions),
            "After claiming the approval in Redis, so the first decision wins.",
        ),
        _Operation("approvals", "send", stem(topics.dead_letters), "Idempotent producer."),
        _Operation(
            "client",
            "send",
            stem(topics.queries),
            "`client.query(...)` publishes a `Query`, `stream.cancel()` a `CancelRun`.",
        ),
        _Operation(
            "client",
            "send",
            stem(topics.approval_decisions),
            "`client.respond_to_approval(...)`.",
        ),
    ]
    ops += [
        _Operation(
            "client",
            "receive",
            stem(name),
            "Every partition, from where it ended when the client started, "
            "`read_committed`, no consumer group.",
        )
        for name in (topics.runtime_events, topics.dead_letters, topics.model_deltas)
    ]
    ops.append(
        _Operation(
            "client",
            "receive",
            stem(topics.threads),
            "`follow` and `threads()`: the thread's partition (or all) from the beginning to "
            "the last stable offset, `read_committed`, no consumer group.",
        )
    )
    ops += [
        _Operation(
            "upstream",
            "send",
            stem(name),
            "Key `tenant/thread_id` with the default partitioner; a retry sends the same "
            "envelope id.",
        )
        for name in (topics.queries, topics.approval_decisions)
    ]
    ops += [
        _Operation(
            "observers",
            "receive",
            stem(name),
            "With `isolation.level=read_committed`: the runtime writes this topic in transactions.",
        )
        for name in (topics.runtime_events, topics.approval_requests, topics.dead_letters)
    ]
    return ops


def _stem(topic: str) -> str:
    return topic.removeprefix(f"{bus.DEFAULT_PREFIX}.")


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)}


# The topic settings the AsyncAPI Kafka binding (0.5.0) has fields for.
_BINDING_TOPIC_SETTINGS: Final = frozenset(
    {
        "cleanup.policy",
        "retention.ms",
        "retention.bytes",
        "delete.retention.ms",
        "max.message.bytes",
    }
)


def _topic_configuration(stem: str) -> dict[str, Any]:
    # bus keeps Kafka's string settings; the binding wants numbers and a list of policies.
    settings = bus._TOPIC_CONFIGS.get(stem, {})
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in _BINDING_TOPIC_SETTINGS:
            continue  # a broker setting the Kafka binding has no field for (segment.ms)
        out[name] = value.split(",") if name == "cleanup.policy" else int(value)
    return out


def _retention(stem: str) -> str:
    ms = _topic_configuration(stem).get("retention.ms")
    if ms is None:
        return ""
    if ms < 0:
        return " Never expires (`retention.ms=-1`)."
    hours = ms / 3_600_000
    return f" Kept {hours:g} hour{'s' if hours != 1 else ''} (`retention.ms={ms}`)."


def _key(name: str) -> str:
    return _KEYS[SCHEMAS[schema_name(name)].KEY]


def _messages(schema_dir: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _carried():
        model = SCHEMAS[schema_name(name)]
        file = f"{model.__name__}.json"  # as messages.json_schemas() names it
        key = {"type": "string", "description": f"The record key: {_key(name)}."}
        out[name] = {
            "name": model.NAME,
            "title": name,
            "description": doc_markdown(model),
            "contentType": "application/json",
            "payload": {
                "schemaFormat": _PAYLOAD_FORMAT,
                "schema": {"$ref": f"{schema_dir}/{file}"},
            },
            "traits": [_ref("components", "messageTraits", "envelope")],
            "bindings": {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
    return out


def _carried() -> list[str]:
    seen: list[str] = []
    for names in _CARRIES.values():
        seen += [name for name in names if name not in seen]
    return seen


def _channels(topics: bus.Topics, transactional: set[str]) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for topic in topics.all():
        stem = _stem(topic)
        carried = _CARRIES[stem]
        description = _DESCRIPTIONS[stem] + " Key: " + _key_text(carried) + "." + _retention(stem)
        if stem in transactional:
            description += "\n\n" + _READ_COMMITTED
        binding: dict[str, Any] = {
            "partitions": bus.DEFAULT_PARTITIONS,
            "replicas": bus.PREFERRED_REPLICATION,
        }
        configuration = _topic_configuration(stem)
        if configuration:
            binding["topicConfiguration"] = configuration
        binding["bindingVersion"] = KAFKA_BINDING_VERSION
        channels[stem] = {
            "address": "{prefix}." + stem,
            "title": stem,
            "description": description,
            "messages": {name: _ref("components", "messages", name) for name in carried},
            "parameters": {"prefix": _ref("components", "parameters", "prefix")},
            "bindings": {"kafka": binding},
        }
    return channels


def _key_text(carried: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(_key(name) for name in carried))


def _operation_id(op: _Operation) -> str:
    return f"{op.role}-{op.action}-{op.stem}"


def _operations_section(ops: list[_Operation]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op in ops:
        names = op.messages or _CARRIES[op.stem]
        operation: dict[str, Any] = {
            "action": op.action,
            "channel": _ref("channels", op.stem),
            "title": f"{op.role}: {op.action} {op.stem}",
            "description": op.description,
            "messages": [_ref("channels", op.stem, "messages", name) for name in names],
            "tags": [{"name": op.role}],
        }
        if op.group is not None:
            operation["bindings"] = {
                "kafka": {
                    "groupId": {
                        "type": "string",
                        "default": op.group.format(prefix=bus.DEFAULT_PREFIX),
                        "description": f"`{op.group.replace('{prefix}', '<prefix>')}` "
                        f"unless `{op.group_option}` names another",
                    },
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            }
        out[_operation_id(op)] = operation
    return out


def _info(transactional: list[str]) -> dict[str, Any]:
    listing = ", ".join(f"`{stem}`" for stem in transactional)
    in_process = ", ".join(f"`{model.NAME}`" for model in IN_PROCESS)
    description = f"""\
The Kafka topics of flowai-harness in distributed mode: every message on them, its key, and \
which service sends and receives it. The messages are the JSON envelopes of docs/wire.md; \
their JSON Schemas are the files in `schemas/{SCHEMA_VERSION}/`, generated from \
`flowai_harness.messages`. How to run the services: docs/services.md.

**Topics.** Every name starts with a prefix (the `prefix` parameter, `{bus.DEFAULT_PREFIX}` by \
default; one tenant per prefix). A service that creates the topics gives each \
{bus.DEFAULT_PARTITIONS} partitions (`--partitions`), the same count for all (a thread's \
inputs and its run log share a partition number), and on a cluster of \
{bus.PREFERRED_REPLICATION} or more brokers {bus.PREFERRED_REPLICATION} replicas with \
`min.insync.replicas={bus.PREFERRED_MIN_INSYNC_REPLICAS}`, else one replica per broker \
(`--replication`, `--min-insync-replicas`). The run log (`runtime-events`) is every thread's \
only state: a run log with one replica is refused unless `--allow-unreplicated`.

**Readers must use `read_committed`.** The runtime writes {listing} inside Kafka \
transactions. Every reader of those topics must consume with \
`isolation.level=read_committed`: a transaction that a crash cut short is aborted, and the \
runtime that takes over writes the same records again, so a `read_uncommitted` reader (the \
default of the Java consumer, of kcat and of most clients) also sees the aborted copies, which \
look exactly like duplicated events (same ids, same `seq`). The services, the client \
(`flowai_harness.connect`) and `flowai replay` read committed.

**Delivery.** Every envelope `id` is an idempotency key. The runtime handles each input \
effectively once per id: an input whose id its thread has already seen within the dedup \
window (24 hours by default) is ignored, so an upstream producer may retry with the same id. \
Tool and model workers run each invocation or request effectively once per id: a redelivery \
gets the recorded result (docs/services.md, "Effectively once, and the three delivery \
levels").

**Keys.** Messages about a thread are keyed {_THREAD_KEY}; tool invocations, plan steps and \
model requests are keyed by their own id, so the work spreads over the workers.

{in_process} are inputs and effects the runtime answers in its own process: they never travel \
on a topic.
"""
    return {
        "title": "flowai-harness bus",
        "version": __version__,
        "description": description,
        "tags": [{"name": role, "description": text} for role, text in _ROLES.items()],
    }


def build(schema_dir: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the bus; payloads reference ``{schema_dir}/<Name>.json``
    (relative to the document: ``schemas/asyncapi.yaml`` beside ``schemas/v1``)."""
    topics = bus.Topics()
    ops = _operations(topics)
    transactional = [op.stem for op in ops if op.role == "runtime" and op.action == "send"]
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(transactional),
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster every service and client connects to.",
                "variables": {
                    "bootstrap": {
                        "description": "Bootstrap servers (the services' `--bootstrap`, env "
                        "FLOWAI_KAFKA_BOOTSTRAP).",
                        "examples": ["127.0.0.1:19092", "kafka:9092"],
                    }
                },
            }
        },
        "channels": _channels(topics, set(transactional)),
        "operations": _operations_section(ops),
        "components": {
            "parameters": {
                "prefix": {
                    "default": bus.DEFAULT_PREFIX,
                    "description": "The topic prefix (the services' `--prefix`, env "
                    "FLOWAI_TOPIC_PREFIX; the client's `topic_prefix`). One tenant per prefix.",
                }
            },
            "messages": _messages(schema_dir),
            "messageTraits": {
                "envelope": {
                    "headers": {
                        "type": "object",
                        "properties": {
                            bus.TRACEPARENT: {
                                "type": "string",
                                "description": "W3C trace context of the work that caused "
                                "the message, when its producer has one.",
                            }
                        },
                    }
                }
            },
        },
    }


# --- schemas/asyncapi.yaml -------------------------------------------------------------------


def render(document: Mapping[str, Any]) -> bytes:
    """``document`` as YAML (keys in the order built, long texts as block scalars), after a
    header saying it is generated. The same document gives the same bytes."""
    import yaml  # the dev extra: only the generator needs it

    class _Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Descriptions read as prose: "|" keeps their paragraphs, ">" folds long lines.
        style = ">" if len(value) > 80 else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=96,
        default_flow_style=False,
    )
    return _HEADER + body.encode()


def _write(out: Path, check: bool) -> int:
    data = render(build())
    current = out.read_bytes() if out.is_file() else None
    if check:
        if current != data:
            print(f"{out} is out of date; run `make schemas`", file=sys.stderr)
            return 1
        return 0
    if current != data:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    print(f"{out}: AsyncAPI {ASYNCAPI_VERSION}, {'written' if current != data else 'unchanged'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowai_harness.kafka.asyncapi",
        description="Write the AsyncAPI document of the bus (schemas/asyncapi.yaml).",
    )
    parser.add_argument("--out", type=Path, default=_DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    args = parser.parse_args(argv)
    return _write(args.out, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
