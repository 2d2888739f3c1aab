"""The exception hierarchy: stable codes, builtin bases, and the engine-code table."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from flowai_harness import errors
from flowai_harness.errors import (
    CoordinatorWithoutRoutesError,
    CorruptedLogError,
    DuplicateAgentError,
    ExtensionMismatchError,
    FlowaiError,
    InvalidInputError,
    NotFoundError,
    ReplayDivergenceError,
    ReplayError,
    RunStateError,
    SelfRouteError,
    SpecError,
    ThreadBusyError,
    UnknownAgentError,
    UnknownRouteError,
    UnknownSchemaError,
    error_from_code,
)

ERROR_RS = Path(__file__).resolve().parents[2] / "core" / "engine" / "src" / "error.rs"


def engine_codes(enum: str = "ErrorCode") -> list[str]:
    source = ERROR_RS.read_text()
    body = source[source.index(f"impl {enum} {{") :]
    body = body[body.index("fn as_str") :]
    body = body[: body.index("\n    }\n")]
    codes = re.findall(r'=>\s*"([A-Z][A-Z0-9_]*)"', body)
    declared = int(re.search(rf"ALL: \[{enum}; (\d+)\]", source).group(1))  # type: ignore[union-attr]
    assert len(codes) == declared, f"could not read every code of {enum}::as_str"
    return codes


def test_the_result_codes_are_the_engines_in_both_languages() -> None:
    assert [code.value for code in errors.ResultCode] == engine_codes("ResultCode")


def all_error_classes() -> list[type[FlowaiError]]:
    found: list[type[FlowaiError]] = [FlowaiError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("code", engine_codes())
def test_every_engine_code_has_its_own_class(code: str) -> None:
    error = error_from_code(code, "what went wrong")

    assert type(error) is not FlowaiError, f"add a FlowaiError subclass for {code} to errors.py"
    assert type(error).code == code
    assert error.code == code
    assert error.message == "what went wrong"


def test_codes_are_unique_across_the_hierarchy() -> None:
    codes = [cls.code for cls in all_error_classes()]

    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", all_error_classes()[1:], ids=lambda cls: cls.__name__)
def test_every_class_round_trips_through_its_code(cls: type[FlowaiError]) -> None:
    assert type(error_from_code(cls.code, "m")) is cls


def test_str_is_code_then_message() -> None:
    error = SpecError("agent 'a' has no prompt")

    assert str(error) == "[SPEC_INVALID] agent 'a' has no prompt"
    assert error.args == ("agent 'a' has no prompt",)
    assert error.details == {}


def test_code_and_details_can_be_set_per_instance() -> None:
    error = FlowaiError("from a newer engine", code="SOMETHING_NEW", details={"agent": "a"})

    assert error.code == "SOMETHING_NEW"
    assert FlowaiError.code == "FLOWAI_ERROR"
    assert error.details == {"agent": "a"}
    assert str(error) == "[SOMETHING_NEW] from a newer engine"


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (SpecError, ValueError),
        (DuplicateAgentError, ValueError),
        (InvalidInputError, ValueError),
        (UnknownSchemaError, ValueError),
        (NotFoundError, LookupError),
        (UnknownAgentError, LookupError),
        (ExtensionMismatchError, ImportError),
    ],
)
def test_builtin_bases_still_catch(cls: type[FlowaiError], builtin: type[Exception]) -> None:
    with pytest.raises(builtin):
        raise cls("m")


def test_families() -> None:
    assert issubclass(SelfRouteError, UnknownRouteError)
    assert issubclass(CoordinatorWithoutRoutesError, SpecError)
    assert issubclass(UnknownSchemaError, InvalidInputError)
    assert issubclass(ThreadBusyError, RunStateError)
    assert issubclass(CorruptedLogError, ReplayError)
    assert issubclass(ReplayDivergenceError, ReplayError)
    assert SelfRouteError.code == "SPEC_SELF_ROUTE"


def test_replay_errors_say_where() -> None:
    assert (
        str(CorruptedLogError("not JSON", path="runs/t1.jsonl", line=3))
        == "[LOG_CORRUPTED] file runs/t1.jsonl, line 3: not JSON"
    )
    assert str(ReplayDivergenceError("gap", line=7)) == "[REPLAY_DIVERGED] line 7: gap"
    assert str(ReplayDivergenceError("gap")) == "[REPLAY_DIVERGED] gap"


def test_error_from_code_locates_log_errors() -> None:
    error = error_from_code("LOG_CORRUPTED", "truncated", line=12, path="t.jsonl")

    assert isinstance(error, CorruptedLogError)
    assert (error.path, error.line) == ("t.jsonl", 12)


def test_error_from_code_keeps_a_line_on_other_errors_in_details() -> None:
    error = error_from_code("THREAD_BUSY", "run r-1 is active", line=4)

    assert isinstance(error, ThreadBusyError)
    assert error.details == {"line": 4}


def test_unknown_code_is_still_a_flowai_error() -> None:
    error = error_from_code("BRAND_NEW", "m")

    assert type(error) is FlowaiError
    assert error.code == "BRAND_NEW"


@pytest.mark.parametrize(
    "error",
    [
        SpecError("m", details={"agent": "a"}),
        FlowaiError("m", code="OTHER"),
        CorruptedLogError("m", path="p", line=2),
        ExtensionMismatchError("rebuild"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle(error: FlowaiError) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.details == error.details


def test_all_lists_every_public_class() -> None:
    # Other test modules may subclass FlowaiError; only this module's classes are public here.
    public = {cls.__name__ for cls in all_error_classes() if cls.__module__ == errors.__name__}

    assert public <= set(errors.__all__)
