"""Each hook called where its docstring says, with what it says (test plugins registered per test)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tuneforge import hookimpl
from tuneforge.cli import cli
from tuneforge.data import Dataset, Example
from tuneforge.errors import DataError
from tuneforge.plugin_manager import get_plugin_manager
from tuneforge.tasks import AppTemplate, TaskSpec
from tuneforge.train import config_for_task, train


class Recorder:
    """Implements the lifecycle hooks and a custom task with its own loader and validator."""

    def __init__(self, rows, problems=None):
        self.rows = rows
        self.problems = problems or []
        self.calls = []

    @hookimpl
    def tuneforge_register_tasks(self, register):
        register(TaskSpec(name="recorder-task", kind="classification", description="test",
                          data_files={"train": "virtual://train"}))

    @hookimpl
    def tuneforge_load_data(self, task, path, split):
        if task.name != "recorder-task":
            return None
        self.calls.append(("load_data", split))
        return Dataset([Example(text=t, label=y, line=i + 1) for i, (t, y) in enumerate(self.rows)],
                       path=path, sha256="0" * 64)

    @hookimpl
    def tuneforge_validate_data(self, task, dataset):
        self.calls.append(("validate_data", len(dataset)))
        return self.problems if task.name == "recorder-task" else None

    @hookimpl
    def tuneforge_train_start(self, task, config, run_dir):
        self.calls.append(("train_start", task.name, config["mode"], run_dir))

    @hookimpl
    def tuneforge_train_end(self, task, config, run_dir, metrics):
        self.calls.append(("train_end", task.name, sorted(metrics)))


ROWS = [(f"{w} thing number {i}", w) for i in range(20) for w in ("alpha", "beta")]


def test_load_validate_and_lifecycle_hooks_run_in_order(plugin, tmp_path, tiny_encoder_dir):
    rec = plugin(Recorder(ROWS))
    cfg = config_for_task("recorder-task", base_model=tiny_encoder_dir, epochs=1, output_dir=str(tmp_path))
    run = train(cfg, progress=False)
    names = [c[0] for c in rec.calls]
    assert names == ["load_data", "validate_data", "train_start", "train_end"]
    assert rec.calls[2][1:3] == ("recorder-task", "full") and rec.calls[2][3] == str(run.run_dir)
    assert rec.calls[3][2] == ["test", "validation"]
    assert (run.run_dir / "config.json").is_file()  # saved before train_start was called


def test_validate_data_problems_stop_training_before_anything_is_written(plugin, tmp_path, tiny_encoder_dir):
    plugin(Recorder(ROWS, problems=["line 3: text mentions a customer's name"]))
    cfg = config_for_task("recorder-task", base_model=tiny_encoder_dir, output_dir=str(tmp_path / "runs"))
    with pytest.raises(DataError, match=r"virtual://train: line 3: text mentions a customer's name"):
        train(cfg, progress=False)
    assert not (tmp_path / "runs").exists()


def test_finance_plugin_loader_maps_numeric_labels():
    from tuneforge.plugins.finance import DATA
    from tuneforge.tasks import get_task

    task = get_task("finance-sentiment")
    ds = get_plugin_manager().hook.tuneforge_load_data(task=task, path=str(DATA / "valid.csv"), split="validation")
    assert set(ds.label_names()) == {"negative", "neutral", "positive"}



def test_finance_plugin_leaves_named_labels_to_core(tmp_path):
    from tuneforge.tasks import get_task

    path = tmp_path / "named.csv"
    path.write_text("text,label\nstocks fall,negative\nstocks rise,positive\n")
    task = get_task("finance-sentiment")
    assert get_plugin_manager().hook.tuneforge_load_data(task=task, path=str(path), split="train") is None


class TemplatePlugin:
    def __init__(self, path):
        self.path = path

    @hookimpl
    def tuneforge_register_templates(self, register):
        register(AppTemplate(name="hello-app", description="says hello", path=str(self.path)))


def test_register_templates_feeds_apps_and_new_app(plugin, tmp_path):
    src = tmp_path / "tmpl"
    (src / "data").mkdir(parents=True)
    (src / "README.md.tmpl").write_text("# {{name}}\nmodule {{module}} from {{template}}\n")
    (src / "data" / "sample.csv").write_text("text,label\nhi,a\n")
    plugin(TemplatePlugin(src))
    listed = CliRunner().invoke(cli, ["apps", "--json"])
    assert json.loads(listed.output)["hello-app"]["plugin"] == "test-plugin"
    out = tmp_path / "projects"
    result = CliRunner().invoke(cli, ["new", "app", "my-app", "--template", "hello-app", "--dir", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "my-app" / "README.md").read_text() == "# my-app\nmodule my_app from hello-app\n"
    assert (out / "my-app" / "data" / "sample.csv").is_file()
    again = CliRunner().invoke(cli, ["new", "app", "my-app", "--template", "hello-app", "--dir", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


class ExportPlugin:
    def __init__(self):
        self.calls = []

    @hookimpl
    def tuneforge_export_done(self, bundle_dir, manifest):
        self.calls.append((bundle_dir, manifest["task"]))

    @hookimpl
    def tuneforge_postprocess(self, task, texts, predictions):
        return [{"answer": f"intent is {p.label}", "chars": len(t)} for t, p in zip(texts, predictions)]

    @hookimpl
    def tuneforge_register_routes(self, register, task, predictor):
        from fastapi import APIRouter

        router = APIRouter()

        @router.get("/v1/hello")
        def hello():
            return {"task": predictor.task}

        register(router)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_encoder_dir):
    root = tmp_path_factory.mktemp("hookrun")
    path = root / "data.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS))
    cfg = config_for_task("text-classification", data=str(path), base_model=tiny_encoder_dir, epochs=1,
                          output_dir=str(root / "runs"))
    return train(cfg, progress=False).run_dir


def test_export_done_postprocess_and_routes(plugin, tiny_run, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.export import export_run
    from tuneforge.runtime import Predictor
    from tuneforge.serve import create_app
    from tuneforge.tasks import all_tasks

    rec = plugin(ExportPlugin())
    bundle = export_run(tiny_run, out_dir=tmp_path / "exports", variants=["fp32"], measure=False)
    assert rec.calls == [(str(bundle), "text-classification")]

    result = CliRunner().invoke(cli, ["predict", str(bundle), "--text", "alpha thing"])
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["answer"].startswith("intent is ") and row["chars"] == len("alpha thing")
    raw = CliRunner().invoke(cli, ["predict", str(bundle), "--text", "alpha thing", "--raw"])
    assert "answer" not in json.loads(raw.output.strip().splitlines()[-1])

    predictor = Predictor.load(bundle)
    routers = []
    get_plugin_manager().hook.tuneforge_register_routes(
        register=routers.append, task=all_tasks().get(predictor.task), predictor=predictor)
    client = TestClient(create_app(predictor, routes=routers))
    assert client.get("/v1/hello").json() == {"task": "text-classification"}
