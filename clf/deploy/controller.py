"""DeploymentController: blue-green and canary rollouts on a running service, with automatic rollback.

The controller lives in the serving process and is advanced by `tick()` (``clf serve`` calls it every few
seconds). Requests come from anywhere that shares the registry folder — ``clf deploy canary --version v1.3.0``
writes one into the persisted state (`request_deployment`), the serving process picks it up:

    blue-green   REQUESTED → load green beside blue, warm it, check its health → switch all traffic at once
                 (registry promote) → WATCHING for watch_seconds: degraded error rate or latency → roll back
    canary       REQUESTED → CANARY at 5 % → 10 % → 25 % → 50 % → 100 %: each stage lasts stage_seconds and needs
                 min_requests canary requests; a failed gate rolls back at once; passing 100 % promotes
    idle         the rollback monitor: production above 10 % model errors (client errors, shed load and timeouts
                 are never errors; model latency only with --rollback-on-latency) → registry rollback, switch,
                 alert; and the service follows the registry (a `clf registry promote` or `clf deploy rollback`
                 from another shell takes effect on the next tick)

Every decision is appended to the decision log with its reason and the metrics behind it. On restart the
controller resumes what the state says: a canary continues at its recorded stage, whose clock starts again (the
metrics of the interrupted stage were in the old process's memory); a blue-green watch starts its window again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from clf.deploy.gates import (
    CanaryGates,
    GateVerdict,
    RollbackThresholds,
    evaluate_gates,
    production_breaches,
)
from clf.deploy.state import (
    DEFAULT_STAGES,
    Action,
    Decision,
    DeploymentState,
    DeploymentStore,
    Phase,
    check_stages,
)
from clf.monitoring.health import HealthReport, check_predictor
from clf.registry import ModelRegistry, RegistryError
from clf.serving.errors import ModelLoadError
from clf.serving.routing import WeightedSplit

if TYPE_CHECKING:
    from clf.monitoring.alerts import AlertManager
    from clf.serving.service import ClassificationService

log = logging.getLogger(__name__)


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
        resume: pick up the persisted rollout now.
    """

    def __init__(
        self,
        service: ClassificationService,
        registry: ModelRegistry | None = None,
        *,
        store: DeploymentStore | None = None,
        alerts: AlertManager | None = None,
        gates: CanaryGates | None = None,
        rollback_thresholds: RollbackThresholds | None = None,
        max_stage_extension: float = 3.0,
        clock: Callable[[], float] = time.time,
        resume: bool = True,
    ) -> None:
        self.service = service
        self.registry = registry or service.registry
        self.store = store or DeploymentStore(self.registry.base_dir)
        self.alerts = alerts
        self.gates = gates or CanaryGates()
        self.rollback_thresholds = rollback_thresholds or RollbackThresholds()
        self.max_stage_extension = max_stage_extension
        self.clock = clock
        self._live_since = clock()
        self._canary_rule: WeightedSplit | None = None  # the split this controller installed, if any
        self._failed_rollback: tuple[str, float] | None = None  # (version, when) of the last refused rollback
        if resume:
            self.resume()

    # ----------------------------------------------------------------------------------------------- stepping

    def tick(self) -> list[Decision]:
        """Advances the persisted rollout by one step; when idle, follows the registry and watches production.

        Returns:
            The decisions taken in this step.
        """
        with self.store.locked():
            state = self.store.load()
            if state.phase == Phase.REQUESTED:
                return self._start(state)
            if state.phase == Phase.CANARY:
                return self._step_canary(state)
            if state.phase == Phase.WATCHING:
                decision = self.detect_issues()
                return [decision] if decision else []
            return self._follow_registry() + self._watch_production()

    def resume(self) -> Decision | None:
        """Re-applies a rollout found in the persisted state (after a restart); see the module docstring.

        Returns:
            The ``resumed`` decision (or the abort decision when a canary cannot be reloaded); None when no canary or
            watch was in progress.
        """
        with self.store.locked():
            state = self.store.load()
            if state.phase not in (Phase.CANARY, Phase.WATCHING):
                return None
            if state.phase == Phase.CANARY:
                try:
                    self.service.load(state.candidate)
                except (ModelLoadError, RegistryError, OSError) as err:
                    return self._abort(state, f"could not reload canary {state.candidate} after a restart: {err}")
                self._apply_stage(state)
            state.stage_started_at = self.clock()
            self.store.save(state)
            where = f"stage {state.stage} %" if state.phase == Phase.CANARY else "the blue-green watch"
            return self._record(
                Action.RESUMED, state.candidate, f"service restarted; {where} starts its clock again", stage=state.stage
            )

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
        self.service.load(version)
        return self._record(Action.GREEN_LOADED, version, f"loaded beside {self.service.live_version}")

    def health_check(self, version: str | None = None, latency_threshold_ms: float = 500.0) -> HealthReport:
        """The health of a loaded version (the live one by default): files intact, inference works and is fast.

        Args:
            version: a loaded version; None for the live one.
            latency_threshold_ms: the latency check fails when one classification takes longer than this.

        Returns:
            The report, healthy only when every check passed.
        """
        version = version or self.service.live_version
        return HealthReport(check_predictor(self.service.predictor(version), latency_threshold_ms), version)

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
            baseline = self.service.live_version
            baseline_metrics = self._metrics(baseline, self.rollback_thresholds.window_minutes)
            self.registry.promote_to_production(version, reason=f"blue-green switch from {baseline}")
            self.service.swap(version)
            self._live_since = self.clock()
            state = DeploymentState(
                phase=Phase.WATCHING,
                strategy="blue_green",
                candidate=version,
                baseline=baseline,
                stage_started_at=self.clock(),
                watch_seconds=watch_seconds,
                baseline_metrics=baseline_metrics,
            )
            self.store.save(state)
            return self._record(
                Action.SWITCHED, version, f"all traffic moved from {baseline}", {baseline: baseline_metrics}
            )

    def detect_issues(self) -> Decision | None:
        """During a blue-green watch: rolls back if green degrades against blue's last metrics, ends the watch when
        its time is up.

        Returns:
            The decision taken (rollback or watch passed), or None while the watch goes on.
        """
        with self.store.locked():
            state = self.store.load()
            if state.phase != Phase.WATCHING or state.candidate is None:
                return None
            elapsed = self.clock() - (state.stage_started_at or self.clock())
            green = self._metrics(state.candidate, elapsed / 60)
            result = evaluate_gates(green, state.baseline_metrics, self.gates)
            breaches = production_breaches(green, self.rollback_thresholds)
            if (result.verdict == GateVerdict.FAIL and state.baseline_metrics.get("total")) or breaches:
                reasons = result.reasons if result.verdict == GateVerdict.FAIL else []
                return self.rollback("; ".join(reasons + breaches), {state.candidate: green})
            if elapsed >= state.watch_seconds:
                if state.baseline and state.baseline != state.candidate:
                    self._unload_quietly(state.baseline)
                self.store.save(DeploymentState())
                return self._record(
                    Action.WATCH_PASSED,
                    state.candidate,
                    f"{elapsed:.0f} s without degradation",
                    {state.candidate: green},
                )
            return None

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
        stages = check_stages(stages)
        with self.store.locked():
            self.service.load(version)
            state = DeploymentState(
                phase=Phase.CANARY,
                strategy="canary",
                candidate=version,
                baseline=self.service.live_version,
                stages=stages,
                stage_index=0,
                stage_started_at=self.clock(),
                stage_seconds=stage_seconds,
            )
            self._apply_stage(state)
            self.store.save(state)
            return self._record(
                Action.STAGE_STARTED, version, f"{stages[0]} % of traffic, {stage_seconds:.0f} s", stage=stages[0]
            )

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
                if decision.action in (Action.PROMOTED, Action.ROLLED_BACK, Action.ROLLBACK_FAILED):
                    return decision

    # ------------------------------------------------------------------------------------------------ rollback

    def rollback(self, reason: str, metrics: dict[str, Any] | None = None) -> Decision:
        """Abandons the rollout in progress, or rolls production back to its previous version; alerts either way.

        A canary is simply withdrawn (production never changed). After a blue-green switch, or when idle, the
        registry rolls back and the service switches to the version it names.

        Args:
            reason: why, recorded in the decision, the registry's audit log and the alert.
            metrics: the metrics that triggered the rollback, kept with the decision as evidence.

        Returns:
            The ``rolled_back`` decision, or ``rollback_failed`` when the registry has no previous version.
        """
        with self.store.locked():
            state = self.store.load()
            if state.phase in (Phase.CANARY, Phase.REQUESTED):
                return self._abort(state, reason, metrics)
            bad = self.service.live_version
            try:
                change = self.registry.rollback(reason=reason)
            except RegistryError as err:
                self._failed_rollback = (bad, self.clock())
                self._alert(f"Rollback of {bad} failed", f"{reason}. The registry refused: {err}", "critical")
                self.store.save(DeploymentState())
                return self._record(Action.ROLLBACK_FAILED, bad, f"{reason}; {err}", metrics or {})
            self.service.swap(change.to_version)
            self._live_since = self.clock()
            self._unload_quietly(bad)
            self.store.save(DeploymentState())
            self._alert(f"Rolled back {bad} → {change.to_version}", reason, "critical")
            return self._record(Action.ROLLED_BACK, bad, f"{reason}; now serving {change.to_version}", metrics or {})

    # ----------------------------------------------------------------------------------------------- internals

    def _start(self, state: DeploymentState) -> list[Decision]:
        version = state.candidate
        assert version is not None
        if state.strategy == "canary":
            try:
                return [self.start_canary(version, state.stages, state.stage_seconds)]
            except (ModelLoadError, RegistryError, OSError) as err:
                # Left in REQUESTED, every later tick would fail the same way.
                return [self._abort(state, f"canary {version} does not load: {err}")]
        try:
            decisions = [self.deploy_green(version)]
        except (ModelLoadError, RegistryError, OSError) as err:
            return [self._reject_green(version, f"does not load: {err}")]
        report = self.health_check(version)
        if not report.healthy:
            failed = {name: check.detail for name, check in report.checks.items() if not check.ok}
            return decisions + [self._reject_green(version, f"failed its health check: {failed}")]
        return decisions + [self.switch_to_green(version, state.watch_seconds)]

    def _reject_green(self, version: str, reason: str) -> Decision:
        self._unload_quietly(version)
        self.store.save(DeploymentState())
        self._alert(f"Blue-green deployment of {version} rejected", reason, "warning")
        return self._record(Action.GREEN_REJECTED, version, reason)

    def _step_canary(self, state: DeploymentState) -> list[Decision]:
        assert state.candidate is not None and state.baseline is not None
        elapsed = self.clock() - (state.stage_started_at or self.clock())
        window = elapsed / 60
        canary, production = self._metrics(state.candidate, window), self._metrics(state.baseline, window)
        yardstick = production if int(production.get("total") or 0) >= self.gates.min_requests else None
        reference = yardstick or state.baseline_metrics or production
        # Before the stage ends only errors may cut it short: a p95 over the stage's first few dozen requests is
        # their third-slowest, noise on a busy machine. Latency is judged over the whole stage.
        gates = self.gates if elapsed >= state.stage_seconds else replace(self.gates, max_p95_ratio=math.inf)
        result = evaluate_gates(canary, reference, gates)
        evidence = {state.candidate: canary, state.baseline: production}
        if result.verdict == GateVerdict.FAIL:
            return [self._abort(state, f"stage {state.stage} %: " + "; ".join(result.reasons), evidence)]
        if elapsed < state.stage_seconds:
            return []
        if result.verdict == GateVerdict.WAIT:
            if elapsed >= state.stage_seconds * self.max_stage_extension:
                reason = f"stage {state.stage} %: only {result.reasons[0]} after {elapsed:.0f} s"
                return [self._abort(state, reason, evidence)]
            return []
        if yardstick is not None:
            state.baseline_metrics = yardstick
        decisions = [self._record(Action.STAGE_PASSED, state.candidate, result.summary(), evidence, state.stage)]
        if state.stage_index + 1 == len(state.stages):
            return decisions + [self._promote_canary(state, evidence)]
        state.stage_index += 1
        state.stage_started_at = self.clock()
        self._apply_stage(state)
        self.store.save(state)
        reason = f"{state.stage} % of traffic, {state.stage_seconds:.0f} s"
        return decisions + [self._record(Action.STAGE_STARTED, state.candidate, reason, stage=state.stage)]

    def _promote_canary(self, state: DeploymentState, evidence: dict[str, Any]) -> Decision:
        assert state.candidate is not None
        self.registry.promote_to_production(state.candidate, reason=f"canary passed stages {state.stages}")
        self.service.swap(state.candidate)
        self._canary_rule = None
        self._live_since = self.clock()
        if state.baseline and state.baseline != state.candidate:
            self._unload_quietly(state.baseline)
        # The decision before the idle state: whoever sees the rollout end (clf deploy --wait-seconds) sees why.
        decision = self._record(Action.PROMOTED, state.candidate, f"passed stages {state.stages}", evidence)
        self.store.save(DeploymentState())
        self._alert(f"{state.candidate} promoted", f"canary passed every stage {state.stages}", "info")
        return decision

    def _abort(self, state: DeploymentState, reason: str, metrics: dict[str, Any] | None = None) -> Decision:
        """Withdraws a canary (or a not yet started rollout): all traffic back to the live version."""
        self.service.set_traffic_rule(None)
        self._canary_rule = None
        if state.candidate and state.candidate != self.service.live_version:
            self._unload_quietly(state.candidate)
        decision = self._record(Action.ROLLED_BACK, state.candidate, reason, metrics or {}, state.stage)
        self.store.save(DeploymentState())
        self._alert(f"Rolled back canary {state.candidate}", reason, "critical")
        return decision

    def _apply_stage(self, state: DeploymentState) -> None:
        assert state.candidate is not None and state.baseline is not None
        share = state.stages[state.stage_index] / 100
        self._canary_rule = WeightedSplit(
            state.baseline,
            state.candidate,
            share,
            salt=f"canary-{state.candidate}",
            control_arm="production",
            treatment_arm="canary",
        )
        self.service.set_traffic_rule(self._canary_rule)

    def _follow_registry(self) -> list[Decision]:
        """Idle: serve what the registry names; drop a canary split another process withdrew.

        Traffic rules this controller did not install (an A/B experiment's) are left alone.
        """
        decisions = []
        production = self.registry.production_version()
        live = self.service.live_version
        if production is not None and production != live:
            self.service.swap(production)
            self._live_since = self.clock()
            self._unload_quietly(live)
            decisions.append(self._record(Action.FOLLOWED_REGISTRY, production, f"registry production was {live}"))
        rule = self._canary_rule
        if rule is not None:  # a canary withdrawn from another process (clf deploy rollback)
            self._canary_rule = None
            if self.service.traffic_rule is rule:
                self.service.set_traffic_rule(None)
            if rule.treatment != self.service.live_version:
                self._unload_quietly(rule.treatment)
        return decisions

    def _watch_production(self) -> list[Decision]:
        """The rollback monitor: production breaching the thresholds is rolled back."""
        live = self.service.live_version
        window = min(self.rollback_thresholds.window_minutes, (self.clock() - self._live_since) / 60)
        metrics = self._metrics(live, window)
        breaches = production_breaches(metrics, self.rollback_thresholds)
        if not breaches or self.registry.production_version() != live:
            return []
        if self._failed_rollback is not None:
            version, when = self._failed_rollback
            if version == live and self.clock() - when < self.rollback_thresholds.window_minutes * 60:
                return []  # nothing to roll back to: one alert per window, not one per tick
        return [self.rollback(f"production {live}: " + "; ".join(breaches), {live: metrics})]

    def _metrics(self, version: str, window_minutes: float) -> dict[str, Any]:
        monitor = self.service.monitor
        window = min(max(window_minutes, 1e-6), monitor.max_window_minutes)
        metrics = monitor.get_metrics(window)
        return metrics["by_version"].get(version) or {"total": 0}

    def _unload_quietly(self, version: str) -> None:
        try:
            self.service.unload(version)
        except ValueError:
            log.info("%s still receives traffic; kept loaded", version)

    def _alert(self, title: str, message: str, level: str) -> None:
        log.warning("%s: %s", title, message)
        if self.alerts is not None:
            self.alerts.send(title, message, level)

    def _record(
        self,
        action: Action,
        version: str | None,
        reason: str,
        metrics: dict[str, Any] | None = None,
        stage: int | None = None,
    ) -> Decision:
        decision = Decision(action, version, reason, metrics or {}, stage, self.clock())
        log.info("deployment: %s %s (%s)", action, version, reason)
        return self.store.record(decision)
