"""``tuneforge apps`` and ``tuneforge new``."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import PluginError
from ..scaffold import check_name, render_template  # noqa: F401 (render_template: re-exported)

EXAMPLE_NEW = """\b
Examples:
  tuneforge new app my-bot --template support-bot
  tuneforge apps          # list the templates plugins offer
  tuneforge new plugin acme-tickets    # an installable plugin package"""

EXAMPLE_PLUGIN = """\b
Examples:
  tuneforge new plugin acme-tickets
  cd acme-tickets && pytest                     # contract kit + its own tests
  tuneforge plugins install ./acme-tickets      # then: tuneforge train --task acme-tickets"""


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE_NEW)
    @click.option("--json", "as_json", is_flag=True, help="Print the apps and templates as JSON.")
    def apps(as_json):
        """List the apps plugins offer (for `tuneforge serve NAME`) and their templates (`tuneforge new app`)."""
        from ..application import all_apps
        from ..tasks import all_templates

        servable, templates = all_apps(), all_templates()
        if as_json:
            from .common import echo_json

            echo_json({"apps": {n: a.to_dict() for n, a in servable.items()},
                       "templates": {n: t.__dict__ for n, t in templates.items()}})
            return
        click.echo("apps (tuneforge serve NAME [--app-path PATH]):")
        for name, a in servable.items():
            click.echo(f"  {name:20} {a.description}  [{a.plugin}; default --app-path {a.default_path}]")
        click.echo("templates (tuneforge new app DIR --template NAME):")
        for name, t in sorted(templates.items()):
            click.echo(f"  {name:20} {t.description}  [{t.plugin}]")
        if not servable and not templates:
            click.echo("  none registered")

    @cli.group(epilog=EXAMPLE_NEW)
    def new():
        """Create a new project from a template."""

    @new.command(name="app", epilog=EXAMPLE_NEW)
    @click.argument("name")
    @click.option("--template", "-t", required=True, help="Template name (see `tuneforge apps`).")
    @click.option("--dir", "parent", default=".", show_default=True, type=click.Path(file_okay=False),
                  help="Folder to create the project in.")
    def new_app(name, template, parent):
        """Create a working project folder (config, sample data, README, test) from a template."""
        from ..tasks import all_templates

        check_name(name, "app name")
        templates = all_templates()
        if template not in templates:
            raise PluginError(f"unknown template {template!r} (available: {', '.join(sorted(templates)) or 'none'})",
                              hint="run `tuneforge apps`")
        dest = Path(parent) / name
        files = render_template(Path(templates[template].path), dest,
                                {"name": name, "module": name.replace("-", "_"), "template": template})
        click.echo(f"created {dest} ({len(files)} files); next: cd {dest} && cat README.md")

    @new.command(name="plugin", epilog=EXAMPLE_PLUGIN)
    @click.argument("name")
    @click.option("--dir", "parent", default=".", show_default=True, type=click.Path(file_okay=False),
                  help="Folder to create the package in.")
    def new_plugin(name, parent):
        """Create an installable plugin package: pyproject with the `tuneforge` entry point,
        a hookimpl module with one task and sample data, contract-kit tests, README."""
        from ..scaffold import plugin_variables, scaffold_plugin

        dest = scaffold_plugin(name, parent)
        v = plugin_variables(name)
        shown = dest if dest.is_absolute() or str(dest).startswith(".") else f"./{dest}"
        click.echo(f"created {dest}: plugin {v['module']} with task {v['task']} "
                   f"(tuneforge{v['tuneforge_requirement']}); next: cd {dest} && pytest, "
                   f"then tuneforge plugins install {shown}")
