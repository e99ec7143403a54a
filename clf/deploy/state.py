"""Persisted deployment state and the decision log, beside the registry.

    <registry>/deployment/state.json       what is rolling out, how, and where it stands (atomic rewrite)
    <registry>/deployment/decisions.jsonl  one line per decision, with its reason and the metrics behind it
    <registry>/deployment/state.lock       held around every read-modify-write
    <registry>/deployment/lease.json       which replica drives rollouts, until when (`Lease`)
    <registry>/deployment/replicas/*.json  each replica's `ReplicaRecord`: heartbeat, what it serves, metric snapshots
    <registry>/deployment/alerts.json      when each alert was last sent by any replica (one alert per fleet)

The registry's production pointer says what is live; this state says what is on its way, and what the rollback
watch remembers between steps (when the live version went live, the last rollback the registry refused). Nothing a
strategy decides on lives only in a process's memory: a restarted service, or another process reading the same
folder, reads this state and decides the same (see `DeploymentController`).

`DeploymentStore` keeps them in these files, for replicas on one host; `SqlDeploymentStore` (`clf.deploy.sql_store`)
in a SQL database, for replicas that share no filesystem. Both are a `clf.deploy.store.StateStore`;
`clf.deploy.stores.open_store` picks one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from filelock import FileLock

from clf.deploy.store import Lease, ReplicaRecord, StateStore, wall_clock
from clf.io import DataFileError, append_jsonl, read_json, read_jsonl, write_json_atomic

DEFAULT_STAGES = (5, 10, 25, 50, 100)
"""Canary traffic percentages, stage by stage."""


class DeploymentError(RuntimeError):
    """A deployment that cannot be started or carried out; the message says why and what to do."""


class Phase(StrEnum):
    """Where a deployment stands."""

    IDLE = "idle"
    """Nothing rolling out; the registry's production version serves everything."""
    REQUESTED = "requested"
    """A blue-green or canary rollout was asked for; the serving process starts it on its next step."""
    WATCHING = "watching"
    """Green took all traffic; it is watched for `watch_seconds` and rolled back if it degrades."""
    CANARY = "canary"
    """A canary gets the current stage's share of traffic while its gates are watched."""
    SHADOW = "shadow"
    """A candidate sees a share of live requests off the response path while it is judged against production."""


class Action(StrEnum):
    """What a decision did."""

    REQUESTED = "requested"
    GREEN_LOADED = "green_loaded"
    GREEN_REJECTED = "green_rejected"
    SWITCHED = "switched"
    WATCH_PASSED = "watch_passed"
    STAGE_STARTED = "stage_started"
    STAGE_PASSED = "stage_passed"
    STAGE_WAITING = "stage_waiting"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    RESUMED = "resumed"
    FOLLOWED_REGISTRY = "followed_registry"
    SHADOW_STARTED = "shadow_started"
    SHADOW_PASSED = "shadow_passed"
    SHADOW_FAILED = "shadow_failed"


@dataclass(frozen=True)
class Decision:
    """One deployment decision with its evidence.

    Attributes:
        action: what was done.
        version: the version it concerns.
        reason: why, in words.
        metrics: the measurements behind it (per version), when there were any.
        stage: the canary stage's traffic percentage, for canary decisions.
        at: epoch seconds.
    """

    action: Action
    version: str | None
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)
    stage: int | None = None
    at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, with the time also in ISO 8601.

        Returns:
            The decision's fields, with ``action`` as text and ``at_iso`` added.
        """
        record = asdict(self)
        record["action"] = str(self.action)
        record["at_iso"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return record


@dataclass(frozen=True)
class LiveSince:
    """When the live version went live: the rollback watch judges it on what it did since, not before.

    Attributes:
        version: the live version.
        at: when it took all traffic (a switch, a promotion, a rollback, or the service following the registry),
            epoch seconds.
    """

    version: str
    at: float


@dataclass(frozen=True)
class RefusedRollback:
    """A rollback the registry refused (nothing to go back to); it is not tried again for one window.

    Attributes:
        version: the version that was to be rolled back.
        at: when, epoch seconds.
        reason: why it was to be rolled back, and the registry's refusal.
    """

    version: str
    at: float
    reason: str


@dataclass
class DeploymentState:
    """The rollout in progress (or none), and what the rollback watch remembers.

    Attributes:
        phase: where it stands.
        strategy: ``blue_green``, ``canary`` or ``shadow`` (None when idle).
        candidate: the version rolling out.
        baseline: the production version it replaces.
        stages: canary traffic percentages, in order.
        stage_index: the current canary stage.
        stage_started_at: when the current stage (the blue-green watch, the shadow stage) began, epoch seconds.
        stage_seconds: how long each canary stage, or the shadow stage, is watched.
        watch_seconds: how long green is watched after a blue-green switch.
        baseline_metrics: the production version's metrics from the last stage, the yardstick once production no
            longer takes traffic (the 100 % stage, the blue-green watch).
        live: when the live version went live (None until a controller first saw it).
        refused_rollback: the last rollback the registry refused, if any.
        shadow_share: the share of requests a shadow candidate is mirrored.
        shadow_criteria: the shadow's `clf.monitoring.shadow.ShadowCriteria`, as JSON.
        shadow_results: version → the verdict of its last shadow stage (`ShadowVerdict.to_json` with ``at``), kept
            after the stage ends: ``clf deploy canary`` refuses a version whose shadow failed.
        updated_at: the last change, epoch seconds.
    """

    phase: Phase = Phase.IDLE
    strategy: str | None = None
    candidate: str | None = None
    baseline: str | None = None
    stages: list[int] = field(default_factory=list)
    stage_index: int = 0
    stage_started_at: float | None = None
    stage_seconds: float = 3600.0
    watch_seconds: float = 600.0
    baseline_metrics: dict[str, Any] = field(default_factory=dict)
    live: LiveSince | None = None
    refused_rollback: RefusedRollback | None = None
    shadow_share: float | None = None
    shadow_criteria: dict[str, Any] = field(default_factory=dict)
    shadow_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    updated_at: float = field(default_factory=time.time)

    @property
    def stage(self) -> int | None:
        """The current canary stage's traffic percentage."""
        return self.stages[self.stage_index] if self.phase == Phase.CANARY and self.stages else None

    def ended(self) -> DeploymentState:
        """The idle state that follows this one: the rollout forgotten, what the rollback watch remembers kept.

        Returns:
            A new idle state with this one's `live`, `refused_rollback` and `shadow_results`.
        """
        return DeploymentState(
            live=self.live, refused_rollback=self.refused_rollback, shadow_results=dict(self.shadow_results)
        )

    def went_live(self, version: str, at: float) -> None:
        """Records that `version` took all traffic at `at` (a refused rollback of another version is forgotten).

        Args:
            version: the version now live.
            at: when, epoch seconds.
        """
        self.live = LiveSince(version, at)
        if self.refused_rollback is not None and self.refused_rollback.version != version:
            self.refused_rollback = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The state's fields, with ``phase`` as text.
        """
        record = asdict(self)
        record["phase"] = str(self.phase)
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> DeploymentState:
        """The state saved by `to_json` (unknown keys are ignored, so older files still load).

        Args:
            record: a dict written by `to_json`.

        Returns:
            The state; missing fields take their defaults.
        """
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        values["phase"] = Phase(values.get("phase", Phase.IDLE))
        for name, kind in (("live", LiveSince), ("refused_rollback", RefusedRollback)):
            if values.get(name) is not None:
                nested = {f.name for f in fields(kind)}
                values[name] = kind(**{key: value for key, value in values[name].items() if key in nested})
        return cls(**values)


class DeploymentStore(StateStore):
    """The `clf.deploy.store.StateStore` in the registry's ``deployment/`` folder (files listed in the module
    docstring), for replicas on one host: the lease and alert cool-downs are judged by the caller's clock.

    Args:
        registry_dir: the registry folder; the state lives in its ``deployment/`` subfolder.
        lock_timeout: seconds to wait for another process's lock.
    """

    def __init__(self, registry_dir: str | Path, lock_timeout: float = 120.0) -> None:
        self.folder = Path(registry_dir) / "deployment"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_path = self.folder / "state.json"
        self.decisions_path = self.folder / "decisions.jsonl"
        self._lock = FileLock(str(self.folder / "state.lock"), timeout=lock_timeout)
        self.lease_path = self.folder / "lease.json"
        self.replicas_dir = self.folder / "replicas"
        self.alerts_path = self.folder / "alerts.json"

    @property
    def where(self) -> str:
        return str(self.folder)

    def load(self) -> DeploymentState:
        if not self.state_path.is_file():
            return DeploymentState()
        try:
            return DeploymentState.from_json(read_json(self.state_path))
        except (KeyError, TypeError, ValueError) as err:
            raise DataFileError(f"{self.state_path}: unreadable deployment state ({err})") from err

    def save(self, state: DeploymentState) -> None:
        state.updated_at = time.time()
        write_json_atomic(self.state_path, state.to_json())

    def record(self, decision: Decision) -> Decision:
        append_jsonl(self.decisions_path, [decision.to_json()])
        return decision

    def decisions(self, limit: int | None = None) -> list[dict[str, Any]]:
        if not self.decisions_path.is_file():
            return []
        records = [record for _, record in read_jsonl(self.decisions_path, skip_partial_last_line=True)]
        return records[-limit:] if limit else records

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield

    def clock(self, now: float | None = None) -> float:
        return wall_clock(now)

    def lease(self) -> Lease | None:
        if not self.lease_path.is_file():
            return None
        try:
            record = read_json(self.lease_path)
            return Lease(str(record["holder"]), float(record["acquired_at"]), float(record["expires_at"]))
        except (KeyError, TypeError, ValueError, DataFileError):
            return None  # a torn or foreign file: nobody holds it, the next acquire rewrites it

    def acquire_lease(self, replica_id: str, seconds: float, now: float | None = None) -> Lease | None:
        now = wall_clock(now)
        with self.locked():
            current = self.lease()
            if current is not None and current.held_by_other(replica_id, now):
                return None
            acquired = current.acquired_at if current is not None and current.holder == replica_id else now
            lease = Lease(replica_id, acquired, now + seconds)
            write_json_atomic(self.lease_path, asdict(lease))
            return lease

    def release_lease(self, replica_id: str) -> None:
        with self.locked():
            current = self.lease()
            if current is not None and current.holder == replica_id:
                self.lease_path.unlink(missing_ok=True)

    def put_replica(self, record: ReplicaRecord) -> None:
        self.replicas_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.replicas_dir / f"{_file_name(record.id)}.json", record.to_json())

    def replicas(self) -> list[ReplicaRecord]:
        records = []
        for path in sorted(self.replicas_dir.glob("*.json")) if self.replicas_dir.is_dir() else []:
            try:
                records.append(ReplicaRecord.from_json(read_json(path)))
            except (DataFileError, ValueError, TypeError, OSError):
                continue  # being replaced right now, or torn by a crash: skipped this time
        return records

    def drop_replica(self, replica_id: str) -> None:
        (self.replicas_dir / f"{_file_name(replica_id)}.json").unlink(missing_ok=True)

    def claim_alert(self, key: str, cooldown_seconds: float, now: float | None = None) -> bool:
        now = wall_clock(now)
        with self.locked():
            sent = read_json(self.alerts_path) if self.alerts_path.is_file() else {}
            last = sent.get(key)
            if last is not None and now - float(last) < cooldown_seconds:
                return False
            sent[key] = now
            write_json_atomic(self.alerts_path, sent)
            return True


def _file_name(replica_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(replica_id))[:200]


def check_stages(stages: Sequence[int]) -> list[int]:
    """The canary stages as a list, checked: increasing percentages in (0, 100], ending at 100.

    Args:
        stages: the canary traffic percentages, e.g. ``[5, 25, 100]``.

    Returns:
        The stages as ints.

    Raises:
        DeploymentError: naming what is wrong with --stages.
    """
    stages = [int(stage) for stage in stages]
    if not stages or stages[-1] != 100 or any(not 0 < s <= 100 for s in stages) or stages != sorted(set(stages)):
        raise DeploymentError(f"--stages must be increasing percentages ending at 100, like [5, 25, 100]; got {stages}")
    return stages
