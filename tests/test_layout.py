"""The layout rule (docs/architecture.md), checked on the source: apps/ holds only entry points into
the CLI, core/ never reaches into plugins or apps, no plugin serves HTTP, checks tokens or keeps a
metrics registry of its own (core does), built-in templates live in templates/<name>/.
(tests/test_docs.py checks the apps' length and that nothing imports tuneforge.apps.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    """Absolute names a module imports (``from .x import y`` inside package P counts as P.x)."""
    package = "tuneforge." + ".".join(path.relative_to(ROOT).parts[:-1])
    package = package.replace("tuneforge.core", "tuneforge").rstrip(".")
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
    return names


@pytest.mark.parametrize("path", _modules("apps"), ids=lambda p: str(p.relative_to(ROOT)))
def test_apps_only_call_the_cli(path):
    """(Their length, at most 40 lines, is checked in tests/test_docs.py.)"""
    assert _imports(path) <= {"tuneforge.cli"}, f"{path.name} imports {_imports(path)}: only tuneforge.cli"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    if path.name == "__init__.py":
        assert not calls
    else:
        assert [c.func.id for c in calls if isinstance(c.func, ast.Name)] == ["main"]
        assert {k.arg for k in calls[0].keywords} >= {"prefix"}, "call tuneforge.cli.main(prefix=(...))"


def test_core_never_imports_plugins_or_apps():
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p)
                                                  if n.startswith(("tuneforge.plugins", "tuneforge.apps")))
                 for p in _modules("core")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_plugins_leave_serving_auth_and_metrics_registries_to_core():
    found = {}
    for path in _modules("plugins"):
        names = _imports(path)
        bad = sorted(n for n in names if n.startswith(("tuneforge.apps", "uvicorn", "hmac"))
                     or n in {"fastapi.security"})
        text = path.read_text(encoding="utf-8")
        bad += [s for s in ("FastAPI(", "CollectorRegistry(") if s in text]
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    assert found == {}, "core's app layer serves, authenticates and owns /metrics: " + repr(found)


def test_built_in_templates_live_in_their_plugins_templates_folder_under_their_own_name():
    from tuneforge.tasks import all_templates

    for name, template in all_templates().items():
        path = Path(template.path).resolve()
        if ROOT in path.parents:                       # a built-in plugin's template
            assert path.relative_to(ROOT).parts[::2] == ("plugins", "templates"), template.path
            assert path.parent.name == "templates" and path.name == name, template.path


DATA_SUFFIXES = {".csv", ".jsonl", ".json", ".yaml", ".txt", ".tsv", ".parquet"}


def test_every_shipped_data_file_is_named_in_its_plugins_notice():
    """Only data whose licence allows it ships (the brief): so every data file a plugin bundles says
    where it came from in that plugin's NOTICE.md, by name."""
    unnamed = []
    for notice in sorted(ROOT.glob("plugins/*/NOTICE.md")):
        text = notice.read_text(encoding="utf-8")
        for f in sorted((notice.parent / "data").rglob("*")):
            if f.suffix in DATA_SUFFIXES and "__pycache__" not in f.parts and f.name not in text:
                unnamed.append(str(f.relative_to(ROOT)))
    assert list(ROOT.glob("plugins/*/NOTICE.md")), "no plugin NOTICE.md found"
    assert all((d.parent / "NOTICE.md").is_file() for d in ROOT.glob("plugins/*/data")), "a data/ without NOTICE.md"
    assert not unnamed, f"data files with no word in their plugin's NOTICE.md: {unnamed}"
