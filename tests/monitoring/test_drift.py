"""Tests for clf/monitoring/drift.py: the MMD permutation test holds its level on windows from the reference's own
distribution, alarms on shifted windows and on a rise of out-of-scope papers, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from clf.artifact import OutOfScopeModel, ReferenceSample
from clf.monitoring.drift import DriftDetector, hellinger_features, median_bandwidth, mmd_test

LABELS = tuple(f"cs.{name}" for name in ("AI", "CL", "CR", "CV", "DB", "DC", "LG", "NE", "RO", "SE"))


def answers(rng: np.random.Generator, papers: int, *, shift: float = 0.0) -> np.ndarray:
    """Probability rows like a 10-class model's: mostly sure of one class; `shift` makes them less sure and moves
    mass towards the last classes (a later period's papers)."""
    classes = len(LABELS)
    mix = np.linspace(1.0, 1.0 + 4 * shift, classes)
    top = rng.choice(classes, papers, p=mix / mix.sum())
    concentration = np.full((papers, classes), 0.3 + shift)
    concentration[np.arange(papers), top] += 6.0 * (1 - shift)
    return np.vstack([rng.dirichlet(row) for row in concentration])


def reference(papers: int = 500, seed: int = 0) -> ReferenceSample:
    rng = np.random.default_rng(seed)
    probabilities = answers(rng, papers)
    scores = rng.normal(size=papers)
    model = OutOfScopeModel(None, 0.0, {"entropy": 0.0}, {"entropy": 1.0}, float(np.quantile(scores, 0.95)),
                            ("entropy",), 0.05)  # fmt: skip
    return ReferenceSample(
        labels=LABELS,
        probabilities=probabilities.astype(np.float32),
        true_labels=probabilities.argmax(axis=1),
        text_chars=rng.integers(600, 1600, papers),
        oos_scores=scores,
        bandwidth=median_bandwidth(hellinger_features(probabilities)),
        out_of_scope=model,
        fitted_on="synthetic",
        accuracy=0.8,
        estimated_accuracy=float(probabilities.max(axis=1).mean()),
        created_at="",
    )


@pytest.fixture(scope="module")
def detector() -> DriftDetector:
    return DriftDetector(reference(), alpha=0.01, permutations=500, seed=0)


def test_windows_from_the_reference_distribution_rarely_alarm(detector):
    rng = np.random.default_rng(1)
    reports = [
        detector.check(answers(rng, 300), text_chars=rng.integers(600, 1600, 300), out_of_scope=rng.random(300) < 0.05)
        for _ in range(30)
    ]

    alarms = sum(report.alarm for report in reports)
    assert alarms <= 1, f"{alarms} of 30 no-drift windows alarmed at alpha 0.01"
    p_values = np.array([report.mmd["p_value"] for report in reports])
    assert 0.2 < np.median(p_values) < 0.8, "under no drift the p-values spread over (0, 1)"


def test_a_shifted_window_alarms_on_mmd_and_says_why(detector):
    rng = np.random.default_rng(2)

    report = detector.check(answers(rng, 300, shift=0.3))

    assert report.alarm and report.reasons == ("mmd",) and report.mmd["p_value"] <= 0.005
    assert report.out_of_scope is None, "no flags given, no out-of-scope test"
    assert report.estimated_accuracy is not None and report.estimated_accuracy.value < 0.75


def test_a_rise_of_out_of_scope_papers_alarms_even_when_the_answers_look_alike(detector):
    rng = np.random.default_rng(3)
    flags = np.zeros(300, dtype=bool)
    flags[:45] = True  # 15 % against the reference's 5 %

    report = detector.check(answers(rng, 300), out_of_scope=flags)

    assert "out_of_scope" in report.reasons and report.alarm
    assert report.out_of_scope == pytest.approx(
        {"share": 0.15, "reference_share": 0.05, "p_value": report.out_of_scope["p_value"], "alarm": True}
    )
    assert report.out_of_scope["p_value"] < 0.005


def test_the_report_is_deterministic_and_has_the_agreed_json_shape(detector):
    window = answers(np.random.default_rng(4), 300)
    chars = np.full(300, 900)

    first, second = detector.check(window, text_chars=chars), detector.check(window, text_chars=chars)

    assert first == second
    document = first.to_json()
    assert list(document) == [
        "papers", "alarm", "reasons", "alpha", "mmd", "class_mix", "text", "out_of_scope", "estimated_accuracy",
    ]  # fmt: skip
    assert set(document["mmd"]) == {"statistic", "p_value", "alarm", "permutations", "reference_papers"}
    assert set(document["class_mix"]) == {"chi2_p_value", "psi", "window", "reference"}
    assert list(document["class_mix"]["window"]) == list(LABELS)
    assert document["text"]["median_chars"] == 900 and document["text"]["ks_p_value"] < 1e-6
    assert set(document["estimated_accuracy"]) == {"value", "low", "high", "n"}


def test_mmd_test_matches_a_loop_over_the_same_permutations():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 3)), rng.normal(0.3, 1.0, size=(20, 3))
    bandwidth = median_bandwidth(a)

    statistic, p_value = mmd_test(a, b, bandwidth=bandwidth, permutations=200, seed=7)

    def mmd(x: np.ndarray, y: np.ndarray) -> float:
        k = lambda u, v: np.exp(-((u[:, None, :] - v[None, :, :]) ** 2).sum(-1) / bandwidth)  # noqa: E731
        return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()

    assert statistic == pytest.approx(mmd(a, b))
    pooled = np.vstack([a, b[np.lexsort(b.T[::-1])]])  # the window's rows in their canonical order
    order = np.random.default_rng(7).permuted(np.tile(np.arange(50), (200, 1)), axis=1)
    null = [mmd(pooled[np.sort(row[20:])], pooled[np.sort(row[:20])]) for row in order]
    assert p_value == pytest.approx((1 + sum(s >= statistic - 1e-12 for s in null)) / 201)


def test_the_p_value_does_not_depend_on_the_order_the_papers_arrived_in():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(40, 3)), rng.normal(0.2, 1.0, size=(30, 3))
    settings = {"bandwidth": median_bandwidth(a), "permutations": 300, "seed": 3}

    assert mmd_test(a, b, **settings) == mmd_test(a, b[rng.permutation(30)], **settings)


def test_bad_settings_and_windows_are_refused(detector):
    with pytest.raises(ValueError, match="alpha must be in"):
        DriftDetector(detector.reference, alpha=1.5)
    with pytest.raises(ValueError, match="permutations must be >= 199"):
        DriftDetector(detector.reference, alpha=0.01, permutations=100)
    with pytest.raises(ValueError, match="10 probabilities"):
        detector.check(np.ones((5, 3)) / 3)
