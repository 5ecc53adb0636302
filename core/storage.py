"""Storage helpers every app shares: atomic files and folders, SQLite stores, TOML files.

* :func:`atomic_write` / :func:`write_json` -- a unique temp file in the target's folder,
  fsync, rename: readers see the old file or the new one, never half of one, and two
  writers never share a temp name.
* :func:`replace_dir` -- build a folder aside, then swap it in with renames.
* :class:`Generations` -- several files that must change together (a model, its thresholds,
  its index) built aside in a new generation folder and switched by one pointer file.
* :func:`open_sqlite` -- WAL, a busy timeout, ``PRAGMA user_version`` migrations, file mode
  0600 (stores hold transcripts and alerts: nobody else on the machine reads them).
* :func:`read_toml` -- a TOML file as a dict, or a :class:`ConfigError` naming file and line.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

from .errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

Migration = Union[str, Callable[[sqlite3.Connection], None]]


def atomic_write(path: str | Path, data: bytes | str, *, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically (unique temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A unique temp path beside ``path`` for a writer that wants a file name (``torch.save``,
    ``np.save``, ``faiss.write_index``); renamed onto ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data, *, indent: int = 2, mode: int = 0o644) -> Path:
    """Write ``data`` as JSON atomically (see :func:`atomic_write`)."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n"
    return atomic_write(path, text, mode=mode)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def staging_dir(target: str | Path) -> Path:
    """A new, empty folder beside ``target`` to build its replacement in (unique name)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    return tmp


def replace_dir(staged: str | Path, target: str | Path) -> Path:
    """Swap the folder ``staged`` in as ``target`` (two renames; the old one is removed after).

    A reader sees the old folder or the new one.  Between the two renames ``target`` is
    briefly absent; readers that must never see that should point at versioned folders.
    """
    staged, target = Path(staged), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.rename(target, old)
    try:
        os.rename(staged, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)
    return target


POINTER = "CURRENT"


class Generations:
    """Versioned folders under ``root/generations/`` and one pointer file ``root/CURRENT``.

    :meth:`new` builds a generation aside (``generations/.<name>.<pid>.tmp``); only when the
    block succeeds is it renamed to ``generations/<name>`` and the pointer rewritten
    atomically.  A reader follows the pointer once and so sees the old generation or the new
    one, never a mix; an interrupted build (an exception, SIGTERM, ``kill -9``) leaves the
    pointer on the old one, and its temp folder is removed by the next build.  The newest
    ``keep`` generations stay (a running server may still read the previous one).
    """

    def __init__(self, root: str | Path, *, keep: int = 2):
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.root, self.keep = Path(root), keep
        self.folder = self.root / "generations"

    def current(self) -> Path | None:
        """The generation the pointer names, or ``None`` when there is no pointer."""
        pointer = self.root / POINTER
        if not pointer.is_file():
            return None
        name = pointer.read_text().strip()
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{pointer}: not a generation name: {name!r}")
        path = self.folder / name
        if not path.is_dir():
            raise ConfigError(f"{pointer} names {name}, but {path} is missing")
        return path

    @contextmanager
    def new(self) -> Iterator[Path]:
        """An empty folder to build the next generation in; switched to when the block succeeds."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_dead_temps()
        name = generation_name(time.time_ns())
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        tmp.mkdir()
        try:
            yield tmp
            os.rename(tmp, self.folder / name)
            _fsync_dir(self.folder)
            atomic_write(self.root / POINTER, name + "\n")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune()

    def _prune(self) -> None:
        current = self.current()
        done = sorted((p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.name, reverse=True)
        for old in done[self.keep:]:
            if old != current:
                shutil.rmtree(old, ignore_errors=True)

    def _remove_dead_temps(self) -> None:
        for tmp in self.folder.glob(".*.tmp"):
            try:
                pid = int(tmp.name.rsplit(".", 2)[-2])
            except ValueError:
                continue
            if not _alive(pid):
                shutil.rmtree(tmp, ignore_errors=True)


def generation_name(ns: int) -> str:
    """``YYYYMMDD-HHMMSS-<nanoseconds>-<random>`` from one clock reading, so names sort by creation
    (reading the clock twice could pair one second's stamp with the next second's nanoseconds)."""
    seconds, rest = divmod(ns, 10**9)
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(seconds))}-{rest:09d}-{uuid.uuid4().hex[:4]}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_wal(db: sqlite3.Connection, timeout_s: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the lock: switching the
    journal mode needs an exclusive lock and SQLite answers "database is locked" at once, without
    calling the busy handler, when two processes open a new store together."""
    deadline = time.monotonic() + max(timeout_s, 0.1)
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def open_sqlite(path: str | Path, migrations: Sequence[Migration], *, autocommit: bool = False,
                busy_timeout_s: float = 30.0) -> sqlite3.Connection:
    """Open (or create) the SQLite store at ``path`` and bring its schema up to date.

    ``migrations[i]`` takes the schema from version ``i`` to ``i + 1`` (SQL text run as a
    script, or a function of the connection); the version lives in ``PRAGMA user_version``,
    so a store written by an older release is migrated in place, and a store newer than
    this code is refused.  WAL journal, ``synchronous=NORMAL``, a busy timeout, file mode
    0600.  ``autocommit`` opens it with ``isolation_level=None`` (explicit ``BEGIN``).
    """
    memory = str(path) == ":memory:"
    path = Path(path)
    if not memory:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(path, 0o600)
    db = sqlite3.connect(":memory:" if memory else str(path), check_same_thread=False, timeout=busy_timeout_s,
                         isolation_level=None if autocommit else "DEFERRED")
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    if not memory:
        _set_wal(db, busy_timeout_s)
        db.execute("PRAGMA synchronous = NORMAL")
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.chmod(side, 0o600)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        db.close()
        raise ConfigError(f"{path}: store schema version {version} is newer than this tuneforge "
                          f"understands ({len(migrations)})", hint="upgrade tuneforge")
    for target, step in enumerate(migrations[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        # another process may have migrated while this one waited for the write lock: re-read
        if db.execute("PRAGMA user_version").fetchone()[0] >= target:
            db.execute("COMMIT")
            continue
        try:
            if callable(step):
                step(db)
            else:
                for statement in _statements(step):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            db.close()
            raise
    return db


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", hint="fix the TOML syntax at that line") from None
