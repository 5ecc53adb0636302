"""Every hook a tuneforge plugin can implement.

Plugins say *what* (tasks, data, domain results, commands, routes, templates);
core says *how* (train, export, serve).  Implement a hook by defining a function
of the same name decorated with ``@tuneforge.hookimpl``; take only the
arguments you need.  ``register_*`` hooks receive a ``register`` callback: call
it once per thing you add, and core collects.  Hooks marked *firstresult* stop
at the first plugin that returns something other than ``None``.

``docs/hooks.md`` is generated from this file (``python -m tuneforge.docs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # only for annotations: keep this module import-light
    import click

    from .application import AppSpec, LoadedApp
    from .data import Dataset
    from .tasks import AppTemplate, TaskSpec

hookspec = pluggy.HookspecMarker("tuneforge")
hookimpl = pluggy.HookimplMarker("tuneforge")


@hookspec
def tuneforge_register_tasks(register: Callable[["TaskSpec"], None]) -> None:
    """Name the tasks this plugin provides.

    Called once when the task registry is first needed (``train``, ``eval``,
    ``tuneforge plugins``).  Call ``register(TaskSpec(...))`` for each task: its
    name, kind (classification, multilabel, pair, embedding, token), labels,
    default base model, default training settings and default data files.
    Two plugins registering the same task name is an error naming both.
    Return value ignored.
    """


@hookspec(firstresult=True)
def tuneforge_load_data(task: "TaskSpec", path: str, split: str) -> "Dataset | None":
    """Load a data file for ``task`` when the plugin's data is not a plain labelled table.

    Called before core's own loader each time a task's data file is read;
    ``split`` is ``"train"``, ``"validation"``, ``"test"`` or ``"predict"``.
    Return a :class:`tuneforge.data.Dataset`, or ``None`` to let core load the
    file with the task's column mapping.  *firstresult*: the first non-``None``
    answer wins.
    """


@hookspec
def tuneforge_validate_data(task: "TaskSpec", dataset: "Dataset") -> "list[str] | None":
    """Check a loaded data set against the plugin's own rules.

    Called after loading and core's own checks (columns, empty text, labels),
    for every split.  Return a list of problems, each a short sentence (prefix
    it with ``"line N: "`` when it concerns one row); core reports them as one
    data error naming the file.  Return ``None`` or ``[]`` when all is well.
    """


@hookspec(firstresult=True)
def tuneforge_postprocess(task: "TaskSpec", texts: list[str], predictions: list[Any]) -> "list[dict] | None":
    """Turn raw model predictions into domain results.

    Called by ``tuneforge predict`` (unless ``--raw``) and ``POST /v1/predict`` after the
    runtime has scored ``texts`` (through :func:`tuneforge.tasks.postprocess`).  ``predictions`` are
    :class:`tuneforge.runtime.Prediction` objects, one per text.  Return one
    dict per text (e.g. an answer, a sentiment with entities), or ``None`` if
    this plugin does not handle ``task``.  *firstresult*; core's default
    (``trylast``) returns ``prediction.to_dict()``.
    """


@hookspec
def tuneforge_register_commands(cli: "click.Group") -> None:
    """Add commands to the ``tuneforge`` CLI.

    Called once while the CLI is built, before arguments are parsed.  Add
    commands with ``@cli.command()`` or ``cli.add_command(...)``; core's shared
    groups already exist (add a report with ``cli.commands["report"].add_command``).  Import heavy
    libraries inside the command functions, not at module level.  Return value
    ignored; a plugin whose registration raises is reported and skipped.
    """


@hookspec
def tuneforge_register_apps(register: Callable[["AppSpec"], None]) -> None:
    """Declare the apps this plugin offers to ``tuneforge serve NAME``.

    Called when an app is looked up or listed (``tuneforge serve``, ``tuneforge apps``).
    Call ``register(AppSpec(name=..., description=..., load=..., default_path=...))``:
    ``load(context)`` gets a :class:`tuneforge.application.AppContext` (the folder or
    config ``path`` to load from, the server's Prometheus ``metrics`` registry for the
    app's own counters, ``options``) and returns a :class:`tuneforge.application.LoadedApp`
    (its FastAPI routers, a ``warmup`` that makes one real prediction, an optional
    background ``worker``, ``close``).  Core serves it: auth, limits, errors, ``/healthz``,
    ``/metrics``.  Two plugins registering one app name is an error naming both.
    Return value ignored.
    """


@hookspec
def tuneforge_register_routes(register: Callable[[Any], None], app: "LoadedApp") -> None:
    """Add HTTP routes to every server ``tuneforge serve`` starts.

    Called once per server start, after the bundle or app is loaded.  ``app`` is the
    :class:`tuneforge.application.LoadedApp` being served (``app.name`` is ``"bundle"`` for a
    bare bundle; ``app.predictor`` and ``app.task`` are set when it serves a model).  Call
    ``register(router)`` with a ``fastapi.APIRouter`` for each group of routes to mount; core
    puts them behind the same auth, limits and error format.  An app's own routes belong in
    its ``LoadedApp``; this hook is for routes a plugin adds to other apps.  Return value
    ignored.
    """


@hookspec
def tuneforge_register_templates(register: Callable[["AppTemplate"], None]) -> None:
    """Offer application templates for ``tuneforge new app --template NAME``.

    Called when templates are listed (``tuneforge apps``) or used.  Call
    ``register(AppTemplate(name=..., description=..., path=...))`` where
    ``path`` is a folder copied into the new project (``{{name}}`` placeholders
    in files and file names are filled in).  Return value ignored.
    """


@hookspec
def tuneforge_train_start(task: "TaskSpec", config: dict, run_dir: str) -> None:
    """Training of ``task`` is about to begin.

    Called once per run after the data is loaded and split and the resolved
    ``config`` (a dict) has been saved in ``run_dir``.  Return value ignored.
    """


@hookspec
def tuneforge_train_end(task: "TaskSpec", config: dict, run_dir: str, metrics: dict) -> None:
    """Training of ``task`` finished and its report is written.

    Called once per successful run; ``metrics`` holds the validation and test
    metrics as saved in ``run_dir/metrics.json``.  Return value ignored.
    """


@hookspec
def tuneforge_export_done(bundle_dir: str, manifest: dict) -> None:
    """An exported bundle was written and verified.

    Called once per export with the final bundle folder and its manifest
    (as a dict: task, variants, parity results, hashes).  Never write into
    ``bundle_dir``: a file the manifest does not list makes the bundle refused
    at load.  Return value ignored.
    """
