"""One storage interface for the apps' stores: SQLite (a file, the default) or PostgreSQL (a URL).

    db = open_database("bots/support-bot/bot.sqlite", {"sqlite": SQLITE_MIGRATIONS,
                                                       "postgresql": PG_MIGRATIONS})
    db = open_database("postgresql://bot@db.internal/tuneforge", migrations, schema="support_bot_x")

Both dialects offer the same small surface -- :meth:`execute`, :meth:`executemany`,
:meth:`rows`, :meth:`insert` (the new row's id), :meth:`transaction` -- over the project's own
queries, written once with ``?`` placeholders where the SQL is the same and once per dialect
where it is not (:meth:`pick`).  No ORM, no query builder.

* SQLite: :func:`tuneforge.storage.open_sqlite` (WAL, busy timeout, ``user_version``
  migrations, mode 0600), one connection; behaviour exactly as before this module existed.
* PostgreSQL (psycopg 3, the optional extra ``tuneforge[postgresql]``, imported only here and
  only for a URL): a small connection pool, every store in its own schema (several apps and
  bots share one database), migrations recorded in ``<schema>.tuneforge_migrations`` and run
  under an advisory lock, so replicas starting together migrate once.  A statement outside a
  :meth:`transaction` block commits by itself; ``transaction(exclusive=True)`` also takes the
  store's advisory lock, which serialises writers across processes the way SQLite's
  ``BEGIN IMMEDIATE`` does.  The password never appears in a message (:func:`redact_url`).
"""

from __future__ import annotations

import re
import threading
import zlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigError, TuneforgeError

DIALECTS = ("sqlite", "postgresql")
SCHEME = re.compile(r"^(postgres|postgresql)://", re.IGNORECASE)
IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
INSTALL_HINT = "pip install 'tuneforge[postgresql]'"


class StoreError(TuneforgeError):
    """A store cannot be opened or used: the server is unreachable, the login is refused, ..."""


def is_url(target: str | Path | None) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL, False for a file path."""
    return isinstance(target, str) and bool(SCHEME.match(target))


def redact_url(url: str) -> str:
    """``url`` with its password (and a ``password=`` query value) replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)],
                      safe="*/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def schema_name(*parts: str) -> str:
    """A PostgreSQL schema name from words (an app, a folder): lower case, ``_`` for the rest, <= 63."""
    text = "_".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "tuneforge"
    if name[0].isdigit():
        name = "s_" + name
    return name[:63].rstrip("_")


def split_schema(url: str) -> tuple[str, str | None]:
    """(the URL without tuneforge's own ``schema`` query parameter, that schema or None)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def open_database(target: str | Path, migrations: Mapping[str, Sequence], *, schema: str | None = None,
                  autocommit: bool = False, pool_size: int = 4) -> "Database":
    """Open the store ``target``: a file path (SQLite) or a ``postgresql://`` URL.

    ``migrations`` maps each dialect to its list of steps (``migrations[d][i]`` takes the schema
    from version ``i`` to ``i + 1``: SQL text, or a function of the raw connection).  For
    PostgreSQL, ``schema`` (or the URL's ``?schema=`` parameter, which wins) names the schema
    the store's tables live in.  ``autocommit`` is SQLite's ``open_sqlite`` flag (explicit
    ``BEGIN IMMEDIATE`` transactions).
    """
    if is_url(str(target)):
        url, from_url = split_schema(str(target))
        name = from_url or schema
        if not name:
            raise ConfigError(f"{redact_url(str(target))}: which schema?",
                              hint="add ?schema=NAME to the URL")
        if not IDENT.match(name):
            raise ConfigError(f"PostgreSQL schema {name!r}: use lower-case letters, digits and _ "
                              "(at most 63, not starting with a digit)")
        return PostgresDatabase(url, name, list(migrations["postgresql"]), pool_size=pool_size)
    return SqliteDatabase(target, list(migrations["sqlite"]), autocommit=autocommit)


class Result:
    """What :meth:`Database.execute` returns on PostgreSQL: the rows already fetched (tuples)."""

    def __init__(self, rows: list[tuple], rowcount: int, columns: list[str]):
        self._rows, self.rowcount, self.columns = rows, rowcount, columns
        self._next = 0

    def fetchone(self):
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[tuple]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    def __iter__(self):
        return iter(self.fetchall())


class Database:
    """The interface both dialects implement (see the module docstring)."""

    dialect: str
    where: str          # the file, or the URL with its password redacted (for messages)

    def execute(self, sql: str, args: Sequence = ()) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> None: ...

    def insert(self, sql: str, args: Sequence = ()) -> int:
        """Run an ``INSERT`` into a table with an ``id`` key; returns the new row's id."""
        raise NotImplementedError

    def transaction(self, *, exclusive: bool = False): ...

    def close(self) -> None: ...

    def rows(self, sql: str, args: Sequence = ()) -> list[dict]:
        """The result rows as dicts (column -> value)."""
        raise NotImplementedError

    def scalar(self, sql: str, args: Sequence = ()):
        row = self.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def pick(self, **by_dialect: str) -> str:
        """The statement for this dialect: ``db.pick(sqlite="INSERT OR IGNORE ...", postgresql="...")``."""
        return by_dialect[self.dialect]


# -- SQLite ---------------------------------------------------------------------------------------
class SqliteDatabase(Database):
    """One SQLite connection (core's :func:`open_sqlite`); callers serialise access with their lock.

    Outside a :meth:`transaction` a statement commits by itself (``with connection``, as the
    stores did before); ``autocommit`` stores get ``BEGIN IMMEDIATE`` ... ``COMMIT`` blocks.
    """

    dialect = "sqlite"

    def __init__(self, path: str | Path, migrations: Sequence, *, autocommit: bool = False):
        from .storage import open_sqlite

        self.path = str(path)
        self.where = self.path
        self.connection = open_sqlite(path, migrations, autocommit=autocommit)
        self._autocommit = autocommit
        self._local = threading.local()

    def _in_block(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    def execute(self, sql: str, args: Sequence = ()):
        if self._autocommit or self._in_block():
            return self.connection.execute(sql, args)
        with self.connection:
            return self.connection.execute(sql, args)

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> None:
        if self._autocommit or self._in_block():
            self.connection.executemany(sql, rows)
            return
        with self.connection:
            self.connection.executemany(sql, rows)

    def insert(self, sql: str, args: Sequence = ()) -> int:
        return self.execute(sql, args).lastrowid

    def rows(self, sql: str, args: Sequence = ()) -> list[dict]:
        return [dict(r) for r in self.connection.execute(sql, args).fetchall()]

    @contextmanager
    def transaction(self, *, exclusive: bool = False) -> Iterator["SqliteDatabase"]:
        if self._in_block():
            yield self
            return
        self._local.depth = 1
        try:
            if self._autocommit:
                self.connection.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
                try:
                    yield self
                except BaseException:
                    self.connection.execute("ROLLBACK")
                    raise
                self.connection.execute("COMMIT")
            else:
                with self.connection:
                    yield self
        finally:
            self._local.depth = 0

    def close(self) -> None:
        self.connection.close()


# -- PostgreSQL -----------------------------------------------------------------------------------
MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS {schema}.tuneforge_migrations (
    version INTEGER PRIMARY KEY,
    applied TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """The project's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _psycopg():
    try:
        import psycopg
        import psycopg_pool
    except ImportError as e:
        raise StoreError(f"a postgresql:// store needs psycopg 3 and psycopg-pool ({e.name} is not installed)",
                         hint=INSTALL_HINT) from None
    return psycopg, psycopg_pool


def _lock_key(schema: str) -> int:
    """The advisory-lock key of a store (one per schema), a signed 64-bit integer."""
    return zlib.crc32(f"tuneforge:{schema}".encode()) - (1 << 31)


class PostgresDatabase(Database):
    """A psycopg 3 pool over one schema; thread-safe.  A :meth:`transaction` block holds one
    connection for its thread; a statement outside one borrows a connection and commits."""

    dialect = "postgresql"

    def __init__(self, url: str, schema: str, migrations: Sequence, *, pool_size: int = 4,
                 connect_timeout_s: float = 10.0):
        psycopg, psycopg_pool = _psycopg()
        self.url, self.schema = url, schema
        self.where = f"{redact_url(url)} (schema {schema})"
        self._psycopg = psycopg
        self._local = threading.local()
        self._lock_key = _lock_key(schema)
        kwargs = {"autocommit": True}
        if "connect_timeout" not in url:
            kwargs["connect_timeout"] = max(1, int(connect_timeout_s))
        try:   # one direct connection first: a bad URL or a down server is one clear error, now
            with psycopg.connect(url, **kwargs) as conn:
                self._migrate(conn, migrations)
        except psycopg.Error as e:
            raise self._error(e, "cannot open") from None
        except ValueError as e:        # psycopg refuses a malformed URL with ProgrammingError/ValueError
            raise StoreError(f"{redact_url(url)}: not a usable PostgreSQL URL: {e}") from None
        quoted = self._ident(schema)

        def configure(conn):
            conn.execute(f"SET search_path TO {quoted}")

        self.pool = psycopg_pool.ConnectionPool(url, min_size=1, max_size=pool_size, kwargs=kwargs,
                                                configure=configure, check=psycopg_pool.ConnectionPool.check_connection,
                                                open=False, name=f"tuneforge-{schema}")
        try:
            self.pool.open(wait=True, timeout=connect_timeout_s)
        except psycopg_pool.PoolTimeout:
            self.pool.close()
            raise StoreError(f"{self.where}: no connection within {connect_timeout_s:g} s") from None

    def _ident(self, name: str) -> str:
        from psycopg import sql

        return sql.Identifier(name).as_string(None)

    def _error(self, e, what: str) -> StoreError:
        detail = " ".join(str(e).split()) or type(e).__name__
        return StoreError(f"PostgreSQL store {self.where}: {what}: {detail}",
                          hint="check the URL, that the server runs, and the login (PGPASSWORD or ~/.pgpass)")

    def _migrate(self, conn, migrations: Sequence) -> None:
        schema = self._ident(self.schema)
        with conn.transaction():
            # replicas opening at once: one migrates, the others wait here and then find it done
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(MIGRATIONS_TABLE.format(schema=schema))
            version = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {schema}.tuneforge_migrations"
                                   ).fetchone()[0]
            if version > len(migrations):
                raise ConfigError(f"{self.where}: store schema version {version} is newer than this tuneforge "
                                  f"understands ({len(migrations)})", hint="upgrade tuneforge")
            conn.execute(f"SET LOCAL search_path TO {schema}")
            for target, step in enumerate(migrations[version:], start=version + 1):
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)          # several statements, no parameters: one round trip
                conn.execute(f"INSERT INTO {schema}.tuneforge_migrations (version) VALUES (%s)", (target,))

    def version(self) -> int:
        return self.scalar("SELECT COALESCE(MAX(version), 0) FROM tuneforge_migrations")

    @contextmanager
    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        try:
            with self.pool.connection() as conn:
                yield conn
        except self._psycopg.OperationalError as e:
            raise self._error(e, "connection failed") from None

    def execute(self, sql: str, args: Sequence = ()) -> Result:
        with self._connection() as conn:
            cur = conn.execute(_pg_sql(sql), tuple(args)) if args else conn.execute(sql)
            rows = cur.fetchall() if cur.description is not None else []
            columns = [c.name for c in cur.description or []]
            return Result(rows, cur.rowcount, columns)

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> None:
        if not rows:
            return
        with self._connection() as conn:
            with conn.cursor() as cur:
                cur.executemany(_pg_sql(sql), [tuple(r) for r in rows])

    def insert(self, sql: str, args: Sequence = ()) -> int:
        return self.execute(sql + " RETURNING id", args).fetchone()[0]

    def rows(self, sql: str, args: Sequence = ()) -> list[dict]:
        result = self.execute(sql, args)
        return [dict(zip(result.columns, r)) for r in result.fetchall()]

    @contextmanager
    def transaction(self, *, exclusive: bool = False) -> Iterator["PostgresDatabase"]:
        """One transaction on one connection for this thread; ``exclusive`` also takes the store's
        advisory lock (held to commit or rollback), so writers in other processes wait."""
        if getattr(self._local, "conn", None) is not None:
            yield self
            return
        with self._connection() as conn:
            with conn.transaction():
                if exclusive:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                self._local.conn = conn
                try:
                    yield self
                finally:
                    self._local.conn = None

    def close(self) -> None:
        self.pool.close()
