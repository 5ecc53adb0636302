"""Loading plugins: one path for built-in and third-party plugins alike.

Every plugin -- tuneforge's own included -- is a module named by an entry point
in the ``tuneforge`` group.  Environment variables:

``TUNEFORGE_PLUGINS=a,b``
    load only these plugins (plus ``core``, the engine's own defaults).
``TUNEFORGE_TRACE_PLUGINS=1``
    print every hook call, which plugin answered and what it returned, to stderr.

A plugin that fails to import, implements a hook that does not exist (a typo)
or whose hook arguments do not match the specs is skipped with one warning
line; the rest of tuneforge keeps working.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "tuneforge"
ALWAYS_LOADED = ("core",)
HOOK_PREFIX = "tuneforge_"


@dataclass
class PluginInfo:
    """One loaded (or skipped) plugin, as ``tuneforge plugins`` shows it."""

    name: str
    module: str
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "module": self.module, "version": self.version,
                "hooks": self.hooks, "error": self.error}


_pm: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}


def _warn(text: str) -> None:
    print(f"tuneforge: warning: {text}", file=sys.stderr)


def _allowed() -> set[str] | None:
    raw = os.environ.get("TUNEFORGE_PLUGINS")
    if raw is None or not raw.strip():
        return None
    return {p.strip() for p in raw.split(",") if p.strip()} | set(ALWAYS_LOADED)


def _unknown_hooks(module: Any, pm: pluggy.PluginManager) -> list[str]:
    """Functions that look like hook implementations but match no hook spec."""
    names = [n for n in dir(module) if n.startswith(HOOK_PREFIX) and callable(getattr(module, n))]
    return [n for n in names if getattr(getattr(pm.hook, n, None), "spec", None) is None]


def register_plugin(pm: pluggy.PluginManager, module: Any, name: str,
                    version: str | None = None) -> PluginInfo:
    """Register one plugin module, validating it; record a failure instead of raising."""
    info = PluginInfo(name=name, module=getattr(module, "__name__", repr(module)), version=version)
    unknown = _unknown_hooks(module, pm)
    if unknown:
        info.error = (f"implements unknown hook(s) {', '.join(unknown)} "
                      f"(misspelled? see docs/hooks.md)")
    else:
        try:
            pm.register(module, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            info.error = f"{type(exc).__name__}: " + " ".join(str(exc).split())
        else:
            info.hooks = sorted(h.name for h in pm.get_hookcallers(module) or [])
    if info.error:
        _warn(f"plugin {name!r} skipped: {info.error}")
    _infos[name] = info
    return info


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed = _allowed()
    seen = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen or (allowed is not None and ep.name not in allowed):
            continue
        seen.add(ep.name)
        version = ep.dist.version if ep.dist is not None else None
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must never take the CLI down
            info = PluginInfo(name=ep.name, module=ep.value, version=version,
                              error=f"failed to import {ep.value}: {type(exc).__name__}: "
                                    + " ".join(str(exc).split()))
            _warn(f"plugin {ep.name!r} skipped: {info.error}")
            _infos[ep.name] = info
            continue
        register_plugin(pm, module, ep.name, version)
    if allowed is not None:
        for missing in sorted(allowed - seen):
            _warn(f"TUNEFORGE_PLUGINS names {missing!r}, which is not installed")


def _tracer(hook_name: str, plugin: str, kwargs: dict, result: Any) -> None:
    args = ", ".join(f"{k}={v!r:.60}" for k, v in kwargs.items())
    print(f"[trace] {hook_name}({args}) <- {plugin}: {result!r:.120}", file=sys.stderr)


def tracing() -> bool:
    return os.environ.get("TUNEFORGE_TRACE_PLUGINS", "").lower() not in ("", "0", "false", "no")


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry-point plugins on first use."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("tuneforge")
        pm.add_hookspecs(hookspecs)
        _load_entry_points(pm)
        pm.check_pending()  # unknown hooks were filtered per plugin above; this is a backstop
        if tracing():
            def before(hook_name, hook_impls, kwargs):
                names = ",".join(i.plugin_name for i in hook_impls)
                print(f"[trace] {hook_name} -> [{names}]", file=sys.stderr)

            def after(outcome, hook_name, hook_impls, kwargs):
                _tracer(hook_name, "*", kwargs, outcome.get_result() if outcome.exception is None
                        else outcome.exception)

            pm.add_hookcall_monitoring(before, after)
        _pm = pm
    return _pm


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (tests; after installing a plugin at run time)."""
    global _pm
    _pm = None
    _infos.clear()


def plugin_infos() -> list[PluginInfo]:
    """Entry-point plugins (loaded and skipped) in load order, then any registered directly."""
    pm = get_plugin_manager()
    extra = [PluginInfo(name=name, module=getattr(plugin, "__name__", type(plugin).__name__), version=None,
                        hooks=sorted(h.name for h in pm.get_hookcallers(plugin) or []))
             for name, plugin in pm.list_name_plugin() if name not in _infos]
    return list(_infos.values()) + extra


def call_each(hook_name: str, make_kwargs: Callable[[str], dict], *,
              isolate: bool = False) -> list[tuple[str, Any]]:
    """Call each implementation of ``hook_name`` with arguments made for its plugin.

    ``register_*`` hooks use this so core knows which plugin registered what.
    Order is pluggy's (later-registered first, ``tryfirst``/``trylast`` honoured).
    With ``isolate``, a plugin whose implementation raises is reported in one
    warning line and the others still run.
    """
    pm = get_plugin_manager()
    results = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        kwargs = make_kwargs(impl.plugin_name)
        try:
            result = impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except Exception as exc:
            if not isolate:
                raise
            _warn(f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}")
            continue
        if tracing():
            _tracer(hook_name, impl.plugin_name, kwargs, result)
        results.append((impl.plugin_name, result))
    return results
