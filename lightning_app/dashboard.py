"""The service dashboard: ``GET /dashboard`` (a page shipped in the package, no CDN) over ``GET /dashboard/data``.

The page polls the data every two seconds and draws it with uPlot (``static/uPlot.iife.min.js``, MIT, bundled):
the production version and any candidate, the traffic split and the canary's stage with its gates (value against
threshold, time left), per version the requests/s, p50/p95 latency, error rate and the calibrated confidence
distribution, the last decisions and alerts, the running A/B experiment with its interval and p-value, and the
registry's versions with their metrics. The numbers are the fleet's (the gates' metrics source) when the replica
runs rollouts, this process's otherwise.

Read-only by default. The one action, rolling back (``POST /dashboard/rollback``, the same as ``clf deploy
rollback``), needs a bearer token configured on the server (``clf serve --dashboard.token_file`` or
``CLF_DASHBOARD_TOKEN``); without one the page shows no button and the endpoint answers 403.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clf.monitoring.histograms import CONFIDENCE_BUCKETS
from clf.serving.routing import traffic_shares
from lightning_app.tokens import bearer_token, token_matches

if TYPE_CHECKING:
    from clf.deploy.controller import DeploymentController
    from clf.deploy.state import DeploymentState
    from clf.monitoring.alerts import AlertManager
    from clf.serving.quality import QualityWatch
    from clf.serving.service import ClassificationService

log = logging.getLogger("clf.serving.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
"""The page, its script and style, and the bundled uPlot."""
WINDOW_MINUTES = 1.0
"""The window of the per-version numbers (requests/s over the last minute)."""
EXPERIMENT_REFRESH_SECONDS = 30.0
"""How often the running experiment is analysed again (an analysis flushes logs and reads the database)."""


@dataclass
class Dashboard:
    """What the dashboard reads, and who may act on it.

    Attributes:
        service: the running service.
        controller: the deployment controller, when this replica runs rollouts (rollout state, gates, decisions).
        alerts: the alert manager (its recent messages).
        experiment: returns the running experiment's analysis as JSON, or None (the A/B framework's, cached).
        tokens: bearer tokens allowed to act (roll back); empty: read-only.
        quality: the quality watch (drift, out-of-scope share, estimated and measured accuracy per version).
        clock: epoch seconds; a test seam.
    """

    service: ClassificationService
    controller: DeploymentController | None = None
    alerts: AlertManager | None = None
    experiment: Callable[[], dict[str, Any] | None] | None = None
    tokens: Sequence[str] = ()
    quality: QualityWatch | None = None
    clock: Callable[[], float] = field(default=time.time)

    @property
    def can_act(self) -> bool:
        """Whether a token is configured (the rollback button is shown)."""
        return bool(self.tokens) and self.controller is not None

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries one of the tokens.

        Args:
            header: the header's value.

        Returns:
            True for ``Bearer <a configured token>``.
        """
        return token_matches(bearer_token(header), self.tokens)

    def data(self) -> dict[str, Any]:
        """Everything the page shows, as JSON.

        Returns:
            ``replica``, ``at``, ``live_version``, ``loaded_versions``, ``traffic_shares``, ``rollout``, ``gates``,
            ``versions`` (per version over the last minute: ``requests_per_s``, ``total``, ``error_rate``,
            ``latency_p50_ms``, ``latency_p95_ms``, and ``confidence`` bucket counts since start), ``decisions``,
            ``alerts``, ``experiment``, ``quality`` (`QualityWatch.snapshot`), ``registry`` and ``actions``.
        """
        service = self.service
        controller = self.controller
        rule = service.traffic_rule
        versions = sorted(set(service.loaded_versions) | set(rule.versions))
        source = controller.context.source if controller is not None else None
        state = controller.store.load() if controller is not None else None
        confidence = service.metrics.confidence_counts()
        per_version = {}
        for version in versions:
            if source is not None:
                numbers = source.metrics(version, WINDOW_MINUTES)
            else:
                numbers = service.monitor.get_metrics(WINDOW_MINUTES)["by_version"].get(version) or {"total": 0}
            total = int(numbers.get("total") or 0)
            per_version[version] = {
                "total": total,
                "requests_per_s": total / (WINDOW_MINUTES * 60),
                "error_rate": numbers.get("error_rate"),
                "latency_p50_ms": numbers.get("latency_p50_ms"),
                "latency_p95_ms": numbers.get("latency_p95_ms"),
                "replicas": numbers.get("replicas", 1),
                "confidence": confidence.get(version, [0] * (len(CONFIDENCE_BUCKETS) + 1)),
            }
        return {
            "replica": controller.replica_id if controller is not None else None,
            "at": float(self.clock()),
            "live_version": service.live_version,
            "loaded_versions": service.loaded_versions,
            "traffic_shares": traffic_shares(rule),
            "rollout": self._rollout(state),
            "gates": self._gates(state),
            "versions": per_version,
            "confidence_bounds": list(CONFIDENCE_BUCKETS),
            "decisions": controller.store.decisions(10) if controller is not None else [],
            "alerts": list(self.alerts.recent)[-10:] if self.alerts is not None else [],
            "experiment": self.experiment() if self.experiment is not None else None,
            "quality": self.quality.snapshot() if self.quality is not None else None,
            "registry": self._registry(),
            "actions": {"rollback": self.can_act},
        }

    def rollback(self, reason: str) -> dict[str, Any]:
        """Asks for a rollback, as ``clf deploy rollback`` does (the lease holder carries it out).

        Args:
            reason: why, for the audit log and the decision.

        Returns:
            The ``rolled_back`` decision as JSON.

        Raises:
            RuntimeError: when this replica runs no rollouts (it has no store to write the request to).
        """
        from clf.deploy.commands import request_rollback

        if self.controller is None:
            raise RuntimeError(
                "this replica runs no rollouts (--fleet.rollouts false or --service.version): roll back elsewhere"
            )
        return request_rollback(self.controller.registry, reason, self.controller.store).to_json()

    def _rollout(self, state: DeploymentState | None) -> dict[str, Any] | None:
        if self.controller is None or state is None:
            return None
        record = state.to_json()
        started = state.stage_started_at
        elapsed = None if started is None else max(float(self.clock()) - started, 0.0)
        length = state.stage_seconds if state.phase in ("canary", "shadow") else state.watch_seconds
        record.update(
            {
                "stage": state.stage,
                "elapsed_s": elapsed,
                "time_left_s": None if elapsed is None else max(length - elapsed, 0.0),
                "lease": None if (lease := self.controller.store.lease()) is None else lease.holder,
            }
        )
        record.pop("baseline_metrics", None)
        return record

    def _gates(self, state: DeploymentState | None) -> dict[str, Any] | None:
        controller = self.controller
        if controller is None or state is None:
            return None
        if state.phase != "canary" or state.candidate is None or state.baseline is None:
            return None
        result, elapsed, _ = controller.canary.judge(state)
        latency = result.latency
        return {
            "verdict": str(result.verdict),
            "reasons": result.reasons,
            "elapsed_s": elapsed,
            "canary_requests": int(result.canary.get("total") or 0),
            "canary_error_rate": result.canary.get("error_rate"),
            "canary_p95_ms": None if latency is None else latency.canary_ms,
            "production_p95_ms": None if latency is None else latency.production_ms,
            "latency_basis": None if latency is None else latency.basis,
            "limits": result.limits,
        }

    def _registry(self) -> list[dict[str, Any]]:
        try:
            entries = self.service.registry.list_versions()
            production = self.service.registry.production_version()
        except Exception:  # a registry being rewritten: the next poll reads it
            log.debug("registry not readable for the dashboard", exc_info=True)
            return []
        return [
            {
                "version": entry.version,
                "production": entry.version == production,
                "created_at": entry.created_at,
                "metrics": {k: v for k, v in entry.metrics.items() if isinstance(v, int | float)},
            }
            for entry in entries
        ]


def running_experiment(framework: Any, service: ClassificationService) -> dict[str, Any] | None:
    """The analysis of the experiment running on the service's live version (its interval and p-value), as JSON.

    Args:
        framework: the `clf.experiments.ABTestingFramework`.
        service: the running service.

    Returns:
        `ExperimentAnalysis.to_json`, or None when no experiment runs.
    """
    running = framework.running_experiment_for(service.live_version)
    return None if running is None else framework.analyze_experiment(running.id).to_json()


def cached(fetch: Callable[[], dict[str, Any] | None], seconds: float = EXPERIMENT_REFRESH_SECONDS) -> Callable:
    """`fetch` called at most once per `seconds` (its last answer in between; None while it fails).

    Args:
        fetch: the expensive read.
        seconds: how long an answer is kept.

    Returns:
        A function of no arguments.
    """
    kept: dict[str, Any] = {"at": -float("inf"), "value": None}

    def read() -> dict[str, Any] | None:
        now = time.monotonic()
        if now - kept["at"] >= seconds:
            try:
                kept["value"] = fetch()
            except Exception:
                log.warning("the dashboard could not read the experiment", exc_info=True)
                kept["value"] = None
            kept["at"] = now
        return kept["value"]

    return read
