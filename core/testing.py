"""The plugin contract kit: ready-made pytest checks for tuneforge plugins.

Load it in your plugin's root ``conftest.py``::

    pytest_plugins = ["tuneforge.testing"]

and subclass :class:`PluginContract` in a test module::

    import acme_tickets
    from tuneforge.testing import PluginContract

    class TestContract(PluginContract):
        plugin = acme_tickets                 # the module (or object) holding your hookimpls
        sample_data = {}                      # task -> data file, for tasks without bundled data
        task_settings = {}                    # task -> TrainConfig overrides (columns, ...) for it only

You get, per plugin:

* ``test_hookimpls_match_the_specs`` -- every ``tuneforge_*`` function is a known hook,
  decorated with ``@tuneforge.hookimpl``, taking only argument names the spec offers;
* ``test_registers_with_pluggy`` -- pluggy accepts the plugin;
* ``test_registered_apps_are_valid`` -- each :class:`~tuneforge.application.AppSpec` from
  ``tuneforge_register_apps`` has a valid name, a description and a ``load`` taking one
  argument (the :class:`~tuneforge.application.AppContext`), and core lists it for
  ``tuneforge serve NAME`` (skipped for plugins without apps);
* ``test_task_round_trip[<task>]`` -- for each task it registers: train 1 epoch on a
  tiny encoder built from a config (seconds), export the FP32 ONNX bundle (parity
  gate included), predict with the torch-free runtime and run the plugin's
  post-processing;
* ``test_template[<template>]`` -- for each app template it registers: render it into
  a temp folder and run the generated project's own tests (``pytest`` in a subprocess;
  ``run_template_tests = False`` only renders and checks the project's files).

Fixtures: ``tuneforge_tiny_encoder`` (session: a 2-layer, 32-wide BERT folder with
MiniLM's tokenizer) and ``tuneforge_plugin`` (register a plugin object for one test).
The functions below (:func:`hookimpl_problems`, :func:`app_problems`, :func:`round_trip`,
:func:`check_template`) work without pytest too.  For data a round trip needs that is not a
fixed file, override :meth:`PluginContract.sample_data_for` (it gets the test's ``tmp_path``).

This module stays import-light (torch is imported only when a fixture or check runs).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .hookspecs import hookimpl as _marker
from .plugin_manager import HOOK_PREFIX

__all__ = ["PluginContract", "RoundTrip", "TemplateCheck", "app_problems", "build_tiny_encoder", "check_template",
           "hookimpl_problems", "plugin_apps", "plugin_tasks", "plugin_templates", "round_trip"]

TINY_CONFIG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
               "max_position_embeddings": 128}


# -- hookimpls against the specs ------------------------------------------------
def _spec_args(name: str) -> list[str] | None:
    from . import hookspecs

    spec = getattr(hookspecs, name, None)
    if spec is None or not callable(spec) or not hasattr(spec, "tuneforge_spec"):
        return None
    return list(inspect.signature(spec).parameters)


def _impl_args(func) -> list[str]:
    params = list(inspect.signature(func).parameters.values())
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def hookimpl_problems(plugin: Any) -> list[str]:
    """What is wrong with ``plugin``'s hook implementations (empty list: nothing).

    Checks every attribute named ``tuneforge_*``: it must be a hook in
    ``tuneforge.hookspecs`` (a typo is caught), be decorated with
    ``@tuneforge.hookimpl`` (pluggy silently ignores undecorated functions), and
    take only argument names the spec passes.
    """
    marker_attr = f"{_marker.project_name}_impl"
    problems = []
    for name in sorted(dir(plugin)):
        if not name.startswith(HOOK_PREFIX):
            continue
        func = getattr(plugin, name)
        if not callable(func):
            continue
        spec = _spec_args(name)
        if spec is None:
            import difflib

            from . import hookspecs

            known = [n for n in vars(hookspecs) if n.startswith(HOOK_PREFIX)]
            close = difflib.get_close_matches(name, known, n=1)
            problems.append(f"{name}: no such hook" + (f" (did you mean {close[0]}?)" if close else ""))
            continue
        if not hasattr(func, marker_attr):
            problems.append(f"{name}: not decorated with @tuneforge.hookimpl (pluggy would ignore it)")
        extra = [a for a in _impl_args(func) if a not in spec and a != "self"]
        if extra:
            problems.append(f"{name}: argument(s) {', '.join(extra)} not in the spec ({', '.join(spec)})")
    return problems


def _call_register(plugin: Any, hook: str) -> list:
    func = getattr(plugin, hook, None)
    if func is None:
        return []
    found: list = []
    func(register=found.append) if "register" in _impl_args(func) else func()
    return found


def plugin_tasks(plugin: Any) -> list:
    """The :class:`~tuneforge.tasks.TaskSpec` objects ``plugin`` registers."""
    return _call_register(plugin, "tuneforge_register_tasks")


def plugin_templates(plugin: Any) -> list:
    """The :class:`~tuneforge.tasks.AppTemplate` objects ``plugin`` registers."""
    return _call_register(plugin, "tuneforge_register_templates")


def plugin_apps(plugin: Any) -> list:
    """The :class:`~tuneforge.application.AppSpec` objects ``plugin`` registers."""
    return _call_register(plugin, "tuneforge_register_apps")


def app_problems(plugin: Any) -> list[str]:
    """What is wrong with the apps ``plugin`` declares (empty list: nothing, or no apps hook).

    Each registered object must be an :class:`~tuneforge.application.AppSpec` with a name
    ``tuneforge serve NAME`` accepts (lower-case letters, digits, dashes; unique within the
    plugin), a description (``tuneforge apps`` shows it), a ``default_path`` that is a string
    or ``None``, and a ``load`` callable with one argument (the app context).  Registration
    errors (an invalid ``AppSpec`` raises when it is made) are reported, not raised.
    """
    from .application import NAME, AppSpec

    if getattr(plugin, "tuneforge_register_apps", None) is None:
        return []
    try:
        apps = plugin_apps(plugin)
    except Exception as exc:  # noqa: BLE001 - reported as a problem
        return [f"tuneforge_register_apps raised {type(exc).__name__}: {exc}"]
    if not apps:
        return ["tuneforge_register_apps registered no app (drop the hook, or call register(AppSpec(...)))"]
    problems, seen = [], set()
    for spec in apps:
        if not isinstance(spec, AppSpec):
            problems.append(f"registered {spec!r}, not a tuneforge.application.AppSpec")
            continue
        label = f"app {spec.name!r}"
        if not isinstance(spec.name, str) or not NAME.match(spec.name):
            problems.append(f"{label}: the name must be lower-case letters, digits and dashes")
        elif spec.name in seen:
            problems.append(f"{label}: registered twice")
        seen.add(spec.name)
        if not isinstance(spec.description, str) or not spec.description.strip():
            problems.append(f"{label}: no description (tuneforge apps shows it)")
        if spec.default_path is not None and not isinstance(spec.default_path, str):
            problems.append(f"{label}: default_path must be a string or None, got {type(spec.default_path).__name__}")
        if not callable(spec.load):
            problems.append(f"{label}: load is not callable")
            continue
        try:
            inspect.signature(spec.load).bind(object())
        except TypeError:
            problems.append(f"{label}: load must take one argument, the AppContext")
        except ValueError:  # no signature to inspect (a C callable): nothing to check
            pass
    return problems


# -- plugin registration for one test -------------------------------------------
class _Registration:
    """Register plugins in the process-wide manager; undo it afterwards."""

    def __init__(self):
        self.added: list = []

    def __call__(self, obj: Any, name: str | None = None) -> Any:
        from .plugin_manager import get_plugin_manager

        pm = get_plugin_manager()
        if pm.is_registered(obj):  # already loaded through its entry point
            return obj
        name = name or getattr(obj, "__name__", None) or type(obj).__name__
        if pm.get_plugin(name) is not None:
            name = f"{name}-under-test"
        pm.register(obj, name=name)
        self.added.append(obj)
        return obj

    def undo(self) -> None:
        from .plugin_manager import get_plugin_manager

        pm = get_plugin_manager()
        for obj in reversed(self.added):
            if pm.is_registered(obj):
                pm.unregister(obj)
        self.added.clear()


# -- a tiny encoder --------------------------------------------------------------
def build_tiny_encoder(out_dir: str | Path, tokenizer_from: str = "all-MiniLM-L6-v2") -> str:
    """Save a randomly initialised 2-layer, 32-wide BERT (with ``tokenizer_from``'s tokenizer) in ``out_dir``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from .models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_from))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TINY_CONFIG)).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return str(out_dir)


# -- train -> export -> predict --------------------------------------------------
@dataclass
class RoundTrip:
    """What :func:`round_trip` produced."""

    task: str
    run_dir: str
    bundle_dir: str
    texts: list[str]
    predictions: list[dict]
    results: list[dict]
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _sample_rows(run_dir: Path, n: int) -> tuple[list[str], list[str] | None]:
    rows = []
    for name in ("test", "validation"):
        path = run_dir / "splits" / f"{name}.jsonl"
        if path.is_file():
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:n]
    texts = [r["text"] for r in rows]
    pairs = [r.get("text_pair") or "" for r in rows]
    return texts, pairs if any(pairs) else None


def round_trip(task_name: str, encoder_dir: str, work_dir: str | Path, *, data: str | None = None,
               limit_train: int = 200, n_predict: int = 4, **settings) -> RoundTrip:
    """Train ``task_name`` 1 epoch on ``encoder_dir``, export FP32, predict and post-process.

    The task's plugin must be registered (installed, or via ``tuneforge_plugin``).
    ``data``: a training file for tasks without bundled data.  ``settings``: more
    :class:`~tuneforge.config.TrainConfig` overrides.  Uses core's API only:
    ``tuneforge.train.train``, ``tuneforge.export.export_run``, ``tuneforge.runtime.Predictor``.
    """
    from .export import export_run
    from .plugin_manager import get_plugin_manager
    from .runtime import Predictor
    from .tasks import get_task
    from .train import config_for_task, train

    work = Path(work_dir)
    task = get_task(task_name)
    overrides = dict(base_model=encoder_dir, mode="full", epochs=1, batch_size=16, max_length=32,
                     output_dir=str(work / "runs"), run_name=f"contract-{task.name}", checkpoint=False,
                     limit_train=limit_train, early_stopping_patience=0, learning_rate=1e-3,
                     zero_shot_baseline=False)
    if data is not None:
        overrides["data"] = str(data)
    overrides.update(settings)
    run = train(config_for_task(task.name, **overrides), progress=False)
    bundle = export_run(run.run_dir, out_dir=work / "exports", variants=["fp32"], measure=False, parity_rows=32)
    texts, pairs = _sample_rows(Path(run.run_dir), n_predict)
    if not texts:
        raise AssertionError(f"task {task.name}: the run kept no validation/test rows to predict")
    predictor = Predictor.load(bundle)
    predictions = predictor.predict(texts, pairs)
    results = get_plugin_manager().hook.tuneforge_postprocess(task=task, texts=texts, predictions=predictions)
    return RoundTrip(task=task.name, run_dir=str(run.run_dir), bundle_dir=str(bundle), texts=texts,
                     predictions=[p.to_dict() for p in predictions], results=results, metrics=run.metrics)


# -- app templates ---------------------------------------------------------------
@dataclass
class TemplateCheck:
    """What :func:`check_template` found: the project folder and its test run."""

    template: str
    project: str
    files: list[str]
    returncode: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode in (0, None)


_PLACEHOLDER = re.compile(r"\{\{[A-Za-z_]\w*\}\}")


def _unfilled_placeholders(project: Path, files: list[Path]) -> list[str]:
    """``file: {{x}}`` for each ``{{identifier}}`` left in a rendered file's name or text."""
    left = []
    for path in files:
        rel = str(Path(path).relative_to(project))
        found = set(_PLACEHOLDER.findall(rel))
        try:
            found |= set(_PLACEHOLDER.findall(Path(path).read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            pass
        left += [f"{rel}: {p}" for p in sorted(found)]
    return left


def check_template(template: Any, parent: str | Path, *, name: str = "demo-app", run_tests: bool = True,
                   timeout: float = 600, env: dict | None = None) -> TemplateCheck:
    """Render ``template`` (an :class:`~tuneforge.tasks.AppTemplate`) as ``parent/name`` and run its tests.

    The project must hold a README.md and at least one ``test_*.py``; its tests run
    with ``python -m pytest`` in the project folder (offline, like every tuneforge test).
    """
    from .scaffold import render_template

    project = Path(parent) / name
    files = render_template(Path(template.path), project,
                            {"name": name, "module": name.replace("-", "_"), "template": template.name})
    rel = sorted(str(f.relative_to(project)) for f in files)
    if "README.md" not in rel:
        raise AssertionError(f"template {template.name!r}: the project has no README.md")
    if not any(Path(f).name.startswith("test_") and f.endswith(".py") for f in rel):
        raise AssertionError(f"template {template.name!r}: the project has no test_*.py")
    left = _unfilled_placeholders(project, files)
    if left:
        raise AssertionError(f"template {template.name!r}: placeholders no variable fills "
                             f"(only name, module, template are given): {'; '.join(left)}")
    if not run_tests:
        return TemplateCheck(template.name, str(project), rel, None, "")
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    full_env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                           str(project), str(project)], cwd=project, capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    return TemplateCheck(template.name, str(project), rel, proc.returncode, proc.stdout + proc.stderr)


# -- pytest fixtures and the contract class --------------------------------------
@pytest.fixture(scope="session")
def tuneforge_tiny_encoder(tmp_path_factory) -> str:
    """A tiny BERT (2 layers, 32 wide, MiniLM's tokenizer) saved as a Hugging Face model folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return build_tiny_encoder(tmp_path_factory.mktemp("tuneforge-tiny-encoder"))


@pytest.fixture
def tuneforge_plugin():
    """Register plugin objects for one test: ``tuneforge_plugin(obj, name=None)``; unregistered after."""
    registration = _Registration()
    yield registration
    registration.undo()


def _contract_plugin(cls) -> Any:
    plugin = getattr(cls, "plugin", None)
    if plugin is None:
        raise pytest.UsageError(f"{cls.__name__}: set `plugin = <your plugin module>` on the class")
    return plugin


def pytest_generate_tests(metafunc):
    cls = metafunc.cls
    if cls is None or not issubclass(cls, PluginContract):
        return
    if "tuneforge_contract_task" in metafunc.fixturenames:
        names = [t.name for t in plugin_tasks(_contract_plugin(cls))]
        skip = set(getattr(cls, "skip_round_trip", ()) or ())
        names = [n for n in names if n not in skip]
        metafunc.parametrize("tuneforge_contract_task", names, ids=names)
    if "tuneforge_contract_template" in metafunc.fixturenames:
        templates = plugin_templates(_contract_plugin(cls))
        metafunc.parametrize("tuneforge_contract_template", templates, ids=[t.name for t in templates])


class PluginContract:
    """Subclass in your tests and set ``plugin``; see the module doc for what is checked."""

    plugin: Any = None
    sample_data: dict[str, str] = {}      # task name -> training file, for tasks without bundled data
    skip_round_trip: tuple[str, ...] = ()  # task names not to train (say why in a comment)
    round_trip_settings: dict = {}        # extra TrainConfig overrides for the round trip
    task_settings: dict[str, dict] = {}   # task name -> TrainConfig overrides for that task only
    run_template_tests: bool = True       # False: render the templates, don't run their tests here

    def round_trip_settings_for(self, task, tmp_path: Path) -> dict:
        """TrainConfig overrides for ``task``'s round trip: ``round_trip_settings`` updated with
        ``task_settings[task.name]``.  Override to compute some (a file written into ``tmp_path``)."""
        return {**self.round_trip_settings, **self.task_settings.get(task.name, {})}

    def sample_data_for(self, task, tmp_path: Path) -> str | None:
        """The training file for ``task``'s round trip; ``None``: the task's bundled data.

        Default: ``sample_data[task.name]``.  Override to write a file into ``tmp_path``.
        """
        return self.sample_data.get(task.name)

    def test_hookimpls_match_the_specs(self):
        problems = hookimpl_problems(_contract_plugin(type(self)))
        assert not problems, "hook implementation problems:\n  " + "\n  ".join(problems)

    def test_registers_with_pluggy(self):
        import pluggy

        from . import hookspecs

        pm = pluggy.PluginManager("tuneforge")
        pm.add_hookspecs(hookspecs)
        plugin = _contract_plugin(type(self))
        pm.register(plugin, name="under-test")   # raises on argument names the spec does not offer
        pm.check_pending()                         # raises on hookimpls that match no spec
        assert pm.get_hookcallers(plugin), "the plugin implements no tuneforge hook"

    def test_registered_apps_are_valid(self, tuneforge_plugin):
        plugin = _contract_plugin(type(self))
        if getattr(plugin, "tuneforge_register_apps", None) is None:
            pytest.skip("the plugin declares no app (no tuneforge_register_apps)")
        problems = app_problems(plugin)
        assert not problems, "app problems:\n  " + "\n  ".join(problems)
        tuneforge_plugin(plugin)
        from .application import all_apps

        served = all_apps()     # raises if another loaded plugin registers one of these names
        for spec in plugin_apps(plugin):
            assert spec.name in served, f"app {spec.name!r} is not listed by core (tuneforge apps)"

    def test_task_round_trip(self, tuneforge_contract_task, tuneforge_tiny_encoder, tuneforge_plugin, tmp_path):
        tuneforge_plugin(_contract_plugin(type(self)))
        from .tasks import get_task

        task = get_task(tuneforge_contract_task)
        data = self.sample_data_for(task, tmp_path)
        if data is None and "train" not in task.data_files:
            pytest.skip(f"task {task.name} has no bundled data: set sample_data = {{{task.name!r}: 'file.csv'}}")
        settings = self.round_trip_settings_for(task, tmp_path)
        result = round_trip(task.name, tuneforge_tiny_encoder, tmp_path, data=data, **settings)
        assert len(result.predictions) == len(result.texts)
        assert isinstance(result.results, list) and len(result.results) == len(result.texts), \
            "tuneforge_postprocess must return one dict per text"
        assert all(isinstance(r, dict) for r in result.results)
        json.dumps(result.results)  # served over HTTP: must be JSON-serialisable

    def test_template(self, tuneforge_contract_template, tuneforge_plugin, tmp_path):
        tuneforge_plugin(_contract_plugin(type(self)))
        check = check_template(tuneforge_contract_template, tmp_path, run_tests=self.run_template_tests)
        assert check.ok, f"template {check.template!r}: its generated tests failed:\n{check.output[-4000:]}"
