"""DeploymentController: one `tick()` that advances whichever rollout the saved state holds, on a running service.

The controller lives in the serving process (``clf serve`` calls `tick` every few seconds). Requests come from
anywhere that shares the registry folder — ``clf deploy canary v1.3.0`` writes one into the saved state
(`request_deployment`), the serving process picks it up. Each tick reads the state and hands it to one strategy:

    requested   → the requested strategy's start         BlueGreenRollout.start or CanaryRollout.start
    canary      → CanaryRollout.step                      stage gates, next stage, promotion or rollback
    shadow      → ShadowRollout.step                      the shadow candidate judged against production
    watching    → BlueGreenRollout.step                   green against blue after the switch
    idle        → RollbackWatch.step                      follow the registry, roll production back when it breaks

The strategies keep nothing in memory between ticks: what they need next time (stage and its start, blue's metrics,
when the live version went live, the last refused rollback) is in `DeploymentState`, and the canary's traffic split
is derived from it. A restarted process — or another one reading the same folder — decides the same. On start the
controller resumes what the state says: a canary continues at its recorded stage, a blue-green watch goes on, each
with its clock started again (the metrics of the interrupted stage were in the old process's memory).

**A fleet.** Given a `Replica`, the controller is one of many on the same store, and only the one holding the
rollout lease (`StateStore.acquire_lease`, renewed at every tick, `lease_seconds` long) drives: the others
`follow` — they serve the saved state's canary split and the registry's production version, loading and unloading as
needed, and decide nothing. A replica that takes the lease over (its holder stopped, or died and let it lapse)
resumes the rollout at its stage as a restarted process would. The leader's gates read the whole fleet's numbers
(`clf.deploy.fleet.FleetMetrics`, or a Prometheus server).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from clf.deploy.blue_green import BlueGreenRollout
from clf.deploy.canary import CanaryRollout, canary_split, drop_canary_split
from clf.deploy.context import RolloutContext, Strategy
from clf.deploy.fleet import FleetMetrics, LocalMetrics, MetricsSource, Replica
from clf.deploy.gates import CanaryGates, RollbackThresholds
from clf.deploy.rollback_watch import RollbackWatch
from clf.deploy.shadow import ShadowRollout, TrueLabels
from clf.deploy.state import (
    DEFAULT_STAGES,
    Action,
    Decision,
    DeploymentState,
    DeploymentStore,
    Phase,
)
from clf.deploy.store import StateStore
from clf.monitoring.health import HealthReport
from clf.registry import RegistryError
from clf.serving.errors import ModelLoadError

if TYPE_CHECKING:
    from clf.monitoring.alerts import AlertManager
    from clf.registry import ModelRegistry
    from clf.serving.service import ClassificationService

__all__ = ["Action", "DeploymentController", "Decision", "Phase"]

log = logging.getLogger("clf.deploy")

_FINAL = (Action.PROMOTED, Action.ROLLED_BACK, Action.ROLLBACK_FAILED)


class DeploymentController:
    """Carries out rollouts on `service` and rolls production back when it breaks.

    Args:
        service: the running service.
        registry: the registry (the service's by default).
        store: where the state and decisions live (``<registry>/deployment`` by default).
        alerts: posts rollbacks, rejections and promotions (Slack); log-only when None.
        gates: the canary (and blue-green watch) gates.
        rollback_thresholds: when production is rolled back on its own.
        max_stage_extension: a stage still short of canary requests after this many stage lengths rolls back.
        clock: epoch seconds; a test seam.
        resume: pick up the persisted rollout now (with a `replica`: when it first takes the lease).
        replica: this process as a member of a fleet sharing `store`: rollouts are driven only while it holds the
            lease, and followed otherwise. None: the only controller on the store (no lease).
        source: where the gates read a version's numbers; by default this process's monitor, or with a `replica`
            the fleet's snapshots in the store (`FleetMetrics`).
        lease_seconds: how long the rollout lease lasts unless renewed (several tick intervals).
        labels: where a shadow stage reads its pairs' true labels, by arXiv id (``clf serve``: the quality log's);
            None: a shadow's accuracy is not judged.

    Raises:
        ValueError: when `max_stage_extension` is below 1 or `lease_seconds` is not positive.

    Attributes:
        canary: the canary strategy.
        blue_green: the blue-green strategy.
        shadow: the shadow strategy.
        watch: the rollback watch (idle: follows the registry, rolls production back).
    """

    def __init__(
        self,
        service: ClassificationService,
        registry: ModelRegistry | None = None,
        *,
        store: StateStore | None = None,
        alerts: AlertManager | None = None,
        gates: CanaryGates | None = None,
        rollback_thresholds: RollbackThresholds | None = None,
        max_stage_extension: float = 3.0,
        clock: Callable[[], float] = time.time,
        resume: bool = True,
        replica: Replica | None = None,
        source: MetricsSource | None = None,
        lease_seconds: float = 15.0,
        labels: TrueLabels | None = None,
    ) -> None:
        if not lease_seconds > 0:
            raise ValueError(f"--fleet.lease_seconds must be positive, got {lease_seconds}")
        registry = registry or service.registry
        if source is None and replica is not None:
            source = FleetMetrics(replica, LocalMetrics(service.monitor), clock)
        store = store or DeploymentStore(registry.base_dir)
        self.context = RolloutContext(service, registry, store, alerts, clock, source)
        self.gates = gates or CanaryGates()
        self.rollback_thresholds = rollback_thresholds or RollbackThresholds()
        self.watch = RollbackWatch(self.context, self.rollback_thresholds)
        self.canary = CanaryRollout(self.context, self.gates, max_stage_extension)
        self.blue_green = BlueGreenRollout(self.context, self.gates, self.watch)
        self.shadow = ShadowRollout(self.context, replica, max_stage_extension, labels)
        self.replica = replica
        self.lease_seconds = float(lease_seconds)
        self.leading = replica is None
        self._resume_on_lead = resume
        if replica is not None:
            self.follow()  # serve what the fleet serves from the first request; leading starts at the first tick
            return
        with self.store.locked():  # the rollback watch judges the live version from when it went live
            state = self.store.load()
            if self.watch.adopt(state):
                self.store.save(state)
        if resume:
            self.resume()

    @property
    def service(self) -> ClassificationService:
        """The service rollouts act on."""
        return self.context.service

    @property
    def registry(self) -> ModelRegistry:
        """The registry whose production pointer rollouts move."""
        return self.context.registry

    @property
    def store(self) -> StateStore:
        """Where the state and the decisions live."""
        return self.context.store

    @property
    def clock(self) -> Callable[[], float]:
        """The controller's clock (epoch seconds)."""
        return self.context.clock

    # ----------------------------------------------------------------------------------------------- stepping

    def tick(self) -> list[Decision]:
        """Advances the saved rollout by one step; when idle, follows the registry and watches production.

        With a `replica`, only while it holds the rollout lease (taken or renewed here); otherwise see `follow`.

        Returns:
            The decisions taken in this step (none by a follower).
        """
        if self.replica is None:
            return self._drive()
        self.replica.publish()
        lease = self.store.lease()
        if lease is not None and lease.held_by_other(self.replica.id, self.store.clock(self.clock())):
            self._follower(lease.holder)
            return self.follow()
        with self.store.locked():
            previous = self.store.lease()
            if self.store.acquire_lease(self.replica.id, self.lease_seconds, self.clock()) is not None:
                decisions = [] if self.leading else self._take_over(previous.holder if previous else None)
                self.leading = True
                self.replica.prune()
                return decisions + self._drive()
        self._follower(previous.holder if previous else None)
        return self.follow()

    def follow(self) -> list[Decision]:
        """Serves what the fleet serves, deciding nothing: the saved canary's split and the registry's production.

        A canary's candidate is loaded and its stage's split installed; otherwise the registry's production version
        is swapped in (the previous one unloaded) and a canary split the state no longer runs is dropped. A shadow
        stage's candidate is mirrored the saved share (the same requests as on every replica), and stops being
        mirrored once the state runs no shadow. Traffic rules a canary did not install (an A/B experiment's) are left
        alone.

        Returns:
            No decisions (they are the lease holder's); a list for the symmetry with `tick`.
        """
        state = self.store.load()
        service = self.service
        self._mirror(state)
        if state.phase == Phase.CANARY and state.candidate and state.baseline:
            if service.live_version != state.baseline:
                previous = service.swap(state.baseline)
                if previous != state.candidate:
                    self.context.unload_quietly(previous)
            service.load(state.candidate)
            rule = canary_split(state)
            if service.traffic_rule != rule:
                service.set_traffic_rule(rule)
            return []
        switched = self.context.serve_production()
        if switched is not None:
            log.info("following the registry: serving %s (was %s)", *switched)
        drop_canary_split(self.context)
        return []

    def _mirror(self, state: DeploymentState) -> None:
        """Mirrors the saved shadow stage's candidate, or stops mirroring when the state runs none."""
        service = self.service
        shadow = service.shadow
        if state.phase != Phase.SHADOW or not state.candidate or state.shadow_share is None:
            if shadow is not None:
                service.stop_shadow()
            return
        if shadow is None or shadow.version != state.candidate or shadow.share != state.shadow_share:
            try:
                service.start_shadow(state.candidate, state.shadow_share)
            except (ModelLoadError, RegistryError, OSError, ValueError):  # the leader's verdict says so; serve on
                log.exception("could not mirror shadow %s on this replica", state.candidate)

    def close(self) -> None:
        """Leaves the fleet: gives the lease up (another replica takes over at its next tick) and publishes a last
        record. Without a replica, nothing to do."""
        if self.replica is None:
            return
        try:
            if self.leading:
                self.store.release_lease(self.replica.id)
            self.replica.leave()
        except Exception:
            log.exception("could not leave the fleet cleanly; the lease lapses after %g s", self.lease_seconds)
        self.leading = False

    def _follower(self, holder: str | None) -> None:
        if self.leading:
            log.warning("replica %s lost the rollout lease to %s; following", self.replica_id, holder)
        self.leading = False

    def _take_over(self, previous: str | None) -> list[Decision]:
        """The first tick holding the lease: adopt the live version, and resume a rollout in progress."""
        state = self.store.load()
        log.info("replica %s holds the rollout lease (was %s)", self.replica_id, previous or "nobody")
        if self.watch.adopt(state):
            self.store.save(state)
        if not self._resume_on_lead or state.phase not in (Phase.CANARY, Phase.WATCHING, Phase.SHADOW):
            return []
        why = f"replica {self.replica_id} took the rollout lease"
        if previous and previous != self.replica_id:
            why += f" over from {previous}"
        return [self._strategy(state).resume(state, why)]

    @property
    def replica_id(self) -> str | None:
        """This replica's id (None outside a fleet)."""
        return self.replica.id if self.replica is not None else None

    def _drive(self) -> list[Decision]:
        with self.store.locked():
            state = self.store.load()
            if state.phase == Phase.REQUESTED:
                return self._strategy(state).start(state)
            if state.phase == Phase.CANARY:
                return self.canary.step(state)
            if state.phase == Phase.SHADOW:
                return self.shadow.step(state)
            if self.service.shadow is not None:  # withdrawn from another process (clf deploy rollback)
                self.service.stop_shadow()
            if state.phase == Phase.WATCHING:
                return self.blue_green.step(state)
            return self.watch.step(state)

    def resume(self) -> Decision | None:
        """Picks up a canary, a shadow stage or a blue-green watch found in the saved state (after a restart).

        Returns:
            The ``resumed`` decision (or the one that ended a canary or shadow that no longer loads); None when none
            was in progress.
        """
        with self.store.locked():
            state = self.store.load()
            if state.phase not in (Phase.CANARY, Phase.WATCHING, Phase.SHADOW):
                return None
            return self._strategy(state).resume(state)

    # --------------------------------------------------------------------------------------------- blue-green

    def deploy_green(self, version: str) -> Decision:
        """Loads `version` (green) beside the live version (blue) and warms it up; traffic does not move.

        Args:
            version: the registered version to load.

        Returns:
            The ``green_loaded`` decision.

        Raises:
            RegistryError: for an unknown version.
            ModelLoadError: when its files do not load.
        """
        return self.blue_green.deploy_green(version)

    def health_check(self, version: str | None = None, latency_threshold_ms: float = 500.0) -> HealthReport:
        """The health of a loaded version (the live one by default): files intact, inference works and is fast.

        Args:
            version: a loaded version; None for the live one.
            latency_threshold_ms: the latency check fails when one classification takes longer than this.

        Returns:
            The report, healthy only when every check passed.
        """
        return self.blue_green.health_check(version, latency_threshold_ms)

    def switch_to_green(self, version: str, watch_seconds: float = 600.0) -> Decision:
        """Promotes `version` in the registry and moves all traffic to it in one step, then watches it.

        The previous version stays loaded for the watch, so a rollback is instant.

        Args:
            version: the loaded (green) version to promote.
            watch_seconds: how long the new version is watched, against the old version's metrics, before the old one is
                unloaded.

        Returns:
            The ``switched`` decision.
        """
        with self.store.locked():
            return self.blue_green.switch(self.store.load(), version, watch_seconds)

    def detect_issues(self) -> Decision | None:
        """During a blue-green watch: rolls back if green degrades against blue's last metrics, ends the watch when
        its time is up.

        Returns:
            The decision taken (rollback or watch passed), or None while the watch goes on or when none runs.
        """
        with self.store.locked():
            state = self.store.load()
            if state.phase != Phase.WATCHING:
                return None
            decisions = self.blue_green.step(state)
            return decisions[0] if decisions else None

    # -------------------------------------------------------------------------------------------------- canary

    def start_canary(
        self, version: str, stages: Sequence[int] = DEFAULT_STAGES, stage_seconds: float = 3600.0
    ) -> Decision:
        """Loads `version` and sends it the first stage's share of traffic.

        Args:
            version: the registered version to roll out.
            stages: traffic percentages, increasing and ending at 100.
            stage_seconds: how long each stage is watched before the next.

        Returns:
            The decision that starts the first stage.

        Raises:
            DeploymentError: for stages that are not increasing percentages ending at 100.
        """
        with self.store.locked():
            return self.canary.begin(self.store.load(), version, stages, stage_seconds)

    def gradual_rollout(
        self,
        version: str,
        stages: Sequence[int] = DEFAULT_STAGES,
        stage_seconds: float = 3600.0,
        poll_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Decision:
        """Runs a whole canary rollout and returns its final decision (promoted or rolled back).

        Traffic must reach the service meanwhile (the HTTP server's clients); this call only watches and steps.

        Args:
            version: the registered version to roll out.
            stages: traffic percentages, increasing and ending at 100.
            stage_seconds: how long each stage is watched before the next.
            poll_seconds: time between two `tick` calls.
            sleep: the wait between ticks (a fake clock's in tests).

        Returns:
            The final decision: ``promoted``, ``rolled_back`` or ``rollback_failed``.
        """
        self.start_canary(version, stages, stage_seconds)
        while True:
            sleep(poll_seconds)
            for decision in self.tick():
                if decision.action in _FINAL:
                    return decision

    # ------------------------------------------------------------------------------------------------ rollback

    def rollback(self, reason: str, metrics: dict[str, Any] | None = None) -> Decision:
        """Abandons the rollout in progress, or rolls production back to its previous version; alerts either way.

        A canary (or a rollout not yet started) is simply withdrawn: production never changed. After a blue-green
        switch, or when idle, the registry rolls back and the service switches to the version it names.

        Args:
            reason: why, recorded in the decision, the registry's audit log and the alert.
            metrics: the metrics that triggered the rollback, kept with the decision as evidence.

        Returns:
            The ``rolled_back`` decision, or ``rollback_failed`` when the registry has no previous version.
        """
        with self.store.locked():
            state = self.store.load()
            if state.phase == Phase.SHADOW or (state.phase == Phase.REQUESTED and state.strategy == "shadow"):
                return self.shadow.withdraw(state, reason)
            if state.phase in (Phase.CANARY, Phase.REQUESTED):
                return self.context.withdraw(state, reason, metrics)
            return self.watch.roll_back(state, reason, metrics)

    def _strategy(self, state: DeploymentState) -> Strategy:
        if state.strategy == "shadow":
            return self.shadow
        return self.canary if state.strategy == "canary" else self.blue_green
