"""Every registered app template, generated into a temp folder, passes its own generated tests."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tuneforge.cli import cli
from tuneforge.tasks import all_templates
from tuneforge.testing import check_template

TEMPLATES = sorted(all_templates())


def test_support_bot_template_is_registered():
    assert "support-bot" in TEMPLATES
    assert all_templates()["support-bot"].plugin == "support_bot"


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_project_passes_its_own_tests(name, tmp_path):
    check = check_template(all_templates()[name], tmp_path, name="my-app")
    assert {"README.md"} <= set(check.files)
    assert check.ok, f"the {name} project's tests failed:\n{check.output[-4000:]}"


def test_new_app_support_bot_creates_the_project(tmp_path):
    result = CliRunner().invoke(cli, ["new", "app", "acme-bot", "--template", "support-bot", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    project = tmp_path / "acme-bot"
    assert {p.name for p in project.iterdir()} >= {"app.py", "app.toml", "README.md", "test_app.py", "data"}
    assert 'run_name = "acme-bot"' in (project / "app.toml").read_text()
    assert "{{" not in (project / "README.md").read_text()
    assert (project / "data" / "intents.csv").read_text().startswith("text,category\n")
