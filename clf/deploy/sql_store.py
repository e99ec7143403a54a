"""`SqlDeploymentStore`: the deployment state, decisions, rollout lease, replica records and alert claims in a SQL
database, for replicas that share no filesystem (``clf serve --state-db postgresql+psycopg://...``).

Five tables, made and migrated by Alembic (`clf.deploy.migrations`) on the store's first use::

    clf_deploy_state       one row: the DeploymentState as JSON
    clf_deploy_decisions   one row per decision, in order
    clf_deploy_lease       one row: which replica drives rollouts, until when (the database's clock)
    clf_deploy_replicas    one row per replica: heartbeat, what it serves, metric snapshots
    clf_deploy_alerts      when each alert was last sent by any replica

`locked` is a PostgreSQL session advisory lock (taken with ``pg_try_advisory_lock`` in a loop, so it times out like
the file lock); on SQLite, meant for one host, a file lock beside the database. On PostgreSQL the lease and alert
cool-downs are judged by the database's clock, in the one statement that takes them, so hosts whose clocks disagree
never both hold the lease; SQLite, on one host, judges by the caller's clock. A database that is down makes every
call raise ``sqlalchemy.exc.OperationalError``: the controller's tick fails and is retried at its next turn, while
the service goes on serving the traffic rule it last installed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from filelock import FileLock

from clf.deploy.migrations import upgrade
from clf.deploy.state import Decision, DeploymentState
from clf.deploy.store import Lease, ReplicaRecord, StateStore, wall_clock

_LOCK_KEY = 0x636C66  # "clf": the advisory lock every replica of one database takes
_FLOAT = sa.Float()
# The tables as queries see them; clf.deploy.migrations makes them.
_STATE = sa.table("clf_deploy_state", sa.column("id"), sa.column("body"), sa.column("updated_at", _FLOAT))
_DECISIONS = sa.table("clf_deploy_decisions", sa.column("id"), sa.column("at", _FLOAT), sa.column("body"))
_LEASE = sa.table(
    "clf_deploy_lease",
    sa.column("id"),
    sa.column("holder"),
    sa.column("acquired_at", _FLOAT),
    sa.column("expires_at", _FLOAT),
)
_REPLICAS = sa.table("clf_deploy_replicas", sa.column("id"), sa.column("heartbeat_at", _FLOAT), sa.column("body"))
_ALERTS = sa.table("clf_deploy_alerts", sa.column("key"), sa.column("sent_at", _FLOAT))
_DATABASE_NOW = sa.cast(sa.extract("epoch", sa.func.now()), _FLOAT)


class SqlDeploymentStore(StateStore):
    """The `clf.deploy.store.StateStore` in a SQL database (PostgreSQL across hosts); see the module docstring.

    Args:
        url: a SQLAlchemy URL, e.g. ``postgresql+psycopg://clf@db:5432/clf`` or ``sqlite:///state.db``.
        lock_timeout: seconds to wait for another replica's lock.
        connect_timeout: seconds to wait for the database when connecting (PostgreSQL).
    """

    def __init__(self, url: str, lock_timeout: float = 120.0, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.lock_timeout = lock_timeout
        self._postgres = url.startswith("postgresql")
        connect_args = {"connect_timeout": int(max(connect_timeout, 1))} if self._postgres else {}
        self.engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        self._depth = 0
        self._thread_lock = threading.RLock()
        database = sa.engine.make_url(url).database
        self._file_lock = None if self._postgres or not database else FileLock(f"{database}.lock", timeout=lock_timeout)
        self._ready = False

    @property
    def where(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def _tables(self) -> None:
        if self._ready:
            return
        # Replicas starting together migrate one at a time: PostgreSQL's migration holds an advisory lock
        # (clf.deploy.migrations), SQLite the database file's lock.
        with self._file_lock or nullcontext(), self.engine.begin() as connection:
            upgrade(connection)
        self._ready = True

    def _connect(self) -> sa.Connection:
        self._tables()
        return self.engine.connect()

    def _begin(self) -> AbstractContextManager[sa.Connection]:
        self._tables()
        return self.engine.begin()

    def load(self) -> DeploymentState:
        with self._connect() as connection:
            body = connection.execute(sa.select(_STATE.c.body).where(_STATE.c.id == 1)).scalar()
        return DeploymentState() if body is None else DeploymentState.from_json(json.loads(body))

    def save(self, state: DeploymentState) -> None:
        state.updated_at = time.time()
        with self._begin() as connection:
            _upsert(connection, _STATE, 1, body=json.dumps(state.to_json()), updated_at=state.updated_at)

    def record(self, decision: Decision) -> Decision:
        with self._begin() as connection:
            connection.execute(_DECISIONS.insert().values(at=decision.at, body=json.dumps(decision.to_json())))
        return decision

    def decisions(self, limit: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(_DECISIONS.c.body).order_by(_DECISIONS.c.id.desc())
        if limit:
            query = query.limit(limit)
        with self._connect() as connection:
            bodies = connection.execute(query).scalars().all()
        return [json.loads(body) for body in reversed(bodies)]

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._thread_lock:  # re-entrant: only the outermost holder takes the lock across processes
            self._depth += 1
            try:
                with self._cross_process_lock() if self._depth == 1 else nullcontext():
                    yield
            finally:
                self._depth -= 1

    @contextmanager
    def _cross_process_lock(self) -> Iterator[None]:
        if not self._postgres:
            with self._file_lock or nullcontext():
                yield
            return
        with self._connect() as connection:
            deadline = time.monotonic() + self.lock_timeout
            while not connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": _LOCK_KEY}).scalar():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the deployment lock in {self.where} was held over {self.lock_timeout:g} s")
                time.sleep(0.05)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                connection.commit()

    def clock(self, now: float | None = None) -> float:
        if not self._postgres:
            return wall_clock(now)
        with self._connect() as connection:
            return float(connection.execute(sa.select(_DATABASE_NOW)).scalar_one())

    def _now(self, now: float | None) -> sa.ColumnElement[float]:
        """The time leases and cool-downs are judged by, as SQL: the database's clock, or the caller's on SQLite."""
        return _DATABASE_NOW if self._postgres else sa.literal(wall_clock(now), _FLOAT)

    def lease(self) -> Lease | None:
        with self._connect() as connection:
            row = connection.execute(sa.select(_LEASE).where(_LEASE.c.id == 1)).first()
        return None if row is None else Lease(row.holder, row.acquired_at, row.expires_at)

    def acquire_lease(self, replica_id: str, seconds: float, now: float | None = None) -> Lease | None:
        at, mine = self._now(now), _LEASE.c.holder == replica_id
        # One statement decides, on one clock: concurrent takers queue on the row and see each other's renewal.
        take = _LEASE.update().where(_LEASE.c.id == 1, sa.or_(mine, _LEASE.c.expires_at <= at))
        take = take.values(
            holder=replica_id, acquired_at=sa.case((mine, _LEASE.c.acquired_at), else_=at), expires_at=at + seconds
        )
        try:
            with self._begin() as connection:
                if not connection.execute(take).rowcount:
                    # No row (never taken, or released), or another holder's: then the key is taken and this fails.
                    connection.execute(
                        _LEASE.insert().values(id=1, holder=replica_id, acquired_at=at, expires_at=at + seconds)
                    )
                row = connection.execute(sa.select(_LEASE).where(_LEASE.c.id == 1)).one()
        except sa.exc.IntegrityError:
            return None
        return Lease(row.holder, row.acquired_at, row.expires_at)

    def release_lease(self, replica_id: str) -> None:
        with self._begin() as connection:
            connection.execute(_LEASE.delete().where(_LEASE.c.id == 1, _LEASE.c.holder == replica_id))

    def put_replica(self, record: ReplicaRecord) -> None:
        with self._begin() as connection:
            _upsert(
                connection, _REPLICAS, record.id, heartbeat_at=record.heartbeat_at, body=json.dumps(record.to_json())
            )

    def replicas(self) -> list[ReplicaRecord]:
        with self._connect() as connection:
            bodies = connection.execute(sa.select(_REPLICAS.c.body).order_by(_REPLICAS.c.id)).scalars().all()
        return [ReplicaRecord.from_json(json.loads(body)) for body in bodies]

    def drop_replica(self, replica_id: str) -> None:
        with self._begin() as connection:
            connection.execute(_REPLICAS.delete().where(_REPLICAS.c.id == replica_id))

    def claim_alert(self, key: str, cooldown_seconds: float, now: float | None = None) -> bool:
        at = self._now(now)
        claim = _ALERTS.update().where(_ALERTS.c.key == key, _ALERTS.c.sent_at <= at - cooldown_seconds)
        try:
            with self._begin() as connection:
                if not connection.execute(claim.values(sent_at=at)).rowcount:
                    # Never sent (the insert claims it), or sent within the cool-down (the key is taken: no).
                    connection.execute(_ALERTS.insert().values(key=key, sent_at=at))
        except sa.exc.IntegrityError:
            return False
        return True


def _upsert(connection: sa.Connection, table: sa.TableClause, key: object, **values: object) -> None:
    """Writes the row whose ``id`` is `key`: updated when it exists, inserted otherwise."""
    if not connection.execute(table.update().where(table.c.id == key).values(**values)).rowcount:
        connection.execute(table.insert().values(id=key, **values))
