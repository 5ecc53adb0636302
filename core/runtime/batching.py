"""Dynamic micro-batching: concurrent requests share one model call.

A :class:`Batcher` owns one worker thread.  :meth:`Batcher.submit` queues a
request (a list of texts) and returns a :class:`concurrent.futures.Future`.  The
worker takes the first waiting request, then keeps collecting requests until
``max_batch`` texts are gathered or ``max_wait_ms`` has passed since the first,
runs them as one ``predict`` call and hands each request its own slice.  A request
whose texts fail does not fail the requests that happened to share its batch.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

_STOP = object()


@dataclass
class _Job:
    texts: list[str]
    pairs: list[str] | None
    future: Future = field(default_factory=Future)


class Batcher:
    """Groups concurrent ``submit`` calls into batches for ``predict_fn(texts, pairs)``."""

    def __init__(self, predict_fn: Callable, *, max_batch: int = 64, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int], None] | None = None):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.predict_fn, self.max_batch, self.max_wait = predict_fn, max_batch, max_wait_ms / 1000
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._carry: _Job | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "Batcher":
        with self._lock:
            if self._stopped:
                raise RuntimeError("this Batcher was stopped")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tuneforge-batcher",
                                                daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        with self._lock:
            self._stopped = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
        self._fail_pending(RuntimeError("the batcher was stopped"))

    def __enter__(self) -> "Batcher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use -------------------------------------------------------------------
    def submit(self, texts: list[str], text_pairs: list[str] | None = None) -> Future:
        """Queue one request; the future's result is ``predict_fn``'s list for these texts."""
        if self._thread is None:
            self.start()
        if self._stopped:
            raise RuntimeError("this Batcher was stopped")
        job = _Job(list(texts), None if text_pairs is None else list(text_pairs))
        self._queue.put(job)
        return job.future

    def predict(self, texts: list[str], text_pairs: list[str] | None = None,
                timeout: float | None = None) -> list:
        return self.submit(texts, text_pairs).result(timeout)

    # -- worker ----------------------------------------------------------------
    def _next(self, timeout: float | None):
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        try:
            return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 \
                else self._queue.get_nowait()
        except queue.Empty:
            return None

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            if first is _STOP:
                return
            jobs, count = [first], len(first.texts)
            deadline = time.monotonic() + self.max_wait
            stop = False
            while count < self.max_batch:
                job = self._next(deadline - time.monotonic())
                if job is None:
                    break
                if job is _STOP:
                    stop = True
                    break
                if count + len(job.texts) > self.max_batch:
                    self._carry = job  # starts the next batch
                    break
                jobs.append(job)
                count += len(job.texts)
            self._run(jobs)
            if stop:
                return

    def _run(self, jobs: list[_Job]) -> None:
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        for with_pairs in (False, True):
            group = [j for j in jobs if (j.pairs is not None) == with_pairs]
            if group:
                self._run_group(group, with_pairs)

    def _run_group(self, jobs: list[_Job], with_pairs: bool) -> None:
        texts = [t for j in jobs for t in j.texts]
        pairs = [p for j in jobs for p in j.pairs] if with_pairs else None
        try:
            results = self.predict_fn(texts, pairs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's future
            if len(jobs) == 1:
                jobs[0].future.set_exception(e)
                return
            for j in jobs:  # find the culprit: run each request alone
                self._run_group([j], with_pairs)
            return
        if self.on_batch is not None:
            try:
                self.on_batch(len(texts))
            except Exception:  # noqa: BLE001 - metrics must never break predictions
                pass
        start = 0
        for j in jobs:
            j.future.set_result(results[start:start + len(j.texts)])
            start += len(j.texts)

    def _fail_pending(self, error: Exception) -> None:
        pending = [self._carry] if self._carry is not None else []
        self._carry = None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                pending.append(item)
        for job in pending:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(error)
