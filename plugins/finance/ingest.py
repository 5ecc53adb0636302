"""Where items come from: JSONL/CSV files (replayed, optionally time-compressed), a watched
directory, stdin.  (``POST /v1/events`` goes straight to :meth:`Monitor.submit`.)

Every source yields :class:`Record` s: a parsed item or the reason it is malformed, with
the source's byte offset and line number after it, which the monitor commits with the
batch.  On restart a file source seeks to its committed offset: nothing is read twice,
nothing skipped.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .items import Item, Malformed, parse_csv_row, parse_json_line

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")


@dataclass
class Record:
    source: str            # position key, e.g. "file:/abs/news.jsonl"
    offset: int            # byte offset just after this record (-1: not resumable)
    line: int              # line number of the record (1-based)
    item: Item | None
    error: str | None = None
    raw: str = ""


class DeadLetter:
    """Appends malformed records and items later than the grace (``kind``, with the reason) to a
    JSONL file; never raises on bad input."""

    def __init__(self, path: Path | None):
        self.path = path
        self.count = 0
        self.by_kind: dict[str, int] = {}     # "malformed" | "late" -> rows written by this process
        self._lock = threading.Lock()

    def write(self, source: str, line: int, reason: str, raw: str, kind: str = "malformed") -> None:
        self.count += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if self.path is None:
            return
        row = {"source": source, "line": line, "kind": kind, "reason": reason, "raw": raw[:2000], "at": time.time()}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


class FileSource:
    """A JSONL or CSV file read from a committed byte offset.

    ``speed``: 0 reads as fast as possible; N > 0 replays item timestamps N times faster than
    real time (gaps capped at ``max_gap_s`` wall seconds).  ``complete``: the file will not
    grow (a last line without newline is read); otherwise only whole lines are taken.
    """

    def __init__(self, path, start: tuple[int, int] = (0, 0), *, speed: float = 0.0, max_gap_s: float = 5.0,
                 complete: bool = True):
        self.path = Path(path)
        self.key = f"file:{self.path.resolve()}"
        self.csv = self.path.suffix.lower() == ".csv"
        self.offset, self.line = start
        self.speed, self.max_gap_s, self.complete = speed, max_gap_s, complete
        self.done = False
        self.size = -1                          # last seen size (a watched file still being written)
        self.header: list[str] | None = None
        self._pending: Record | None = None     # read but not yet due (replay)
        self._due = None                        # (wall time, stream time) of the last emitted record
        self._fh = None

    def _open(self):
        if self._fh is None:
            self._fh = open(self.path, "rb")
            if self.csv:
                first = self._fh.readline()
                self.header = [h.strip().lower() for h in next(csv.reader([first.decode("utf-8-sig")]), [])]
                if self.offset == 0:
                    self.offset, self.line = self._fh.tell(), 1
            self._fh.seek(self.offset)
        return self._fh

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _read_raw(self) -> tuple[str, int] | None:
        """The next record's text and how many physical lines it spans (CSV quotes may span lines)."""
        fh = self._open()
        start = fh.tell()
        data = fh.readline()
        lines = 1
        if self.csv:
            while data and data.count(b'"') % 2 == 1 and data.endswith(b"\n"):
                more = fh.readline()
                if not more:
                    break
                data += more
                lines += 1
        if not data or (not data.endswith(b"\n") and not self.complete):
            fh.seek(start)
            return None
        self.offset = fh.tell()
        return data.decode("utf-8", errors="replace"), lines

    def _next_record(self) -> Record | None:
        while True:
            got = self._read_raw()
            if got is None:
                return None
            raw, lines = got
            self.line += lines
            text = raw.strip()
            if not text:
                continue
            try:
                if self.csv:
                    row = next(csv.reader([text]))
                    item = parse_csv_row(self.header or [], row)
                else:
                    item = parse_json_line(text)
                return Record(self.key, self.offset, self.line, item)
            except Malformed as e:
                return Record(self.key, self.offset, self.line, None, str(e), text)
            except csv.Error as e:
                return Record(self.key, self.offset, self.line, None, f"CSV: {e}", text)

    def poll(self, max_n: int) -> list[Record]:
        out: list[Record] = []
        now = time.monotonic()
        while len(out) < max_n:
            rec = self._pending or self._next_record()
            self._pending = None
            if rec is None:
                if self.complete:
                    self.done = True
                    self.close()
                break
            if self.speed > 0 and rec.item is not None:
                due = self._due_time(rec.item.ts, now)
                if due > now:
                    self._pending = rec
                    break
                self._due = (due, rec.item.ts)
            out.append(rec)
        return out

    def _due_time(self, ts: float, now: float) -> float:
        if self._due is None:
            return now
        last_wall, last_ts = self._due
        gap = max(0.0, ts - last_ts) / self.speed
        return last_wall + min(gap, self.max_gap_s)

    def wait_hint(self) -> float:
        """Seconds until the next record is due (0 when not replaying)."""
        if self._pending is None or self._pending.item is None or self._due is None:
            return 0.0
        return max(0.0, self._due_time(self._pending.item.ts, time.monotonic()) - time.monotonic())


class DirectorySource:
    """New ``*.jsonl`` / ``*.csv`` files in ``folder`` (sorted by name), each resumed from its own
    committed offset; polled every ``poll_s``.  A file is taken as complete once unchanged for
    two polls."""

    def __init__(self, folder, positions, *, poll_s: float = 1.0):
        self.folder = Path(folder)
        self.positions = positions          # callable: key -> (offset, line)
        self.poll_s = poll_s
        self.files: dict[str, FileSource] = {}
        self._last_scan = 0.0
        self.done = False

    def _scan(self) -> None:
        self._last_scan = time.monotonic()
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() not in SUFFIXES or path.name.startswith("."):
                continue
            key = f"file:{path.resolve()}"
            src = self.files.get(key)
            if src is None:
                src = self.files[key] = FileSource(path, self.positions(key), complete=False)
            if src.done:
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            settled = stat.st_size == src.size and time.time() - stat.st_mtime > 2 * self.poll_s
            src.complete = settled
            src.size = stat.st_size

    def poll(self, max_n: int) -> list[Record]:
        if time.monotonic() - self._last_scan >= self.poll_s:
            self._scan()
        out: list[Record] = []
        for src in self.files.values():
            if src.done or len(out) >= max_n:
                continue
            out += src.poll(max_n - len(out))
        return out

    def wait_hint(self) -> float:
        return self.poll_s


class StdinSource:
    """JSON lines from stdin, read by a thread; not resumable (offset -1)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin
        self.queue: queue.Queue = queue.Queue(maxsize=10_000)
        self.line = 0
        self.done = False
        self._eof = False
        threading.Thread(target=self._read, name="finance-monitor-stdin", daemon=True).start()

    def _read(self) -> None:
        for raw in self.stream:
            self.queue.put(raw)
        self._eof = True

    def poll(self, max_n: int) -> list[Record]:
        out = []
        while len(out) < max_n:
            try:
                raw = self.queue.get_nowait()
            except queue.Empty:
                self.done = self._eof and self.queue.empty()
                break
            self.line += 1
            text = raw.strip()
            if not text:
                continue
            try:
                out.append(Record("stdin", -1, self.line, parse_json_line(text, default_ts=time.time(),
                                                                            default_source="stdin")))
            except Malformed as e:
                out.append(Record("stdin", -1, self.line, None, str(e), text))
        return out

    def wait_hint(self) -> float:
        return 0.05


def file_sources(paths: list[Path], positions, *, speed: float, max_gap_s: float) -> list[FileSource]:
    out = []
    for p in paths:
        if not p.is_file():
            from tuneforge.errors import UsageError

            raise UsageError(f"input file {p} does not exist")
        src = FileSource(p, (0, 0), speed=speed, max_gap_s=max_gap_s)
        src.offset, src.line = positions(src.key)
        if src.offset >= os.path.getsize(p) and src.offset > 0:
            src.done = True
        out.append(src)
    return out
