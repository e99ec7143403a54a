"""What every rollout strategy shares: the service it acts on, the registry, the store, alerts and the clock.

The strategies (`BlueGreenRollout`, `CanaryRollout`, `RollbackWatch`) keep nothing between steps on themselves:
each step is handed the saved `DeploymentState`, acts on the service and the registry, and saves what it needs next
time in that state before returning its decisions. This module holds the few actions they have in common — the
metrics of one version, a logged decision, an alert, a version unloaded once nothing routes to it, a rollout
withdrawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from clf.deploy.fleet import LocalMetrics, MetricsSource
from clf.deploy.state import Action, Decision, DeploymentState
from clf.deploy.store import StateStore

if TYPE_CHECKING:
    from clf.monitoring.alerts import AlertManager
    from clf.registry import ModelRegistry
    from clf.serving.service import ClassificationService

log = logging.getLogger("clf.deploy")


class Strategy(Protocol):
    """A rollout strategy: started from a request, advanced step by step, resumed after a restart."""

    def start(self, state: DeploymentState) -> list[Decision]:
        """Carries out a ``requested`` rollout of this strategy.

        Args:
            state: the saved state, in phase ``requested``.

        Returns:
            The decisions taken.
        """
        ...

    def step(self, state: DeploymentState) -> list[Decision]:
        """Advances the rollout by one step.

        Args:
            state: the saved state, in this strategy's phase.

        Returns:
            The decisions taken (none while it waits).
        """
        ...

    def resume(self, state: DeploymentState, why: str = "service restarted") -> Decision:
        """Picks the rollout up in a new process (or a replica that took the lease over).

        Args:
            state: the saved state, in this strategy's phase.
            why: what made it resume, for the decision's reason.

        Returns:
            The ``resumed`` decision, or the one that ended the rollout when it cannot go on.
        """
        ...


class RolloutContext:
    """The service, registry, store, alerts and clock of one controller, and the actions its strategies share.

    Args:
        service: the running service.
        registry: the registry the service serves from.
        store: where the state and decisions live.
        alerts: posts rollbacks, rejections and promotions; log-only when None.
        clock: epoch seconds; a test seam.
        source: where the gates read a version's numbers (this process's monitor by default; the fleet's through
            `clf.deploy.fleet`).
    """

    def __init__(
        self,
        service: ClassificationService,
        registry: ModelRegistry,
        store: StateStore,
        alerts: AlertManager | None,
        clock: Callable[[], float],
        source: MetricsSource | None = None,
    ) -> None:
        self.service = service
        self.registry = registry
        self.store = store
        self.alerts = alerts
        self.clock = clock
        self.source = source or LocalMetrics(service.monitor)

    def metrics(self, version: str, window_minutes: float) -> dict[str, Any]:
        """One version's metrics over the last `window_minutes`, from the context's `source`.

        Args:
            version: the version.
            window_minutes: how far back to look; a window of 0 is read as the shortest one.

        Returns:
            Its metrics in `PredictionMonitor.get_metrics` form, or ``{"total": 0}`` when it answered nothing.
        """
        return self.source.metrics(version, window_minutes)

    def record(
        self,
        action: Action,
        version: str | None,
        reason: str,
        metrics: dict[str, Any] | None = None,
        stage: int | None = None,
    ) -> Decision:
        """Logs a decision, now, in the decision log and the process log.

        Args:
            action: what was done.
            version: the version it concerns.
            reason: why, in words.
            metrics: the evidence, per version.
            stage: the canary stage's traffic percentage.

        Returns:
            The decision as logged.
        """
        decision = Decision(action, version, reason, metrics or {}, stage, self.clock())
        log.info("deployment: %s %s (%s)", action, version, reason)
        return self.store.record(decision)

    def alert(self, title: str, message: str, level: str) -> None:
        """Logs and posts an alert (when an `AlertManager` is configured).

        Args:
            title: the alert's title.
            message: its text.
            level: ``info``, ``warning`` or ``critical``.
        """
        log.warning("%s: %s", title, message)
        if self.alerts is not None:
            self.alerts.send(title, message, level)

    def serve_production(self) -> tuple[str, str] | None:
        """Swaps the service to the registry's production version when it serves another, unloading the old one.

        Returns:
            ``(new, old)`` when it switched; None when it already served production (or the registry has none).
        """
        production = self.registry.production_version()
        live = self.service.live_version
        if production is None or production == live:
            return None
        self.service.swap(production)
        self.unload_quietly(live)
        return production, live

    def unload_quietly(self, version: str) -> None:
        """Unloads `version` unless a traffic rule still sends it requests (then it stays loaded).

        Args:
            version: a loaded version.
        """
        try:
            self.service.unload(version)
        except ValueError:
            log.info("%s still receives traffic; kept loaded", version)

    def withdraw(self, state: DeploymentState, reason: str, metrics: dict[str, Any] | None = None) -> Decision:
        """Withdraws a canary, or a rollout not yet started: all traffic back to the live version, the candidate
        unloaded, production untouched.

        The decision is logged before the idle state is saved, so whoever sees the rollout end sees why.

        Args:
            state: the saved state of the rollout.
            reason: why, recorded in the decision and the alert.
            metrics: the evidence, per version.

        Returns:
            The ``rolled_back`` decision.
        """
        if state.candidate in self.service.traffic_rule.versions:  # the canary's split; an experiment's stays
            self.service.set_traffic_rule(None)
        if state.candidate and state.candidate != self.service.live_version:
            self.unload_quietly(state.candidate)
        decision = self.record(Action.ROLLED_BACK, state.candidate, reason, metrics, state.stage)
        self.store.save(state.ended())
        kind = "canary" if state.strategy == "canary" else "blue-green deployment of"
        self.alert(f"Rolled back {kind} {state.candidate}", reason, "critical")
        return decision
