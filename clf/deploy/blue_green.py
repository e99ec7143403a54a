"""The blue-green strategy: load the candidate (green) beside the live version (blue), switch all traffic at once,
then watch it.

    requested → load green → warm it → health check → switch (registry promote) → watching → idle

An unhealthy green is unloaded and never takes traffic (``green_rejected``). After the switch blue stays loaded for
`watch_seconds`, so a rollback is instant. During the watch green is judged against blue's metrics of the window
before the switch with the canary gates (model errors; model latency at comparable batch size), and by the rollback
watch's own thresholds; a breach rolls the registry back (``rolled_back``), a quiet watch unloads blue
(``watch_passed``, saying which latency it judged).

Everything the watch needs (when it started, blue's metrics) is in the saved state; a restarted process starts the
watch window again, since the metrics of green's first minutes were in the old process's memory.
"""

from __future__ import annotations

from dataclasses import replace

from clf.deploy.context import RolloutContext
from clf.deploy.gates import CanaryGates, GateVerdict, evaluate_gates
from clf.deploy.rollback_watch import RollbackWatch
from clf.deploy.state import Action, Decision, DeploymentState, Phase
from clf.monitoring.health import HealthReport
from clf.registry import RegistryError
from clf.serving.errors import ModelLoadError
from clf.serving.health import check_predictor


class BlueGreenRollout:
    """Carries out blue-green rollouts; see the module docstring.

    Args:
        context: the service, registry, store, alerts and clock.
        gates: green against blue during the watch.
        watch: the rollback watch, whose thresholds green must also keep and which carries out the rollback.
    """

    def __init__(self, context: RolloutContext, gates: CanaryGates, watch: RollbackWatch) -> None:
        self.context = context
        self.gates = gates
        self.watch = watch

    def start(self, state: DeploymentState) -> list[Decision]:
        """Loads, warms and checks the requested green, then switches to it; a green that fails is rejected.

        Args:
            state: the saved state, a ``requested`` blue-green rollout.

        Returns:
            ``green_loaded`` then ``switched``, or ``green_rejected`` (after ``green_loaded`` when it loaded).
        """
        version = state.candidate
        assert version is not None
        try:
            decisions = [self.deploy_green(version)]
        except (ModelLoadError, RegistryError, OSError) as err:
            return [self._reject(state, version, f"does not load: {err}")]
        report = self.health_check(version)
        if not report.healthy:
            failed = {name: check.detail for name, check in report.checks.items() if not check.ok}
            return decisions + [self._reject(state, version, f"failed its health check: {failed}")]
        return decisions + [self.switch(state, version, state.watch_seconds)]

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
        self.context.service.load(version)
        return self.context.record(Action.GREEN_LOADED, version, f"loaded beside {self.context.service.live_version}")

    def health_check(self, version: str | None = None, latency_threshold_ms: float = 500.0) -> HealthReport:
        """The health of a loaded version (the live one by default): files intact, inference works and is fast.

        Args:
            version: a loaded version; None for the live one.
            latency_threshold_ms: the latency check fails when one classification takes longer than this.

        Returns:
            The report, healthy only when every check passed.
        """
        service = self.context.service
        version = version or service.live_version
        return HealthReport(check_predictor(service.predictor(version), latency_threshold_ms), version)

    def switch(self, state: DeploymentState, version: str, watch_seconds: float) -> Decision:
        """Promotes `version` in the registry and moves all traffic to it in one step, then watches it.

        Args:
            state: the saved state the watch replaces (what the rollback watch remembers is kept).
            version: the loaded (green) version to promote.
            watch_seconds: how long green is watched, against blue's last metrics, before blue is unloaded.

        Returns:
            The ``switched`` decision.
        """
        context = self.context
        baseline = context.service.live_version
        baseline_metrics = context.metrics(baseline, self.watch.thresholds.window_minutes)
        context.registry.promote_to_production(version, reason=f"blue-green switch from {baseline}")
        context.service.swap(version)
        watching = replace(
            state.ended(),
            phase=Phase.WATCHING,
            strategy="blue_green",
            candidate=version,
            baseline=baseline,
            stage_started_at=context.clock(),
            watch_seconds=watch_seconds,
            baseline_metrics=baseline_metrics,
        )
        watching.went_live(version, context.clock())
        context.store.save(watching)
        reason = f"all traffic moved from {baseline}"
        return context.record(Action.SWITCHED, version, reason, {baseline: baseline_metrics})

    def step(self, state: DeploymentState) -> list[Decision]:
        """Judges green: rolls back when it degrades against blue or breaches the rollback thresholds, ends the watch
        when its time is up.

        Args:
            state: the saved state, in phase ``watching``.

        Returns:
            ``rolled_back`` (or ``rollback_failed``), ``watch_passed``, or none while the watch goes on.
        """
        if state.candidate is None:
            return []
        context = self.context
        elapsed = context.clock() - (state.stage_started_at or context.clock())
        green = context.metrics(state.candidate, elapsed / 60)
        result = evaluate_gates(green, state.baseline_metrics, self.gates)
        breaches = self.watch.breaches(green)
        if (result.verdict == GateVerdict.FAIL and state.baseline_metrics.get("total")) or breaches:
            reasons = result.reasons if result.verdict == GateVerdict.FAIL else []
            return [self.watch.roll_back(state, "; ".join(reasons + breaches), {state.candidate: green})]
        if elapsed < state.watch_seconds:
            return []
        if state.baseline and state.baseline != state.candidate:
            context.unload_quietly(state.baseline)
        if result.verdict == GateVerdict.PASS:
            judged = result.summary()
        elif result.verdict == GateVerdict.WAIT:
            judged = f"gates not judged: {int(green.get('total') or 0)} of {self.gates.min_requests} requests"
        else:
            judged = "gates not judged: blue answered nothing before the switch"
        reason = f"{elapsed:.0f} s without degradation; {judged}"
        decision = context.record(Action.WATCH_PASSED, state.candidate, reason, {state.candidate: green})
        context.store.save(state.ended())
        return [decision]

    def resume(self, state: DeploymentState, why: str = "service restarted") -> Decision:
        """After a restart: the registry already names green, so the new process serves it; the watch starts again.

        Args:
            state: the saved state, in phase ``watching``.
            why: what made it resume, for the decision's reason.

        Returns:
            The ``resumed`` decision.
        """
        state.stage_started_at = self.context.clock()
        self.context.store.save(state)
        return self.context.record(
            Action.RESUMED, state.candidate, f"{why}; the blue-green watch starts its clock again"
        )

    def _reject(self, state: DeploymentState, version: str, reason: str) -> Decision:
        self.context.unload_quietly(version)
        decision = self.context.record(Action.GREEN_REJECTED, version, reason)
        self.context.store.save(state.ended())
        self.context.alert(f"Blue-green deployment of {version} rejected", reason, "warning")
        return decision
