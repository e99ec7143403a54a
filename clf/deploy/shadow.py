"""The shadow strategy: a candidate sees a share of live requests off the response path and is judged on them.

    requested → shadow (share S of production's answered requests mirrored) → shadow_passed | shadow_failed → idle

Production answers every request; the candidate's answers are recorded, never returned (`clf.serving.shadow`). The
lease holder judges the stage at each tick with `clf.monitoring.shadow.judge_shadow` over the whole fleet's paired
answers — its own mirror's, and each follower's as published in its heartbeat (`Replica.publish`). The stage lasts
at least `stage_seconds`; only errors may end it sooner (failed). Once it has run its time: passed or failed as the
judge says, or failed when there are still too few paired answers after `max_stage_extension` stage lengths.

Accuracy is judged where delayed labels arrived: each pair keeps the arXiv id its request sent, and at each judgement
the strategy asks its label source (`TrueLabels`, injected: ``clf serve`` passes the quality log's
`QualityLog.true_labels` with ``--quality.db``) for those ids' true labels. Without a source, or without enough
labelled pairs, accuracy reads "not judged" in the verdict; a source that fails is logged and judged as no labels.

Either way the candidate is unloaded and production is untouched; the verdict is kept in the saved state
(`DeploymentState.shadow_results`), where ``clf deploy canary`` of that version reads it: a failed shadow refuses the
canary (unless ``--force true``), a passed one lets it start as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from clf.deploy.context import RolloutContext
from clf.deploy.state import Action, Decision, DeploymentState, Phase
from clf.monitoring.shadow import ShadowCriteria, ShadowObservations, ShadowVerdict, judge_shadow
from clf.registry import RegistryError
from clf.serving.errors import ModelLoadError
from clf.serving.shadow import shadow_observations

if TYPE_CHECKING:
    from clf.deploy.fleet import Replica

log = logging.getLogger("clf.deploy")

START_SLACK_SECONDS = 30.0
"""A follower's mirror counts for a stage when it started at most this long before the stage (clocks of hosts)."""

TrueLabels = Callable[[Sequence[str]], Mapping[str, str]]
"""A label source: the true labels that arrived for some papers, by arXiv id (ids without one left out)."""


class ShadowRollout:
    """Carries out shadow stages; see the module docstring.

    Args:
        context: the service, registry, store, alerts and clock.
        replica: this process as a member of a fleet (the followers' mirrors are read from its store); None alone.
        max_stage_extension: a stage still short of paired answers after this many stage lengths fails.
        labels: where the pairs' true labels are read, by arXiv id; None: accuracy is not judged.

    Raises:
        ValueError: when `max_stage_extension` is below 1.
    """

    def __init__(
        self,
        context: RolloutContext,
        replica: Replica | None = None,
        max_stage_extension: float = 3.0,
        labels: TrueLabels | None = None,
    ):
        if max_stage_extension < 1:
            raise ValueError(f"max_stage_extension must be at least 1, got {max_stage_extension}")
        self.context = context
        self.replica = replica
        self.max_stage_extension = max_stage_extension
        self.labels = labels

    def start(self, state: DeploymentState) -> list[Decision]:
        """Starts a requested shadow stage; a candidate that does not load fails it at once.

        Args:
            state: the saved state, a ``requested`` shadow.

        Returns:
            The ``shadow_started`` decision, or ``shadow_failed`` when the candidate does not load.
        """
        assert state.candidate is not None and state.shadow_share is not None
        context = self.context
        state = replace(
            state,
            phase=Phase.SHADOW,
            baseline=context.service.live_version,
            stage_started_at=context.clock(),
        )
        failed = self._mirror(state, "does not load as a shadow")
        if failed is not None:
            return [self._end(state, failed)]
        context.store.save(state)
        reason = f"{state.shadow_share:.0%} of the requests production answers, at least {state.stage_seconds:.0f} s"
        return [context.record(Action.SHADOW_STARTED, state.candidate, reason)]

    def step(self, state: DeploymentState) -> list[Decision]:
        """Judges the stage: ends it passed or failed, or waits.

        Args:
            state: the saved state, in phase ``shadow``.

        Returns:
            None while the stage runs; ``shadow_passed`` or ``shadow_failed`` when it ends.
        """
        context = self.context
        if context.service.shadow is None:  # lost by a restart that did not resume: mirror again
            failed = self._mirror(state, "no longer loads as a shadow")
            if failed is not None:
                return [self._end(state, failed)]
        verdict, elapsed = self.judge(state)
        criteria = ShadowCriteria.from_json(state.shadow_criteria)
        erring = verdict.status == "failed" and verdict.numbers.get("error_rate", 0.0) > criteria.max_error_rate
        if erring or (elapsed >= state.stage_seconds and verdict.status != "pending"):
            return [self._end(state, verdict)]
        if elapsed >= state.stage_seconds * self.max_stage_extension:
            reasons = (f"too few paired answers after {elapsed:.0f} s: {verdict.reasons[0]}",)
            return [self._end(state, replace(verdict, status="failed", reasons=reasons))]
        return []

    def judge(self, state: DeploymentState) -> tuple[ShadowVerdict, float]:
        """The verdict as it stands over the fleet's paired answers, deciding nothing (`step` acts on it).

        Args:
            state: the saved state, in phase ``shadow``.

        Returns:
            The verdict and the seconds the stage has run.
        """
        started = state.stage_started_at or self.context.clock()
        elapsed = self.context.clock() - started
        snapshots = self.snapshots(state.candidate or "", started)
        observations, unread = self.labelled(shadow_observations(snapshots))
        verdict = judge_shadow(observations, ShadowCriteria.from_json(state.shadow_criteria))
        verdict.numbers["replicas"] = len(snapshots)
        if unread is not None:
            verdict = replace(verdict, reasons=(*verdict.reasons, unread))
        return verdict, elapsed

    def labelled(self, observations: ShadowObservations) -> tuple[ShadowObservations, str | None]:
        """The observations with the true labels the label source has for their papers.

        Args:
            observations: the fleet's pairs, each with its arXiv id where the request sent one.

        Returns:
            The observations (unchanged without a source or ids), and None, or why the labels could not be read.
        """
        ids = sorted({arxiv_id for arxiv_id in observations.arxiv_ids or () if arxiv_id})
        if self.labels is None or not ids:
            return observations, None
        try:
            labels = self.labels(ids)
        except Exception as err:  # a label store that is down must not stop the stage: accuracy is not judged
            log.warning("could not read the true labels of %d shadow papers: %s", len(ids), err)
            return observations, f"true labels could not be read ({type(err).__name__}: {err}): accuracy not judged"
        return observations.with_true_labels(labels), None

    def snapshots(self, version: str, since: float) -> list[dict[str, Any]]:
        """The mirrors of `version` of every replica that counts for a stage started at `since`.

        Args:
            version: the shadow candidate.
            since: when the stage started, epoch seconds.

        Returns:
            This process's mirror's snapshot, fresh, and each other replica's as it last published it.
        """
        mirror = self.context.service.shadow
        own = [mirror.snapshot()] if mirror is not None and mirror.version == version else []
        if self.replica is None:
            return own
        others = []
        for record in self.replica.store.replicas():
            if record.id == self.replica.id or record.heartbeat_at < since or not record.snapshots:
                continue
            shadow = record.snapshots[-1].get("shadow")
            if shadow and shadow.get("version") == version and shadow["started_at"] >= since - START_SLACK_SECONDS:
                others.append(shadow)
        return own + others

    def resume(self, state: DeploymentState, why: str = "service restarted") -> Decision:
        """After a restart or a lease take-over: mirrors again; the stage's clock runs on (the followers' paired
        answers are in their heartbeats, not in the lost process).

        Args:
            state: the saved state, in phase ``shadow``.
            why: what made it resume, for the decision's reason.

        Returns:
            The ``resumed`` decision, or ``shadow_failed`` when the candidate no longer loads.
        """
        failed = self._mirror(state, "no longer loads as a shadow")
        if failed is not None:
            return self._end(state, failed)
        return self.context.record(Action.RESUMED, state.candidate, f"{why}; shadow stage goes on")

    def withdraw(self, state: DeploymentState, reason: str) -> Decision:
        """Ends the stage without a verdict (``clf deploy rollback``): the mirror stops, production never changed.

        Args:
            state: the saved state, in phase ``shadow`` (or a requested shadow).
            reason: why.

        Returns:
            The ``rolled_back`` decision.
        """
        self.context.service.stop_shadow()
        decision = self.context.record(Action.ROLLED_BACK, state.candidate, f"{reason}; shadow withdrawn")
        self.context.store.save(state.ended())
        return decision

    def _mirror(self, state: DeploymentState, failing: str) -> ShadowVerdict | None:
        """Mirrors the saved stage's candidate on this replica; a failed verdict saying why when it does not load."""
        assert state.candidate is not None and state.shadow_share is not None
        try:
            self.context.service.start_shadow(state.candidate, state.shadow_share)
        except (ModelLoadError, RegistryError, OSError, ValueError) as err:
            return ShadowVerdict("failed", (f"{state.candidate} {failing}: {err}",), {})
        return None

    def _end(self, state: DeploymentState, verdict: ShadowVerdict) -> Decision:
        assert state.candidate is not None
        context = self.context
        context.service.stop_shadow()
        ended = state.ended()
        ended.shadow_results[state.candidate] = {
            **verdict.to_json(),
            "at": context.clock(),
            "share": state.shadow_share,
        }
        action = Action.SHADOW_PASSED if verdict.passed else Action.SHADOW_FAILED
        decision = context.record(action, state.candidate, "; ".join(verdict.reasons), {"shadow": verdict.to_json()})
        context.store.save(ended)
        level = "info" if verdict.passed else "warning"
        context.alert(f"Shadow of {state.candidate} {verdict.status}", "; ".join(verdict.reasons), level)
        return decision
