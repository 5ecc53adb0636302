"""Tasks and app templates that plugins register, and the registries core collects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import ConfigError, DataError, PluginError
from .models import DEFAULT_BASE_MODEL

if TYPE_CHECKING:
    import random

    from .data import Dataset

TASK_KINDS = ("classification", "multilabel", "pair", "embedding", "token")

LABEL_KINDS = {"classification": "single", "multilabel": "multi", "pair": "score",
               "embedding": "none", "token": "tags"}


@dataclass
class TaskSpec:
    """A task a plugin offers: what to train, on which data, with which defaults.

    ``data_files`` maps split names (``train``, ``validation``, ``test``) to files that ship
    with the plugin -- a file, or a list of files (several sources mixed: each is read through
    the plugin's loader, so each keeps its own label map); ``columns`` maps the file's columns
    (see :class:`tuneforge.data.ColumnMap`); ``train_defaults`` are training settings
    (``TrainConfig`` fields) that the user's config and flags override.
    ``calibrate_scores`` (classification): the exporter fits a softmax temperature on the run's
    validation split and the bundle's probabilities carry it, for tasks whose scores are used
    as numbers (a sentiment score, a risk level), not only as a ranking.
    ``text_augmenter(text, rng) -> text``: a label-preserving rewrite of a training text (what the
    task's texts may look like at serving time, e.g. a feed's ticker tag in front of a headline);
    training adds a rewritten copy of a ``text_augment`` share of the training rows.  Saved by name only.
    """

    name: str
    kind: str
    description: str = ""
    labels: list[str] = field(default_factory=list)
    base_model: str = DEFAULT_BASE_MODEL
    train_defaults: dict = field(default_factory=dict)
    data_files: dict[str, str | list[str]] = field(default_factory=dict)
    columns: dict[str, str | None] = field(default_factory=dict)
    plugin: str = ""
    calibrate_scores: bool = False
    text_augmenter: Callable[[str, random.Random], str] | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.text_augmenter is not None and not callable(self.text_augmenter):
            raise ConfigError(f"task {self.name!r}: text_augmenter must be a function (text, rng) -> text")
        if self.calibrate_scores and self.kind != "classification":
            raise ConfigError(f"task {self.name!r}: calibrate_scores is for classification tasks, not {self.kind}")
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"task name {self.name!r} must be letters, digits, '-' or '_'")
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task {self.name!r}: unknown kind {self.kind!r}",
                              hint="use one of " + ", ".join(TASK_KINDS))
        unknown = set(self.data_files) - {"train", "validation", "test"}
        if unknown:
            raise ConfigError(f"task {self.name!r}: unknown data split(s) {sorted(unknown)}",
                              hint="use train, validation, test")
        for split, files in self.data_files.items():
            if not (isinstance(files, str) and files) and not (
                    isinstance(files, list) and files and all(isinstance(f, str) and f for f in files)):
                raise ConfigError(f"task {self.name!r}: data_files[{split!r}] must be a file or a non-empty "
                                  f"list of files, got {files!r}")

    @property
    def label_kind(self) -> str:
        return LABEL_KINDS[self.kind]

    def to_dict(self) -> dict:
        augmenter = self.text_augmenter
        out = asdict(replace(self, text_augmenter=None))
        out["text_augmenter"] = f"{augmenter.__module__}:{augmenter.__qualname__}" if augmenter else None
        return out


@dataclass
class AppTemplate:
    """A project skeleton that ``tuneforge new app`` copies (files under ``path``)."""

    name: str
    description: str
    path: str
    plugin: str = ""

    def __post_init__(self):
        if not Path(self.path).is_dir():
            raise ConfigError(f"template {self.name!r}: folder {self.path} does not exist")


def _collect(hook_name: str, kind: str, key) -> dict:
    """Call a ``register_*`` hook and collect what each plugin registers, by name."""
    from .plugin_manager import call_each

    found: dict = {}

    def register_for(plugin_name):
        def register(item):
            item.plugin = item.plugin or plugin_name
            name = key(item)
            if name in found:
                raise PluginError(f"{kind} {name!r} is registered twice: by plugin "
                                  f"{found[name].plugin!r} and by {item.plugin!r}",
                                  hint="uninstall one of them or set TUNEFORGE_PLUGINS")
            found[name] = item
        return register

    call_each(hook_name, lambda plugin: {"register": register_for(plugin)})
    return found


def all_tasks() -> dict[str, TaskSpec]:
    """Every task registered by the loaded plugins, by name."""
    return _collect("tuneforge_register_tasks", "task", lambda t: t.name)


def get_task(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        known = ", ".join(sorted(tasks)) or "none"
        raise PluginError(f"unknown task {name!r} (registered: {known})",
                          hint="run `tuneforge plugins` to see what each plugin provides")
    return tasks[name]


def all_templates() -> dict[str, AppTemplate]:
    return _collect("tuneforge_register_templates", "template", lambda t: t.name)


def load_split(task: TaskSpec, path: "str | Path | list", split: str, pm, *, columns: dict | None = None,
               labels: list[str] | None = None, encoding: str = "utf-8") -> "Dataset":
    """Load one file for ``task``: a plugin's loader first, else core's; then validate.

    ``split``: train, validation, test or predict (passed to ``tuneforge_load_data``).
    ``path`` a list: each file loaded so, then concatenated in order (:meth:`Dataset.concat`).
    """
    from .data import ColumnMap, Dataset, load_dataset

    if isinstance(path, (list, tuple)):
        return Dataset.concat([load_split(task, p, split, pm, columns=columns, labels=labels, encoding=encoding)
                               for p in path])
    path = str(path)
    ds = pm.hook.tuneforge_load_data(task=task, path=path, split=split)
    if ds is None:
        cmap = ColumnMap.from_dict({**task.columns, **(columns or {})})
        ds = load_dataset(path, cmap, label_kind=task.label_kind, labels=labels or None, encoding=encoding)
    problems = [p for answer in pm.hook.tuneforge_validate_data(task=task, dataset=ds) if answer for p in answer]
    if problems:
        raise DataError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""),
                        path=path)
    return ds


def postprocess(task: TaskSpec | None, texts: list[str], predictions: list) -> list[dict]:
    """Domain results for runtime predictions: the ``tuneforge_postprocess`` hook (first answer
    wins; core's ``trylast`` default is ``prediction.to_dict()``).  Used by ``tuneforge predict``
    and ``POST /v1/predict`` alike."""
    from .plugin_manager import get_plugin_manager

    result = get_plugin_manager().hook.tuneforge_postprocess(task=task, texts=texts, predictions=predictions)
    if result is None:
        return [p.to_dict() for p in predictions]
    if len(result) != len(predictions):
        raise PluginError(f"tuneforge_postprocess returned {len(result)} results for {len(predictions)} texts")
    return result
