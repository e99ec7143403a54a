"""The rollback watch: while no rollout runs, the service follows the registry and production is rolled back when
it breaks.

Every idle step:

1. **follows the registry**: a `clf registry promote`, `clf registry rollback` or `clf deploy rollback` from another
   shell takes effect (``followed_registry``); a canary split the saved state no longer runs (withdrawn from another
   process) is dropped. Traffic rules a canary did not install (an A/B experiment's) are left alone.
2. **watches production**: over the last `RollbackThresholds.window_minutes`, but never before the live version went
   live, more than `max_error_rate` model errors (client errors, shed load and timeouts never count) — and, only with
   `rollback_on_latency`, a model latency p95 above `max_p95_latency_ms` — rolls the registry back, switches the
   service to the version it names, unloads the bad one and alerts (``rolled_back``). With nothing to roll back to it
   records ``rollback_failed`` and alerts once per window, not at every step.

When the live version went live (`LiveSince`) and the last refused rollback (`RefusedRollback`) are kept in the saved
state, so a restarted process judges the same window and does not retry a refused rollback at once.
"""

from __future__ import annotations

from typing import Any

from clf.deploy.canary import drop_canary_split
from clf.deploy.context import RolloutContext
from clf.deploy.gates import RollbackThresholds, production_breaches
from clf.deploy.state import Action, Decision, DeploymentState, Phase, RefusedRollback
from clf.registry import RegistryError


class RollbackWatch:
    """Follows the registry and rolls production back on its own; see the module docstring.

    Args:
        context: the service, registry, store, alerts and clock.
        thresholds: when production is rolled back.
    """

    def __init__(self, context: RolloutContext, thresholds: RollbackThresholds) -> None:
        self.context = context
        self.thresholds = thresholds

    def adopt(self, state: DeploymentState) -> bool:
        """Records the service's live version as live from now, unless the saved state already knows since when.

        A controller starting on a store that never saw this version (a new store, or a registry changed while no
        controller ran) judges it from its own start; one restarting on the same version keeps the earlier time.

        Args:
            state: the saved state; changed in place.

        Returns:
            Whether `state` changed (and needs saving).
        """
        live = self.context.service.live_version
        if state.live is not None and state.live.version == live:
            return False
        state.went_live(live, self.context.clock())
        return True

    def step(self, state: DeploymentState) -> list[Decision]:
        """One idle step: follow the registry, then judge production.

        Args:
            state: the saved state, in phase ``idle``.

        Returns:
            ``followed_registry`` and/or ``rolled_back`` or ``rollback_failed``; none when all is well.
        """
        decisions = self.follow_registry(state)
        return decisions + self.watch_production(state)

    def follow_registry(self, state: DeploymentState) -> list[Decision]:
        """Serves what the registry names, and drops a canary split the saved state no longer runs.

        Saves `state` when it learns when the live version went live.

        Args:
            state: the saved state (a canary split is stale unless its phase is ``canary``).

        Returns:
            The ``followed_registry`` decision when the service switched; else none.
        """
        context = self.context
        decisions = []
        switched = context.serve_production()
        if switched is not None:
            production, live = switched
            state.went_live(production, context.clock())
            context.store.save(state)
            decisions.append(context.record(Action.FOLLOWED_REGISTRY, production, f"registry production was {live}"))
        elif self.adopt(state):
            context.store.save(state)
        if state.phase != Phase.CANARY:
            drop_canary_split(context)
        return decisions

    def breaches(self, metrics: dict[str, Any]) -> list[str]:
        """The rollback thresholds `metrics` breach (see `production_breaches`).

        Args:
            metrics: a version's metrics over the window.

        Returns:
            One line per breached threshold; empty when none is, or when the window has too few requests.
        """
        return production_breaches(metrics, self.thresholds)

    def watch_production(self, state: DeploymentState) -> list[Decision]:
        """Rolls the live version back when it breaches the thresholds over its window.

        Args:
            state: the saved state, whose `live` bounds the window and whose `refused_rollback` holds off a retry.

        Returns:
            ``rolled_back`` or ``rollback_failed``; none when production is fine or its rollback was refused within
            the window.
        """
        context = self.context
        live = context.service.live_version
        if context.registry.production_version() != live:
            return []
        now = context.clock()
        since = state.live.at if state.live is not None and state.live.version == live else now
        window = min(self.thresholds.window_minutes, (now - since) / 60)
        metrics = context.metrics(live, window)
        breaches = self.breaches(metrics)
        if not breaches:
            return []
        refused = state.refused_rollback
        if refused is not None and refused.version == live and now - refused.at < self.thresholds.window_minutes * 60:
            return []  # nothing to roll back to: one alert per window, not one per step
        return [self.roll_back(state, f"production {live}: " + "; ".join(breaches), {live: metrics})]

    def roll_back(self, state: DeploymentState, reason: str, metrics: dict[str, Any] | None = None) -> Decision:
        """Rolls the registry back to the previous production version and switches the service to it.

        Ends whatever the state holds (a blue-green watch) and alerts either way.

        Args:
            state: the saved state.
            reason: why, recorded in the decision, the registry's audit log and the alert.
            metrics: the metrics that triggered it, kept with the decision as evidence.

        Returns:
            The ``rolled_back`` decision, or ``rollback_failed`` when the registry has no previous version (then
            recorded in the state, so the rollback is not retried within the window).
        """
        context = self.context
        bad = context.service.live_version
        ended = state.ended()
        try:
            change = context.registry.rollback(reason=reason)
        except RegistryError as err:
            ended.refused_rollback = RefusedRollback(bad, context.clock(), f"{reason}; {err}")
            decision = context.record(Action.ROLLBACK_FAILED, bad, f"{reason}; {err}", metrics)
            context.store.save(ended)
            context.alert(f"Rollback of {bad} failed", f"{reason}. The registry refused: {err}", "critical")
            return decision
        context.service.swap(change.to_version)
        ended.went_live(change.to_version, context.clock())
        context.unload_quietly(bad)
        decision = context.record(Action.ROLLED_BACK, bad, f"{reason}; now serving {change.to_version}", metrics)
        context.store.save(ended)
        context.alert(f"Rolled back {bad} → {change.to_version}", reason, "critical")
        return decision
