"""``tuneforge plugins``."""

from __future__ import annotations

import click

from .common import echo_json

EXAMPLE = """\b
Examples:
  tuneforge plugins
  tuneforge plugins --json
  TUNEFORGE_PLUGINS=support_bot tuneforge plugins     # load only these (plus core)
  TUNEFORGE_TRACE_PLUGINS=1 tuneforge plugins          # print every hook call"""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE)
    @click.option("--json", "as_json", is_flag=True, help="Print plugins, tasks and templates as JSON.")
    def plugins(as_json):
        """List loaded plugins, their versions, the hooks they implement and the tasks they add."""
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
