"""What Studio serves: the seed's ``define_app`` / ``define_workspace_runtime``, and turning an
``--app module:attr`` into a runtime.

Owns :class:`FlowAIApp`, :class:`WorkspaceRuntimeBinding`, :func:`define_app`,
:func:`define_workspace_runtime`, :class:`RuntimeChoice` (interpreter and log path, chosen as
``create_runtime`` chooses them) and :func:`resolve_target` / :func:`build_runtime`: an
``--app`` may name a ``RuntimeSpec``, a ``Runtime``, a runtime factory (a callable returning a
spec or a runtime; it is given the ``log_path``, ``interpreter`` and ``testing`` keywords it
declares) or a :class:`FlowAIApp`. The seed's data-environment and capability options are
accepted and kept as metadata; this build has no data catalog.

Must not import FastAPI, Kafka or the Studio server (the command line and the backends
import this).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..apps import import_object
from ..errors import AppLoadError, SpecError
from ..runtime import INTERPRETERS, Runtime, create_runtime
from ..specs import RuntimeSpec, TestingConfig

__all__ = [
    "FlowAIApp",
    "RuntimeChoice",
    "WorkspaceRuntimeBinding",
    "build_runtime",
    "define_app",
    "define_workspace_runtime",
    "resolve_target",
    "spec_of",
]

RuntimeFactory = Callable[..., Any]
# What a factory may ask for, by parameter name.
_FACTORY_KEYWORDS = ("log_path", "interpreter", "testing")


@dataclass(frozen=True)
class WorkspaceRuntimeBinding:
    """One workspace of a Studio app: a spec, a factory or a built runtime (exactly one)."""

    workspace_key: str
    runtime_spec: RuntimeSpec | None = None
    runtime_factory: RuntimeFactory | None = None
    runtime: Runtime | None = None
    display_name: str | None = None
    description: str | None = None
    resource_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        given = [
            name
            for name, value in (
                ("runtime_spec", self.runtime_spec),
                ("runtime_factory", self.runtime_factory),
                ("runtime", self.runtime),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise SpecError(
                f"workspace {self.workspace_key!r} needs exactly one of runtime_spec, "
                f"runtime_factory or runtime, got {', '.join(given) or 'none'}"
            )
        if self.runtime_factory is not None and not callable(self.runtime_factory):
            raise SpecError(f"workspace {self.workspace_key!r}: runtime_factory must be callable")


@dataclass(frozen=True)
class FlowAIApp:
    """A Studio app: named workspaces, one of them the default."""

    name: str
    workspaces: Mapping[str, WorkspaceRuntimeBinding]
    default_workspace: str
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def workspace(self, key: str | None) -> WorkspaceRuntimeBinding:
        key = key or self.default_workspace
        binding = self.workspaces.get(key)
        if binding is None:
            raise AppLoadError(
                f"app {self.name!r} has no workspace {key!r}; its workspaces are: "
                f"{', '.join(sorted(self.workspaces))}"
            )
        return binding


def define_workspace_runtime(
    *,
    runtime_spec: RuntimeSpec | None = None,
    runtime_factory: RuntimeFactory | None = None,
    runtime: Runtime | None = None,
    workspace_key: str = "default",
    display_name: str | None = None,
    description: str | None = None,
    resource_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    capabilities: tuple[str, ...] | list[str] | None = None,
    data_environment: Mapping[str, Any] | None = None,
    target_database_url: str | None = None,
) -> WorkspaceRuntimeBinding:
    """The seed's workspace binding; the runtime is built when Studio first needs it."""
    _no_data_environment(data_environment, target_database_url)
    return WorkspaceRuntimeBinding(
        workspace_key=workspace_key,
        runtime_spec=runtime_spec,
        runtime_factory=runtime_factory,
        runtime=runtime,
        display_name=display_name,
        description=description,
        resource_id=resource_id,
        metadata=dict(metadata or {}),
        capabilities=tuple(capabilities or ()),
    )


def define_app(
    *,
    name: str,
    workspaces: list[WorkspaceRuntimeBinding] | Mapping[str, WorkspaceRuntimeBinding] | None = None,
    default_workspace: str = "default",
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    runtime_spec: RuntimeSpec | None = None,
    runtime_factory: RuntimeFactory | None = None,
    runtime: Runtime | None = None,
    resource_id: str | None = None,
    capabilities: tuple[str, ...] | list[str] | None = None,
    data_environment: Mapping[str, Any] | None = None,
    target_database_url: str | None = None,
) -> FlowAIApp:
    """The seed's Studio app. ``runtime_spec`` / ``runtime_factory`` / ``runtime`` are sugar
    for a single ``default`` workspace and exclude ``workspaces``."""
    single = runtime_spec is not None or runtime_factory is not None or runtime is not None
    if single and workspaces is not None:
        raise SpecError("define_app takes workspaces=... or a single runtime, not both")
    if single:
        bound = {
            default_workspace: define_workspace_runtime(
                runtime_spec=runtime_spec,
                runtime_factory=runtime_factory,
                runtime=runtime,
                workspace_key=default_workspace,
                resource_id=resource_id,
                capabilities=capabilities,
                data_environment=data_environment,
                target_database_url=target_database_url,
            )
        }
    elif workspaces is None:
        raise SpecError("define_app needs workspaces=[...] or a runtime_spec/runtime_factory")
    elif isinstance(workspaces, Mapping):
        bound = dict(workspaces)
    else:
        bound = {binding.workspace_key: binding for binding in workspaces}
        if len(bound) != len(workspaces):
            raise SpecError("define_app: two workspaces share a workspace_key")
    if default_workspace not in bound:
        raise SpecError(
            f"default_workspace {default_workspace!r} is not one of the workspaces "
            f"({', '.join(sorted(bound))})"
        )
    return FlowAIApp(
        name=name,
        workspaces=bound,
        default_workspace=default_workspace,
        description=description,
        metadata=dict(metadata or {}),
    )


def _no_data_environment(data_environment: Any, target_database_url: Any) -> None:
    if data_environment is not None or target_database_url is not None:
        raise SpecError(
            "data_environment and target_database_url configure the seed's data catalog, "
            "which this build does not have; leave them out"
        )


@dataclass(frozen=True)
class RuntimeChoice:
    """How Studio builds a runtime from a spec (a factory gets the parts it declares)."""

    interpreter: str = "scripted"
    mock_response: str | None = None
    log_path: str | None = None

    def __post_init__(self) -> None:
        if self.interpreter not in (*INTERPRETERS, "mock"):
            raise SpecError(
                f"unknown interpreter {self.interpreter!r}; choose one of "
                f"{', '.join((*INTERPRETERS, 'mock'))}"
            )
        if self.interpreter == "mock" and self.mock_response is None:
            raise SpecError("--interpreter mock needs --mock-response TEXT")

    def create_runtime_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"log_path": self.log_path}
        if self.interpreter == "mock":
            kwargs["testing"] = TestingConfig(mock_response=self.mock_response or "")
        else:
            kwargs["interpreter"] = self.interpreter
        return kwargs


def resolve_target(reference: str, *, workspace: str | None = None) -> Any:
    """What ``--app`` names, with a FlowAIApp narrowed to one workspace binding."""
    target = import_object(reference)
    if isinstance(target, FlowAIApp):
        return target.workspace(workspace)
    if workspace is not None:
        raise AppLoadError(f"--workspace {workspace!r} needs --app to name a define_app(...) app")
    return target


def build_runtime(target: Any, choice: RuntimeChoice, *, what: str = "--app") -> Runtime:
    """A runtime from a spec, a runtime, a factory or a workspace binding."""
    if isinstance(target, WorkspaceRuntimeBinding):
        target = target.runtime_spec or target.runtime_factory or target.runtime
    if isinstance(target, Runtime):
        return target
    if isinstance(target, RuntimeSpec):
        return create_runtime(target, **choice.create_runtime_kwargs())
    if callable(target):
        made = target(**_factory_kwargs(target, choice, what))
        if isinstance(made, RuntimeSpec):
            return create_runtime(made, **choice.create_runtime_kwargs())
        if isinstance(made, Runtime):
            return made
        raise AppLoadError(
            f"{what}: the factory returned {type(made).__name__}; it must return the spec "
            "from define_runtime(...) or a runtime from create_runtime(...)"
        )
    raise AppLoadError(
        f"{what} must name a RuntimeSpec, a Runtime, a function returning one, or a "
        f"define_app(...) app; got {type(target).__name__}"
    )


def _factory_kwargs(factory: RuntimeFactory, choice: RuntimeChoice, what: str) -> dict[str, Any]:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    offered = choice.create_runtime_kwargs()
    offered.setdefault("interpreter", "noop")
    offered.setdefault("testing", None)
    kwargs: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if name in _FACTORY_KEYWORDS:
            kwargs[name] = offered[name]
        elif parameter.default is inspect.Parameter.empty and parameter.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            raise AppLoadError(
                f"{what}: the factory {getattr(factory, '__name__', factory)!r} needs "
                f"{name!r}, which Studio cannot give; Studio passes only "
                f"{', '.join(_FACTORY_KEYWORDS)}: wrap it in a function that takes those"
            )
    if choice.log_path is not None and "log_path" not in kwargs:
        raise AppLoadError(
            f"{what}: --log-path was given but the factory takes no log_path parameter"
        )
    return kwargs


def spec_of(target: Any, *, what: str = "--app") -> RuntimeSpec:
    """The spec behind what ``--app`` names (a factory is called to find it)."""
    if isinstance(target, WorkspaceRuntimeBinding):
        target = target.runtime_spec or target.runtime or target.runtime_factory
    if isinstance(target, RuntimeSpec):
        return target
    if isinstance(target, Runtime):
        return target.spec
    if callable(target):
        return spec_of(target(), what=what)
    raise AppLoadError(
        f"{what} must name a RuntimeSpec, a Runtime, a function returning one, or a "
        f"define_app(...) app; got {type(target).__name__}"
    )
