"""Health reports: the outcome of each check of the served models, and the report ``GET /health/ml`` answers with.

The checks themselves run against loaded models, so they live with the service (`clf.serving.health`); this module
only holds their results, which monitoring, deployment and the HTTP application all read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class HealthCheck:
    """One check's outcome.

    Attributes:
        ok: whether it passed.
        detail: what was found, in words.
        value: the measured value, when there is one (a latency in ms).
    """

    ok: bool
    detail: str
    value: float | None = None


@dataclass(frozen=True)
class HealthReport:
    """Every check of every version that receives traffic.

    Attributes:
        checks: check name → outcome; checks of a version other than the live one are named ``name[version]``.
        live_version: the live version when the report was made.
    """

    checks: dict[str, HealthCheck]
    live_version: str | None

    @property
    def healthy(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(check.ok for check in self.checks.values())

    @property
    def status(self) -> str:
        """``healthy`` or ``unhealthy``."""
        return "healthy" if self.healthy else "unhealthy"

    def to_json(self) -> dict[str, Any]:
        """``{"status", "live_version", "checks": {name: {"ok", "detail", "value"}}}``.

        Returns:
            ``{"status", "live_version", "checks": {name: {"ok", "detail", "value"}}}``, ready for `json.dumps`.
        """
        return {
            "status": self.status,
            "live_version": self.live_version,
            "checks": {name: asdict(check) for name, check in self.checks.items()},
        }
