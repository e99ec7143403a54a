"""`clf deploy`: validate a version, ask the running service for a blue-green or canary rollout, roll back, and
show the state with its decisions.

Rollouts are carried out by the serving replica holding the rollout lease (`clf serve`), which reads the request
from the state store: the registry's deployment folder, or the SQL database of ``--state-db`` (``CLF_STATE_DB``).
These commands need only that, and may run from any shell that reaches it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
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
from clf.registry import ModelRegistry, RegistryError


def request_deployment(
    registry: ModelRegistry,
    strategy: Literal["blue_green", "canary"],
    version: str,
    *,
    stages: Sequence[int] = DEFAULT_STAGES,
    stage_seconds: float = 3600.0,
    watch_seconds: float = 600.0,
    store: Any = None,
) -> Decision:
    """Records a rollout request for the serving process to carry out.

    Args:
        registry: the registry the service serves from; the request is saved in its deployment state.
        strategy: ``blue_green`` (switch all traffic at once, then watch) or ``canary`` (step through `stages`).
        version: the registered version to roll out, e.g. ``v1.3.0``.
        stages: canary traffic percentages, increasing and ending at 100.
        stage_seconds: how long each canary stage is watched before the next.
        watch_seconds: how long a blue-green switch is watched before the old version is unloaded.
        store: the deployment state store (`open_store` of the registry by default).

    Returns:
        The ``requested`` decision, as logged.

    Raises:
        DeploymentError: when a rollout is already in progress or `version` is already in production.
        RegistryError: for an unknown version.
    """
    registry.get_metadata(version)
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
            )
        )
        reason = f"{strategy} rollout requested" + (f", stages {list(stages)}" if strategy == "canary" else "")
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
        if state.phase in (Phase.REQUESTED, Phase.CANARY):
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
        its id, address, live version, traffic shares, and seconds since its last heartbeat.
    """
    store = store or open_store(registry.base_dir)
    now = time.time()
    lease = store.lease()
    replicas = []
    for record in store.replicas():
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
            }
        )
    return {
        "production": registry.production_version(),
        "state": store.load().to_json(),
        "lease": None if lease is None else {**asdict(lease), "expired": lease.expires_at <= now},
        "replicas": replicas,
        "decisions": store.decisions(last),
    }


def deploy(
    action: Literal["validate", "blue-green", "canary", "rollback", "status"],
    version: str | None = None,
    registry: str = "models/classification",
    sample_data: str | None = None,
    stages: Sequence[int] = DEFAULT_STAGES,
    stage_seconds: float = 3600.0,
    watch_seconds: float = 600.0,
    max_p95_latency_ms: float = 200.0,
    reason: str = "",
    skip_validation: bool = False,
    wait_seconds: float = 0.0,
    state_db: str | None = None,
) -> Any:
    """Deploy a registered version: validate, blue-green, canary, rollback, status.

    `clf deploy ACTION [VERSION]`. blue-green and canary validate the version first, then ask the running service
    (clf serve on the same --registry) to roll it out; status shows the rollout and every decision. Prints JSON.

    Args:
        action: validate (smoke predictions, sanity, size, latency), blue-green (load beside production, switch at
            once, watch), canary (--stages of traffic, gated on error rate and latency), rollback (withdraw the
            rollout or return production to its previous version), status.
        version: the version, vX.Y.Z (validate, blue-green, canary).
        registry: the registry folder.
        sample_data: labelled papers for validation (a split file or JSON Lines); by default the test split of the
            version's training data.
        stages: canary traffic percentages, ending at 100.
        stage_seconds: how long each canary stage is watched.
        watch_seconds: how long a blue-green switch is watched before blue is unloaded.
        max_p95_latency_ms: validation's latency limit for one paper.
        reason: for rollback: why, recorded in the audit log and the decisions.
        skip_validation: start the rollout without validating first.
        wait_seconds: for blue-green and canary: wait up to this long for the rollout to end, printing the result.
        state_db: the SQL state store the replicas share (clf serve --fleet.state_db); also CLF_STATE_DB. Default: the
            registry's deployment/ folder.

    Returns:
        What was printed, as Python objects.

    Raises:
        DeploymentError: when validation fails or a rollout cannot start (the message says why).
        RegistryError: when validate, blue-green or canary is given no `version`, or the version is unknown.
    """
    from clf.deploy.validation import validate_deployment

    models = ModelRegistry(registry)
    store = open_store(models.base_dir, state_db)
    result: Any
    if action in ("validate", "blue-green", "canary") and version is None:
        raise RegistryError(f"clf deploy {action} needs --version vX.Y.Z")
    if action == "status":
        result = deployment_status(models, store=store)
    elif action == "rollback":
        result = request_rollback(models, reason, store).to_json()
    else:
        assert version is not None
        report = None
        if action == "validate" or not skip_validation:
            report = validate_deployment(
                version,
                models,
                samples=Path(sample_data) if sample_data else None,
                max_p95_latency_ms=max_p95_latency_ms,
            )
            if not report.passed:
                print(json.dumps(report.to_json(), indent=2))
                failed = ", ".join(f"{c.name} ({c.detail})" for c in report.failures)
                raise DeploymentError(f"{version} failed validation: {failed}")
        if action == "validate":
            result = report.to_json() if report else {}
        else:
            strategy = "blue_green" if action == "blue-green" else "canary"
            decision = request_deployment(
                models,
                strategy,
                version,
                stages=stages,
                stage_seconds=stage_seconds,
                watch_seconds=watch_seconds,
                store=store,
            )
            result = {"requested": decision.to_json(), "validation": report.to_json() if report else None}
            if wait_seconds > 0:
                result["outcome"] = _wait_for_outcome(models, wait_seconds, store)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def _wait_for_outcome(registry: ModelRegistry, wait_seconds: float, store: Any) -> dict[str, Any]:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if store.load().phase == Phase.IDLE:
            return {"finished": True, **deployment_status(registry, last=1, store=store)}
        time.sleep(1.0)
    return {"finished": False, "state": store.load().to_json(), "hint": "still rolling out; see clf deploy status"}
