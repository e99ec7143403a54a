"""`DriftDetector`: is a window of served answers still like the model's reference sample?

    detector = DriftDetector(artifact.reference, alpha=0.01)
    report = detector.check(probabilities, text_chars=chars, out_of_scope=flags)    # a window of 300 papers
    report.alarm, report.reasons, report.to_json()

Signals, each against the artifact's `clf.artifact.ReferenceSample` (held-out papers answered at training time):

* **MMD** — a two-sample test on the answers themselves: an RBF-kernel maximum mean discrepancy between the
  square-rooted calibrated probability vectors (Hellinger features: the same whichever backend computed them) of the
  window and of the reference, its p-value from permutations. It sees any change in what the model answers and how
  sure it is, not only in the top class. Alarms at ``p <= alpha / 2``.
* **out-of-scope share** — the share of the window's papers flagged out of scope against the reference's share
  (one-sided binomial test). Alarms at ``p <= alpha / 2``. The two alarms split `alpha` (Bonferroni).
* **class mix** — the predicted-class shares: a chi-square test of the two count tables and the population
  stability index (PSI). Reported, never an alarm: on its own it missed every window of later papers that MMD caught
  (docs/MONITORING.md).
* **text** — a Kolmogorov–Smirnov test of text lengths and the medians. Reported, never an alarm.
* **estimated accuracy** — the mean calibrated top-1 probability with its interval (`clf.monitoring.estimates`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clf.monitoring.estimates import Estimate, estimated_accuracy

if TYPE_CHECKING:
    from clf.artifact import ReferenceSample

PSI_FLOOR = 1e-4
"""Share given to a class absent on one side, so the PSI stays finite."""


def hellinger_features(probabilities: np.ndarray) -> np.ndarray:
    """The square roots of probability rows: Euclidean distance between them is √2 × their Hellinger distance.

    Args:
        probabilities: ``(n, C)`` rows summing to 1.

    Returns:
        ``(n, C)`` float64.
    """
    return np.sqrt(np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, None))


def median_bandwidth(features: np.ndarray) -> float:
    """The median squared Euclidean distance between distinct rows: the RBF bandwidth of the drift test.

    Args:
        features: ``(n, d)`` with n >= 2.

    Returns:
        The median (a small positive floor when every row is the same).
    """
    distances = _squared_distances(features, features)
    median = float(np.median(distances[np.triu_indices(len(features), 1)]))
    return max(median, 1e-12)


def mmd_test(
    reference: np.ndarray, window: np.ndarray, *, bandwidth: float, permutations: int, seed: int
) -> tuple[float, float]:
    """A permutation test of the RBF-kernel MMD between two samples.

    The statistic is the biased (V-statistic) squared MMD with ``k(x, y) = exp(−‖x − y‖² / bandwidth)``. Each
    permutation reassigns the pooled papers to the two groups; with the kernel matrix ``K`` of the pooled sample and
    a 0/1 row ``z`` marking the window, every term is a quadratic form in ``z``, so all permutations come from one
    matrix product ``Z K`` (``Z``: permutations × papers), not from a Python loop.

    Args:
        reference: ``(n, d)`` features of the reference sample.
        window: ``(m, d)`` features of the window.
        bandwidth: the kernel's bandwidth (the reference's median squared distance).
        permutations: how many random reassignments.
        seed: their seed: the same samples and seed give the same p-value, in whatever order the window's rows come.

    Returns:
        ``(statistic, p_value)``, the p-value ``(1 + #{permuted >= observed}) / (1 + permutations)``.

    Raises:
        ValueError: for an empty sample, mismatched widths, a non-positive bandwidth or too few permutations.
    """
    reference, window = np.asarray(reference, dtype=np.float64), np.asarray(window, dtype=np.float64)
    n, m = len(reference), len(window)
    if n < 2 or m < 2 or reference.shape[1:] != window.shape[1:]:
        raise ValueError(f"mmd_test needs two samples of >= 2 rows and one width, got {reference.shape} {window.shape}")
    if not bandwidth > 0 or permutations < 1:
        raise ValueError(f"bandwidth must be positive and permutations >= 1, got {bandwidth}, {permutations}")
    # Rows in a canonical order: the same papers give the same p-value whatever order they arrived in.
    window = window[np.lexsort(window.T[::-1])]
    pooled = np.vstack([reference, window])
    kernel = np.exp(-_squared_distances(pooled, pooled) / bandwidth)
    total = n + m
    rng = np.random.default_rng(seed)
    order = rng.permuted(np.tile(np.arange(total), (permutations, 1)), axis=1)
    assignments = np.zeros((permutations + 1, total))
    assignments[0, n:] = 1.0  # the observed split first
    np.put_along_axis(assignments[1:], order[:, :m], 1.0, axis=1)
    row_sums = kernel.sum(axis=1)
    all_sum = row_sums.sum()
    window_window = np.einsum("pi,pi->p", assignments @ kernel, assignments)
    window_all = assignments @ row_sums
    reference_reference = all_sum - 2 * window_all + window_window
    cross = window_all - window_window
    statistics = reference_reference / n**2 + window_window / m**2 - 2 * cross / (n * m)
    observed, null = statistics[0], statistics[1:]
    # Rounding noise in the matrix product must not decide ties between equal assignments.
    exceed = int(np.sum(null >= observed - 1e-12 * max(abs(observed), 1.0)))
    return float(observed), (1 + exceed) / (1 + permutations)


@dataclass(frozen=True)
class DriftReport:
    """What one window of served answers looked like against the reference sample.

    Attributes:
        papers: papers in the window.
        alarm: whether the window drifted: the MMD or the out-of-scope share alarmed.
        reasons: which alarmed (``mmd``, ``out_of_scope``), empty when none.
        alpha: the family-wise significance level, split between the two alarms.
        mmd: ``{"statistic", "p_value", "alarm", "permutations", "reference_papers"}``.
        class_mix: ``{"chi2_p_value", "psi", "window", "reference"}`` (shares per class).
        text: ``{"ks_p_value", "median_chars", "reference_median_chars"}`` (None values without text lengths).
        out_of_scope: ``{"share", "reference_share", "p_value", "alarm"}``; None without per-paper flags or an
            out-of-scope model.
        estimated_accuracy: the window's estimated accuracy (mean calibrated top-1 probability and interval).
    """

    papers: int
    alarm: bool
    reasons: tuple[str, ...]
    alpha: float
    mmd: dict[str, Any]
    class_mix: dict[str, Any]
    text: dict[str, Any]
    out_of_scope: dict[str, Any] | None
    estimated_accuracy: Estimate | None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON.

        Returns:
            ``{"papers", "alarm", "reasons", "alpha", "mmd", "class_mix", "text", "out_of_scope",
            "estimated_accuracy"}``.
        """
        estimate = self.estimated_accuracy
        return {
            "papers": self.papers,
            "alarm": self.alarm,
            "reasons": list(self.reasons),
            "alpha": self.alpha,
            "mmd": dict(self.mmd),
            "class_mix": dict(self.class_mix),
            "text": dict(self.text),
            "out_of_scope": None if self.out_of_scope is None else dict(self.out_of_scope),
            "estimated_accuracy": None if estimate is None else estimate.to_json(),
        }


class DriftDetector:
    """Tests windows of served answers against an artifact's reference sample.

    Args:
        reference: the artifact's reference sample (`clf.artifact.ModelArtifact.reference`).
        alpha: the family-wise significance level of a window's alarm; the MMD and the out-of-scope share each
            alarm at ``alpha / 2``.
        permutations: permutations of the MMD test (its smallest p-value is ``1 / (1 + permutations)``).
        seed: seed of the permutations; a window checked twice gets the same report.

    Raises:
        ValueError: for `alpha` outside (0, 1) or `permutations` too few to reach ``alpha / 2``.
    """

    def __init__(self, reference: ReferenceSample, *, alpha: float = 0.01, permutations: int = 1000, seed: int = 0):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if 1 / (1 + permutations) > alpha / 2:
            raise ValueError(
                f"permutations must be >= {int(np.ceil(2 / alpha)) - 1} to reach alpha/2, got {permutations}"
            )
        self.reference = reference
        self.alpha, self.permutations, self.seed = alpha, permutations, seed
        self._features = hellinger_features(reference.probabilities)
        self._predicted_counts = np.bincount(reference.predicted, minlength=len(reference.labels))

    def check(
        self,
        probabilities: np.ndarray,
        text_chars: np.ndarray | Sequence[int] | None = None,
        out_of_scope: np.ndarray | Sequence[bool] | None = None,
    ) -> DriftReport:
        """Tests one window.

        Args:
            probabilities: ``(n, C)`` calibrated probabilities, columns in ``reference.labels`` order.
            text_chars: each paper's text length in characters, when known.
            out_of_scope: each paper's out-of-scope flag, when the service computed them.

        Returns:
            The report.

        Raises:
            ValueError: for a window of fewer than 2 papers or the wrong number of columns.
        """
        window = np.asarray(probabilities, dtype=np.float64)
        labels = self.reference.labels
        if window.ndim != 2 or window.shape[1] != len(labels) or len(window) < 2:
            raise ValueError(f"a window needs >= 2 rows of {len(labels)} probabilities, got shape {window.shape}")
        statistic, p_value = mmd_test(
            self._features,
            hellinger_features(window),
            bandwidth=self.reference.bandwidth,
            permutations=self.permutations,
            seed=self.seed,
        )
        half = self.alpha / 2
        mmd = {
            "statistic": statistic,
            "p_value": p_value,
            "alarm": p_value <= half,
            "permutations": self.permutations,
            "reference_papers": self.reference.papers,
        }
        oos = self._out_of_scope(out_of_scope, len(window), half)
        reasons = tuple(name for name, part in (("mmd", mmd), ("out_of_scope", oos)) if part and part["alarm"])
        return DriftReport(
            papers=len(window),
            alarm=bool(reasons),
            reasons=reasons,
            alpha=self.alpha,
            mmd=mmd,
            class_mix=self._class_mix(window.argmax(axis=1)),
            text=self._text(text_chars),
            out_of_scope=oos,
            estimated_accuracy=estimated_accuracy(np.clip(window.max(axis=1), 0.0, 1.0).tolist()),
        )

    def _class_mix(self, predicted: np.ndarray) -> dict[str, Any]:
        from scipy.stats import chi2_contingency

        labels = self.reference.labels
        counts = np.bincount(predicted, minlength=len(labels))
        table = np.vstack([self._predicted_counts, counts])
        table = table[:, table.sum(axis=0) > 0]
        chi2_p = float(chi2_contingency(table)[1]) if table.shape[1] > 1 else 1.0
        window_share = counts / counts.sum()
        reference_share = self._predicted_counts / self._predicted_counts.sum()
        a, b = np.maximum(window_share, PSI_FLOOR), np.maximum(reference_share, PSI_FLOOR)
        return {
            "chi2_p_value": chi2_p,
            "psi": float(np.sum((a - b) * np.log(a / b))),
            "window": {label: float(s) for label, s in zip(labels, window_share, strict=True)},
            "reference": {label: float(s) for label, s in zip(labels, reference_share, strict=True)},
        }

    def _text(self, text_chars: np.ndarray | Sequence[int] | None) -> dict[str, Any]:
        reference_median = float(np.median(self.reference.text_chars))
        if text_chars is None or len(text_chars) == 0:
            return {"ks_p_value": None, "median_chars": None, "reference_median_chars": reference_median}
        from scipy.stats import ks_2samp

        chars = np.asarray(text_chars, dtype=np.float64)
        return {
            "ks_p_value": float(ks_2samp(chars, self.reference.text_chars).pvalue),
            "median_chars": float(np.median(chars)),
            "reference_median_chars": reference_median,
        }

    def _out_of_scope(
        self, flags: np.ndarray | Sequence[bool] | None, papers: int, level: float
    ) -> dict[str, Any] | None:
        if flags is None or self.reference.out_of_scope is None:
            return None
        from scipy.stats import binomtest

        flagged = np.asarray(flags, dtype=bool)
        if len(flagged) != papers:
            raise ValueError(f"out_of_scope has {len(flagged)} flags for a window of {papers} papers")
        expected = min(max(self.reference.out_of_scope_share, 1.0 / (self.reference.papers + 1)), 1.0)
        p_value = float(binomtest(int(flagged.sum()), papers, expected, alternative="greater").pvalue)
        return {
            "share": float(flagged.mean()),
            "reference_share": self.reference.out_of_scope_share,
            "p_value": p_value,
            "alarm": p_value <= level,
        }


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2 * a @ b.T
    return np.maximum(squared, 0.0)
