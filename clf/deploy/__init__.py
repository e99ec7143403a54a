"""Deployment: validation, blue-green and canary rollouts with metric gates, automatic rollback, persisted state.

One class per strategy (`BlueGreenRollout`, `CanaryRollout`, `RollbackWatch`) behind `DeploymentController.tick`;
everything they remember between ticks is in the saved `DeploymentState`. The controller, the strategies and
validation load torch and the serving stack; they are imported on first use, so `clf --help` and `clf deploy status`
stay fast.
"""

from typing import Any

from clf.deploy.commands import deployment_status, request_deployment, request_rollback
from clf.deploy.gates import CanaryGates, GateResult, GateVerdict, RollbackThresholds, evaluate_gates
from clf.deploy.state import (
    DEFAULT_STAGES,
    Action,
    Decision,
    DeploymentError,
    DeploymentState,
    DeploymentStore,
    LiveSince,
    Phase,
    RefusedRollback,
    check_stages,
)
from clf.deploy.store import ReplicaRecord, StateStore
from clf.deploy.stores import open_store

_LAZY = {
    "BlueGreenRollout": "clf.deploy.blue_green",
    "CanaryRollout": "clf.deploy.canary",
    "DeploymentController": "clf.deploy.controller",
    "RollbackWatch": "clf.deploy.rollback_watch",
    "RolloutContext": "clf.deploy.context",
    "ValidationCheck": "clf.deploy.validation",
    "ValidationError": "clf.deploy.validation",
    "ValidationReport": "clf.deploy.validation",
    "validate_deployment": "clf.deploy.validation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clf.deploy' has no attribute {name!r}")


__all__ = [
    "DEFAULT_STAGES",
    "Action",
    "BlueGreenRollout",
    "CanaryGates",
    "CanaryRollout",
    "Decision",
    "DeploymentController",
    "DeploymentError",
    "DeploymentState",
    "DeploymentStore",
    "GateResult",
    "GateVerdict",
    "LiveSince",
    "Phase",
    "RefusedRollback",
    "ReplicaRecord",
    "RollbackThresholds",
    "RollbackWatch",
    "RolloutContext",
    "StateStore",
    "ValidationCheck",
    "ValidationError",
    "ValidationReport",
    "check_stages",
    "deployment_status",
    "evaluate_gates",
    "open_store",
    "request_deployment",
    "request_rollback",
    "validate_deployment",
]
