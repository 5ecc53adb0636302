"""The plugin kit's pieces: scaffold, wheel metadata and the engine-version gate, the contract checks."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from tuneforge import hookimpl
from tuneforge.cli import cli
from tuneforge.errors import PluginError, UsageError
from tuneforge.plugin_install import WheelInfo, check_engine_version, read_wheel
from tuneforge.scaffold import engine_requirement, scaffold_plugin
from tuneforge.testing import hookimpl_problems, plugin_tasks, round_trip


# -- scaffold ---------------------------------------------------------------------
def test_new_plugin_creates_an_installable_package(tmp_path):
    result = CliRunner().invoke(cli, ["new", "plugin", "acme-tickets", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    pkg = tmp_path / "acme-tickets"
    files = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file())
    assert files == ["README.md", "acme_tickets/__init__.py", "acme_tickets/app.py", "acme_tickets/data/train.csv", "conftest.py",
                     "pyproject.toml", "tests/test_acme_tickets.py"]
    pyproject = (pkg / "pyproject.toml").read_text()
    assert '[project.entry-points.tuneforge]\nacme_tickets = "acme_tickets"' in pyproject
    assert '"tuneforge>=0.1.0,<0.2"' in pyproject
    assert 'pytest_plugins = ["tuneforge.testing"]' in (pkg / "conftest.py").read_text()
    for path in pkg.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text(), path
    again = CliRunner().invoke(cli, ["new", "plugin", "acme-tickets", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize("name", ["Acme", "1acme", "acme tickets", "acme-", "../acme"])
def test_new_plugin_rejects_bad_names(tmp_path, name):
    with pytest.raises(UsageError, match="must start with a lower-case letter"):
        scaffold_plugin(name, tmp_path)
    assert not any(tmp_path.iterdir())


def test_engine_requirement_is_the_current_minor_series():
    assert engine_requirement("0.1.0") == ">=0.1.0,<0.2"
    assert engine_requirement("2.3.4") == ">=2.3.4,<2.4"


def test_scaffolded_plugin_passes_the_contract_in_process(tmp_path, tiny_encoder_dir, plugin):
    pkg = scaffold_plugin("acme-tickets", tmp_path)
    sys.path.insert(0, str(pkg))
    try:
        import acme_tickets

        assert hookimpl_problems(acme_tickets) == []
        assert [t.name for t in plugin_tasks(acme_tickets)] == ["acme-tickets"]
        plugin(acme_tickets, "acme_tickets")
        result = round_trip("acme-tickets", tiny_encoder_dir, tmp_path / "work")
    finally:
        sys.path.remove(str(pkg))
        sys.modules.pop("acme_tickets", None)
    assert len(result.results) == len(result.texts) > 0
    assert set(result.results[0]) == {"team", "confidence"}  # the plugin's post-processing ran
    assert Path(result.bundle_dir, "manifest.json").is_file()


# -- the contract checks ------------------------------------------------------------
class GoodPlugin:
    @hookimpl
    def tuneforge_register_tasks(self, register):
        pass

    @hookimpl
    def tuneforge_postprocess(self, task):   # fewer arguments than the spec: fine
        return None


class BadPlugin:
    @hookimpl
    def tuneforge_register_taks(self, register):          # typo
        pass

    def tuneforge_train_end(self, task):                   # forgot @hookimpl
        pass

    @hookimpl
    def tuneforge_export_done(self, bundle, manifest):     # wrong argument name
        pass


def test_every_loaded_plugin_passes_the_hookimpl_check():
    from tuneforge.plugin_manager import get_plugin_manager

    for name, obj in get_plugin_manager().list_name_plugin():
        assert hookimpl_problems(obj) == [], name


def test_hookimpl_problems_catch_typos_missing_decorators_and_wrong_arguments():
    assert hookimpl_problems(GoodPlugin()) == []
    problems = hookimpl_problems(BadPlugin())
    assert problems == [
        "tuneforge_export_done: argument(s) bundle not in the spec (bundle_dir, manifest)",
        "tuneforge_register_taks: no such hook (did you mean tuneforge_register_tasks?)",
        "tuneforge_train_end: not decorated with @tuneforge.hookimpl (pluggy would ignore it)",
    ]


# -- wheel metadata and the engine-version gate -----------------------------------------
def make_wheel(path: Path, requires: list[str], entry_points: str = "[tuneforge]\nacme = acme\n") -> Path:
    wheel = path / "acme-1.2.0-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\nName: acme\nVersion: 1.2.0\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("acme.py", "")
        zf.writestr("acme-1.2.0.dist-info/METADATA", meta)
        if entry_points:
            zf.writestr("acme-1.2.0.dist-info/entry_points.txt", entry_points)
    return wheel


@pytest.mark.parametrize("requires, ok", [
    (["tuneforge>=0.1,<0.2"], True),
    (["tuneforge~=0.1.0", "numpy"], True),
    (["tuneforge"], True),                                   # unversioned: any engine
    ([], True),                                              # no requirement declared
    (["tuneforge>=0.2"], False),
    (["Tuneforge (<0.1)"], False),                           # name normalised, old-style parentheses
    (["tuneforge>=5; extra == 'dev'", "tuneforge<1"], True),  # an extra's requirement does not apply
])
def test_engine_version_gate(tmp_path, requires, ok):
    info = read_wheel(make_wheel(tmp_path, requires))
    assert (info.name, info.version, info.entry_points) == ("acme", "1.2.0", {"acme": "acme"})
    if ok:
        check_engine_version(info, "0.1.0")
    else:
        with pytest.raises(PluginError, match=r"^acme 1.2.0 requires tuneforge.*, but this is tuneforge 0.1.0; "
                                              r"nothing installed$"):
            check_engine_version(info, "0.1.0")


def test_a_package_without_a_tuneforge_entry_point_is_refused(tmp_path):
    info = read_wheel(make_wheel(tmp_path, ["tuneforge"], entry_points="[console_scripts]\nacme = acme:main\n"))
    with pytest.raises(PluginError, match="is not a tuneforge plugin"):
        check_engine_version(info)


def test_bad_wheels_and_specs_give_one_clear_error(tmp_path):
    junk = tmp_path / "junk-1.0-py3-none-any.whl"
    junk.write_text("not a zip")
    with pytest.raises(PluginError, match="not a wheel"):
        read_wheel(junk)
    with pytest.raises(PluginError, match="no Name or Version"):
        WheelInfo(path="x.whl", name="", version="")
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "tuneforge", "plugins", "install", str(tmp_path / "empty")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("is not a Python project (no pyproject.toml or "
                                                                 "setup.py)")


def test_builtin_plugins_cannot_be_uninstalled():
    result = CliRunner().invoke(cli, ["plugins", "uninstall", "support_bot"])
    assert result.exit_code == 1 and "built into tuneforge and cannot be uninstalled" in result.output


def test_plugins_help_shows_install_and_uninstall():
    result = CliRunner().invoke(cli, ["plugins", "--help"])
    assert result.exit_code == 0 and "install" in result.output and "uninstall" in result.output
    for sub in (["plugins", "install"], ["plugins", "uninstall"], ["new", "plugin"]):
        sub_help = CliRunner().invoke(cli, [*sub, "--help"])
        assert sub_help.exit_code == 0 and "Examples:" in sub_help.output and f"tuneforge {sub[0]} " in sub_help.output
