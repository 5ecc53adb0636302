"""core.storage: atomic writes, staged folders, SQLite stores (WAL, migrations, 0600), TOML errors."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from tuneforge.errors import ConfigError
from tuneforge.storage import atomic_write, open_sqlite, read_toml, replace_dir, staging_dir, write_json


def test_sqlite_store_is_private_uses_wal_and_migrates_in_place(tmp_path):
    path = tmp_path / "s.sqlite"
    db = open_sqlite(path, ["CREATE TABLE a (x INTEGER);"])
    db.execute("INSERT INTO a VALUES (1)")
    db.commit()
    db.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    db = open_sqlite(path, ["CREATE TABLE a (x INTEGER);", "ALTER TABLE a ADD COLUMN y TEXT;"])
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [tuple(r) for r in db.execute("SELECT x, y FROM a")] == [(1, None)]   # data kept
    db.close()
    with pytest.raises(ConfigError, match="newer than this tuneforge"):
        open_sqlite(path, ["CREATE TABLE a (x INTEGER);"])


def test_support_bot_store_file_is_0600(tmp_path):
    from tuneforge.plugins.support_bot.store import Store

    store = Store(tmp_path / "bot.sqlite")
    store.add_turn(store.new_session(), "hi", "hello", "smalltalk", None, 1.0)
    store.close()
    for name in os.listdir(tmp_path):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name


def test_concurrent_atomic_writers_never_collide_or_leave_temp_files(tmp_path):
    target = tmp_path / "out.json"
    errors = []

    def writer(i):
        try:
            for j in range(30):
                write_json(target, {"writer": i, "n": j})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(os.listdir(tmp_path)) == ["out.json"]
    assert '"n": 29' in target.read_text()
    atomic_write(tmp_path / "raw.bin", b"\x00\x01", mode=0o600)
    assert stat.S_IMODE(os.stat(tmp_path / "raw.bin").st_mode) == 0o600


def test_replace_dir_swaps_a_staged_folder_in(tmp_path):
    target = tmp_path / "index"
    for generation in ("one", "two"):
        staged = staging_dir(target)
        (staged / "gen.txt").write_text(generation)
        replace_dir(staged, target)
    assert (target / "gen.txt").read_text() == "two" and sorted(os.listdir(tmp_path)) == ["index"]


def test_read_toml_names_file_and_line(tmp_path):
    (tmp_path / "c.toml").write_text("[a]\nx = 1\ny = oops\n")
    with pytest.raises(ConfigError, match=r"c\.toml: invalid TOML: .*line 3"):
        read_toml(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="no such file"):
        read_toml(tmp_path / "missing.toml")


def test_generations_switch_by_one_pointer_and_keep_the_newest(tmp_path):
    from tuneforge.storage import Generations

    gens = Generations(tmp_path / "bot", keep=2)
    assert gens.current() is None
    names = []
    for i in range(4):
        with gens.new() as g:
            (g / "part.txt").write_text(str(i))
            assert gens.current() is None or gens.current().name == names[-1]   # not switched yet
        names.append(gens.current().name)
        assert (gens.current() / "part.txt").read_text() == str(i)
    left = sorted(p.name for p in gens.folder.iterdir())
    assert len(left) == 2 and names[-1] in left
    with pytest.raises(KeyError):
        with gens.new() as g:
            (g / "part.txt").write_text("half")
            raise KeyError("boom")
    assert gens.current().name == names[-1] and not list(gens.folder.glob(".*"))
    dead = gens.folder / ".20990101-000000-abcdef.999999999.tmp"       # a killed build's folder
    dead.mkdir()
    with gens.new():
        pass
    assert not dead.exists()
    (tmp_path / "bot" / "CURRENT").write_text("../../etc\n")
    with pytest.raises(ConfigError, match="not a generation name"):
        gens.current()


def test_two_processes_migrating_one_new_store_run_each_step_once(tmp_path):
    """Two servers opening the same fresh store at once: the loser of the write lock must see the
    winner's migration, not run it again ("duplicate column")."""
    import subprocess
    import sys

    db = tmp_path / "bot.sqlite"
    script = (
        "import sys, time\n"
        "from tuneforge.storage import open_sqlite\n"
        "def slow(db):\n"
        "    db.execute('CREATE TABLE t (a)')\n"
        "    time.sleep(0.5)\n"
        "open_sqlite(sys.argv[1], [slow, 'ALTER TABLE t ADD COLUMN b']).close()\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db)], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    conn = open_sqlite(db, ["CREATE TABLE t (a)", "ALTER TABLE t ADD COLUMN b"])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert [r[1] for r in conn.execute("PRAGMA table_info(t)")] == ["a", "b"]


def test_generation_names_sort_by_creation_across_a_second_boundary():
    """One clock reading makes the name: a build at x.999 s and the next at (x+1).001 s sort in order
    (the stamp and the nanoseconds once came from two readings and could straddle a second)."""
    from tuneforge.storage import generation_name

    before = generation_name(1_764_690_731_999_999_999)
    after = generation_name(1_764_690_732_000_000_001)
    assert before < after
    assert before.startswith("20251202-155211-999999999-") and after.startswith("20251202-155212-000000001-")
