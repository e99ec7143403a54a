"""Tests for clf/retrain/triggers.py: each trigger alone and combined, missing evidence, and accuracy drops judged on
their interval rather than their point."""

from __future__ import annotations

import math

import pytest

from clf.retrain.outcomes import GrowthDecision, RetrainDecision
from clf.retrain.triggers import TRIGGERS, QualitySnapshot, TriggersConfig, decide
from tests.retrain.conftest import drift_report, interval

ONLY = {
    "growth": {"growth": True},
    "drift": {"drift": True},
    "estimated_drop": {"estimated_accuracy_drop": 0.03},
    "measured_drop": {"measured_accuracy_drop": 0.03},
    "schedule": {"schedule": True},
}


def only(*names: str, **settings) -> TriggersConfig:
    """A config with just `names` on."""
    values = {"growth": False, "drift": False, "estimated_accuracy_drop": None, "measured_accuracy_drop": None}
    for name in names:
        values.update(ONLY[name])
    return TriggersConfig(**{**values, **settings})


def growth(new: int = 150, size: int = 300, threshold: float = 0.1) -> GrowthDecision:
    ratio = new / size if size else math.inf
    retrain = bool(new) and ratio >= threshold
    return GrowthDecision(
        RetrainDecision.RETRAIN if retrain else RetrainDecision.SKIP, new, size, ratio, threshold, "growth's reason"
    )


def snapshot(**fields) -> QualitySnapshot:
    values = {
        "version": "v1.0.0",
        "papers": 300,
        "drift": drift_report(alarm=False),
        "estimated_accuracy": interval(0.80, 0.02, 300),
        "reference_accuracy": 0.81,
        "measured_accuracy": interval(0.80, 0.03, 400),
        "measured_reference": 0.82,
    }
    return QualitySnapshot(**{**values, **fields})


BAD = {
    "growth": {"growth": growth(150, 300)},
    "drift": {"quality": snapshot(drift=drift_report(alarm=True, p_value=0.001))},
    "estimated_drop": {"quality": snapshot(estimated_accuracy=interval(0.70, 0.02, 300))},
    "measured_drop": {"quality": snapshot(measured_accuracy=interval(0.70, 0.03, 400))},
    "schedule": {"schedule_due": True},
}
"""For each trigger, evidence that makes it fire."""


def judge(config: TriggersConfig, **evidence):
    values = {"growth": growth(150, 3000), "quality": snapshot(), "schedule_due": False, **evidence}
    return decide(config, **values)


@pytest.mark.parametrize("name", TRIGGERS)
def test_each_trigger_alone_fires_on_its_evidence_and_stays_silent_without(name):
    fired = judge(only(name), **BAD[name])
    assert fired.fire and fired.fired == [name] and fired.trigger_type == name
    assert fired.evidence["triggers"][name]["fired"] is True and fired.evidence["enabled"] == [name]
    silent = judge(only(name))
    assert not silent.fire and silent.fired == [] and silent.trigger_type is None
    assert silent.evidence["triggers"][name]["fired"] is False
    assert silent.reason == f"no trigger fired (enabled: {name})"


@pytest.mark.parametrize("name", TRIGGERS)
def test_a_trigger_that_is_off_does_not_fire_on_its_evidence(name):
    others = [other for other in TRIGGERS if other != name]
    decision = judge(only(*others), **BAD[name])
    assert not decision.fire and decision.fired == []
    judgement = decision.evidence["triggers"][name]
    assert set(judgement) == {"enabled", "fired", "reason"} and judgement["enabled"] is False
    assert judgement["reason"].startswith("off (--triggers.")


def test_mode_any_fires_on_one_and_mode_all_needs_every_enabled_trigger():
    drift_only = BAD["drift"]
    both = {**BAD["drift"], "growth": growth(150, 300)}
    assert judge(only("growth", "drift", mode="any"), **drift_only).fire
    all_mode = judge(only("growth", "drift", mode="all"), **drift_only)
    assert not all_mode.fire and all_mode.fired == ["drift"]
    assert all_mode.reason == "drift fired, but mode all needs growth too"
    fired = judge(only("growth", "drift", mode="all"), **both)
    assert fired.fire and fired.fired == ["growth", "drift"] and fired.trigger_type == "growth+drift"
    assert fired.reason == "growth+drift fired (mode all)"


def test_every_trigger_fires_together_and_the_trigger_type_fits_its_column():
    quality = snapshot(
        drift=drift_report(alarm=True),
        estimated_accuracy=interval(0.70, 0.02, 300),
        measured_accuracy=interval(0.70, 0.03, 400),
    )
    config = TriggersConfig(schedule=True, mode="all")
    decision = judge(config, growth=growth(150, 300), quality=quality, schedule_due=True)
    assert decision.fire and decision.fired == list(TRIGGERS)
    assert len(decision.trigger_type) <= 50, "retraining_runs.trigger_type is String(50)"


def test_without_new_papers_nothing_retrains_whatever_fired():
    decision = judge(only("drift"), growth=growth(0, 300), **BAD["drift"])
    assert decision.fired == ["drift"] and not decision.fire
    assert decision.reason == "drift fired, but there are no new papers to retrain on"


def test_without_a_quality_snapshot_the_quality_triggers_say_so_and_growth_decides():
    decision = judge(TriggersConfig(), growth=growth(150, 300), quality=None)
    assert decision.fire and decision.fired == ["growth"]
    triggers = decision.evidence["triggers"]
    for name in ("drift", "estimated_drop", "measured_drop"):
        assert triggers[name]["fired"] is False and triggers[name]["missing"] is True
        assert triggers[name]["reason"].startswith("no evidence: no quality snapshot"), name
    assert decision.evidence["version"] is None and decision.evidence["mode"] == "any"


@pytest.mark.parametrize(
    ("name", "quality", "reason"),
    [
        ("drift", snapshot(drift=None), "no evidence: no drift report for v1.0.0"),
        (
            "drift",
            snapshot(drift=drift_report(alarm=True, papers=120)),
            "no evidence: 120 papers in the window, fewer than --triggers.window_papers 300",
        ),
        ("estimated_drop", snapshot(estimated_accuracy=None), "no evidence: no estimated accuracy for v1.0.0"),
        (
            "estimated_drop",
            snapshot(estimated_accuracy=interval(0.5, 0.05, 300), reference_accuracy=None),
            "no evidence: v1.0.0 has no reference (its accuracy on its reference papers) to compare with",
        ),
        (
            "estimated_drop",
            snapshot(estimated_accuracy=interval(0.5, 0.05, 299)),
            "no evidence: 299 papers, fewer than --triggers.window_papers 300",
        ),
        ("measured_drop", snapshot(measured_accuracy=None), "no evidence: no measured accuracy for v1.0.0"),
        (
            "measured_drop",
            snapshot(measured_accuracy=interval(0.5, 0.05, 400), measured_reference=None),
            "no evidence: v1.0.0 has no reference (its test accuracy) to compare with",
        ),
        (
            "measured_drop",
            snapshot(measured_accuracy=interval(0.4, 0.1, 199)),
            "no evidence: 199 labelled answers, fewer than --triggers.min_labelled 200",
        ),
    ],
)
def test_missing_evidence_is_named_and_does_not_fire(name, quality, reason):
    decision = judge(only(name), quality=quality)
    judgement = decision.evidence["triggers"][name]
    assert not decision.fire and judgement["fired"] is False and judgement["missing"] is True
    assert judgement["reason"] == reason


@pytest.mark.parametrize(
    ("name", "field", "reference_field"),
    [
        ("estimated_drop", "estimated_accuracy", "reference_accuracy"),
        ("measured_drop", "measured_accuracy", "measured_reference"),
    ],
)
def test_an_accuracy_drop_fires_on_the_upper_end_of_its_interval_not_on_its_point(name, field, reference_field):
    # reference 0.82, drop 0.03: the limit is 0.79.
    point_below_interval_not = interval(0.70, 0.10, 400)  # high 0.80: could still be as good as before
    interval_below = interval(0.75, 0.035, 400)  # high 0.785 < 0.79
    config = only(name, min_labelled=200)
    wide = judge(config, quality=snapshot(**{field: point_below_interval_not, reference_field: 0.82}))
    assert not wide.fire and wide.evidence["triggers"][name]["limit"] == pytest.approx(0.79)
    assert "its upper end is not below" in wide.evidence["triggers"][name]["reason"]
    narrow = judge(config, quality=snapshot(**{field: interval_below, reference_field: 0.82}))
    judgement = narrow.evidence["triggers"][name]
    assert narrow.fire and judgement["estimate"] == interval_below and judgement["reference"] == 0.82
    assert judgement["drop"] == 0.03 and "its upper end is below" in judgement["reason"]


def test_a_larger_drop_setting_tolerates_more():
    quality = snapshot(estimated_accuracy=interval(0.75, 0.02, 300), reference_accuracy=0.81)  # high 0.77
    assert judge(only("estimated_drop", estimated_accuracy_drop=0.03), quality=quality).fire  # limit 0.78
    assert not judge(only("estimated_drop", estimated_accuracy_drop=0.05), quality=quality).fire  # limit 0.76


def test_drift_evidence_carries_the_reports_numbers():
    decision = judge(only("drift"), **BAD["drift"])
    judgement = decision.evidence["triggers"]["drift"]
    assert judgement["reasons"] == ["mmd", "out_of_scope"] and judgement["mmd_p_value"] == 0.001
    assert judgement["out_of_scope_share"] == 0.3 and judgement["papers"] == 300 and judgement["alpha"] == 0.01
    assert judgement["reason"] == "the drift check over 300 papers alarms on mmd, out_of_scope"
    assert decision.evidence["version"] == "v1.0.0" and decision.evidence["papers"] == 300


def test_a_scheduled_run_fires_the_schedule_trigger_only_when_it_is_on():
    assert judge(TriggersConfig(schedule=True), schedule_due=True).fired == ["schedule"]
    assert judge(TriggersConfig(), schedule_due=True).fired == []
    assert judge(TriggersConfig(schedule=True), schedule_due=False).fired == []
