"""The plugin system: entry points, allow-list, tracing, broken plugins, registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tuneforge import hookimpl
from tuneforge.errors import PluginError
from tuneforge.plugin_manager import plugin_infos, reset_plugin_manager
from tuneforge.tasks import TaskSpec, all_tasks, get_task

TUNEFORGE = [sys.executable, "-m", "tuneforge"]


def run_cli(*args, env_extra=None, check=False):
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([*TUNEFORGE, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode:
        raise AssertionError(proc.stderr)
    return proc


def make_plugin_package(root: Path, dist: str, module: str, body: str, version: str = "0.3.1") -> Path:
    """A minimal installable third-party plugin package (pyproject + one module)."""
    pkg = root / dist
    pkg.mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "{version}"
        [project.entry-points.tuneforge]
        {module} = "{module}"
        [tool.setuptools]
        py-modules = ["{module}"]
    """))
    (pkg / f"{module}.py").write_text(textwrap.dedent(body))
    return pkg


def pip_install_target(pkg: Path, target: Path) -> None:
    """Install with pip, offline, into a private folder (the test's own site dir)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(pkg)],
                   check=True, capture_output=True, timeout=300)


GOOD_PLUGIN = """
    import click
    from tuneforge import hookimpl
    from tuneforge.tasks import TaskSpec

    @hookimpl
    def tuneforge_register_tasks(register):
        register(TaskSpec(name="acme-tickets", kind="classification", description="ACME ticket routing"))

    @hookimpl
    def tuneforge_register_commands(cli):
        @cli.command(name="acme-hello")
        def hello():
            click.echo("hello from acme")
"""


@pytest.fixture(scope="module")
def third_party_site(tmp_path_factory):
    """A site folder holding one good and three broken third-party plugins, installed by pip."""
    root = tmp_path_factory.mktemp("plugins")
    site = root / "site"
    pip_install_target(make_plugin_package(root, "acme-tuneforge", "acme_tuneforge", GOOD_PLUGIN), site)
    pip_install_target(make_plugin_package(root, "broken-import", "broken_import",
                                           "raise RuntimeError('boom at import')\n"), site)
    pip_install_target(make_plugin_package(root, "typo-hook", "typo_hook", """
        from tuneforge import hookimpl
        @hookimpl
        def tuneforge_register_taks(register):
            pass
    """), site)
    pip_install_target(make_plugin_package(root, "bad-args", "bad_args", """
        from tuneforge import hookimpl
        @hookimpl
        def tuneforge_register_tasks(registrar):
            pass
    """), site)
    return site


def site_env(site: Path, **extra) -> dict:
    return {"PYTHONPATH": str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def test_builtin_plugins_load_through_entry_points():
    proc = run_cli("plugins", "--json", check=True)
    data = json.loads(proc.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert {"core", "support_bot", "finance"} <= set(by_name)
    assert by_name["support_bot"]["module"] == "tuneforge.plugins.support_bot"
    assert by_name["support_bot"]["version"]  # from the distribution's metadata
    assert "tuneforge_register_tasks" in by_name["support_bot"]["hooks"]
    assert "support-intents" in by_name["support_bot"]["tasks"]
    assert data["tasks"]["support-intents"]["kind"] == "classification"


def test_third_party_plugin_is_listed_and_its_hooks_called(third_party_site):
    env = site_env(third_party_site, TUNEFORGE_PLUGINS="acme_tuneforge,support_bot")
    data = json.loads(run_cli("plugins", "--json", env_extra=env, check=True).stdout)
    acme = {p["name"]: p for p in data["plugins"]}["acme_tuneforge"]
    assert acme["version"] == "0.3.1"
    assert acme["tasks"] == ["acme-tickets"]  # its register_tasks hook ran
    assert "finance" not in {p["name"] for p in data["plugins"]}  # allow-list honoured
    hello = run_cli("acme-hello", env_extra=env)  # its register_commands hook ran
    assert hello.returncode == 0 and hello.stdout.strip() == "hello from acme"


def test_broken_plugins_are_skipped_with_one_clear_line_each(third_party_site):
    proc = run_cli("plugins", env_extra=site_env(third_party_site))
    assert proc.returncode == 0
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("tuneforge: warning")]
    assert len(warnings) == 3, proc.stderr
    text = "\n".join(warnings)
    assert "'broken_import' skipped: failed to import broken_import: RuntimeError: boom at import" in text
    assert "'typo_hook' skipped: implements unknown hook(s) tuneforge_register_taks" in text
    assert "'bad_args' skipped" in text and "registrar" in text
    assert "Traceback" not in proc.stderr
    assert "acme_tuneforge" in proc.stdout and "support_bot" in proc.stdout
    # the CLI still does real work with broken plugins around
    data = json.loads(run_cli("plugins", "--json", env_extra=site_env(third_party_site)).stdout)
    assert "support-intents" in data["tasks"]


def test_trace_env_var_prints_hook_calls():
    proc = run_cli("plugins", "--json", env_extra={"TUNEFORGE_TRACE_PLUGINS": "1"}, check=True)
    assert "[trace] tuneforge_register_tasks" in proc.stderr
    assert "<- support_bot" in proc.stderr


def test_allow_list_naming_a_missing_plugin_warns():
    proc = run_cli("plugins", "--json", env_extra={"TUNEFORGE_PLUGINS": "nope"}, check=True)
    assert "TUNEFORGE_PLUGINS names 'nope', which is not installed" in proc.stderr
    names = {p["name"] for p in json.loads(proc.stdout)["plugins"]}
    assert names == {"core"}


class DuplicateTaskPlugin:
    @hookimpl
    def tuneforge_register_tasks(self, register):
        register(TaskSpec(name="support-intents", kind="classification"))


def test_duplicate_task_names_name_both_plugins(plugin):
    plugin(DuplicateTaskPlugin(), "dup")
    with pytest.raises(PluginError, match="task 'support-intents' is registered twice") as info:
        all_tasks()
    assert "'support_bot'" in str(info.value) and "'dup'" in str(info.value)


def test_unknown_task_lists_known_ones():
    with pytest.raises(PluginError, match=r"unknown task 'nope' \(registered: .*support-intents"):
        get_task("nope")


def test_directly_registered_plugins_show_in_infos(plugin):
    plugin(DuplicateTaskPlugin(), "adhoc")
    assert "adhoc" in {i.name for i in plugin_infos()}


def test_reset_reloads_entry_points():
    before = {i.name for i in plugin_infos()}
    reset_plugin_manager()
    assert {i.name for i in plugin_infos()} == before
