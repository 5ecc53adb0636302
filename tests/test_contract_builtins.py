"""The plugin contract kit (``tuneforge.testing``) run against tuneforge's own plugins, the way a
third-party plugin runs it: hookimpls vs the specs, pluggy registration, the apps they declare,
each template rendered, and a tiny train -> export -> predict -> postprocess round trip for
every task they register.  Plus the kit's own checks catching what they should.

Templates are rendered only here (``run_template_tests = False``): each template's generated
tests already run in tests/test_app_templates.py, and running them twice would add minutes.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from test_train import FILLER, WORDS, sentence  # the keyword sentences the training tests learn from

import tuneforge.default_plugins
import tuneforge.plugins.finance
import tuneforge.plugins.recommender
import tuneforge.plugins.support_bot
from tuneforge import hookimpl
from tuneforge.application import AppSpec, LoadedApp
from tuneforge.tasks import AppTemplate
from tuneforge.testing import PluginContract, app_problems, check_template, plugin_apps


@pytest.fixture(scope="session")
def tuneforge_tiny_encoder(tiny_encoder_dir):
    """The kit's tiny encoder is the suite's (same 2-layer, 32-wide config): built once."""
    return tiny_encoder_dir


def write_sample(task: str, folder: Path, n: int = 60) -> str:
    """A small synthetic training file for each generic task kind (and the two-tower pairs)."""
    rng, labels = random.Random(0), list(WORDS)
    folder.mkdir(parents=True, exist_ok=True)
    if task == "token-classification":
        path = folder / "tokens.jsonl"
        with open(path, "w") as f:
            for i in range(n):
                tokens = rng.sample(FILLER, 4) + ["paris" if i % 2 else "london"]
                rng.shuffle(tokens)
                f.write(json.dumps({"tokens": tokens, "tags": ["B-LOC" if t in ("paris", "london") else "O"
                                                              for t in tokens]}) + "\n")
        return str(path)
    path = folder / f"{task}.csv"
    rows = []
    for i in range(n):
        a, b = labels[i % 3], labels[(i + 1) % 3]
        if task == "text-classification":
            rows.append((sentence(rng, a), a))
        elif task == "multilabel-classification":
            rows.append((sentence(rng, a) + " " + " ".join(rng.sample(WORDS[b], 2)), f"{a}|{b}"))
        elif task == "pair-scoring":
            other = a if i % 2 else b
            rows.append((sentence(rng, a), sentence(rng, other), 1.0 if other == a else 0.0))
        elif task in ("embedding", "recommender-two-tower"):
            rows.append((f"item{i % 20} {sentence(rng, a)}", f"item{i % 20} {sentence(rng, a)}"))
        else:
            raise AssertionError(f"no sample data for {task}")
    header = {"text-classification": "text,label", "multilabel-classification": "text,label",
              "pair-scoring": "text,text_pair,label", "embedding": "text,text_pair",
              "recommender-two-tower": "query,item"}[task]
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def head_of_csv(path: str, out: Path, start: int, n: int) -> str:
    """Rows ``start`` .. ``start + n`` of a CSV file (header kept), as ``out``."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header, rows = next(reader), list(reader)[start:start + n]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return str(out)


class BuiltinContract(PluginContract):
    run_template_tests = False            # see the module docstring

    def sample_data_for(self, task, tmp_path):
        if "train" in task.data_files:    # the plugin's bundled data (limit_train keeps it small)
            return None
        return write_sample(task.name, tmp_path / "data")

    def round_trip_settings_for(self, task, tmp_path):
        """Bundled evaluation files (BANKING77's 3,080 test questions, ...) cut to 120 rows each for
        validation and test: scoring thousands of rows would be most of the round trip's time.  The
        cut files are still read through the plugin's loader (finance maps 0/1/2 labels there)."""
        settings = super().round_trip_settings_for(task, tmp_path)
        held_out = task.data_files.get("test") or task.data_files.get("validation")
        held_out = held_out[0] if isinstance(held_out, list) else held_out   # several sources: the first
        if held_out and held_out.endswith(".csv"):
            settings.setdefault("validation", head_of_csv(held_out, tmp_path / "data" / "validation.csv", 0, 120))
            settings.setdefault("test", head_of_csv(held_out, tmp_path / "data" / "test.csv", 120, 120))
        return settings


class TestCorePlugin(BuiltinContract):
    """The generic tasks, one per kind, bring no data: each gets a synthetic file."""

    plugin = tuneforge.default_plugins
    task_settings = {
        "pair-scoring": {"columns": {"text_pair": "text_pair"}},
        "embedding": {"columns": {"text_pair": "text_pair", "label": None}},
        "token-classification": {"columns": {"text": "tokens", "label": "tags"}},
    }


class TestSupportBotPlugin(BuiltinContract):
    plugin = tuneforge.plugins.support_bot


class TestFinancePlugin(BuiltinContract):
    plugin = tuneforge.plugins.finance


class TestRecommenderPlugin(BuiltinContract):
    plugin = tuneforge.plugins.recommender


BUILTINS = [tuneforge.default_plugins, tuneforge.plugins.support_bot, tuneforge.plugins.finance,
            tuneforge.plugins.recommender]


def test_the_three_domain_plugins_each_declare_their_app():
    assert {m.__name__: [a.name for a in plugin_apps(m)] for m in BUILTINS} == {
        "tuneforge.default_plugins": [], "tuneforge.plugins.support_bot": ["support-bot"],
        "tuneforge.plugins.finance": ["finance-monitor"], "tuneforge.plugins.recommender": ["recommender"]}


# -- the kit's app check catches what it should --------------------------------------------------
def _load(context):
    return LoadedApp(name=context.name)


class _Apps:
    def __init__(self, *make):
        self.make = make

    @hookimpl
    def tuneforge_register_apps(self, register):
        for make in self.make:
            register(make())


def test_app_problems_name_each_mistake():
    class NotASpec:
        name = "x"

    def no_arguments():
        return None

    assert app_problems(_Apps(lambda: AppSpec(name="good-app", description="fine", load=_load))) == []
    assert app_problems(object()) == []                          # no apps hook: nothing to check
    assert app_problems(_Apps()) == ["tuneforge_register_apps registered no app (drop the hook, or call "
                                     "register(AppSpec(...)))"]
    assert app_problems(_Apps(lambda: AppSpec(name="Bad Name", description="x", load=_load))) == [
        "tuneforge_register_apps raised ValueError: app name 'Bad Name': use lower-case letters, digits and dashes"]
    [problem] = app_problems(_Apps(NotASpec))
    assert problem.startswith("registered <") and problem.endswith(", not a tuneforge.application.AppSpec")
    twice = AppSpec(name="twice", description="x", load=_load)
    assert app_problems(_Apps(lambda: twice, lambda: twice)) == ["app 'twice': registered twice"]
    assert app_problems(_Apps(lambda: AppSpec(name="lazy", description=" ", load=no_arguments,
                                              default_path=Path("x")))) == [
        "app 'lazy': no description (tuneforge apps shows it)",
        "app 'lazy': default_path must be a string or None, got PosixPath",
        "app 'lazy': load must take one argument, the AppContext"]


def test_check_template_refuses_placeholders_no_variable_fills(tmp_path):
    src = tmp_path / "templates" / "half-done"
    src.mkdir(parents=True)
    (src / "README.md").write_text("# {{name}}\n\nTrain with --task {{task}}.\n")
    (src / "test_{{module}}.py").write_text("def test_ok():\n    assert True\n")
    template = AppTemplate(name="half-done", description="x", path=str(src))
    with pytest.raises(AssertionError, match=r"README.md: \{\{task\}\}"):
        check_template(template, tmp_path / "out", run_tests=False)
    (src / "README.md").write_text("# {{name}}\n")
    check = check_template(template, tmp_path / "out2", run_tests=False)
    assert check.ok and check.files == ["README.md", "test_demo_app.py"]
