"""`clf deploy`: validate a version, ask the running service for a shadow stage, a blue-green or canary rollout,
roll back, and show the state with its decisions.

Rollouts are carried out by the serving replica holding the rollout lease (`clf serve`), which reads the request
from the state store: the registry's deployment folder, or the SQL database of ``--deployment.state_db``
(``CLF_STATE_DB``).
These commands need only that, and may run from any shell that reaches it. One function per action, each printing
JSON: ``clf deploy canary v1.1.0 --deployment.stages "[10, 50, 100]"``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from clf.deploy.state import (
    DEFAULT_STAGES,
    Action,
    Decision,
    DeploymentError,
    Phase,
    check_stages,
)
from clf.deploy.stores import open_store
from clf.io import print_json
from clf.monitoring.shadow import ShadowCriteria, check_share
from clf.registry import ModelRegistry
from clf.registry.commands import DEFAULT_REGISTRY

Strategy = Literal["blue_green", "canary", "shadow"]


def request_deployment(
    registry: ModelRegistry,
    strategy: Strategy,
    version: str,
    *,
    stages: Sequence[int] = DEFAULT_STAGES,
    stage_seconds: float = 3600.0,
    watch_seconds: float = 600.0,
    store: Any = None,
    share: float = 0.1,
    criteria: ShadowCriteria = ShadowCriteria(),
    force: bool = False,
) -> Decision:
    """Records a rollout request (or a shadow stage) for the serving process to carry out.

    A canary of a version whose last shadow stage failed is refused unless `force`; after a passed shadow, or none,
    it is requested as usual (the decision's reason names a passed shadow).

    Args:
        registry: the registry the service serves from; the request is saved in its deployment state.
        strategy: ``blue_green`` (switch all traffic at once, then watch), ``canary`` (step through `stages`) or
            ``shadow`` (mirror `share` of the requests to it off the response path and judge it by `criteria`).
        version: the registered version to roll out, e.g. ``v1.3.0``.
        stages: canary traffic percentages, increasing and ending at 100.
        stage_seconds: how long each canary stage, or the shadow stage, is watched.
        watch_seconds: how long a blue-green switch is watched before the old version is unloaded.
        store: the deployment state store (`open_store` of the registry by default).
        share: the share of requests a shadow is mirrored, in (0, 1].
        criteria: when a shadow passes.
        force: request a canary even though the version's last shadow failed.

    Returns:
        The ``requested`` decision, as logged.

    Raises:
        DeploymentError: when a rollout is already in progress, `version` is already in production, a shadow share
            is outside (0, 1], or a canary's version failed its shadow (without `force`).
        RegistryError: for an unknown version.
    """
    registry.get_metadata(version)
    if strategy == "shadow":
        _checked_share(share)
    store = store or open_store(registry.base_dir)
    with store.locked():
        state = store.load()
        if state.phase != Phase.IDLE:
            raise DeploymentError(
                f"a {state.strategy} rollout of {state.candidate} is in progress ({state.phase}); wait for it "
                "(clf deploy status) or withdraw it (clf deploy rollback)"
            )
        if registry.production_version() == version:
            raise DeploymentError(f"{version} is already in production")
        shadowed = state.shadow_results.get(version) if strategy == "canary" else None
        if shadowed and shadowed.get("status") == "failed" and not force:
            raise DeploymentError(
                f"{version} failed its shadow stage: {'; '.join(shadowed.get('reasons') or [])}. Run the shadow "
                f"again (clf deploy shadow {version}) or request the canary anyway with --force true"
            )
        shadow = strategy == "shadow"
        store.save(
            replace(
                state.ended(),  # keeps what the rollback watch remembers
                phase=Phase.REQUESTED,
                strategy=strategy,
                candidate=version,
                baseline=registry.production_version(),
                stages=check_stages(stages) if strategy == "canary" else [],
                stage_seconds=stage_seconds,
                watch_seconds=watch_seconds,
                shadow_share=share if shadow else None,
                shadow_criteria=criteria.to_json() if shadow else {},
            )
        )
        reason = f"{strategy} rollout requested" + (f", stages {list(stages)}" if strategy == "canary" else "")
        if shadow:
            reason = f"shadow requested, {share:.0%} of the requests mirrored"
        elif shadowed:
            forced = " (forced)" if shadowed.get("status") == "failed" else ""
            reason += f", after a {shadowed.get('status')} shadow stage{forced}"
        return store.record(Decision(Action.REQUESTED, version, reason))


def request_rollback(registry: ModelRegistry, reason: str = "", store: Any = None) -> Decision:
    """Withdraws the rollout in progress, or rolls the registry's production back one version.

    A running service follows on its next step. Without a rollout in progress this is the registry rollback.

    Args:
        registry: the registry the service serves from.
        reason: why, recorded in the audit log and the decision; a default names this command.
        store: the deployment state store (`open_store` of the registry by default).

    Returns:
        The ``rolled_back`` decision, as logged.

    Raises:
        RegistryError: when there is no previous production version to go back to.
    """
    store = store or open_store(registry.base_dir)
    reason = reason or "requested with clf deploy rollback"
    with store.locked():
        state = store.load()
        if state.phase in (Phase.REQUESTED, Phase.CANARY, Phase.SHADOW):
            store.save(state.ended())
            return store.record(Decision(Action.ROLLED_BACK, state.candidate, f"{reason}; rollout withdrawn"))
        bad = registry.production_version()
        change = registry.rollback(reason=reason)
        store.save(state.ended())
        return store.record(Decision(Action.ROLLED_BACK, bad, f"{reason}; production is now {change.to_version}"))


def deployment_status(
    registry: ModelRegistry, last: int = 20, store: Any = None, stale_seconds: float = 30.0
) -> dict[str, Any]:
    """The production version, the rollout in progress, the fleet and the last `last` decisions.

    Args:
        registry: the registry the service serves from.
        last: how many of the most recent decisions to include.
        store: the deployment state store (`open_store` of the registry by default).
        stale_seconds: a replica silent for longer is reported as not alive.

    Returns:
        ``{"production", "state", "lease", "replicas", "decisions"}``, ready for `json.dumps`; each replica with
        its id, address, live version, traffic shares, seconds since its last heartbeat, and ``quality``: per version
        whether its last tested window of answers alarmed, with the numbers (`QualityWatch.summary`; None when the
        replica runs no quality watch), and ``shadow``: its shadow mirror's counts (None when it runs none). The
        state holds the shadow verdicts (``shadow_results``).
    """
    store = store or open_store(registry.base_dir)
    now = time.time()
    lease = store.lease()
    replicas = []
    for record in (replica.to_json() for replica in store.replicas()):
        age = now - float(record.get("heartbeat_at") or 0)
        replicas.append(
            {
                "id": record.get("id"),
                "url": record.get("url"),
                "alive": age <= stale_seconds and not record.get("stopped_at"),
                "heartbeat_age_s": round(age, 1),
                "live_version": record.get("live_version"),
                "traffic_shares": record.get("traffic_shares"),
                "leader": lease is not None and lease.holder == record.get("id") and lease.expires_at > now,
                "quality": (record.get("snapshots") or [{}])[-1].get("quality"),
                "shadow": _shadow_counts((record.get("snapshots") or [{}])[-1].get("shadow")),
            }
        )
    return {
        "production": registry.production_version(),
        "state": store.load().to_json(),
        "lease": None if lease is None else {**asdict(lease), "expired": lease.expires_at <= now},
        "replicas": replicas,
        "decisions": store.decisions(last),
    }


def _shadow_counts(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """A replica's shadow mirror without its samples (`ShadowMirror.snapshot`)."""
    return {key: value for key, value in snapshot.items() if key != "samples"} if snapshot else None


@dataclass(frozen=True)
class DeploymentSettings:
    """Where the deployment state lives and how a requested rollout proceeds: one group shared by the deploy actions.

    Every action takes it as ``--deployment.<field>`` (or a YAML of it: ``--deployment deploy.yaml``).

    Args:
        registry: the registry folder the service serves from (clf serve --registry).
        state_db: the SQL state store the replicas share (clf serve --fleet.state_db); also CLF_STATE_DB. Default: the
            registry's deployment/ folder.
        stages: canary traffic percentages, increasing and ending at 100.
        stage_seconds: how long each canary stage, or the shadow stage, is watched.
        watch_seconds: how long a blue-green switch is watched before blue is unloaded.
    """

    registry: str = DEFAULT_REGISTRY
    state_db: str | None = None
    stages: tuple[int, ...] = tuple(DEFAULT_STAGES)
    stage_seconds: float = 3600.0
    watch_seconds: float = 600.0

    def open(self) -> tuple[ModelRegistry, Any]:
        """Opens the registry and its deployment state store.

        Returns:
            ``(registry, store)``.
        """
        models = ModelRegistry(self.registry)
        return models, open_store(models.base_dir, self.state_db)


def validate(
    version: str,
    sample_data: str | None = None,
    max_p95_latency_ms: float = 200.0,
    deployment: DeploymentSettings = DeploymentSettings(),
) -> Any:
    """Validate a version before it serves: smoke predictions, sanity, size, latency.

    Args:
        version: the version, vX.Y.Z.
        sample_data: labelled papers (a split file or JSON Lines); by default the test split of the version's
            training data.
        max_p95_latency_ms: the latency limit for one paper.
        deployment: the registry (and state store) to use.

    Returns:
        What was printed, as JSON-ready Python objects.

    Raises:
        DeploymentError: when a check fails (the report is printed first).
    """
    return print_json(_validated(version, sample_data, max_p95_latency_ms, deployment.registry).to_json())


def blue_green(version: str, **rollout: Any) -> Any:
    """Validate a version, then ask the running service to load it beside production, switch at once and watch.

    Args:
        version: the version, vX.Y.Z.
        **rollout: the options every rollout takes (see `_roll_out`), --deployment.watch_seconds among them.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    return _roll_out("blue_green", version, **rollout)


def canary(version: str, force: bool = False, **rollout: Any) -> Any:
    """Validate a version, then ask the running service to step it through --deployment.stages of traffic, gated.

    A version whose last shadow stage failed is refused (the error gives the verdict's reasons) unless --force true;
    after a passed shadow, or without one, the canary starts as usual.

    Args:
        version: the version, vX.Y.Z.
        force: roll it out even though its last shadow stage failed.
        **rollout: the options every rollout takes (see `_roll_out`), --deployment.stages and
            --deployment.stage_seconds among them.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    return _roll_out("canary", version, force=force, **rollout)


def shadow(version: str, share: float = 0.1, criteria: ShadowCriteria = ShadowCriteria(), **rollout: Any) -> Any:
    """Validate a version, then ask the running service to mirror it a share of live requests and judge it.

    Production answers every request; the candidate's answers are only compared with production's (agreement,
    confidence, model latency, errors). The stage lasts --deployment.stage_seconds (errors may end it sooner), then
    passes or fails; ``clf deploy canary`` of a version whose shadow failed is refused.

    Args:
        version: the version, vX.Y.Z.
        share: the share of requests mirrored to it, in (0, 1] (1.0: every request production answers).
        criteria: when it passes (``--criteria.min_agreement 0.9``, ``--criteria.min_requests 500``...).
        **rollout: the options every rollout takes (see `_roll_out`), --deployment.stage_seconds among them.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    return _roll_out("shadow", version, share=_checked_share(share), criteria=criteria, **rollout)


def _checked_share(share: float) -> float:
    try:
        return check_share(share)
    except ValueError as err:
        raise DeploymentError(str(err)) from None


def rollback(reason: str = "", deployment: DeploymentSettings = DeploymentSettings()) -> Any:
    """Withdraw the rollout in progress, or return production to its previous version.

    Args:
        reason: why, recorded in the audit log and the decisions.
        deployment: the registry and state store.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    models, store = deployment.open()
    return print_json(request_rollback(models, reason, store).to_json())


def status(deployment: DeploymentSettings = DeploymentSettings()) -> Any:
    """Show production, the rollout in progress, the fleet and the last decisions.

    Args:
        deployment: the registry and state store.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    models, store = deployment.open()
    return print_json(deployment_status(models, store=store))


def _validated(version: str, sample_data: str | None, max_p95_latency_ms: float, registry: str) -> Any:
    from clf.deploy.validation import validate_deployment

    report = validate_deployment(
        version,
        ModelRegistry(registry),
        samples=Path(sample_data) if sample_data else None,
        max_p95_latency_ms=max_p95_latency_ms,
    )
    if not report.passed:
        print_json(report.to_json())
        failed = ", ".join(f"{c.name} ({c.detail})" for c in report.failures)
        raise DeploymentError(f"{version} failed validation: {failed}")
    return report


def _roll_out(
    strategy: Strategy,
    version: str,
    skip_validation: bool = False,
    wait_seconds: float = 0.0,
    sample_data: str | None = None,
    max_p95_latency_ms: float = 200.0,
    deployment: DeploymentSettings = DeploymentSettings(),
    **request: Any,
) -> dict[str, Any]:
    """Validates `version`, records a rollout request and prints it with the validation (and the outcome).

    Args:
        strategy: blue_green, canary or shadow.
        version: the version, vX.Y.Z.
        skip_validation: request the rollout without validating first.
        wait_seconds: wait up to this long for the rollout to end, printing the result.
        sample_data: labelled papers for validation; by default the test split of the version's training data.
        max_p95_latency_ms: validation's latency limit for one paper.
        deployment: the registry, state store, canary stages and watch durations.
        **request: the strategy's own options for `request_deployment` (a shadow's share and criteria, force).
    """
    models, store = deployment.open()
    report = None if skip_validation else _validated(version, sample_data, max_p95_latency_ms, deployment.registry)
    decision = request_deployment(
        models,
        strategy,
        version,
        stages=deployment.stages,
        stage_seconds=deployment.stage_seconds,
        watch_seconds=deployment.watch_seconds,
        store=store,
        **request,
    )
    result = {"requested": decision.to_json(), "validation": report.to_json() if report else None}
    if wait_seconds > 0:
        result["outcome"] = _wait_for_outcome(models, wait_seconds, store)
    return print_json(result)


def _wait_for_outcome(registry: ModelRegistry, wait_seconds: float, store: Any) -> dict[str, Any]:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if store.load().phase == Phase.IDLE:
            return {"finished": True, **deployment_status(registry, last=1, store=store)}
        time.sleep(1.0)
    return {"finished": False, "state": store.load().to_json(), "hint": "still rolling out; see clf deploy status"}
