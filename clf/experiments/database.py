"""The experiments database: engines for any SQLAlchemy URL, and the Alembic migrations that build its tables.

    clf db upgrade --db sqlite:///models/experiments.db         # the default
    clf db upgrade --db postgresql+psycopg://clf@db.internal/clf

The migrations ship inside the package (``clf/experiments/migrations``) and run from a configuration built in code,
so no ``alembic.ini`` is needed. Their version is kept in the table ``clf_experiments_alembic_version``, not in
Alembic's default ``alembic_version``, so the experiment tables can share a database with Optuna's study tables,
which keep their own Alembic version there.

>>> engine = make_engine("sqlite://")  # in memory
>>> upgrade(engine) == head_revision() == current_revision(engine)
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from clf import migrations
from clf.experiments.errors import DatabaseUnavailableError, ExperimentError

log = logging.getLogger(__name__)

DEFAULT_DB_URL = "sqlite:///models/experiments.db"
"""The default database: a SQLite file beside the default registry folder (relative to the working directory)."""

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""Alembic's script folder: env.py and versions/."""

VERSION_TABLE = "clf_experiments_alembic_version"
"""Where Alembic records the schema revision of the experiment tables."""

MIGRATION_LOCK_KEY = int.from_bytes(b"clf-exp", "big")
"""PostgreSQL advisory lock held while migrating, so processes starting together upgrade one at a time."""


def make_engine(db: str | Engine = DEFAULT_DB_URL, *, connect_timeout_seconds: float = 5.0) -> Engine:
    """An engine for the experiments database.

    SQLite files get their folder created, write-ahead logging (readers do not block the log writer) and enforced
    foreign keys; an in-memory SQLite database is shared by every thread. Connections are checked before use, so
    an engine recovers by itself once a database that went away comes back.

    Args:
        db: a SQLAlchemy URL (``sqlite:///models/experiments.db``, ``postgresql+psycopg://user@host/db``) or an
            engine, returned as it is.
        connect_timeout_seconds: how long to wait for a connection (PostgreSQL) or a SQLite write lock.

    Returns:
        The engine.

    Raises:
        ExperimentError: for a URL that does not parse, or a driver that is not installed (with the install hint).
    """
    if isinstance(db, Engine):
        return db
    try:
        url = sa.make_url(db)
    except ArgumentError as err:
        raise ExperimentError(
            f"--db {db!r} is not a database URL; use e.g. sqlite:///models/experiments.db or "
            "postgresql+psycopg://user:password@host:5432/dbname"
        ) from err
    options: dict = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        memory = url.database in (None, "", ":memory:")
        if url.database and not memory:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        options["connect_args"] = {"timeout": connect_timeout_seconds, "check_same_thread": False}
        if memory:
            options["poolclass"] = StaticPool
    elif url.get_backend_name() == "postgresql":
        # libpq counts whole seconds and treats anything under 2 as 2.
        options["connect_args"] = {"connect_timeout": max(2, math.ceil(connect_timeout_seconds))}
    try:
        engine = sa.create_engine(url, **options)
    except (NoSuchModuleError, ImportError) as err:
        raise ExperimentError(
            f'no driver for {url.drivername} ({err}); for PostgreSQL install psycopg: pip install "clf[postgres]" '
            "and use a postgresql+psycopg:// URL"
        ) from err
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI objects
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def redacted(engine: Engine) -> str:
    """The engine's URL with any password hidden, for messages.

    Args:
        engine: the engine whose URL to show.

    Returns:
        The URL as text, its password replaced by ``***``.
    """
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def unavailable_as_error(engine: Engine, doing: str) -> Iterator[None]:
    """Turns "cannot reach the database" errors raised inside into `DatabaseUnavailableError`.

    Args:
        engine: the engine in use (its URL goes into the message, password hidden).
        doing: what was being done, e.g. ``"reading experiment 3"``.

    Yields:
        Nothing; the translation applies to the body of the ``with`` block.

    Raises:
        DatabaseUnavailableError: for connection failures, a lost connection or a locked SQLite file.
    """
    try:
        yield
    except (OperationalError, InterfaceError) as err:
        raise _unavailable(engine, doing, err) from err
    except DBAPIError as err:
        if err.connection_invalidated:
            raise _unavailable(engine, doing, err) from err
        raise


def is_unavailable(err: BaseException) -> bool:
    """Whether `err` means the database could not be reached (worth retrying later), not that the data was bad.

    Args:
        err: an exception raised while using the database.

    Returns:
        True for connection failures and invalidated connections, False for errors about the data or the query.
    """
    if isinstance(err, DatabaseUnavailableError | OperationalError | InterfaceError):
        return True
    return isinstance(err, DBAPIError) and err.connection_invalidated


def _unavailable(engine: Engine, doing: str, err: DBAPIError) -> DatabaseUnavailableError:
    reason = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
    return DatabaseUnavailableError(
        f"{doing}: cannot use the experiments database {redacted(engine)} ({reason}); check that it is running and "
        "that --db points at it"
    )


# ------------------------------------------------------------------------------------------------------ migrations


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the shipped migrations, built in code (no alembic.ini).

    Args:
        connection: the connection `env.py` migrates; without one, Alembic commands that need a database fail.

    Returns:
        The configuration; `alembic.command` functions accept it.
    """
    return migrations.alembic_config(MIGRATIONS_DIR, connection)


def head_revision() -> str:
    """The newest schema revision the shipped migrations reach.

    Returns:
        The Alembic revision id of the newest migration.
    """
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations under {MIGRATIONS_DIR}"
    return head


def current_revision(db: str | Engine = DEFAULT_DB_URL) -> str | None:
    """The schema revision of the database, or None when the migrations never ran there.

    Args:
        db: a SQLAlchemy URL or an engine.

    Returns:
        The Alembic revision id recorded in the database, or None.

    Raises:
        DatabaseUnavailableError: when the database cannot be reached.
    """
    engine = make_engine(db)
    with unavailable_as_error(engine, "reading the schema revision"), engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(db: str | Engine = DEFAULT_DB_URL) -> str:
    """Brings the database to the newest schema: creates the tables and indexes, or applies newer migrations.

    Safe to run again (a database already at the newest revision is left alone) and from several processes at
    once on PostgreSQL, where an advisory lock serialises them.

    Args:
        db: a SQLAlchemy URL or an engine.

    Returns:
        The revision the database is at now.

    Raises:
        DatabaseUnavailableError: when the database cannot be reached.
    """
    engine = make_engine(db)
    with unavailable_as_error(engine, "upgrading the schema"), engine.begin() as connection:
        migrations.upgrade_to_head(MIGRATIONS_DIR, connection)
    revision = current_revision(engine)
    log.info("experiments database %s is at revision %s", redacted(engine), revision)
    assert revision is not None
    return revision
