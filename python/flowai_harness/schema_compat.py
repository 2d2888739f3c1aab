"""Schema evolution: what in ``schemas/v1`` would break a reader of the released contract.

Owns :func:`breaking_changes` (two folders of JSON Schemas, one per message, as
:func:`flowai_harness.messages.json_schemas` writes them) and the command
``python -m flowai_harness.schema_compat schemas/released/v1 schemas/v1``, which prints each
break and exits 1 when there is one.

"Released" is the committed copy ``schemas/released/v1`` (with ``schemas/released/VERSION``),
made by ``make release-schemas`` when a version ships: git tags are not part of every
checkout (CI clones, source distributions), a committed copy is, and a reviewer sees the
contract change in the diff.

Both directions matter, because the run log is read for ever: old readers (services not yet
upgraded, clients, other consumers) read what new writers publish, and new readers replay
what old writers logged. So these break, at any depth (``$defs`` included):

- a message schema removed;
- a field removed, or renamed (a removal and an addition);
- a field's type changed: its JSON types, its ``$ref`` target, its ``const``, its ``enum``
  values (added or removed), an array's item type;
- a field that becomes required (new, or optional before), or stops being required (old
  readers require it);
- a field added to an object that refuses unknown fields (``additionalProperties: false``:
  old readers refuse the new field), or an object that starts refusing them.

What does not break: new message schemas, new optional fields on open objects, new members
of an open union (one with a catch-all member old readers already take a new member's values
as: the run log's event types, ``messages.OtherEvent``), and changes to titles, descriptions,
defaults and bounds.

Must not import anything but the standard library: it reads files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["breaking_changes", "compare", "main"]

Schema = Mapping[str, Any]


def breaking_changes(released: Path, current: Path) -> list[str]:
    """Every break of ``current`` (a folder of ``*.json`` schemas) against ``released``."""
    problems: list[str] = []
    for old_file in sorted(released.glob("*.json")):
        new_file = current / old_file.name
        name = old_file.stem
        if not new_file.is_file():
            problems.append(f"{name}: the message schema was removed")
            continue
        problems.extend(
            compare(json.loads(old_file.read_text()), json.loads(new_file.read_text()), name)
        )
    return problems


def compare(old: Schema, new: Schema, name: str) -> list[str]:
    """The breaks of one message schema ``new`` against ``old``."""
    walker = _Walk(old, new)
    walker.node(old, new, name)
    return walker.problems


class _Walk:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_defs: Mapping[str, Schema] = old_root.get("$defs", {})
        self.new_defs: Mapping[str, Schema] = new_root.get("$defs", {})
        self.problems: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def node(self, old: Schema, new: Schema, path: str) -> None:
        old_sig, new_sig = _signature(old), _signature(new)
        added = sorted(new_sig - old_sig)
        removed = sorted(old_sig - new_sig)
        if removed or (added and not self._open_union(old, added)):
            self.problems.append(
                f"{path}: the type changed ({_says(removed, 'no longer')}"
                f"{'; ' if removed and added else ''}{_says(added, 'now also')})"
            )
            return
        new_refs = set(_refs(new))
        for old_ref in _refs(old):
            new_ref = old_ref if old_ref in new_refs else None
            if new_ref is None or (old_ref, new_ref) in self.seen:
                continue
            self.seen.add((old_ref, new_ref))
            old_def, new_def = self.old_defs.get(old_ref), self.new_defs.get(new_ref)
            if old_def is not None and new_def is not None:
                self.node(old_def, new_def, f"{path} ({old_ref})")
        for old_member, new_member in zip(_members(old), _members(new), strict=False):
            if "$ref" not in old_member:
                self.node(old_member, new_member, path)
        if isinstance(old.get("items"), Mapping) and isinstance(new.get("items"), Mapping):
            self.node(old["items"], new["items"], f"{path}[]")
        if "properties" in old or "properties" in new:
            self.fields(old, new, path)

    def _open_union(self, old: Schema, added: Sequence[str]) -> bool:
        """Whether ``added`` are only new members of a union old readers already take in
        full: one of its members is a catch-all (an object whose ``type`` is any string but
        the known ones, open to other fields), so a new member's values reached them as that
        catch-all before. The run log's event union is one (messages.OtherEvent)."""
        if not added or not all(word.startswith("ref ") for word in added):
            return False
        return any(_catch_all(self.old_defs.get(ref, {})) for ref in _refs(old))

    def fields(self, old: Schema, new: Schema, path: str) -> None:
        old_fields: Mapping[str, Schema] = old.get("properties", {})
        new_fields: Mapping[str, Schema] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        old_strict = old.get("additionalProperties") is False
        new_strict = new.get("additionalProperties") is False
        if new_strict and not old_strict:
            self.problems.append(
                f"{path}: now refuses unknown fields (additionalProperties: false), which "
                "old writers may send"
            )
        for field in sorted(set(old_fields) - set(new_fields)):
            self.problems.append(f"{path}.{field}: the field was removed (or renamed)")
        for field in sorted(set(new_fields) - set(old_fields)):
            if field in new_required:
                self.problems.append(
                    f"{path}.{field}: a new required field (old messages do not have it)"
                )
            elif old_strict:
                self.problems.append(
                    f"{path}.{field}: a new field on an object old readers close to unknown "
                    "fields (additionalProperties: false)"
                )
        for field in sorted(set(old_fields) & set(new_fields)):
            where = f"{path}.{field}"
            if field in new_required and field not in old_required:
                self.problems.append(f"{where}: now required (old messages may lack it)")
            if field in old_required and field not in new_required:
                self.problems.append(f"{where}: no longer required (old readers require it)")
            self.node(old_fields[field], new_fields[field], where)


def _signature(schema: Schema) -> frozenset[str]:
    """What values a schema admits, as comparable words (its types, refs, consts, enums)."""
    words: set[str] = set()
    for key in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(key, ()):
            words |= _signature(member)
    if "$ref" in schema:
        words.add(f"ref {str(schema['$ref']).rsplit('/', 1)[-1]}")
    kind = schema.get("type")
    if isinstance(kind, str):
        words.add(f"type {kind}")
    elif isinstance(kind, list):
        words |= {f"type {item}" for item in kind}
    if "const" in schema:
        words.add(f"const {json.dumps(schema['const'], sort_keys=True)}")
    for value in schema.get("enum", ()):
        words.add(f"enum {json.dumps(value, sort_keys=True)}")
    if not words:
        words.add("any value")
    return frozenset(words)


def _catch_all(schema: Schema) -> bool:
    kind = schema.get("properties", {}).get("type", {})
    return (
        schema.get("additionalProperties") is not False
        and kind.get("type") == "string"
        and "enum" in kind.get("not", {})
    )


def _refs(schema: Schema) -> list[str]:
    found = [str(schema["$ref"]).rsplit("/", 1)[-1]] if "$ref" in schema else []
    for key in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(key, ()):
            if "$ref" in member:
                found.append(str(member["$ref"]).rsplit("/", 1)[-1])
    return found


def _members(schema: Schema) -> list[Schema]:
    return [m for key in ("anyOf", "oneOf", "allOf") for m in schema.get(key, ())]


def _says(words: Sequence[str], how: str) -> str:
    return f"{how} {', '.join(words)}" if words else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowai_harness.schema_compat",
        description="Report what in the current JSON Schemas breaks readers of the released "
        "ones (exit 1 when something does).",
    )
    parser.add_argument("released", type=Path, help="e.g. schemas/released/v1")
    parser.add_argument("current", type=Path, help="e.g. schemas/v1")
    args = parser.parse_args(argv)
    problems = breaking_changes(args.released, args.current)
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"{len(problems)} breaking change(s): keep the released fields, or publish the "
            "change as a new schema version",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
