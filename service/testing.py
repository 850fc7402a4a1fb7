"""Scratch databases for tests of anything that uses the store (API, workers, delivery).

Why in the package: every service test must run against both SQLite and the real
PostgreSQL server, isolated from other test runs sharing that server. `scratch_database`
gives a fresh, empty database for either: a SQLite file in a temporary folder, or a
PostgreSQL schema with a unique name, selected through the connection's `search_path`
(so the code under test uses the URL like any other) and dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from service.db import make_engine

PG_ENV = "POSTWATCH_TEST_PG"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


class DatabaseUnavailable(RuntimeError):
    """The test database server cannot be reached; the message says which and why."""


def postgres_url() -> str:
    return os.environ.get(PG_ENV) or DEFAULT_PG


@contextmanager
def scratch_database(backend: str, folder: Path) -> Iterator[str]:
    """Yield the URL of a new empty database on `backend` ("sqlite" or "postgresql")."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'postwatch-test.db'}"
        return
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    base = make_url(postgres_url())
    admin = make_engine(base, connect_args={"connect_timeout": 3})
    schema = f"pw_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any connection problem: the caller skips with this reason
        admin.dispose()
        where = base.render_as_string(hide_password=True)
        raise DatabaseUnavailable(f"PostgreSQL at {where} is unreachable: {exc}") from exc
    try:
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
