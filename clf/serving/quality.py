"""`QualityWatch`: whether a service's answers are still right, watched beside the request path.

    watch = QualityWatch(QualityConfig(), reference_of=lambda v: service.predictor(v).artifact.reference,
                         metrics=QualityMetrics(service.metrics.registry), alert=alerts.send)
    service.add_prediction_listener(watch.observe)      # after each answer: probabilities, length, out-of-scope flag
    watch.check()                                       # periodically, in a worker thread: tests each full window
    watch.snapshot()                                    # what /quality, the dashboard and clf deploy status show

Each version with a reference sample in its artifact (`clf.artifact.reference`) collects its answers into windows
of ``window_papers``. A full window is handed to `check`, which compares it with the reference through
`clf.monitoring.drift.DriftDetector` (MMD of the calibrated probability vectors, the out-of-scope share, the class mix,
text lengths, estimated accuracy) and publishes the result to Prometheus (`clf.monitoring.quality_metrics`). An alert
is sent when a version starts alarming and when it stops. Nothing here runs on the caller's thread before the
answer: the listener only appends, and windows waiting for `check` are bounded (the oldest is dropped, and counted,
when checks fall behind). Measured accuracy comes from the database where answers and their late labels meet
(`clf.experiments.quality_log`), read every ``measured_interval_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from clf.serving.config import QualityConfig

if TYPE_CHECKING:
    from clf.artifact.reference import ReferenceSample
    from clf.monitoring.drift import DriftDetector
    from clf.monitoring.quality_metrics import QualityMetrics
    from clf.serving.service import PredictionEvent

log = logging.getLogger(__name__)

MAX_PENDING = 4
"""Full windows that may wait for `QualityWatch.check`; past it the oldest is dropped (and counted)."""


@dataclass
class _Window:
    probabilities: list[np.ndarray] = field(default_factory=list)
    chars: list[int] = field(default_factory=list)
    flags: list[bool] = field(default_factory=list)


@dataclass
class _Watched:
    reference: ReferenceSample | None
    detector: DriftDetector | None
    window: _Window = field(default_factory=_Window)
    pending: list[_Window] = field(default_factory=list)
    last: dict[str, Any] | None = None
    windows: int = 0
    alarms: int = 0
    dropped: int = 0
    papers: int = 0
    out_of_scope: int = 0
    alarming: bool = False


class QualityWatch:
    """Windows of each version's answers, tested against its reference sample (see the module docstring).

    Args:
        config: window size, significance, permutations.
        reference_of: a version's reference sample, or None when its artifact has none (then only out-of-scope
            answers are counted for it).
        metrics: where the results are published; None publishes nothing.
        alert: called ``(title, message, level)`` when a version starts or stops alarming (`AlertManager.send`).
        measured: the measured-accuracy windows from the labels database (`QualityLog.windows`), newest last per
            version; None when there is no database.
        clock: epoch seconds; a test seam.
    """

    def __init__(
        self,
        config: QualityConfig,
        reference_of: Callable[[str], ReferenceSample | None],
        *,
        metrics: QualityMetrics | None = None,
        alert: Callable[[str, str, str], Any] | None = None,
        measured: Callable[[], Sequence[Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.reference_of = reference_of
        self.metrics = metrics
        self.alert = alert
        self.measured = measured
        self.clock = clock
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}
        self._measured: list[dict[str, Any]] | None = None

    def observe(self, event: PredictionEvent) -> None:
        """The prediction listener: adds each answered paper of `event` to its version's window.

        Args:
            event: one answered request (failed papers and failed requests are skipped).
        """
        if event.error is not None:
            return
        for text, record in zip(event.texts, event.records, strict=True):
            if record.error or record.version is None or not record.top_k:
                continue
            watched = self._watch(record.version)
            flagged = bool(record.out_of_scope)
            with self._lock:
                watched.papers += 1
                watched.out_of_scope += flagged
                if watched.reference is None:
                    continue
                ranked = {entry.label: entry.probability for entry in record.top_k}
                window = watched.window
                window.probabilities.append(np.array([ranked.get(label, 0.0) for label in watched.reference.labels]))
                window.chars.append(len(text))
                window.flags.append(flagged)
                if len(window.chars) >= self.config.window_papers:
                    watched.pending.append(window)
                    watched.window = _Window()
                    if len(watched.pending) > MAX_PENDING:
                        watched.pending.pop(0)
                        watched.dropped += 1
            if flagged and self.metrics is not None:
                self.metrics.flagged(record.version, 1)

    def check(self) -> list[dict[str, Any]]:
        """Tests every full window waiting (the periodic job; seconds at most per window).

        Returns:
            The reports of the windows tested now (`DriftReport.to_json()` with ``version`` and ``ended_at``).
        """
        reports = []
        with self._check_lock:  # one check at a time: a slow one is not overtaken by the next tick
            for version in list(self._watched):
                while True:
                    with self._lock:
                        watched = self._watched.get(version)
                        if watched is None or not watched.pending or watched.detector is None:
                            break
                        window = watched.pending.pop(0)
                    reports.append(self._test(version, watched, window))
        return reports

    def refresh_measured(self) -> None:
        """Reads the measured-accuracy windows from the labels database and publishes each version's newest."""
        if self.measured is None:
            return
        windows = [window.to_json() for window in self.measured()]
        newest: dict[str, dict[str, Any]] = {}
        for window in windows:
            newest[window["version"]] = window
        if self.metrics is not None:
            for version, window in newest.items():
                measured = window.get("measured")
                self.metrics.labelled(
                    version, measured["accuracy"]["value"] if measured else None, float(window["coverage"])
                )
        with self._lock:
            self._measured = windows

    def snapshot(self) -> dict[str, Any]:
        """What is known now, per version: its reference, the window filling, the last tested window.

        Returns:
            ``{"window_papers", "versions": {version: {"reference", "current", "last_window", "windows", "alarms",
            "dropped_windows", "papers", "out_of_scope"}}, "measured": [...] | None}``.
        """
        with self._lock:
            versions = {
                version: {
                    "reference": _reference_summary(watched.reference),
                    "current": {
                        "papers": len(watched.window.chars),
                        "out_of_scope": sum(watched.window.flags),
                        "pending_windows": len(watched.pending),
                    },
                    "last_window": watched.last,
                    "windows": watched.windows,
                    "alarms": watched.alarms,
                    "alarming": watched.alarming,
                    "dropped_windows": watched.dropped,
                    "papers": watched.papers,
                    "out_of_scope": watched.out_of_scope,
                }
                for version, watched in sorted(self._watched.items())
            }
            return {"window_papers": self.config.window_papers, "versions": versions, "measured": self._measured}

    def summary(self) -> dict[str, Any]:
        """The short form `clf deploy status` shows per replica: per version, the last tested window's verdict.

        Returns:
            ``{version: {"alarming", "reasons", "mmd_p_value", "out_of_scope_share", "estimated_accuracy",
            "reference_accuracy", "windows", "alarms", "papers"}}``.
        """
        with self._lock:
            summary = {}
            for version, watched in sorted(self._watched.items()):
                last = watched.last or {}
                summary[version] = {
                    "alarming": watched.alarming,
                    "reasons": last.get("reasons", []),
                    "mmd_p_value": (last.get("mmd") or {}).get("p_value"),
                    "out_of_scope_share": (last.get("out_of_scope") or {}).get("share"),
                    "estimated_accuracy": (last.get("estimated_accuracy") or {}).get("value"),
                    "reference_accuracy": watched.reference.accuracy if watched.reference is not None else None,
                    "windows": watched.windows,
                    "alarms": watched.alarms,
                    "papers": watched.papers,
                }
            return summary

    def _watch(self, version: str) -> _Watched:
        with self._lock:
            watched = self._watched.get(version)
        if watched is not None:
            return watched
        reference = None
        try:
            reference = self.reference_of(version)
        except Exception:  # an unreadable reference must not stop the answers being counted
            log.exception("the reference sample of %s does not read; its drift is not tested", version)
        detector = None
        if reference is not None:
            from clf.monitoring.drift import DriftDetector

            detector = DriftDetector(reference, alpha=self.config.alpha, permutations=self.config.permutations)
        if self.metrics is not None:
            self.metrics.watching(version, reference.accuracy if reference is not None else None)
        with self._lock:
            return self._watched.setdefault(version, _Watched(reference, detector))

    def _test(self, version: str, watched: _Watched, window: _Window) -> dict[str, Any]:
        assert watched.detector is not None
        report = watched.detector.check(
            np.vstack(window.probabilities), np.array(window.chars), np.array(window.flags, dtype=bool)
        ).to_json()
        report["version"] = version
        report["ended_at"] = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="seconds")
        with self._lock:
            started = report["alarm"] and not watched.alarming
            stopped = watched.alarming and not report["alarm"]
            watched.last, watched.alarming = report, bool(report["alarm"])
            watched.windows += 1
            watched.alarms += bool(report["alarm"])
        if self.metrics is not None:
            self.metrics.window(version, report)
        if started or stopped:
            title, message, level = _alert_text(version, report, started)
            log.warning("%s: %s", title, message) if started else log.info("%s: %s", title, message)
            if self.alert is not None:
                self.alert(title, message, level)
        return report


def _reference_summary(reference: ReferenceSample | None) -> dict[str, Any] | None:
    if reference is None:
        return None
    return {
        "papers": int(reference.probabilities.shape[0]),
        "accuracy": reference.accuracy,
        "estimated_accuracy": reference.estimated_accuracy,
        "out_of_scope_share": reference.out_of_scope_share,
        "fitted_on": reference.fitted_on,
    }


def _alert_text(version: str, report: dict[str, Any], started: bool) -> tuple[str, str, str]:
    mmd, estimate = report["mmd"], report.get("estimated_accuracy") or {}
    scope = report.get("out_of_scope") or {}
    evidence = (
        f"window of {report['papers']} answers: MMD p={mmd['p_value']:.4f}, out-of-scope share "
        f"{scope.get('share', float('nan')):.1%} (reference {scope.get('reference_share', float('nan')):.1%}), "
        f"predicted-class PSI {report['class_mix']['psi']:.3f}, "
        f"estimated accuracy {estimate.get('value', float('nan')):.3f}"
    )
    if started:
        reasons = " and ".join(report.get("reasons") or ["drift"])
        return f"Drift on {version}", f"{reasons} alarm; {evidence}", "warning"
    return f"Drift cleared on {version}", f"the last window no longer alarms; {evidence}", "info"
