"""`StateStore`: what every deployment state store promises, and the records it keeps beside the state.

Two stores implement it, checked by one contract suite (tests/deploy/test_store_contract.py):

    DeploymentStore      clf.deploy.state       the registry's ``deployment/`` folder: replicas on one host
    SqlDeploymentStore   clf.deploy.sql_store   a SQL database: PostgreSQL for replicas that share no filesystem

`clf.deploy.stores.open_store` picks one. **Clocks.** Leases and alert cool-downs compare times written by one
replica with the time another one reads. On one host (the folder, SQLite) every replica reads the same clock, so the
stores take the caller's `now` (the controller's clock, a test seam). Replicas on several hosts do not share a clock:
the PostgreSQL store ignores `now` and judges by the database's clock, inside the statement that takes the lease, so
two hosts whose clocks disagree never both hold it. `StateStore.clock` says which time a store judges by.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from clf.deploy.state import Decision, DeploymentState


@dataclass(frozen=True)
class Lease:
    """The right to drive rollouts, held by one replica until it expires unless renewed.

    Attributes:
        holder: the replica id holding it.
        acquired_at: when this holder took it, epoch seconds (the store's clock).
        expires_at: when it lapses unless renewed, epoch seconds (the store's clock).
    """

    holder: str
    acquired_at: float
    expires_at: float

    def held_by_other(self, replica_id: str, now: float) -> bool:
        """Whether another replica holds it now.

        Args:
            replica_id: the asking replica.
            now: epoch seconds on the store's clock (`StateStore.clock`).

        Returns:
            True while another holder's lease has not expired.
        """
        return self.holder != replica_id and self.expires_at > now


@dataclass(frozen=True)
class ReplicaRecord:
    """One serving replica as the fleet sees it: its heartbeat, what it serves, and its metric snapshots.

    Attributes:
        id: the replica's id (``<hostname>-<pid>`` by default).
        heartbeat_at: when it last wrote this record, epoch seconds (its own clock).
        url: where it answers.
        host: its host name.
        pid: its process id.
        started_at: when it started, epoch seconds.
        live_version: the version it serves as production.
        loaded_versions: every version it has loaded.
        traffic_rule: its traffic rule, in words.
        traffic_shares: the share of requests each version gets.
        snapshots: its cumulative metric snapshots, oldest first (`ServiceMetrics.snapshot`, each with ``at``).
        stopped_at: when it left the fleet, epoch seconds (None while it serves).
    """

    id: str
    heartbeat_at: float
    url: str | None = None
    host: str | None = None
    pid: int | None = None
    started_at: float | None = None
    live_version: str | None = None
    loaded_versions: list[str] = field(default_factory=list)
    traffic_rule: str | None = None
    traffic_shares: dict[str, float] = field(default_factory=dict)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    stopped_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``stopped_at`` only once it left).

        Returns:
            The record's fields.
        """
        record = asdict(self)
        if self.stopped_at is None:
            del record["stopped_at"]
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> ReplicaRecord:
        """The record written by `to_json` (unknown keys are ignored, missing ones take their defaults).

        Args:
            record: a dict written by `to_json`, with at least ``id``.

        Returns:
            The record.
        """
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        values["heartbeat_at"] = float(values.get("heartbeat_at") or 0.0)
        return cls(**values)


class StateStore(Protocol):
    """Where a registry's replicas keep the deployment state, the decision log, the rollout lease, their replica
    records and the alert cool-downs (see the module docstring for the clocks)."""

    @property
    def where(self) -> str:
        """Where the state lives, in words, without secrets (for logs)."""
        ...

    def load(self) -> DeploymentState:
        """The saved state, or an idle one when none was saved.

        Returns:
            The deployment state.

        Raises:
            DataFileError: when the saved state is unreadable (it names where; delete it only if nothing is rolling
                out).
        """
        ...

    def save(self, state: DeploymentState) -> None:
        """Writes `state` at once (a reader sees the old state or the new one, never a mix).

        Args:
            state: the state to persist; its ``updated_at`` is set to now.
        """
        ...

    def record(self, decision: Decision) -> Decision:
        """Appends `decision` to the log, durably, and returns it.

        Args:
            decision: the decision to log.

        Returns:
            `decision`, so a caller can log and return in one line.
        """
        ...

    def decisions(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The logged decisions, oldest first (the last `limit` when given).

        Args:
            limit: how many of the most recent decisions to return; None (or 0) for all.

        Returns:
            The decisions as logged (`Decision.to_json` dicts), oldest first.
        """
        ...

    def locked(self) -> AbstractContextManager[None]:
        """Holds the store's lock, across processes and hosts sharing it (re-entrant within one thread): wrap every
        read-modify-write of the state in it.

        Returns:
            A context manager holding the lock until its ``with`` block ends.

        Raises:
            TimeoutError: when another process holds it longer than the store's lock timeout.
        """
        ...

    def clock(self, now: float | None = None) -> float:
        """The time leases and alert cool-downs are judged by.

        Args:
            now: the caller's clock, epoch seconds (None: ``time.time()``).

        Returns:
            `now` for a store on one host; the database's clock for a store shared across hosts.
        """
        ...

    def lease(self) -> Lease | None:
        """The rollout lease as last written (it may have expired).

        Returns:
            The lease, or None when no replica holds it (never taken, or released).
        """
        ...

    def acquire_lease(self, replica_id: str, seconds: float, now: float | None = None) -> Lease | None:
        """Takes or renews the rollout lease for `replica_id`, unless another replica holds it unexpired.

        Call it inside `locked`, around the work the lease covers, so that no two replicas act at once.

        Args:
            replica_id: the replica asking.
            seconds: how long the lease lasts unless renewed.
            now: the caller's clock, epoch seconds (None: ``time.time()``); a store shared across hosts ignores
                it and uses `clock`.

        Returns:
            The lease now held by `replica_id` (its ``acquired_at`` kept on a renewal), or None when another
            replica holds it.
        """
        ...

    def release_lease(self, replica_id: str) -> None:
        """Gives the lease up at once (a replica shutting down), if `replica_id` holds it.

        Args:
            replica_id: the replica giving it up.
        """
        ...

    def put_replica(self, record: ReplicaRecord) -> None:
        """Writes one replica's record, replacing its last one.

        Args:
            record: the replica's record.
        """
        ...

    def replicas(self) -> list[ReplicaRecord]:
        """Every replica record, by id (dead replicas too, until `drop_replica`).

        Returns:
            The records as written by `put_replica`.
        """
        ...

    def drop_replica(self, replica_id: str) -> None:
        """Forgets a replica's record (nothing happens when there is none).

        Args:
            replica_id: its id.
        """
        ...

    def claim_alert(self, key: str, cooldown_seconds: float, now: float | None = None) -> bool:
        """Claims the right to send alert `key` now, unless any replica claimed it within the cool-down.

        Args:
            key: the alert's kind and scope.
            cooldown_seconds: how long the same alert stays quiet.
            now: the caller's clock, epoch seconds (None: ``time.time()``); a store shared across hosts ignores
                it and uses `clock`.

        Returns:
            True when this caller should send it.
        """
        ...


def wall_clock(now: float | None) -> float:
    """The clock of a store on one host.

    Args:
        now: epoch seconds, or None.

    Returns:
        `now`, or ``time.time()`` when None.
    """
    return time.time() if now is None else float(now)


__all__ = ["Lease", "ReplicaRecord", "StateStore", "wall_clock"]
