"""`QualityMetrics`: whether the answers are still right, in Prometheus — beside `clf.monitoring.metrics`.

    clf_out_of_scope_predictions_total{version}   answers flagged out of scope (none of the classes fits)
    clf_drift_windows_total{version,alarm}         windows of answers tested against the version's reference sample
    clf_drift_alarm{version}                       1 while the last window alarmed (drift or out-of-scope share)
    clf_drift_p_value{version}                     the last window's MMD permutation p-value
    clf_out_of_scope_share{version}                the last window's share of out-of-scope answers
    clf_class_mix_psi{version}                     the last window's population stability index of the predicted classes
    clf_estimated_accuracy{version}                the last window's mean calibrated top-1 probability
    clf_reference_accuracy{version}                the version's accuracy on its reference (held-out) papers
    clf_measured_accuracy{version}                 accuracy on the papers whose true label has arrived (last window)
    clf_label_coverage{version}                    the share of that window's answers with a true label

With several worker processes (multiprocess mode) each worker tests its own windows: the alarm, shares and PSI are
merged as the largest live value, p-values and accuracies as the smallest, so one worse-off worker shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge


class QualityMetrics:
    """The quality watch's series, registered in a service's Prometheus registry.

    Args:
        registry: the registry the service exposes (`ServiceMetrics.registry`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, text: str, mode: Literal["livemin", "livemax"]) -> Gauge:
            return Gauge(name, text, ["version"], registry=registry, multiprocess_mode=mode)

        self.out_of_scope = Counter(
            "clf_out_of_scope_predictions", "Answers flagged out of scope.", ["version"], registry=registry
        )
        self.windows = Counter(
            "clf_drift_windows", "Windows of answers tested against the reference.", ["version", "alarm"],
            registry=registry,
        )  # fmt: skip
        self.alarm = gauge("clf_drift_alarm", "1 while the last window alarmed.", "livemax")
        self.p_value = gauge("clf_drift_p_value", "The last window's MMD permutation p-value.", "livemin")
        self.share = gauge("clf_out_of_scope_share", "The last window's out-of-scope share.", "livemax")
        self.psi = gauge("clf_class_mix_psi", "The last window's predicted-class PSI.", "livemax")
        self.estimated = gauge("clf_estimated_accuracy", "The last window's estimated accuracy.", "livemin")
        self.reference_accuracy = gauge("clf_reference_accuracy", "Accuracy on the reference papers.", "livemax")
        self.measured = gauge("clf_measured_accuracy", "Accuracy on the labelled papers.", "livemin")
        self.coverage = gauge("clf_label_coverage", "Share of answers with a true label.", "livemin")

    def watching(self, version: str, reference_accuracy: float | None) -> None:
        """Creates a version's series at load (a counter born later loses its first increase in Prometheus).

        Args:
            version: the version loaded.
            reference_accuracy: its accuracy on its reference papers, when its artifact has a reference sample.
        """
        self.out_of_scope.labels(version)
        for alarm in ("true", "false"):
            self.windows.labels(version, alarm)
        if reference_accuracy is not None:
            self.reference_accuracy.labels(version).set(reference_accuracy)

    def flagged(self, version: str, count: int) -> None:
        """Counts answers flagged out of scope.

        Args:
            version: the version that answered.
            count: how many of its answers were flagged.
        """
        self.out_of_scope.labels(version).inc(count)

    def window(self, version: str, report: Mapping[str, Any]) -> None:
        """Publishes one tested window.

        Args:
            version: the version whose answers were tested.
            report: the window's `clf.monitoring.drift.DriftReport.to_json()`.
        """
        alarm = bool(report["alarm"])
        self.windows.labels(version, str(alarm).lower()).inc()
        self.alarm.labels(version).set(1 if alarm else 0)
        self.p_value.labels(version).set(report["mmd"]["p_value"])
        self.psi.labels(version).set(report["class_mix"]["psi"])
        if report.get("out_of_scope"):
            self.share.labels(version).set(report["out_of_scope"]["share"])
        if report.get("estimated_accuracy"):
            self.estimated.labels(version).set(report["estimated_accuracy"]["value"])

    def labelled(self, version: str, accuracy: float | None, coverage: float) -> None:
        """Publishes the measured accuracy of a version's latest window with labels.

        Args:
            version: the version.
            accuracy: its accuracy on the labelled papers (None: none labelled yet; the gauge keeps its last value).
            coverage: the share of the window's answers that have a label.
        """
        self.coverage.labels(version).set(coverage)
        if accuracy is not None:
            self.measured.labels(version).set(accuracy)
