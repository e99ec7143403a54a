"""Retraining on evidence: which triggers fire, on what numbers, and whether the run retrains.

    decision = decide(TriggersConfig(), growth=growth, quality=snapshot, schedule_due=False)
    decision.fire, decision.fired          # True, ["drift"]
    decision.evidence["triggers"]["drift"]  # {"fired": True, "reason": "...", "p_value": 0.001, ...}

Five triggers, each on or off, combined by `TriggersConfig.mode` (``any`` or ``all``):

- ``growth``: the new papers grow the dataset by at least ``growth_threshold`` (`GrowthDecision`).
- ``drift``: the drift report of the latest window of served papers alarms (`clf.monitoring.drift.DriftReport`).
- ``estimated_drop``: the label-free accuracy estimate is *surely* lower than the version's reference accuracy:
  the HIGH end of its interval is below reference - drop.
- ``measured_drop``: likewise for accuracy measured on delayed labels (Wilson interval), once at least
  ``min_labelled`` answers are labelled, against the version's test accuracy.
- ``schedule``: the run is a scheduled one (`clf retrain schedule`).

A trigger whose evidence is missing (no quality source, no reference, too few papers or labels) says so and does not
fire. Whatever fires, a run only retrains when there are new papers to retrain on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from clf.retrain.outcomes import GrowthDecision, RetrainDecision, RetrainingConfigError

TRIGGERS = ("growth", "drift", "estimated_drop", "measured_drop", "schedule")
"""Every trigger's name, in the order they are judged and recorded (``trigger_type`` joins the fired ones by '+')."""


@dataclass
class TriggersConfig:
    """Which evidence starts a retraining run (``--triggers.*``).

    Attributes:
        growth: fire when new papers / current dataset size reaches ``--growth_threshold``.
        drift: fire when the drift report of the latest window alarms (MMD or out-of-scope share).
        estimated_accuracy_drop: fire when the upper end of the estimated accuracy's interval is below the version's
            reference accuracy minus this (absolute, 0.03 = 3 points); null turns the trigger off.
        measured_accuracy_drop: fire when the upper end of the measured accuracy's Wilson interval is below the
            version's test accuracy minus this; null turns the trigger off.
        schedule: fire on every run of ``clf retrain schedule``, whatever the evidence.
        window_papers: the served papers a quality check reads (the newest this many answers of the production
            version); drift and estimated accuracy on fewer papers are not judged.
        min_labelled: the fewest labelled answers for the measured-accuracy trigger to judge.
        mode: ``any``: retrain when one enabled trigger fires; ``all``: only when every enabled trigger fires.

    Raises:
        RetrainingConfigError: naming the ``--triggers.*`` flag that is out of range, or when every trigger is off.
    """

    growth: bool = True
    drift: bool = True
    estimated_accuracy_drop: float | None = 0.03
    measured_accuracy_drop: float | None = 0.03
    schedule: bool = False
    window_papers: int = 300
    min_labelled: int = 200
    mode: Literal["any", "all"] = "any"

    def __post_init__(self) -> None:
        for name in ("estimated_accuracy_drop", "measured_accuracy_drop"):
            drop = getattr(self, name)
            if drop is not None and not 0 <= drop < 1:
                raise RetrainingConfigError(f"--triggers.{name} must be in [0, 1) or null (off), got {drop}")
        for name in ("window_papers", "min_labelled"):
            if getattr(self, name) < 1:
                raise RetrainingConfigError(f"--triggers.{name} must be >= 1, got {getattr(self, name)}")
        if self.mode not in ("any", "all"):
            raise RetrainingConfigError(f"--triggers.mode must be any or all, got {self.mode!r}")
        if not self.enabled():
            raise RetrainingConfigError(
                "--triggers: every trigger is off (growth, drift, schedule false; both drops null): enable one"
            )

    def enabled(self) -> list[str]:
        """The triggers that are on.

        Returns:
            Their names, in `TRIGGERS` order.
        """
        on = {
            "growth": self.growth,
            "drift": self.drift,
            "estimated_drop": self.estimated_accuracy_drop is not None,
            "measured_drop": self.measured_accuracy_drop is not None,
            "schedule": self.schedule,
        }
        return [name for name in TRIGGERS if on[name]]


@dataclass(frozen=True)
class QualitySnapshot:
    """What production's answers say about the production version: the quality triggers' input.

    Attributes:
        version: the version the numbers are about.
        papers: answers in the window.
        drift: the window's `DriftReport.to_json()`, or None when no drift check ran.
        estimated_accuracy: ``{"value", "low", "high", "n"}`` over the window (mean calibrated top-1 probability).
        reference_accuracy: the version's accuracy on its reference papers (what the estimate is compared with).
        measured_accuracy: ``{"value", "low", "high", "n"}`` on the labelled answers (Wilson interval).
        measured_reference: the version's test accuracy from the registry metrics.
    """

    version: str
    papers: int
    drift: dict[str, Any] | None = None
    estimated_accuracy: dict[str, Any] | None = None
    reference_accuracy: float | None = None
    measured_accuracy: dict[str, Any] | None = None
    measured_reference: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The snapshot's fields.
        """
        return asdict(self)


@dataclass(frozen=True)
class TriggerDecision:
    """`decide`'s verdict.

    Attributes:
        fire: whether the run retrains.
        fired: the triggers that fired, in `TRIGGERS` order (they may fire without `fire`: no new papers, or
            ``mode: all`` with another enabled trigger silent).
        evidence: ``mode``, ``enabled``, ``fired``, ``fire``, ``reason`` and per trigger (``triggers``) the numbers
            it judged, whether it fired and why (or why it could not judge).
    """

    fire: bool
    fired: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """One sentence saying why the run retrains or not."""
        return str(self.evidence.get("reason", ""))

    @property
    def trigger_type(self) -> str | None:
        """The fired triggers joined by '+' (``drift+measured_drop``), as ``retraining_runs.trigger_type`` records
        them; None when none fired."""
        return "+".join(self.fired) or None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            ``fire``, ``fired`` and the evidence.
        """
        return {"fire": self.fire, "fired": list(self.fired), "evidence": self.evidence}


def decide(
    config: TriggersConfig, *, growth: GrowthDecision, quality: QualitySnapshot | None, schedule_due: bool
) -> TriggerDecision:
    """Judges every trigger on its evidence and combines them by `TriggersConfig.mode`.

    Args:
        config: the triggers' settings.
        growth: the growth judgement of the new papers (`RetrainingPipeline.should_retrain`).
        quality: what production's answers say about the production version; None when there is no quality source.
        schedule_due: whether this run is a scheduled one.

    Returns:
        The decision, with per trigger the numbers it judged and why it fired or not.
    """
    judgements = {
        "growth": _growth(growth),
        "drift": _drift(config, quality),
        "estimated_drop": _accuracy_drop(
            quality,
            config.estimated_accuracy_drop,
            interval="estimated_accuracy",
            reference="reference_accuracy",
            least=config.window_papers,
            what="estimated accuracy",
            reference_name="its accuracy on its reference papers",
            count_name="papers",
            flag="--triggers.window_papers",
        ),
        "measured_drop": _accuracy_drop(
            quality,
            config.measured_accuracy_drop,
            interval="measured_accuracy",
            reference="measured_reference",
            least=config.min_labelled,
            what="measured accuracy",
            reference_name="its test accuracy",
            count_name="labelled answers",
            flag="--triggers.min_labelled",
        ),
        "schedule": {
            "fired": schedule_due,
            "due": schedule_due,
            "reason": "a scheduled run" if schedule_due else "not a scheduled run (clf retrain run)",
        },
    }
    enabled = config.enabled()
    for name in TRIGGERS:
        if name in enabled:
            judgements[name]["enabled"] = True
        else:
            judgements[name] = {"enabled": False, "fired": False, "reason": f"off ({_flag(name)})"}
    fired = [name for name in enabled if judgements[name]["fired"]]
    silent = [name for name in enabled if name not in fired]
    combined = bool(fired) and (config.mode == "any" or not silent)
    if not fired:
        reason = f"no trigger fired (enabled: {', '.join(enabled)})"
    elif not combined:
        reason = f"{'+'.join(fired)} fired, but mode all needs {', '.join(silent)} too"
    elif not growth.new_data_count:
        combined = False
        reason = f"{'+'.join(fired)} fired, but there are no new papers to retrain on"
    else:
        reason = f"{'+'.join(fired)} fired (mode {config.mode})"
    evidence = {
        "mode": config.mode,
        "enabled": enabled,
        "fired": fired,
        "fire": combined,
        "reason": reason,
        "version": quality.version if quality else None,
        "papers": quality.papers if quality else None,
        "triggers": judgements,
    }
    return TriggerDecision(combined, fired, evidence)


def _flag(name: str) -> str:
    return {
        "estimated_drop": "--triggers.estimated_accuracy_drop null",
        "measured_drop": "--triggers.measured_accuracy_drop null",
    }.get(name, f"--triggers.{name} false")


def _growth(growth: GrowthDecision) -> dict[str, Any]:
    return {
        "fired": growth.decision is RetrainDecision.RETRAIN,
        "new_data_count": growth.new_data_count,
        "current_dataset_size": growth.current_dataset_size,
        "growth_ratio": growth.growth_ratio,
        "threshold": growth.threshold,
        "reason": growth.reason,
    }


def _drift(config: TriggersConfig, quality: QualitySnapshot | None) -> dict[str, Any]:
    report = quality.drift if quality else None
    if report is None:
        why = "no quality snapshot" if quality is None else f"no drift report for {quality.version}"
        return {"fired": False, "missing": True, "reason": f"no evidence: {why}"}
    papers = int(report["papers"])
    mmd = report.get("mmd") or {}
    oos = report.get("out_of_scope") or {}
    alarm, reasons = bool(report["alarm"]), [str(r) for r in report.get("reasons") or []]
    judged = {
        "papers": papers,
        "alarm": alarm,
        "reasons": reasons,
        "alpha": report.get("alpha"),
        "mmd_p_value": mmd.get("p_value"),
        "mmd_statistic": mmd.get("statistic"),
        "out_of_scope_share": oos.get("share"),
        "out_of_scope_reference_share": oos.get("reference_share"),
        "out_of_scope_p_value": oos.get("p_value"),
        "class_mix_psi": (report.get("class_mix") or {}).get("psi"),
    }
    if papers < config.window_papers:
        return {
            **judged,
            "fired": False,
            "missing": True,
            "reason": f"no evidence: {papers} papers in the window, fewer than --triggers.window_papers "
            f"{config.window_papers}",
        }
    if alarm:
        reason = f"the drift check over {papers} papers alarms on {', '.join(reasons) or 'drift'}"
    else:
        reason = f"the drift check over {papers} papers raises no alarm (MMD p = {judged['mmd_p_value']})"
    return {**judged, "fired": alarm, "missing": False, "reason": reason}


def _accuracy_drop(
    quality: QualitySnapshot | None,
    drop: float | None,
    *,
    interval: str,
    reference: str,
    least: int,
    what: str,
    reference_name: str,
    count_name: str,
    flag: str,
) -> dict[str, Any]:
    """Fires when the interval's HIGH end is below reference - drop: the accuracy is surely lower, not just its
    point estimate (a small window's noise does not retrain)."""
    drop = drop or 0.0  # None only for an off trigger, whose judgement is replaced
    estimate = getattr(quality, interval) if quality else None
    ref = getattr(quality, reference) if quality else None
    judged: dict[str, Any] = {"estimate": estimate, "reference": ref, "drop": drop}
    if quality is None:
        return {**judged, "fired": False, "missing": True, "reason": "no evidence: no quality snapshot"}
    if estimate is None:
        return {**judged, "fired": False, "missing": True, "reason": f"no evidence: no {what} for {quality.version}"}
    if ref is None:
        return {
            **judged,
            "fired": False,
            "missing": True,
            "reason": f"no evidence: {quality.version} has no reference ({reference_name}) to compare with",
        }
    n = int(estimate["n"])
    if n < least:
        return {
            **judged,
            "fired": False,
            "missing": True,
            "reason": f"no evidence: {n} {count_name}, fewer than {flag} {least}",
        }
    limit = float(ref) - drop
    high = float(estimate["high"])
    fired = high < limit
    reason = (
        f"{what} {float(estimate['value']):.4f} [{float(estimate['low']):.4f}, {high:.4f}] over {n} {count_name}: "
        f"its upper end is {'below' if fired else 'not below'} {reference_name} {float(ref):.4f} - {drop:.4f} = "
        f"{limit:.4f}"
    )
    return {**judged, "limit": limit, "fired": fired, "missing": False, "reason": reason}
