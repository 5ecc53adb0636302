"""The PostgreSQL tests' server: ``TUNEFORGE_TEST_POSTGRES`` (``.ci/run`` and ``make pg`` start a
throw-away one and set it).  Without it the tests skip with the reason -- except in CI
(``TUNEFORGE_CI=1``), where a missing or unreachable server fails them."""

from __future__ import annotations

import os
import uuid

import pytest

ENV = "TUNEFORGE_TEST_POSTGRES"


def _unavailable(reason: str):
    if os.environ.get("TUNEFORGE_CI") == "1":
        pytest.fail(f"CI (TUNEFORGE_CI=1) must run the PostgreSQL tests: {reason}", pytrace=False)
    pytest.skip(f"{reason} (start one with `make pg`, or set {ENV}=postgresql://...)")


def server_url() -> str:
    url = os.environ.get(ENV)
    if not url:
        _unavailable(f"no PostgreSQL server: {ENV} is not set")
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'tuneforge[postgresql]')")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as e:
        from tuneforge.database import redact_url

        _unavailable(f"the PostgreSQL server at {redact_url(url)} is unreachable: {' '.join(str(e).split())}")
    return url


@pytest.fixture(scope="session")
def pg_server() -> str:
    return server_url()


@pytest.fixture
def pg_schema(pg_server):
    """(server URL, a fresh schema name); the schema is dropped after the test."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield pg_server, name
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def with_schema(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + f"schema={schema}"


def query(url: str, schema: str, sql: str, args=()) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cur = conn.execute(sql, args)
        return cur.fetchall() if cur.description is not None else []
