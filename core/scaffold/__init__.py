"""Project skeletons: render a template folder, and scaffold a new plugin package.

``render_template`` is what ``tuneforge new app`` uses for plugins' app templates;
``scaffold_plugin`` is ``tuneforge new plugin``: an installable package with the
``tuneforge`` entry point, a hookimpl module with one task and sample data, tests
that use the contract kit (:mod:`tuneforge.testing`) and a README.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .. import __version__
from ..errors import UsageError

PLUGIN_TEMPLATE = Path(__file__).parent / "plugin"
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def check_name(name: str, what: str = "name") -> str:
    if not NAME_RE.match(name) or name.endswith(("-", "_")):
        raise UsageError(f"{what} {name!r} must start with a lower-case letter and hold only "
                         "lower-case letters, digits, '-' or '_'")
    return name


def engine_requirement(version: str = __version__) -> str:
    """The requirement a new plugin declares: this minor series (``>=0.1.0,<0.2``)."""
    major, minor = (int(p) for p in re.findall(r"\d+", version)[:2])
    return f">={version},<{major}.{minor + 1}"


def render_template(src: Path, dest: Path, variables: dict[str, str]) -> list[Path]:
    """Copy ``src`` to ``dest`` replacing ``{{name}}`` placeholders in text files and file names.

    A ``.tmpl`` suffix is dropped (so templates hold ``test_x.py.tmpl``, which no tool
    collects in place).  Written to a temp folder first, renamed at the end: no half
    project on failure.
    """
    src, dest = Path(src), Path(dest)
    if dest.exists():
        raise UsageError(f"{dest} already exists", hint="choose another name or remove it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    written = []
    try:
        tmp.mkdir()
        for path in sorted(src.rglob("*")):
            if "__pycache__" in path.parts or path.suffix == ".pyc":
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


def plugin_variables(name: str) -> dict[str, str]:
    check_name(name, "plugin name")
    module = name.replace("-", "_")
    return {"name": name, "module": module, "task": name.replace("_", "-"),
            "tuneforge_requirement": engine_requirement(), "tuneforge_version": __version__}


def scaffold_plugin(name: str, parent: str | Path = ".") -> Path:
    """Create ``parent/name/``: an installable tuneforge plugin package; returns its folder."""
    dest = Path(parent) / name
    render_template(PLUGIN_TEMPLATE, dest, plugin_variables(name))
    return dest
