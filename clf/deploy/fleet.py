"""Replicas that agree: each one's heartbeat and metric snapshots in the shared store, and the fleet-wide numbers
the gates judge.

Every ``clf serve`` with rollouts on is a `Replica`: every few seconds it writes a record to the deployment store —
its id, address, what it serves, and a short history of cumulative metric snapshots (`ServiceMetrics.snapshot`). The
replica holding the rollout lease judges gates on one of three metrics sources (`MetricsSource`):

    LocalMetrics        this process's own monitor: exact windows, one replica (the embedded default)
    FleetMetrics        the snapshots of every replica that answered within the window, from the store, summed;
                        a fleet of one falls back to its own exact window
    PrometheusMetrics   a Prometheus server's HTTP API (``--fleet.prometheus_url``; `clf.deploy.prometheus_source`)

A window's numbers are, per replica, its newest snapshot minus the newest one taken at or before the window's start
(everything, for a replica started within it), summed over replicas; percentiles are read from the summed buckets
(`clf.monitoring.histograms.quantile`), as Prometheus's ``histogram_quantile`` reads them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from clf.deploy.store import ReplicaRecord, StateStore
from clf.monitoring.histograms import add, subtract
from clf.monitoring.metrics import window_metrics
from clf.serving.routing import traffic_shares

if TYPE_CHECKING:
    from clf.monitoring.monitor import PredictionMonitor
    from clf.serving.service import ClassificationService

log = logging.getLogger("clf.deploy.fleet")

RECENT_SECONDS = 120.0
"""Snapshots younger than this are all kept; older ones one per `SPARSE_SECONDS`."""
SPARSE_SECONDS = 60.0
"""Spacing of the snapshots kept beyond `RECENT_SECONDS` (the resolution of a long window's start)."""


class MetricsSource(Protocol):
    """Where the gates read a version's numbers over a window."""

    def metrics(self, version: str, window_minutes: float) -> dict[str, Any]:
        """A version's metrics over the last `window_minutes`.

        Args:
            version: the version.
            window_minutes: how far back to look.

        Returns:
            Its metrics in `PredictionMonitor.get_metrics` per-version form; ``{"total": 0}`` when it answered
            nothing.
        """
        ...


class LocalMetrics(MetricsSource):
    """The `MetricsSource` of this process's own monitor: exact windows (0 minutes: the shortest; clipped to what the
    monitor keeps), one replica.

    Args:
        monitor: the service's prediction monitor.
    """

    def __init__(self, monitor: PredictionMonitor) -> None:
        self.monitor = monitor

    def metrics(self, version: str, window_minutes: float) -> dict[str, Any]:
        window = min(max(window_minutes, 1e-6), self.monitor.max_window_minutes)
        return self.monitor.get_metrics(window)["by_version"].get(version) or {"total": 0}


def default_replica_id() -> str:
    """``<hostname>-<pid>``: unique per process on a host, and says where to look.

    Returns:
        The id.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


class Replica:
    """This serving process as a member of the fleet: publishes its heartbeat and snapshots to the store.

    Args:
        service: the running service.
        store: the deployment store shared by the fleet.
        replica_id: this replica's id (`default_replica_id` by default).
        url: where this replica answers (for people reading ``clf deploy status``).
        clock: epoch seconds; a test seam.
        max_window_minutes: how far back snapshots are kept.

    Attributes:
        quality: when set, its summary of whether the answers are still right (`QualityWatch.summary`) goes into each
            published snapshot, where `clf deploy status` reads it.
    """

    def __init__(
        self,
        service: ClassificationService,
        store: StateStore,
        replica_id: str | None = None,
        url: str | None = None,
        clock: Callable[[], float] = time.time,
        max_window_minutes: float = 60.0,
    ) -> None:
        self.service = service
        self.store = store
        self.id = replica_id or default_replica_id()
        self.url = url
        self.clock = clock
        self.max_window_minutes = max_window_minutes
        self.started_at = float(clock())
        self.history: list[dict[str, Any]] = [{**self.service.metrics.snapshot(), "at": self.started_at}]
        self.quality: Callable[[], dict[str, Any]] | None = None

    def record(self) -> ReplicaRecord:
        """This replica's record as `publish` writes it: heartbeat, serving state, snapshot history.

        Returns:
            The record.
        """
        service = self.service
        return ReplicaRecord(
            id=self.id,
            url=self.url,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            heartbeat_at=float(self.clock()),
            live_version=service.live_version,
            loaded_versions=service.loaded_versions,
            traffic_rule=repr(service.traffic_rule),
            traffic_shares=traffic_shares(service.traffic_rule),
            snapshots=self.history,
        )

    def publish(self) -> None:
        """Takes a snapshot (with the shadow's mirror, if one runs), thins the history and writes this replica's record
        to the store."""
        snapshot = self.service.metrics.snapshot()
        snapshot["at"] = float(self.clock())
        if self.quality is not None:
            snapshot["quality"] = self.quality()
        for older in self.history:  # the shadow's paired answers are cumulative: the newest snapshot's are enough
            older.pop("shadow", None)
        if self.service.shadow is not None:
            snapshot["shadow"] = self.service.shadow.snapshot()
        self.history = thin([*self.history, snapshot], snapshot["at"], self.max_window_minutes * 60)
        self.store.put_replica(self.record())

    def prune(self) -> list[str]:
        """Forgets the records of replicas silent for longer than the longest window (they count for no window).

        Returns:
            The ids forgotten.
        """
        horizon = float(self.clock()) - self.max_window_minutes * 60 - SPARSE_SECONDS
        gone = [r.id for r in self.store.replicas() if r.id != self.id and r.heartbeat_at < horizon]
        for replica_id in gone:
            self.store.drop_replica(replica_id)
        return gone

    def leave(self) -> None:
        """Publishes a last record (its snapshots still count for the windows they cover) marked as stopped."""
        record = self.record()
        self.store.put_replica(replace(record, stopped_at=record.heartbeat_at))


def thin(history: list[dict[str, Any]], now: float, keep_seconds: float) -> list[dict[str, Any]]:
    """The snapshots worth keeping: all recent ones, then one per `SPARSE_SECONDS`, none older than `keep_seconds`
    (plus the newest one before that, which starts the longest window).

    Args:
        history: snapshots, oldest first, each with ``at``.
        now: epoch seconds.
        keep_seconds: the longest window anyone asks for.

    Returns:
        The kept snapshots, oldest first.
    """
    kept: list[dict[str, Any]] = []
    for snapshot in history:
        age = now - snapshot["at"]
        if age > keep_seconds:
            kept = [snapshot]  # the newest one older than the longest window
            continue
        if age <= RECENT_SECONDS or not kept or snapshot["at"] - kept[-1]["at"] >= SPARSE_SECONDS:
            kept.append(snapshot)
    return kept


class FleetMetrics(MetricsSource):
    """The `MetricsSource` of the fleet: every replica's snapshots in the store, summed over those that answered
    within the window (see the module docstring).

    Args:
        replica: this replica (its own newest snapshot is taken fresh rather than read back).
        local: this process's exact numbers, used when it is the only replica that answered within the window.
        clock: epoch seconds; a test seam.
    """

    def __init__(self, replica: Replica, local: MetricsSource, clock: Callable[[], float] = time.time) -> None:
        self.replica = replica
        self.local = local
        self.clock = clock

    def metrics(self, version: str, window_minutes: float) -> dict[str, Any]:
        now = float(self.clock())
        since = now - max(window_minutes, 0.0) * 60
        others = answered_since([r for r in self.replica.store.replicas() if r.id != self.replica.id], since)
        if not others:
            return self.local.metrics(version, window_minutes)
        fresh = {**self.replica.service.metrics.snapshot(), "at": now}
        own = replace(self.replica.record(), snapshots=[*self.replica.history, fresh])
        return store_metrics([own, *others], version, since)


def store_metrics(records: list[ReplicaRecord], version: str, since: float) -> dict[str, Any]:
    """A version's metrics since `since`, summed over replica records (as the store holds them).

    Args:
        records: replica records with their snapshots; only those whose heartbeat is at or after `since` count.
        version: the version.
        since: the window's start, epoch seconds.

    Returns:
        Its metrics (percentiles read from the summed histograms) with ``replicas`` (how many counted), or
        ``{"total": 0, "replicas": n}``.
    """
    counted = answered_since(records, since)
    total: dict[str, Any] = {}
    for record in counted:
        total = add(total, window_counts(record, version, since))
    summary = window_metrics(total)
    summary["replicas"] = len(counted)
    return summary if summary["total"] else {"total": 0, "replicas": len(counted)}


def answered_since(records: list[ReplicaRecord], since: float) -> list[ReplicaRecord]:
    """The replica records that count for a window starting at `since`: heard from since then, with snapshots.

    Args:
        records: replica records as the store holds them.
        since: the window's start, epoch seconds.

    Returns:
        Those records, in order.
    """
    return [r for r in records if r.heartbeat_at >= since and r.snapshots]


def window_counts(record: ReplicaRecord, version: str, since: float) -> dict[str, Any]:
    """What one replica's snapshots say `version` did since `since`.

    Args:
        record: a replica record with its snapshots.
        version: the version.
        since: the window's start, epoch seconds.

    Returns:
        The version's counts over the window (empty when it answered nothing there).
    """
    snapshots = record.snapshots
    if not snapshots:
        return {}
    latest = snapshots[-1].get("versions", {}).get(version)
    if latest is None:
        return {}
    before = [s for s in snapshots if float(s.get("at") or 0) <= since]
    if before:
        start = before[-1].get("versions", {}).get(version)
    elif (record.started_at or 0.0) >= since:
        start = None  # started within the window: everything it counted is in it
    else:
        start = snapshots[0].get("versions", {}).get(version)  # the oldest kept: the window is cut a little short
    return subtract(latest, start)
