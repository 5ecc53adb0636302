"""Apps: what a plugin declares, what core serves.

A plugin declares an app with the ``tuneforge_register_apps`` hook -- a name, where it loads
from by default, and a ``load(context)`` function that returns a :class:`LoadedApp` (its
routers, an optional warm-up prediction, an optional background worker, a close function).
Core does the rest, the same way for every app and for a bare bundle: one FastAPI factory
(:func:`tuneforge.serve.create_server`), one auth check, one error shape, one ``/healthz``,
one ``/metrics`` (the app's own counters go into ``context.metrics``), request limits,
``tuneforge serve NAME``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .errors import PluginError, UsageError

if TYPE_CHECKING:  # annotations only: keep this module import-light
    from prometheus_client import CollectorRegistry

    from .tasks import TaskSpec

NAME = re.compile(r"^[a-z][a-z0-9-]*$")


class Worker(Protocol):
    """Background work an app runs while it is served (the finance monitor's ingest loop)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class AppContext:
    """The host object an app's ``load`` receives: where to load from, and core's shared pieces."""

    name: str
    path: Path | None
    metrics: "CollectorRegistry"
    options: dict = field(default_factory=dict)

    def require_path(self, what: str) -> Path:
        """``path``, or a one-line error saying what the app needs."""
        if self.path is None:
            raise UsageError(f"{self.name} needs {what}", hint=f"tuneforge serve {self.name} --app-path PATH")
        return self.path


@dataclass
class LoadedApp:
    """A ready-to-serve app.  ``warmup`` makes one real prediction (readiness); ``worker`` runs
    in the background while served; ``close`` releases stores and models."""

    name: str
    routers: list = field(default_factory=list)
    warmup: Callable[[], Any] | None = None
    worker: Worker | None = None
    close: Callable[[], None] | None = None
    info: dict = field(default_factory=dict)
    predictor: Any = None
    task: "TaskSpec | None" = None
    public_paths: frozenset = frozenset()   # paths served without the token (an app's web page)
    pages: Any = None                        # a tuneforge.webpages.WebPages: its routes join, its paths are public

    def __post_init__(self):
        if not self.name:
            raise ValueError("LoadedApp needs a name")
        for attr in ("warmup", "close"):
            value = getattr(self, attr)
            if value is not None and not callable(value):
                raise TypeError(f"LoadedApp.{attr} must be callable")
        if self.worker is not None and not (callable(getattr(self.worker, "start", None))
                                            and callable(getattr(self.worker, "stop", None))):
            raise TypeError("LoadedApp.worker needs start() and stop()")
        if self.pages is not None:
            if not (callable(getattr(self.pages, "router", None)) and hasattr(self.pages, "public_paths")):
                raise TypeError("LoadedApp.pages must be a tuneforge.webpages.WebPages")
            self.routers = [*self.routers, self.pages.router()]
            self.public_paths = frozenset(self.public_paths) | self.pages.public_paths


@dataclass
class AppSpec:
    """An app a plugin offers to ``tuneforge serve NAME`` (``register(AppSpec(...))``)."""

    name: str
    description: str
    load: Callable[[AppContext], LoadedApp]
    default_path: str | None = None
    path_help: str = "the app's folder or config file"
    plugin: str | None = None            # filled in by core: who registered it

    def __post_init__(self):
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise ValueError(f"app name {self.name!r}: use lower-case letters, digits and dashes")
        if not callable(self.load):
            raise TypeError(f"app {self.name}: load must be a function of an AppContext")

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "default_path": self.default_path,
                "path_help": self.path_help, "plugin": self.plugin}


def all_apps() -> dict[str, AppSpec]:
    """Every app the loaded plugins register, by name; two plugins with one name is an error."""
    from .plugin_manager import call_each

    found: dict[str, AppSpec] = {}

    def collect(plugin: str):
        def register(spec: AppSpec) -> None:
            if not isinstance(spec, AppSpec):
                raise PluginError(f"plugin {plugin!r} registered {spec!r}, not an AppSpec")
            if spec.name in found:
                raise PluginError(f"app {spec.name!r} is registered by both {found[spec.name].plugin!r} "
                                  f"and {plugin!r}", hint="uninstall one, or use TUNEFORGE_PLUGINS")
            spec.plugin = plugin
            found[spec.name] = spec
        return {"register": register}

    call_each("tuneforge_register_apps", collect, isolate=True)
    return dict(sorted(found.items()))


def get_app(name: str) -> AppSpec:
    apps = all_apps()
    if name not in apps:
        import difflib

        close = difflib.get_close_matches(name, list(apps), n=1)
        raise UsageError(f"{name} is neither a bundle folder nor an app",
                         hint=(f"did you mean {close[0]!r}? " if close else "")
                         + "apps: " + (", ".join(apps) or "none installed"))
    return apps[name]


def load_app(name: str, path: str | Path | None, metrics: "CollectorRegistry", **options) -> LoadedApp:
    """Load the app ``name`` from ``path`` (default: its ``default_path``)."""
    spec = get_app(name)
    where = path if path is not None else spec.default_path
    context = AppContext(name=name, path=None if where is None else Path(where), metrics=metrics,
                         options=options)
    loaded = spec.load(context)
    if not isinstance(loaded, LoadedApp):
        raise PluginError(f"app {name!r} (plugin {spec.plugin!r}) returned {type(loaded).__name__}, "
                          "not a LoadedApp")
    return loaded
