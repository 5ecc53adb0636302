"""A rich progress bar for training: live loss, throughput and ETA."""

from __future__ import annotations

import sys
import time


class TrainProgress:
    """``with TrainProgress(total) as bar: bar.advance(loss, n_examples)``."""

    def __init__(self, total: int, *, enabled: bool = True, unit_batch: int = 1, description: str = "training"):
        self.total = total
        self.enabled = enabled
        self.description = description
        self.loss = float("nan")
        self._ema: float | None = None
        self._examples = 0
        self._t0 = time.perf_counter()
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            console = Console(stderr=True)
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                                      TextColumn("{task.fields[rate]} ex/s"), TimeElapsedColumn(),
                                      TextColumn("eta"), TimeRemainingColumn(), console=console)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, loss="-", rate="-")
        self._t0 = time.perf_counter()
        return self

    def advance(self, loss: float, examples: int) -> None:
        self._ema = loss if self._ema is None else 0.95 * self._ema + 0.05 * loss
        self.loss = self._ema
        self._examples += examples
        if self._progress is not None:
            rate = self._examples / max(time.perf_counter() - self._t0, 1e-9)
            self._progress.update(self._task, advance=1, loss=f"{self._ema:.4f}", rate=f"{rate:.0f}")

    def note(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)

    @property
    def throughput(self) -> float:
        return self._examples / max(time.perf_counter() - self._t0, 1e-9)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


def log(text: str, enabled: bool = True) -> None:
    if enabled:
        print(text, file=sys.stderr, flush=True)
