"""Each hook called where its docstring says, with what it says (test plugins registered per test).

One ``test_hook_<name>`` per hook (``tests/test_docs.py`` checks they all exist, datasette-style);
each calls the hook through the plugin manager -- the way core does -- and checks what it did.
"""

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


def test_hook_train_start_and_train_end_run_in_order_with_load_and_validate(plugin, tmp_path, tiny_encoder_dir):
    rec = plugin(Recorder(ROWS))
    cfg = config_for_task("recorder-task", base_model=tiny_encoder_dir, epochs=1, output_dir=str(tmp_path))
    run = train(cfg, progress=False)
    names = [c[0] for c in rec.calls]
    assert names == ["load_data", "validate_data", "train_start", "train_end"]
    assert rec.calls[2][1:3] == ("recorder-task", "full") and rec.calls[2][3] == str(run.run_dir)
    assert rec.calls[3][2] == ["test", "validation"]
    assert (run.run_dir / "config.json").is_file()  # saved before train_start was called


def test_hook_validate_data_problems_stop_training_before_anything_is_written(plugin, tmp_path, tiny_encoder_dir):
    plugin(Recorder(ROWS, problems=["line 3: text mentions a customer's name"]))
    cfg = config_for_task("recorder-task", base_model=tiny_encoder_dir, output_dir=str(tmp_path / "runs"))
    with pytest.raises(DataError, match=r"virtual://train: line 3: text mentions a customer's name"):
        train(cfg, progress=False)
    assert not (tmp_path / "runs").exists()


def test_hook_load_data_finance_plugin_maps_numeric_labels():
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


def test_hook_register_templates_feeds_apps_and_new_app(plugin, tmp_path):
    src = tmp_path / "tmpl"
    (src / "data").mkdir(parents=True)
    (src / "README.md.tmpl").write_text("# {{name}}\nmodule {{module}} from {{template}}\n")
    (src / "data" / "sample.csv").write_text("text,label\nhi,a\n")
    plugin(TemplatePlugin(src))
    listed = CliRunner().invoke(cli, ["apps", "--json"])
    assert json.loads(listed.output)["templates"]["hello-app"]["plugin"] == "test-plugin"
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
    def tuneforge_register_routes(self, register, app):
        from fastapi import APIRouter

        router = APIRouter()

        @router.get("/v1/hello")
        def hello():
            return {"task": app.predictor.task, "app": app.name}

        register(router)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_encoder_dir):
    root = tmp_path_factory.mktemp("hookrun")
    path = root / "data.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS))
    cfg = config_for_task("text-classification", data=str(path), base_model=tiny_encoder_dir, epochs=1,
                          output_dir=str(root / "runs"))
    return train(cfg, progress=False).run_dir


def test_hook_export_done_postprocess_and_register_routes(plugin, tiny_run, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.export import export_run
    from tuneforge.serve import build_server

    rec = plugin(ExportPlugin())
    bundle = export_run(tiny_run, out_dir=tmp_path / "exports", variants=["fp32"], measure=False)
    assert rec.calls == [(str(bundle), "text-classification")]          # tuneforge_export_done

    result = CliRunner().invoke(cli, ["predict", str(bundle), "--text", "alpha thing"])
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["answer"].startswith("intent is ") and row["chars"] == len("alpha thing")
    raw = CliRunner().invoke(cli, ["predict", str(bundle), "--text", "alpha thing", "--raw"])
    assert "answer" not in json.loads(raw.output.strip().splitlines()[-1])

    with TestClient(build_server(str(bundle))) as client:                 # tuneforge_register_routes
        assert client.get("/v1/hello").json() == {"task": "text-classification", "app": "bundle"}
        served = client.post("/v1/predict", json={"text": "alpha thing"}).json()["predictions"][0]
    assert served["answer"].startswith("intent is ") and served["chars"] == 11   # postprocess over HTTP too


def test_hook_postprocess_default_is_to_dict_and_plugins_answer_first(plugin, tiny_run, tmp_path):
    from tuneforge.runtime.postprocess import Prediction
    from tuneforge.tasks import get_task, postprocess

    preds = [Prediction(label="alpha", score=0.9, scores={"alpha": 0.9, "beta": 0.1})]
    assert postprocess(get_task("text-classification"), ["x"], preds) == [preds[0].to_dict()]
    finance = postprocess(get_task("finance-sentiment"), ["$ACME beats"], preds)   # the finance plugin answers
    assert finance[0]["entities"] == ["ACME"] and finance[0]["sentiment"] == "alpha"
    plugin(ExportPlugin())                                       # registered last: asked first (firstresult)
    assert postprocess(get_task("text-classification"), ["xy"], preds) == [{"answer": "intent is alpha", "chars": 2}]


class TaskPlugin:
    @hookimpl
    def tuneforge_register_tasks(self, register):
        register(TaskSpec(name="hooked-task", kind="pair", description="registered by a test"))


def test_hook_register_tasks(plugin):
    from tuneforge.tasks import all_tasks

    plugin(TaskPlugin())
    tasks = all_tasks()
    assert tasks["hooked-task"].kind == "pair" and tasks["hooked-task"].plugin == "test-plugin"
    assert {"support-intents", "finance-sentiment", "text-classification"} <= set(tasks)
    plugin(TaskPlugin(), name="second")
    with pytest.raises(Exception, match="hooked-task"):      # two plugins, one name: an error naming both
        all_tasks()


class CommandPlugin:
    @hookimpl
    def tuneforge_register_commands(self, cli):
        import click

        @cli.command(name="hello-hook")
        @click.argument("who")
        def hello(who):
            click.echo(f"hello {who}")

        cli.commands["report"].add_command(click.Command("hooked", callback=lambda: click.echo("report!")))


def test_hook_register_commands_adds_commands_and_reports(plugin):
    from tuneforge.cli import TuneforgeGroup
    from tuneforge.plugin_manager import call_each

    group = TuneforgeGroup(name="t")
    import click

    group.add_command(click.Group("report"))
    plugin(CommandPlugin())
    call_each("tuneforge_register_commands", lambda name: {"cli": group}, isolate=True)
    assert CliRunner().invoke(group, ["hello-hook", "ann"]).output == "hello ann\n"
    assert CliRunner().invoke(group, ["report", "hooked"]).output == "report!\n"
    assert "finance" in cli.commands["report"].commands           # core owns `report`, finance adds to it


class AppPlugin:
    def __init__(self):
        self.loaded_from = []

    @hookimpl
    def tuneforge_register_apps(self, register):
        from tuneforge.application import AppSpec

        register(AppSpec(name="hello-app", description="says hello", load=self.load, default_path="hello.txt"))

    def load(self, context):
        from fastapi import APIRouter
        from prometheus_client import Counter

        from tuneforge.application import LoadedApp

        self.loaded_from.append(context.path)
        greetings = Counter("hello_greetings", "Greetings.", registry=context.metrics)
        router = APIRouter()

        @router.get("/v1/hello")
        def hello():
            greetings.inc()
            return {"hello": context.path.read_text().strip()}

        return LoadedApp(name=context.name, routers=[router], warmup=lambda: context.path.read_text())


def test_hook_register_apps_serves_a_plugin_app_like_the_built_in_ones(plugin, tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.application import all_apps
    from tuneforge.serve import build_server

    app_plugin = plugin(AppPlugin())
    assert all_apps()["hello-app"].plugin == "test-plugin"
    assert {"support-bot", "finance-monitor", "recommender"} <= set(all_apps())
    (tmp_path / "hello.txt").write_text("world\n")
    with TestClient(build_server("hello-app", app_path=str(tmp_path / "hello.txt"), token="t")) as client:
        assert client.get("/v1/hello").status_code == 401
        assert client.get("/v1/hello", headers={"Authorization": "Bearer t"}).json() == {"hello": "world"}
        assert "hello_greetings_total 1.0" in client.get("/metrics", headers={"Authorization": "Bearer t"}).text
        assert client.get("/healthz").json()["status"] == "ok"
    assert app_plugin.loaded_from == [tmp_path / "hello.txt"]
    with TestClient(build_server("hello-app", app_path=str(tmp_path / "missing.txt"))) as client:
        health = client.get("/healthz")                     # the warm-up failed: not ready, says why
    assert health.status_code == 503 and "warm-up" in health.json()["error"]["message"]
    listed = json.loads(CliRunner().invoke(cli, ["apps", "--json"]).output)
    assert listed["apps"]["hello-app"]["default_path"] == "hello.txt"
