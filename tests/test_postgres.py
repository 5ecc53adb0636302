"""Stores in PostgreSQL (issue 17, part 3): tuneforge.database and the support bot's store against a
real server (``TUNEFORGE_TEST_POSTGRES``; ``make pg`` starts one, ``.ci/run`` always does).

Round trip, masking in the rows PostgreSQL holds, concurrent writers (threads and processes),
migrations once and idempotent, clear one-line errors, and the HTTP load test reading PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from _postgres import pg_schema, pg_server, query, with_schema  # noqa: F401  (fixtures)
from click.testing import CliRunner

from tuneforge.database import StoreError, open_database, redact_url, schema_name, split_schema
from tuneforge.errors import ConfigError, UsageError
from tuneforge.plugins.support_bot.store import PG_MIGRATIONS, Store, bot_schema, open_bot_store

CARD, PHONE, MAIL = "4111 1111 1111 1111", "+44 20 7946 0958", "jane.doe@example.com"


# -- no server needed -------------------------------------------------------------------------
def test_urls_are_redacted_and_schemas_derived():
    assert redact_url("postgresql://bot:s3cret@db:5432/tf?sslmode=require") == \
        "postgresql://bot:***@db:5432/tf?sslmode=require"
    assert redact_url("postgresql://db/tf?password=s3cret&user=bot") == "postgresql://db/tf?password=***&user=bot"
    assert redact_url("postgresql://bot@db/tf") == "postgresql://bot@db/tf"
    assert split_schema("postgresql://db/tf?schema=bot_a&sslmode=off") == ("postgresql://db/tf?sslmode=off", "bot_a")
    assert schema_name("support_bot", "My Bot-2") == "support_bot_my_bot_2"
    assert bot_schema("/srv/bots/support-bot") == "support_bot_support_bot"
    with pytest.raises(ConfigError, match="schema"):
        open_database("postgresql://db/tf?schema=Bad-Name", {"sqlite": [], "postgresql": []})
    with pytest.raises(UsageError, match="postgresql://"):
        open_bot_store("/tmp", "bot.sqlite")


def test_missing_driver_is_one_clear_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError) as e:
        Store("postgresql://bot:s3cret@127.0.0.1:1/tf", schema="x")
    assert "pip install 'tuneforge[postgresql]'" in e.value.one_line() and "s3cret" not in e.value.one_line()


def test_unreachable_server_is_one_line_without_the_password_and_no_traceback(tmp_path):
    """The CLI (finance monitor --store) on a port nobody listens on: exit 1, one line, no secret."""
    (tmp_path / "monitor.toml").write_text('[model]\nscorer = "keywords"\n[sinks]\nconsole = false\n')
    url = "postgresql://bot:s3cret@127.0.0.1:1/tf?connect_timeout=2"
    out = subprocess.run([sys.executable, "-m", "tuneforge", "finance", "monitor", "--config",
                          str(tmp_path / "monitor.toml"), "--once", "--no-dashboard"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TUNEFORGE_STORE": url})
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: PostgreSQL store postgresql://bot:***@127.0.0.1:1/tf")
    assert "s3cret" not in out.stderr + out.stdout and "Traceback" not in out.stderr


def test_load_test_hands_the_store_to_its_server_in_the_environment(monkeypatch, tmp_path):
    """The URL (and its password) is never on the server's command line; --serve-args are."""
    import io

    from tuneforge.errors import TuneforgeError
    from tuneforge.plugins.support_bot import loadtest

    seen = {}

    class Exited:
        returncode, stderr = 3, io.StringIO("boom")

        def __init__(self, cmd, **kw):
            seen["cmd"], seen["env"] = cmd, kw["env"]

        def poll(self):
            return 3

    monkeypatch.setattr(loadtest.subprocess, "Popen", Exited)
    url = "postgresql://bot:s3cret@db/tf?schema=x"
    with pytest.raises(TuneforgeError, match="exited with code 3: boom"):
        loadtest.start_server(tmp_path, 1234, store=url, serve_args=["--engine", "ray", "--replicas", "2"])
    assert seen["cmd"][-4:] == ["--engine", "ray", "--replicas", "2"] and not any("s3cret" in a for a in seen["cmd"])
    assert seen["env"]["TUNEFORGE_STORE"] == url


# -- against the server ---------------------------------------------------------------------------
def test_bot_store_round_trip(pg_schema):
    url, schema = pg_schema
    store = Store(url, schema=schema)
    try:
        session = store.new_session()
        assert store.has_session(session) and not store.has_session("nobody")
        t1 = store.add_turn(session, f"card {CARD} never came", "It is on its way.", "template", "card_arrival", 0.93,
                            [{"citation": "cards.md", "score": 0.5}])
        t2 = store.add_turn(session, f"mail me at {MAIL}", "Handing over.", "handoff", None, 0.2)
        assert t2 > t1
        ref = store.turn_ref(t1)
        assert len(ref) == 16 and store.turn_of_session(ref, session)["id"] == t1
        assert store.turn_of_session(ref, "someone-else") is None
        ticket = store.add_ticket(session, f"call me on {PHONE}", turn_id=t2)
        assert store.tickets("open")[0]["question"] == "call me on [PHONE]"
        assert store.mark_turn(t1, "right")["feedback"] == "right"
        store.mark_turn(t2, "wrong", "lost_or_stolen_card")
        assert store.label_ticket(ticket, "contactless_not_working")["status"] == "labelled"
        assert store.tickets("open") == [] and [t["id"] for t in store.tickets()] == [ticket]
        assert sorted(store.training_rows()) == sorted([
            ("card [CARD] never came", "card_arrival", f"turn:{t1}"),
            ("mail me at [EMAIL]", "lost_or_stolen_card", f"turn:{t2}"),
            ("call me on [PHONE]", "contactless_not_working", f"ticket:{ticket}")])
        assert [r["id"] for r in store.turns(session)] == [t2, t1]
        assert json.loads(store.turn(t1)["sources"]) == [{"citation": "cards.md", "score": 0.5}]
        assert store.count_turns() == 2 and store.transcript()[ref] == (session, "card [CARD] never came")
        with pytest.raises(UsageError, match="no turn 999"):
            store.mark_turn(999, "right")
        with pytest.raises(UsageError, match="feedback must be"):
            store.mark_turn(t1, "maybe")
        assert "***" in store.where or "@" not in url.split("//", 1)[1].split("/")[0].split(":", 1)[-1]
    finally:
        store.close()
    # what PostgreSQL holds: masked, every text column
    raw = " ".join(str(v) for table in ("turns", "tickets")
                   for row in query(url, schema, f"SELECT * FROM {table}") for v in row)
    for secret in (CARD, "4111", PHONE, MAIL):
        assert secret not in raw
    assert "[CARD]" in raw and "[EMAIL]" in raw and "[PHONE]" in raw


def test_migrations_run_once_even_when_replicas_open_together(pg_schema):
    url, schema = pg_schema
    with ThreadPoolExecutor(6) as pool:                  # six "replicas" opening a fresh schema at once
        stores = list(pool.map(lambda _: Store(url, schema=schema), range(6)))
    for s in stores:
        s.close()
    assert query(url, schema, "SELECT version FROM tuneforge_migrations") == [(len(PG_MIGRATIONS),)]
    again = Store(url, schema=schema)                    # reopening: nothing to do, nothing added
    assert again.db.version() == len(PG_MIGRATIONS)
    again.close()
    assert len(query(url, schema, "SELECT * FROM tuneforge_migrations")) == 1
    query(url, schema, "INSERT INTO tuneforge_migrations (version) VALUES (99)")
    with pytest.raises(ConfigError, match="newer than this tuneforge"):
        Store(url, schema=schema)


def test_each_store_gets_its_own_schema(pg_schema):
    url, schema = pg_schema
    a, b = Store(with_schema(url, schema), schema="ignored"), Store(url, schema=schema + "_b")
    try:
        a.add_turn("s", "only in a", "ok", "template", "x", 1.0)
        assert a.count_turns() == 1 and b.count_turns() == 0
    finally:
        a.close()
        b.close()
        query(url, schema, f'DROP SCHEMA "{schema}_b" CASCADE')


def test_wrong_password_names_the_server_not_the_password(pg_server):
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg_server)
    user = parts.username or "postgres"
    bad = urlunsplit((parts.scheme, f"{user}:wrong-pw-123@{parts.hostname}:{parts.port}", parts.path, "", ""))
    with pytest.raises(StoreError) as e:
        Store(bad, schema="never_made")
    assert "wrong-pw-123" not in e.value.one_line() and "***" in e.value.one_line()


def test_threads_writing_one_store_lose_and_duplicate_nothing(pg_schema):
    url, schema = pg_schema
    store = Store(url, schema=schema)
    try:
        def write(k):
            session = store.new_session()
            return session, [store.add_turn(session, f"question {k}-{i}", "a", "template", "x", 0.9) for i in range(25)]

        with ThreadPoolExecutor(8) as pool:
            done = list(pool.map(write, range(8)))
        ids = [i for _, turn_ids in done for i in turn_ids]
        assert len(set(ids)) == 200 and store.count_turns() == 200
        for k, (session, turn_ids) in enumerate(done):
            assert sorted(r["user_text"] for r in store.turns(session)) == sorted(f"question {k}-{i}" for i in range(25))
    finally:
        store.close()


WRITER = """
import sys
from tuneforge.plugins.support_bot.store import Store
store = Store(sys.argv[1], schema=sys.argv[2])
session = store.new_session()
print(session, flush=True)
sys.stdin.readline()                      # both processes are up: go
for i in range(int(sys.argv[3])):
    t = store.add_turn(session, f"{sys.argv[4]} {i}", "a", "template", "x", 0.5)
    if i % 10 == 0:
        store.add_ticket(session, f"{sys.argv[4]} ticket {i}", turn_id=t)
store.close()
"""


def test_two_processes_writing_one_store_lose_and_duplicate_nothing(pg_schema):
    url, schema = pg_schema
    Store(url, schema=schema).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, schema, "150", name], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for name in ("alpha", "beta")]
    sessions = [p.stdout.readline().strip() for p in procs]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        assert p.wait(timeout=120) == 0
    rows = query(url, schema, "SELECT id, session, user_text, ref FROM turns")
    assert len(rows) == 300 and len({r[0] for r in rows}) == 300 and len({r[3] for r in rows}) == 300
    for session, name in zip(sessions, ("alpha", "beta")):
        assert sorted(r[2] for r in rows if r[1] == session) == sorted(f"{name} {i}" for i in range(150))
    tickets = query(url, schema, "SELECT t.session, u.session FROM tickets t JOIN turns u ON u.id = t.turn_id")
    assert len(tickets) == 30 and all(a == b for a, b in tickets)


def test_database_interface_transactions_roll_back_and_commit(pg_schema):
    url, schema = pg_schema
    db = open_database(url, {"sqlite": [], "postgresql": ["CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT)"]},
                       schema=schema)
    try:
        with pytest.raises(RuntimeError):
            with db.transaction(exclusive=True):
                db.execute("INSERT INTO t (v) VALUES (?)", ("rolled back",))
                raise RuntimeError
        with db.transaction():
            first = db.insert("INSERT INTO t (v) VALUES (?)", ("50% kept",))
            db.executemany("INSERT INTO t (v) VALUES (?)", [("b",), ("c",)])
        assert db.rows("SELECT v FROM t WHERE id = ?", (first,)) == [{"v": "50% kept"}]
        assert db.scalar("SELECT COUNT(*) FROM t") == 3
        assert db.pick(sqlite="INSERT OR IGNORE", postgresql="ON CONFLICT") == "ON CONFLICT"
    finally:
        db.close()


# -- the bot served over HTTP with its store in PostgreSQL ------------------------------------------
@pytest.fixture
def pg_bot(tiny_bot, tmp_path):
    import shutil

    project = tmp_path / "project"
    shutil.copytree(tiny_bot.parent, project, ignore=shutil.ignore_patterns("runs", "bot.sqlite*"))
    return project / "bot"


def test_load_test_against_a_running_server_on_postgres_finds_every_turn_there(pg_bot, pg_schema):
    from _support_bot_tiny import INTENTS, KB_QUESTIONS, NONSENSE

    from tuneforge.cli import cli
    from tuneforge.plugins.support_bot.loadtest import run_load

    url, schema = pg_schema
    store = with_schema(url, schema)
    messages = [q for qs in INTENTS.values() for q in qs] + [q for q, _ in KB_QUESTIONS] + NONSENSE
    messages.append(f"my card {CARD} was stolen, call {PHONE}")
    from tuneforge.plugins.support_bot.loadtest import free_port, start_server, stop_server

    port = free_port()       # a server started on its own (as a Ray one would be), the load test pointed at it
    server = start_server(pg_bot, port, store=store)
    try:
        report = run_load(pg_bot, messages, clients=20, seconds=3, store=store, server_port=port)
    finally:
        stop_server(server)
    assert report.passed and report.errors == {} and report.ok == report.requests > 20
    assert report.missing_rows == 0 and report.mismatched_rows == 0 and report.transcript_rows == report.ok
    assert not (pg_bot / "bot.sqlite").exists()               # nothing went to the SQLite default
    assert query(url, schema, "SELECT COUNT(DISTINCT session) FROM turns") == [(20,)]
    assert query(url, schema, "SELECT COUNT(*) FROM turns WHERE user_text LIKE '%%4111%%'") == [(0,)]
    # the operator commands read and write the same store (the URL from the environment)
    runner = CliRunner()
    env = {"TUNEFORGE_STORE": store}
    listed = runner.invoke(cli, ["support-bot", "tickets", "--bot-dir", str(pg_bot), "--turns", "3"], env=env)
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("\nturn ") + listed.output.startswith("turn ") == 3
    first = query(url, schema, "SELECT id FROM turns ORDER BY id LIMIT 1")[0][0]
    marked = runner.invoke(cli, ["support-bot", "feedback", "--bot-dir", str(pg_bot), "--turn", str(first), "right"],
                           env=env)
    assert marked.exit_code == 0, marked.output
    assert query(url, schema, "SELECT feedback FROM turns WHERE id = %s", (first,)) == [("right",)]
    assert not (pg_bot / "bot.sqlite").exists()


def test_serve_store_option_reaches_the_app(pg_bot, pg_schema):
    """``build_server(..., app_options={"store": URL})`` (what ``tuneforge serve --store`` passes):
    the app's store is PostgreSQL."""
    from fastapi.testclient import TestClient

    from tuneforge.serve import build_server

    url, schema = pg_schema
    app = build_server("support-bot", app_path=str(pg_bot), app_options={"store": with_schema(url, schema)})
    with TestClient(app) as client:
        body = client.post("/v1/chat", json={"message": "my card has not arrived"}).json()
    assert query(url, schema, "SELECT ref, session FROM turns") == [(body["turn"], body["session_id"])]
    assert not (pg_bot / "bot.sqlite").exists()


def test_threads_lock_is_not_needed_on_postgres(pg_schema):
    """The PostgreSQL store takes no process-wide lock: two threads' reads run at once."""
    url, schema = pg_schema
    store = Store(url, schema=schema)
    try:
        barrier = threading.Barrier(2, timeout=10)

        def read():
            with store.db.transaction():
                store.db.execute("SELECT 1")
                barrier.wait()           # both threads inside a transaction at the same time

        threads = [threading.Thread(target=read) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not barrier.broken
    finally:
        store.close()
