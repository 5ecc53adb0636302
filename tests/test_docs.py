"""Meta-tests: the hook docs are generated and current, and every hook is documented and tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuneforge.docs import hook_functions, hooks_markdown

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [f.__name__ for f in hook_functions()]


def test_docs_hooks_md_is_generated_and_current():
    committed = (ROOT / "docs" / "hooks.md").read_text()
    assert committed == hooks_markdown(), "docs/hooks.md is stale: run python -m tuneforge.docs"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented_with_its_signature(name):
    func = next(f for f in hook_functions() if f.__name__ == name)
    doc = func.__doc__ or ""
    assert "Called" in doc, f"{name}: say when it is called"
    assert "Return" in doc or "return" in doc, f"{name}: say what it returns"
    assert f"def {name}(" in hooks_markdown()
    if getattr(func, "tuneforge_spec", {}).get("firstresult"):
        assert "firstresult" in doc, f"{name}: say that it is firstresult"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test_hook_function(name):
    """datasette-style: tests/test_hooks.py has ``test_hook_<name>`` (or one starting with it) that calls it."""
    import test_hooks

    short = name.removeprefix("tuneforge_")
    found = [f for f in dir(test_hooks) if f.startswith("test_hook_") and short in f]
    assert found, f"tests/test_hooks.py has no test_hook_{short}..."


def test_domain_code_never_imports_the_apps_layer():
    offenders = []
    for folder in ("core", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            if re.search(r"^\s*(from|import) tuneforge\.apps\b", text, re.M):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"domain code imports tuneforge.apps: {offenders}"


def test_apps_are_thin_entry_points():
    for path in (ROOT / "apps").rglob("*.py"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert len(lines) <= 40, f"{path.relative_to(ROOT)} has {len(lines)} lines: domain code goes in plugins/"


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_every_package_folder_is_listed_in_pyproject():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    dirs = {"tuneforge": "core", "tuneforge.plugins": "plugins", "tuneforge.apps": "apps"}
    found = set()
    for package, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)) if rel else package)
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
