"""The canary strategy: a growing share of traffic to the candidate, gated stage by stage.

    requested → canary 5 % → 10 % → 25 % → 50 % → 100 % → promoted     (or rolled_back at the first failed stage)

Each stage lasts `stage_seconds` and needs `CanaryGates.min_requests` canary requests. Before a stage ends only the
error gate may cut it short; latency (model latency at comparable batch size, `compare_model_latency`) is judged over
the whole stage. A stage short of requests after `max_stage_extension` stage lengths rolls back rather than promote on
no evidence. Passing 100 % promotes the canary in the registry.

The traffic split is a function of the saved state (`canary_split`), so nothing about it is remembered in memory:
a restarted process installs the same split again, and any split of this shape on a service whose saved state runs
no canary is stale (withdrawn from another process) and is dropped by the rollback watch (`is_canary_split`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeGuard

from clf.deploy.context import RolloutContext
from clf.deploy.gates import CanaryGates, GateResult, GateVerdict, evaluate_gates
from clf.deploy.state import Action, Decision, DeploymentState, Phase, check_stages
from clf.registry import RegistryError
from clf.serving.errors import ModelLoadError
from clf.serving.routing import TrafficRule, WeightedSplit

CANARY_ARM = "canary"
"""The arm reported for requests the canary answers (the others are ``production``)."""


def canary_split(state: DeploymentState) -> WeightedSplit:
    """The traffic split of the canary stage `state` is at.

    Args:
        state: a saved state in phase ``canary``.

    Returns:
        The stage's share to the candidate, the rest to the baseline; users placed by a salt of the candidate's name,
        so a user stays on one side from stage to stage and in every process.

    Raises:
        ValueError: when `state` names no candidate, baseline or stage.
    """
    if state.candidate is None or state.baseline is None or state.stage is None:
        raise ValueError(f"no canary stage in {state}")
    return WeightedSplit(
        state.baseline,
        state.candidate,
        state.stage / 100,
        salt=f"canary-{state.candidate}",
        control_arm="production",
        treatment_arm=CANARY_ARM,
    )


def is_canary_split(rule: TrafficRule) -> TypeGuard[WeightedSplit]:
    """Whether `rule` is a split `canary_split` makes (an A/B experiment's is not).

    Args:
        rule: a service's traffic rule.

    Returns:
        True for a canary split.
    """
    return (
        isinstance(rule, WeightedSplit)
        and rule.treatment_arm == CANARY_ARM
        and rule.experiment is None
        and rule.salt == f"canary-{rule.treatment}"
    )


def drop_canary_split(context: RolloutContext) -> None:
    """Drops a canary split from the service (the state runs no canary any more) and unloads its candidate.

    Args:
        context: the service and its helpers.
    """
    service = context.service
    rule = service.traffic_rule
    if is_canary_split(rule):
        service.set_traffic_rule(None)
        if rule.treatment != service.live_version:
            context.unload_quietly(rule.treatment)


class CanaryRollout:
    """Carries out canary rollouts; see the module docstring.

    Args:
        context: the service, registry, store, alerts and clock.
        gates: the stage gates.
        max_stage_extension: a stage still short of canary requests after this many stage lengths rolls back.

    Raises:
        ValueError: when `max_stage_extension` is below 1.
    """

    def __init__(self, context: RolloutContext, gates: CanaryGates, max_stage_extension: float = 3.0) -> None:
        if max_stage_extension < 1:
            raise ValueError(f"max_stage_extension must be at least 1, got {max_stage_extension}")
        self.context = context
        self.gates = gates
        self.max_stage_extension = max_stage_extension

    def start(self, state: DeploymentState) -> list[Decision]:
        """Starts a requested canary; one whose version does not load is withdrawn (retrying it would fail alike).

        Args:
            state: the saved state, a ``requested`` canary.

        Returns:
            The ``stage_started`` decision, or ``rolled_back`` when the canary does not load.
        """
        assert state.candidate is not None
        try:
            return [self.begin(state, state.candidate, state.stages, state.stage_seconds)]
        except (ModelLoadError, RegistryError, OSError) as err:
            return [self.context.withdraw(state, f"canary {state.candidate} does not load: {err}")]

    def begin(self, state: DeploymentState, version: str, stages: Sequence[int], stage_seconds: float) -> Decision:
        """Loads `version` and sends it the first stage's share of traffic.

        Args:
            state: the saved state the canary replaces (what the rollback watch remembers is kept).
            version: the registered version to roll out.
            stages: traffic percentages, increasing and ending at 100.
            stage_seconds: how long each stage is watched before the next.

        Returns:
            The decision that starts the first stage.

        Raises:
            DeploymentError: for stages that are not increasing percentages ending at 100.
        """
        stages = check_stages(stages)
        service = self.context.service
        service.load(version)
        state = replace(
            state.ended(),
            phase=Phase.CANARY,
            strategy="canary",
            candidate=version,
            baseline=service.live_version,
            stages=stages,
            stage_index=0,
            stage_started_at=self.context.clock(),
            stage_seconds=stage_seconds,
        )
        service.set_traffic_rule(canary_split(state))
        self.context.store.save(state)
        reason = f"{stages[0]} % of traffic, {stage_seconds:.0f} s"
        return self.context.record(Action.STAGE_STARTED, version, reason, stage=stages[0])

    def step(self, state: DeploymentState) -> list[Decision]:
        """Judges the current stage: fails it, waits, or passes it (starting the next stage or promoting).

        Args:
            state: the saved state, in phase ``canary``.

        Returns:
            The decisions taken: none while the stage runs, ``stage_passed`` and ``stage_started`` or ``promoted``,
            or ``rolled_back``.
        """
        assert state.candidate is not None and state.baseline is not None
        context = self.context
        result, elapsed, yardstick = self.judge(state)
        canary, production = result.canary, result.live_production
        evidence = {state.candidate: canary, state.baseline: production}
        if result.verdict == GateVerdict.FAIL:
            return [self.context.withdraw(state, f"stage {state.stage} %: " + "; ".join(result.reasons), evidence)]
        if elapsed < state.stage_seconds:
            return []
        if result.verdict == GateVerdict.WAIT:
            if elapsed >= state.stage_seconds * self.max_stage_extension:
                reason = f"stage {state.stage} %: only {result.reasons[0]} after {elapsed:.0f} s"
                return [self.context.withdraw(state, reason, evidence)]
            return []
        if yardstick is not None:
            state.baseline_metrics = yardstick
        decisions = [context.record(Action.STAGE_PASSED, state.candidate, result.summary(), evidence, state.stage)]
        if state.stage_index + 1 == len(state.stages):
            return decisions + [self._promote(state, evidence)]
        state.stage_index += 1
        state.stage_started_at = context.clock()
        context.service.set_traffic_rule(canary_split(state))
        context.store.save(state)
        reason = f"{state.stage} % of traffic, {state.stage_seconds:.0f} s"
        return decisions + [context.record(Action.STAGE_STARTED, state.candidate, reason, stage=state.stage)]

    def judge(self, state: DeploymentState) -> tuple[GateResult, float, dict[str, Any] | None]:
        """The current stage's gates as they stand, deciding nothing (`step` acts on it; the dashboard shows it).

        Args:
            state: the saved state, in phase ``canary``.

        Returns:
            The gate result (its `production` is the yardstick judged against: production over the stage once it has
            enough requests, else its last stage's numbers), the seconds the stage has run, and production's numbers
            over the stage when they are enough to be the next yardstick (else None).
        """
        assert state.candidate is not None and state.baseline is not None
        context = self.context
        elapsed = context.clock() - (state.stage_started_at or context.clock())
        window = elapsed / 60
        canary, production = context.metrics(state.candidate, window), context.metrics(state.baseline, window)
        yardstick = production if int(production.get("total") or 0) >= self.gates.min_requests else None
        reference = yardstick or state.baseline_metrics or production
        # Before the stage ends only errors may cut it short: a p95 over the stage's first few dozen requests is
        # their third-slowest, noise on a busy machine. Latency is judged over the whole stage.
        gates = self.gates if elapsed >= state.stage_seconds else replace(self.gates, max_p95_ratio=math.inf)
        result = evaluate_gates(canary, reference, gates)
        return replace(result, live_production=production), elapsed, yardstick

    def resume(self, state: DeploymentState, why: str = "service restarted") -> Decision:
        """After a restart: loads the canary again, installs its stage's split and starts the stage's clock again
        (the interrupted stage's metrics were in the old process's memory).

        Args:
            state: the saved state, in phase ``canary``.
            why: what made it resume, for the decision's reason.

        Returns:
            The ``resumed`` decision, or ``rolled_back`` when the canary no longer loads.
        """
        assert state.candidate is not None
        try:
            self.context.service.load(state.candidate)
        except (ModelLoadError, RegistryError, OSError) as err:
            return self.context.withdraw(state, f"could not reload canary {state.candidate} after a restart: {err}")
        self.context.service.set_traffic_rule(canary_split(state))
        state.stage_started_at = self.context.clock()
        self.context.store.save(state)
        reason = f"{why}; stage {state.stage} % starts its clock again"
        return self.context.record(Action.RESUMED, state.candidate, reason, stage=state.stage)

    def _promote(self, state: DeploymentState, evidence: dict[str, Any]) -> Decision:
        assert state.candidate is not None
        context = self.context
        context.registry.promote_to_production(state.candidate, reason=f"canary passed stages {state.stages}")
        context.service.swap(state.candidate)
        ended = state.ended()
        ended.went_live(state.candidate, context.clock())
        if state.baseline and state.baseline != state.candidate:
            context.unload_quietly(state.baseline)
        # The decision before the idle state: whoever sees the rollout end (clf deploy --wait-seconds) sees why.
        decision = context.record(Action.PROMOTED, state.candidate, f"passed stages {state.stages}", evidence)
        context.store.save(ended)
        context.alert(f"{state.candidate} promoted", f"canary passed every stage {state.stages}", "info")
        return decision
