"""``tuneforge plugins`` (list), ``tuneforge plugins install SPEC`` and ``uninstall NAME``."""

from __future__ import annotations

import click

from .common import echo_json

EXAMPLE = """\b
Examples:
  tuneforge plugins
  tuneforge plugins --json
  tuneforge plugins install ./acme-tickets                       # a project folder, sdist or wheel
  tuneforge plugins install ./acme-tickets --no-index --no-build-isolation   # offline
  tuneforge plugins uninstall acme_tickets                       # plugin or distribution name
  TUNEFORGE_PLUGINS=support_bot tuneforge plugins     # load only these (plus core)
  TUNEFORGE_TRACE_PLUGINS=1 tuneforge plugins          # print every hook call"""

EXAMPLE_INSTALL = """\b
Examples:
  tuneforge plugins install ./acme-tickets
  tuneforge plugins install dist/acme_tickets-0.1.0-py3-none-any.whl --no-index
  tuneforge plugins install ./acme-tickets --no-index --no-build-isolation
  tuneforge plugins install acme-tickets --find-links wheels/ --no-index

A plugin whose `Requires-Dist: tuneforge...` excludes this tuneforge version,
or that has no entry point in the `tuneforge` group, is refused before
anything is installed."""

EXAMPLE_UNINSTALL = """\b
Examples:
  tuneforge plugins uninstall acme_tickets       # the plugin's name, as `tuneforge plugins` shows it
  tuneforge plugins uninstall acme-tickets       # or its distribution name"""


def list_plugins(as_json: bool) -> None:
    from ..plugin_manager import plugin_infos
    from ..tasks import all_tasks, all_templates

    infos = plugin_infos()
    tasks = all_tasks()
    templates = all_templates()
    if as_json:
        echo_json({"plugins": [i.to_dict() | {"tasks": sorted(t for t, s in tasks.items() if s.plugin == i.name)}
                               for i in infos],
                   "tasks": {name: t.to_dict() for name, t in tasks.items()},
                   "templates": {name: t.__dict__ for name, t in templates.items()}})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tuneforge plugins")
    for col in ("plugin", "version", "hooks", "tasks", "status"):
        table.add_column(col)
    for info in infos:
        hooks = ", ".join(h.removeprefix("tuneforge_") for h in info.hooks)
        names = ", ".join(sorted(t for t, s in tasks.items() if s.plugin == info.name))
        status = f"[red]skipped: {info.error}[/red]" if info.error else "[green]loaded[/green]"
        table.add_row(info.name, info.version or "-", hooks, names, status)
    Console().print(table)


def _pip_options(no_index: bool, no_build_isolation: bool, find_links: tuple[str, ...],
                 pip_args: tuple[str, ...]) -> list[str]:
    opts = ["--no-index"] if no_index else []
    opts += ["--no-build-isolation"] if no_build_isolation else []
    for link in find_links:
        opts += ["--find-links", link]
    for arg in pip_args:
        opts += arg.split()
    return opts


def register(cli: click.Group) -> None:
    @cli.group(epilog=EXAMPLE, invoke_without_command=True)
    @click.option("--json", "as_json", is_flag=True, help="Print plugins, tasks and templates as JSON.")
    @click.pass_context
    def plugins(ctx, as_json):
        """List loaded plugins, their versions, the hooks they implement and the tasks they add.

        Subcommands install and uninstall third-party plugins with pip.
        """
        if ctx.invoked_subcommand is None:
            list_plugins(as_json)

    @plugins.command(epilog=EXAMPLE_INSTALL)
    @click.argument("spec")
    @click.option("--no-index", is_flag=True, help="Do not use a package index (offline; passed to pip).")
    @click.option("--no-build-isolation", is_flag=True,
                  help="Build a source folder with the installed setuptools (offline; passed to pip).")
    @click.option("--find-links", "-f", multiple=True, metavar="DIR", help="Also look for wheels here (pip).")
    @click.option("--no-deps", is_flag=True, help="Do not install the plugin's dependencies (pip).")
    @click.option("--force-reinstall", is_flag=True, help="Reinstall even if this version is installed (pip).")
    @click.option("--pip-arg", "pip_args", multiple=True, metavar="ARG", help="Any other pip option (repeatable).")
    @click.option("--json", "as_json", is_flag=True, help="Print what was installed as JSON.")
    def install(spec, no_index, no_build_isolation, find_links, no_deps, force_reinstall, pip_args, as_json):
        """Install a plugin (project folder, sdist, wheel or name) into this Python environment with pip."""
        from ..plugin_install import install_plugin
        from ..plugin_manager import plugin_infos, reset_plugin_manager

        extra = (["--no-deps"] if no_deps else []) + (["--force-reinstall"] if force_reinstall else [])
        info = install_plugin(spec, pip_options=_pip_options(no_index, no_build_isolation, find_links, pip_args),
                              install_options=extra)
        reset_plugin_manager()
        loaded = {i.name: i for i in plugin_infos()}
        status = {name: (loaded[name].error or "loaded") if name in loaded else "not loaded here"
                  for name in info.entry_points}
        if as_json:
            echo_json(info.to_dict() | {"plugins": status})
            return
        req = info.engine_requirement
        click.echo(f"installed {info.name} {info.version} (tuneforge{req or ' any version'}): "
                   + ", ".join(f"plugin {n} {s}" for n, s in status.items()))
        for name, state in status.items():
            if state not in ("loaded", "not loaded here"):
                click.echo(f"warning: plugin {name} is installed but skipped: {state}", err=True)

    @plugins.command(epilog=EXAMPLE_UNINSTALL)
    @click.argument("name")
    def uninstall(name):
        """Uninstall a third-party plugin (by plugin or distribution name) with pip."""
        from ..plugin_install import uninstall_plugin

        dist, version, names = uninstall_plugin(name)
        click.echo(f"uninstalled {dist} {version} (plugins: {', '.join(names)})")
