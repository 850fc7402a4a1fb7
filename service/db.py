"""Database engines and schema migrations for the alert service.

Why one module: SQLite (a file next to the site, the default for a single shop) and
PostgreSQL (a chain's server) must run the same code, so everything backend-specific -
SQLite's WAL, foreign keys, busy timeout and write locking - is set up here, once, when
the engine is made; the store and the migrations never ask which backend they are on.

The schema is owned by Alembic migrations (`service/migrations`), configured from Python
rather than an `alembic.ini`, so `upgrade(url)` works the same from a checkout and from an
installed package, and the app can migrate its database when it starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url

DB_ENV = "POSTWATCH_DB"
DEFAULT_SQLITE = "postwatch.db"
MIGRATIONS = Path(__file__).resolve().with_name("migrations")

# Execution option the store puts on its writing sessions. On SQLite it makes the
# transaction start with BEGIN IMMEDIATE (see `_sqlite_setup`); other backends ignore it.
WRITE = "postwatch_write"

# Any fixed number: PostgreSQL advisory lock that serialises concurrent `upgrade` calls
# (two processes starting at once must not both create the tables).
_MIGRATION_LOCK = 0x706F7374  # "post"


def database_url(value: str | os.PathLike[str] | URL | None = None) -> URL:
    """The URL for `value`: a SQLAlchemy URL, or a plain file path meaning a SQLite file.

    None means $POSTWATCH_DB, else `postwatch.db` in the working directory; a path is
    accepted so that `--db alerts.db` works without spelling out `sqlite:///`.
    """
    if value is None:
        value = os.environ.get(DB_ENV) or DEFAULT_SQLITE
    if isinstance(value, URL):
        return value
    value = os.fspath(value)
    if "://" not in value:
        return URL.create("sqlite", database=str(Path(value).expanduser()))
    return make_url(value)


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str | os.PathLike[str] | URL | None = None, **kwargs: Any) -> Engine:
    """An engine for `url` (see `database_url`) with the backend set up for concurrent use.

    SQLite: the file's folder is created, and every connection gets WAL (readers do not
    block the writer), foreign keys, a busy timeout and `BEGIN IMMEDIATE` for writes.
    PostgreSQL: `pool_pre_ping`, so a restarted server costs one retry, not a 500.
    """
    url = database_url(url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            folder = Path(url.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a read-only or missing mount: say which folder, not a traceback
                raise ValueError(
                    f"cannot create the folder {folder} for the SQLite database: {exc.strerror or exc}"
                ) from exc
        kwargs.setdefault("connect_args", {}).setdefault("timeout", 30.0)
        engine = create_engine(url, **kwargs)
        _sqlite_setup(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_setup(engine: Engine) -> None:
    """WAL and foreign keys per connection; explicit BEGIN so writers lock up front.

    Why BEGIN IMMEDIATE for writes: with pysqlite's default deferred transactions, a
    writer that first reads (ack: load the alert, then update it) can fail at once with
    "database is locked" when another connection wrote in between - the busy timeout does
    not apply to that lock upgrade. Camera workers and the API write concurrently, so
    writing sessions take the write lock when they begin and wait their turn instead.
    Readers keep plain deferred transactions and never wait for writers (WAL).
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(url: str | URL | None = None) -> Any:
    """An Alembic `Config` for the packaged migrations, built without an ini file.

    With `url` it can also drive the `alembic` commands (revision, history) from Python;
    `upgrade` passes a live connection instead.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation: a literal % (URL-encoded passwords) must be doubled.
        rendered = database_url(url).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def upgrade(target: str | URL | Engine | None = None, revision: str = "head") -> None:
    """Bring the database at `target` (URL, path or Engine) up to `revision` (default: latest).

    Safe to call at every start: an up-to-date database is left alone, and concurrent
    callers are serialised (advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite).
    """
    from alembic import command

    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.execution_options(**{WRITE: True}).begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        if not isinstance(target, Engine):
            engine.dispose()


def current_revision(target: str | URL | Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    from alembic.migration import MigrationContext

    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if not isinstance(target, Engine):
            engine.dispose()


def head_revision() -> str | None:
    """The latest revision shipped with this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revision(message: str, url: str | URL, autogenerate: bool = True) -> None:
    """Write a new migration comparing the models with the database at `url` (a developer tool:
    upgrade a scratch database to head first, change `service/models.py`, then call this)."""
    from alembic import command

    command.revision(alembic_config(url), message=message, autogenerate=autogenerate)
