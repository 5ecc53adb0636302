"""``tuneforge apps`` and ``tuneforge new``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import click

from ..errors import PluginError, UsageError

EXAMPLE_NEW = """\b
Examples:
  tuneforge new app my-bot --template support-bot
  tuneforge apps          # list the templates plugins offer"""

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def render_template(src: Path, dest: Path, variables: dict[str, str]) -> list[Path]:
    """Copy ``src`` to ``dest`` replacing ``{{name}}`` placeholders in text files and file names.

    Written to a temp folder first, renamed at the end: no half project on failure.
    """
    if dest.exists():
        raise UsageError(f"{dest} already exists", hint="choose another name or remove it")
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    written = []
    try:
        for path in sorted(src.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            rel = str(path.relative_to(src))
            for key, value in variables.items():
                rel = rel.replace("{{" + key + "}}", value)
            target = tmp / rel.removesuffix(".tmpl")
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                shutil.copy2(path, target)
            else:
                for key, value in variables.items():
                    text = text.replace("{{" + key + "}}", value)
                target.write_text(text, encoding="utf-8")
            written.append(dest / target.relative_to(tmp))
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written


def register(cli: click.Group) -> None:
    @cli.command(epilog=EXAMPLE_NEW)
    @click.option("--json", "as_json", is_flag=True, help="Print the templates as JSON.")
    def apps(as_json):
        """List the application templates that plugins offer (for `tuneforge new app`)."""
        from ..tasks import all_templates

        templates = all_templates()
        if as_json:
            from .common import echo_json

            echo_json({n: t.__dict__ for n, t in templates.items()})
            return
        if not templates:
            click.echo("no templates registered")
        for name, t in sorted(templates.items()):
            click.echo(f"{name:20} {t.description}  [{t.plugin}]")

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

        if not NAME_RE.match(name):
            raise UsageError(f"app name {name!r} must be lower-case letters, digits, '-' or '_'")
        templates = all_templates()
        if template not in templates:
            raise PluginError(f"unknown template {template!r} (available: {', '.join(sorted(templates)) or 'none'})",
                              hint="run `tuneforge apps`")
        dest = Path(parent) / name
        files = render_template(Path(templates[template].path), dest,
                                {"name": name, "module": name.replace("-", "_"), "template": template})
        click.echo(f"created {dest} ({len(files)} files); next: cd {dest} && cat README.md")
