"""Deployment: validation, blue-green and canary rollouts with metric gates, automatic rollback, persisted state.

The controller and validation load torch and the serving stack; they are imported on first use, so `clf --help`
and `clf deploy status` stay fast.
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
    Phase,
    check_stages,
)

_LAZY = {
    "DeploymentController": "clf.deploy.controller",
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
    "CanaryGates",
    "Decision",
    "DeploymentController",
    "DeploymentError",
    "DeploymentState",
    "DeploymentStore",
    "GateResult",
    "GateVerdict",
    "Phase",
    "RollbackThresholds",
    "ValidationCheck",
    "ValidationError",
    "ValidationReport",
    "check_stages",
    "deployment_status",
    "evaluate_gates",
    "request_deployment",
    "request_rollback",
    "validate_deployment",
]
