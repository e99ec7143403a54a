"""`SqlDeploymentStore`: the deployment state, decisions, rollout lease, replica records and alert claims in a SQL
database, for replicas that share no filesystem (``clf serve --state-db postgresql+psycopg://...``).

The same methods as the file store (`clf.deploy.state.DeploymentStore`), on five tables created when missing::

    clf_deploy_state       one row: the DeploymentState as JSON
    clf_deploy_decisions   one row per decision, in order
    clf_deploy_lease       one row: which replica drives rollouts, until when
    clf_deploy_replicas    one row per replica: heartbeat, what it serves, metric snapshots
    clf_deploy_alerts      when each alert was last sent by any replica

`locked` is a PostgreSQL session advisory lock (taken with ``pg_try_advisory_lock`` in a loop, so it times out like
the file lock); on SQLite, meant for one host, a file lock beside the database. A database that is down makes every
call raise ``sqlalchemy.exc.OperationalError``: the controller's tick fails and is retried at its next turn, while
the service goes on serving the traffic rule it last installed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from filelock import FileLock

from clf.deploy.state import Decision, DeploymentState, Lease, next_lease

_LOCK_KEY = 0x636C66  # "clf": the advisory lock every replica of one database takes
_SCHEMA_LOCK_KEY = 0x636C6673  # "clfs": held while a replica creates the tables
_METADATA = sa.MetaData()
_STATE = sa.Table(
    "clf_deploy_state",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
_DECISIONS = sa.Table(
    "clf_deploy_decisions",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
_LEASE = sa.Table(
    "clf_deploy_lease",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
_REPLICAS = sa.Table(
    "clf_deploy_replicas",
    _METADATA,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
_ALERTS = sa.Table(
    "clf_deploy_alerts",
    _METADATA,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("sent_at", sa.Float, nullable=False),
)


class SqlDeploymentStore:
    """The deployment store in a SQL database (PostgreSQL in production); see the module docstring.

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
        self._held = threading.local()
        self._thread_lock = threading.RLock()
        database = sa.engine.make_url(url).database
        self._file_lock = None if self._postgres or not database else FileLock(f"{database}.lock", timeout=lock_timeout)
        self._ready = False

    @property
    def where(self) -> str:
        """Where the state lives, in words (the URL without its password)."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def _tables(self) -> None:
        if self._ready:
            return
        # Replicas starting together would each see no table and each CREATE it: the second fails with
        # DuplicateTable. One at a time: a transaction-scoped advisory lock (PostgreSQL; DDL is transactional, so the
        # next replica's check sees the committed tables), or the database file's lock (SQLite).
        if self._postgres:
            with self.engine.begin() as connection:
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
                _METADATA.create_all(connection, checkfirst=True)
        elif self._file_lock is not None:
            with self._file_lock:
                _METADATA.create_all(self.engine, checkfirst=True)
        else:
            _METADATA.create_all(self.engine, checkfirst=True)
        self._ready = True

    # ------------------------------------------------------------------------------------------------- state

    def load(self) -> DeploymentState:
        """The saved state, or an idle one when none was saved.

        Returns:
            The deployment state.
        """
        self._tables()
        with self.engine.connect() as connection:
            body = connection.execute(sa.select(_STATE.c.body).where(_STATE.c.id == 1)).scalar()
        return DeploymentState() if body is None else DeploymentState.from_json(json.loads(body))

    def save(self, state: DeploymentState) -> None:
        """Writes `state` (one transaction).

        Args:
            state: the state to persist; its ``updated_at`` is set to now.
        """
        self._tables()
        state.updated_at = time.time()
        body = json.dumps(state.to_json())
        with self.engine.begin() as connection:
            changed = connection.execute(
                _STATE.update().where(_STATE.c.id == 1).values(body=body, updated_at=state.updated_at)
            ).rowcount
            if not changed:
                connection.execute(_STATE.insert().values(id=1, body=body, updated_at=state.updated_at))

    def record(self, decision: Decision) -> Decision:
        """Appends `decision` to the log and returns it.

        Args:
            decision: the decision to log.

        Returns:
            `decision`.
        """
        self._tables()
        with self.engine.begin() as connection:
            connection.execute(_DECISIONS.insert().values(at=decision.at, body=json.dumps(decision.to_json())))
        return decision

    def decisions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The logged decisions, oldest first (the last `limit` when given).

        Args:
            limit: how many of the most recent decisions to return; None (or 0) for all.

        Returns:
            The decisions as logged (dicts), oldest first.
        """
        self._tables()
        query = sa.select(_DECISIONS.c.body).order_by(_DECISIONS.c.id.desc())
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            bodies = connection.execute(query).scalars().all()
        return [json.loads(body) for body in reversed(bodies)]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Holds the store's lock across replicas (re-entrant within one thread).

        Yields:
            Nothing; the lock is held until the ``with`` block ends.

        Raises:
            TimeoutError: when another replica holds it longer than `lock_timeout`.
        """
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth -= 1
            return
        with self._thread_lock, self._cross_process_lock():
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0

    @contextmanager
    def _cross_process_lock(self) -> Iterator[None]:
        if not self._postgres:
            if self._file_lock is None:
                yield
                return
            with self._file_lock:
                yield
            return
        self._tables()
        with self.engine.connect() as connection:
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

    # ------------------------------------------------------------------------------------------------- fleet

    def lease(self) -> Lease | None:
        """The rollout lease as last written (it may have expired).

        Returns:
            The lease, or None when no replica ever took it.
        """
        self._tables()
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(_LEASE).where(_LEASE.c.id == 1)).first()
        return None if row is None else Lease(row.holder, row.acquired_at, row.expires_at)

    def acquire_lease(self, replica_id: str, seconds: float, now: float) -> Lease | None:
        """Takes or renews the rollout lease for `replica_id` unless another replica holds it (call inside `locked`).

        Args:
            replica_id: the replica asking.
            seconds: how long the lease lasts unless renewed.
            now: epoch seconds.

        Returns:
            The lease now held by `replica_id`, or None when another replica holds it.
        """
        lease = next_lease(self.lease(), replica_id, seconds, now)
        if lease is None:
            return None
        with self.engine.begin() as connection:
            connection.execute(_LEASE.delete().where(_LEASE.c.id == 1))
            connection.execute(_LEASE.insert().values(id=1, **asdict(lease)))
        return lease

    def release_lease(self, replica_id: str) -> None:
        """Gives the lease up at once, if `replica_id` holds it.

        Args:
            replica_id: the replica giving it up.
        """
        self._tables()
        with self.engine.begin() as connection:
            connection.execute(_LEASE.delete().where(_LEASE.c.id == 1, _LEASE.c.holder == replica_id))

    def put_replica(self, record: dict[str, Any]) -> None:
        """Writes one replica's record, replacing its last one.

        Args:
            record: a JSON-ready dict with at least ``id`` and ``heartbeat_at``.
        """
        self._tables()
        values = {"heartbeat_at": float(record.get("heartbeat_at") or time.time()), "body": json.dumps(record)}
        with self.engine.begin() as connection:
            changed = connection.execute(_REPLICAS.update().where(_REPLICAS.c.id == record["id"]).values(**values))
            if not changed.rowcount:
                connection.execute(_REPLICAS.insert().values(id=record["id"], **values))

    def replicas(self) -> list[dict[str, Any]]:
        """Every replica record, by id.

        Returns:
            The records as written by `put_replica`.
        """
        self._tables()
        with self.engine.connect() as connection:
            bodies = connection.execute(sa.select(_REPLICAS.c.body).order_by(_REPLICAS.c.id)).scalars().all()
        return [json.loads(body) for body in bodies]

    def drop_replica(self, replica_id: str) -> None:
        """Forgets a replica's record.

        Args:
            replica_id: its id.
        """
        self._tables()
        with self.engine.begin() as connection:
            connection.execute(_REPLICAS.delete().where(_REPLICAS.c.id == replica_id))

    def claim_alert(self, key: str, cooldown_seconds: float, now: float) -> bool:
        """Claims the right to send alert `key` now, unless any replica sent it within the cool-down.

        Args:
            key: the alert's kind and scope.
            cooldown_seconds: how long the same alert stays quiet.
            now: epoch seconds.

        Returns:
            True when this caller should send it.
        """
        self._tables()
        with self.locked(), self.engine.begin() as connection:
            last = connection.execute(sa.select(_ALERTS.c.sent_at).where(_ALERTS.c.key == key)).scalar()
            if last is not None and now - float(last) < cooldown_seconds:
                return False
            connection.execute(_ALERTS.delete().where(_ALERTS.c.key == key))
            connection.execute(_ALERTS.insert().values(key=key, sent_at=now))
            return True
