"""The one door to the native engine (``flowai_harness._internal``).

Owns the import of the extension with its version handshake, the single mapping of
native ``EngineError(code, message, line)`` to the typed hierarchy in :mod:`.errors`, and the
types of what the engine reports: its knowledge of a compiled spec's agents
(:class:`AgentKnowledge`, under ``compiled`` in :func:`compile_spec`'s JSON) and what an
approval id names (:func:`parse_approval_id`). Nothing else in the package imports
``_internal``. Must not import the runtime or specs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, NoReturn, ParamSpec, TypedDict, TypeVar

from ._version import __version__
from .errors import ExtensionMismatchError, error_from_code

try:
    from . import _internal
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ExtensionMismatchError(
        f"the native engine (flowai_harness._internal) cannot be imported: {exc}; "
        "rebuild it with `make build` (or `maturin develop --release`)"
    ) from exc

if _internal.__version__ != __version__:  # pragma: no cover - depends on the build
    raise ExtensionMismatchError(
        f"the native engine is version {_internal.__version__} but the Python package is "
        f"{__version__}; rebuild the extension with `make build` (or `maturin develop --release`)"
    )

P = ParamSpec("P")
R = TypeVar("R")

# Output kinds of Engine.handle_batch.
EVENT = 0
EFFECT = 1
REJECTION = 2
DUPLICATE = 3


def _raise(exc: _internal.EngineError, path: str | None = None) -> NoReturn:
    code, message, line = exc.args
    raise error_from_code(code, message, line=line, path=path) from None


def _mapped(fn: Callable[P, R]) -> Callable[P, R]:
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except _internal.EngineError as exc:
            _raise(exc)

    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


compile_spec = _mapped(_internal.compile_spec)
validate_json = _mapped(_internal.validate_json)
# The engine's built-in tools: their names are reserved.
BUILTIN_TOOL_NAMES: frozenset[str] = frozenset(_internal.builtin_tool_names())
# The toolkits a spec may name, in the engine's order (``catalog`` last: named, refused).
TOOLKIT_NAMES: tuple[str, ...] = tuple(_internal.toolkit_names())


class ToolKnowledge(TypedDict):
    """A tool an agent's model is offered, as the engine compiled it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    builtin: bool
    # The gate its calls wait at; None for the built-ins the engine answers itself.
    gate: Literal["plans", "tools"] | None
    # The rule its calls run under, every level and override applied: "never", "always",
    # {"approvers": n} or {"predicate": id}.
    approval: str | dict[str, Any]


class AgentKnowledge(TypedDict):
    """What the engine knows of one agent of a compiled spec (``compiled[agent]``)."""

    builtin_tools: list[str]
    stateful: bool
    # Its own tools, then its built-ins, in the order its model requests list them.
    tools: list[ToolKnowledge]


class ApprovalRef(NamedTuple):
    """What an approval id names: the gate of call ``call_id`` of run ``run_id`` of
    ``thread_id``."""

    thread_id: str
    run_id: str
    call_id: str


def parse_approval_id(approval_id: str) -> ApprovalRef | None:
    """What ``approval_id`` names, or None when it is not an approval id. The engine derives
    these ids; it is the only reader of them too."""
    parts = _internal.parse_approval_id(approval_id)
    return None if parts is None else ApprovalRef(*parts)


def replay(log: bytes, *, path: str | None = None) -> _internal.Replay:
    """Fold a run log into fresh thread states; errors name ``path`` and the line."""
    try:
        return _internal.replay(log)
    except _internal.EngineError as exc:
        _raise(exc, path)


def replay_from(
    snapshot: bytes, tail: bytes, thread_id: str | None = None, *, path: str | None = None
) -> _internal.Replay:
    """Restore one thread from its snapshot (which must be ``thread_id``, when given) and fold
    ``tail`` (its log after the snapshot; covered lines are skipped). A snapshot this engine
    cannot trust raises :class:`.SnapshotError`."""
    try:
        return _internal.replay_from(snapshot, tail, thread_id)
    except _internal.EngineError as exc:
        _raise(exc, path)


class Engine:
    """The native engine with errors mapped; holds every live thread's state."""

    __slots__ = (
        "_engine",
        "deadline",
        "due",
        "handle_batch",
        "handle_many",
        "has_thread",
        "last_seq",
        "next_deadline",
        "save",
        "snapshot",
        "status",
        "thread_ids",
    )

    def __init__(self, config: bytes) -> None:
        try:
            self._engine = _internal.Engine(config)
        except _internal.EngineError as exc:
            _raise(exc)
        # handle_batch only raises for a batch that is not a JSON array, which the runtime
        # never builds; bound directly so the hot path pays no wrapper call.
        self.handle_batch = self._engine.handle_batch
        # Never raises: each malformed input comes back as a rejection output.
        self.handle_many = self._engine.handle_many
        self.has_thread = self._engine.has_thread
        self.status = self._engine.status
        self.snapshot = self._engine.snapshot
        self.deadline = self._engine.deadline
        self.next_deadline = self._engine.next_deadline
        self.due = self._engine.due
        self.save = self._engine.save
        self.last_seq = self._engine.last_seq
        self.thread_ids = self._engine.thread_ids

    def load(self, log: bytes, *, path: str | None = None) -> int:
        try:
            return self._engine.load(log)
        except _internal.EngineError as exc:
            _raise(exc, path)

    def apply(self, line: bytes) -> None:
        try:
            self._engine.apply(line)
        except _internal.EngineError as exc:
            _raise(exc)

    def forget(self, thread_id: str) -> bool:
        return self._engine.forget(thread_id)

    def restore(self, snapshot: bytes, thread_id: str | None = None) -> int:
        """Hold the thread a snapshot carries (it must be ``thread_id``, when given); returns
        the seq it covers. Raises :class:`.SnapshotError` for a snapshot this engine cannot
        trust."""
        try:
            return self._engine.restore(snapshot, thread_id)
        except _internal.EngineError as exc:
            _raise(exc)

    def fork(self, input: bytes, source_log: bytes) -> list[tuple[int, str, bytes]]:
        """Start the thread ``input`` names (a ``flowai.v1.ForkThread`` envelope) from
        ``source_log``; returns the outputs as ``handle_batch`` does."""
        try:
            return self._engine.fork(input, source_log)
        except _internal.EngineError as exc:
            _raise(exc)

    def load_tail(self, log: bytes, *, path: str | None = None) -> int:
        """Fold log lines after what is held (lines a held thread covers are skipped)."""
        try:
            return self._engine.load_tail(log)
        except _internal.EngineError as exc:
            _raise(exc, path)
