"""The evaluation report of a run: report.json, report.md and confusion.png."""

from __future__ import annotations

from pathlib import Path

from ..metrics import headline
from ..storage import write_json


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def confusion_text(cm: list[list[int]], labels: list[str], limit: int = 20) -> str:
    """A plain-text confusion matrix (rows = truth), truncated to the ``limit`` biggest classes."""
    order = sorted(range(len(labels)), key=lambda i: -sum(cm[i]))[:limit]
    width = max(5, *(len(labels[i][:18]) for i in order))
    head = " " * width + " " + " ".join(f"{j:>4}" for j in range(len(order)))
    rows = [head]
    for r, i in enumerate(order):
        rows.append(f"{labels[i][:18]:>{width}} " + " ".join(f"{cm[i][j]:>4}" for j in order) + f"  [{r}]")
    if len(labels) > limit:
        rows.append(f"(showing the {limit} largest of {len(labels)} classes)")
    return "\n".join(rows)


def confusion_png(cm: list[list[int]], labels: list[str], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None
    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = min(4 + 0.18 * len(labels), 22)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    fontsize = 9 if len(labels) <= 20 else 5
    ax.set_xticks(ticks, labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dir: Path, *, task: str, mode: str, labels: list[str], metrics: dict,
                 fit: dict, extra: dict | None = None) -> dict:
    """Write report.json/.md (+ confusion.png for classification); returns the report dict."""
    report = {"task": task, "mode": mode, "metrics": metrics, "training": fit, **(extra or {})}
    write_json(run_dir / "report.json", report)
    lines = [f"# Run report: {task} ({mode})", ""]
    lines += ["| split | " + " | ".join(headline(metrics["test"]).keys()) + " |",
              "|---|" + "---|" * len(headline(metrics["test"]))]
    for split in ("validation", "test"):
        if split in metrics:
            lines.append(f"| {split} | " + " | ".join(_fmt(v) for v in headline(metrics[split]).values()) + " |")
    lines += ["", f"Training: {fit.get('steps')} steps, {fit.get('train_seconds', 0):.1f} s, "
              f"best {fit.get('best_metric')} at epoch {fit.get('best_epoch', 0):.2f}"
              + (" (stopped early)" if fit.get("stopped_early") else ""), ""]
    for key, value in (extra or {}).items():
        if isinstance(value, dict):
            lines.append(f"- {key}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in headline(value).items()))
    test = metrics.get("test", {})
    if "per_class" in test and "precision" in next(iter(test["per_class"].values()), {}):
        lines += ["", "## Per class (test)", "", "| label | precision | recall | f1 | support |",
                  "|---|---|---|---|---|"]
        for lab, v in test["per_class"].items():
            lines.append(f"| {lab} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    if "confusion_matrix" in test:
        lines += ["", "## Confusion matrix (test, rows = truth)", "", "```",
                  confusion_text(test["confusion_matrix"], labels), "```", "", "![confusion](confusion.png)"]
        confusion_png(test["confusion_matrix"], labels, run_dir / "confusion.png")
    (run_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
