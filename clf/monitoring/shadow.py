"""Judging a shadow candidate: did it answer like production, as surely, as fast and without errors?

A shadow stage mirrors a share of live requests to a candidate off the response path; its answers are never
returned. Each mirrored request the candidate answered gives a *pair* — production's top-1 label and probability
and the candidate's — and `judge_shadow` turns the pairs, the latency samples and the error count into a verdict:

- **agreement**: the share of paired papers whose top-1 label equals production's, at least `min_agreement`;
- **confidence**: the candidate's mean top-1 probability at most `max_confidence_drop` below production's;
- **errors**: candidate errors over the mirrored requests that reached it, at most `max_error_rate` — judged early,
  before `min_requests` pairs, once no later run of answers could bring the rate back under the bound;
- **latency**: the candidate's model latency p95 at most `max_latency_ratio` times production's (not judged when
  either side has no samples);
- **accuracy**: on the pairs whose true label has arrived, the candidate's accuracy at most `max_accuracy_drop` below
  production's (not judged, and said so, with fewer than `min_labelled` labelled pairs).

Mirrors the bounded queue shed under load are reported (`dropped`), never held against the candidate. The same
function judges the service's shadow stage and an offline backtest over logged answers.

Examples:
    >>> pairs = ShadowObservations(["cs.CL"] * 3, ["cs.CL", "cs.CL", "cs.LG"], [0.9] * 3, [0.85] * 3)
    >>> judge_shadow(pairs, ShadowCriteria(min_requests=3, min_agreement=0.6)).status
    'passed'
    >>> verdict = judge_shadow(pairs, ShadowCriteria(min_requests=3))
    >>> verdict.status, verdict.reasons[0]
    ('failed', 'agreement 66.7% of 3 paired answers is below 80.0%: fail')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np

ShadowStatus = Literal["passed", "failed", "pending"]

_SHARES = ("min_agreement", "max_confidence_drop", "max_error_rate", "max_accuracy_drop")
_COUNTS = ("min_requests", "min_labelled")


@dataclass(frozen=True)
class ShadowCriteria:
    """When a shadow candidate passes.

    Attributes:
        min_requests: paired answers (both sides answered) needed before a verdict; fewer: pending.
        min_agreement: share of paired papers whose top-1 label equals production's.
        max_confidence_drop: the candidate's mean top-1 probability may be at most this below production's.
        max_error_rate: candidate errors / mirrored requests that reached it.
        max_latency_ratio: candidate p95 model latency / production p95 (not judged when either is empty).
        max_accuracy_drop: on labelled pairs, the candidate's accuracy may be at most this below production's.
        min_labelled: labelled pairs needed for the accuracy criterion (fewer: not judged, and said so).
    """

    min_requests: int = 200
    min_agreement: float = 0.80
    max_confidence_drop: float = 0.05
    max_error_rate: float = 0.01
    max_latency_ratio: float = 1.5
    max_accuracy_drop: float = 0.02
    min_labelled: int = 100

    def __post_init__(self) -> None:
        for name in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--criteria.{name} must be a whole number of at least 1, got {value!r}")
        for name in _SHARES:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"--criteria.{name} must be in [0, 1], got {value!r}")
        ratio = self.max_latency_ratio
        if not isinstance(ratio, int | float) or math.isnan(ratio) or ratio <= 0:
            raise ValueError(f"--criteria.max_latency_ratio must be positive (inf: not judged), got {ratio!r}")

    def to_json(self) -> dict[str, Any]:
        """The criteria as JSON (``max_latency_ratio`` inf as None).

        Returns:
            One key per field.
        """
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if math.isinf(values["max_latency_ratio"]):
            values["max_latency_ratio"] = None
        return values

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShadowCriteria:
        """Criteria back from `to_json` (unknown keys ignored, missing ones at their defaults).

        Args:
            data: the JSON.

        Returns:
            The criteria.
        """
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if "max_latency_ratio" in values and values["max_latency_ratio"] is None:
            values["max_latency_ratio"] = math.inf
        return cls(**values)


@dataclass(frozen=True)
class ShadowObservations:
    """What a shadow stage saw: one entry per paired request in each of the aligned sequences.

    Attributes:
        production_labels: production's top-1 label per paired request.
        candidate_labels: the candidate's top-1 label per paired request.
        production_confidence: production's top-1 probability per paired request.
        candidate_confidence: the candidate's top-1 probability per paired request.
        production_latency_ms: production's model latency samples.
        candidate_latency_ms: the candidate's model latency samples.
        candidate_errors: mirrored requests the candidate failed on.
        mirrored: requests mirrored to the candidate (answered or errored); 0 means the pairs plus the errors.
        dropped: mirrors shed by the bounded queue (reported, never a failure).
        true_labels: aligned with the pairs; None where no label arrived (None: no labels at all).
        arxiv_ids: aligned with the pairs: the paper's arXiv id as the request sent it, None where it sent none
            (None: no ids at all); what `with_true_labels` looks the labels up by.
    """

    production_labels: Sequence[str]
    candidate_labels: Sequence[str]
    production_confidence: Sequence[float]
    candidate_confidence: Sequence[float]
    production_latency_ms: Sequence[float] = ()
    candidate_latency_ms: Sequence[float] = ()
    candidate_errors: int = 0
    mirrored: int = 0
    dropped: int = 0
    true_labels: Sequence[str | None] | None = None
    arxiv_ids: Sequence[str | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.production_labels)
        aligned = {
            "candidate_labels": self.candidate_labels,
            "production_confidence": self.production_confidence,
            "candidate_confidence": self.candidate_confidence,
        }
        if self.true_labels is not None:
            aligned["true_labels"] = self.true_labels
        if self.arxiv_ids is not None:
            aligned["arxiv_ids"] = self.arxiv_ids
        for name, values in aligned.items():
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} production_labels; they must align")
        for name in ("candidate_errors", "mirrored", "dropped"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")

    def with_true_labels(self, labels: Mapping[str, str]) -> ShadowObservations:
        """The same observations with each pair's true label looked up by its arXiv id.

        Args:
            labels: arXiv id (as in `arxiv_ids`) → true label; the ids it lacks stay unlabelled.

        Returns:
            A copy whose `true_labels` align with the pairs (None where a pair has no id or its id no label).

        Examples:
            >>> ids = ["2401.00001", None]
            >>> seen = ShadowObservations(["cs.CL"] * 2, ["cs.CL", "cs.LG"], [0.9] * 2, [0.8] * 2, arxiv_ids=ids)
            >>> seen.with_true_labels({"2401.00001": "cs.LG"}).true_labels
            ['cs.LG', None]
        """
        ids = self.arxiv_ids or [None] * len(self.production_labels)
        return replace(self, true_labels=[labels.get(arxiv_id) if arxiv_id else None for arxiv_id in ids])


@dataclass(frozen=True)
class ShadowVerdict:
    """A shadow candidate's verdict with its evidence.

    Attributes:
        status: ``passed``, ``failed``, or ``pending`` (too few paired answers yet).
        reasons: one sentence per criterion: the number, the bound, and pass, fail or not judged.
        numbers: the evidence: ``paired``, ``mirrored``, ``errors``, ``error_rate``, ``dropped``, ``agreement``,
            ``production_confidence``, ``candidate_confidence``, ``confidence_drop``, ``production_p95_ms``,
            ``candidate_p95_ms``, ``latency_ratio``, ``labelled``, ``production_accuracy``, ``candidate_accuracy``,
            ``accuracy_drop`` (None where there was nothing to measure).
    """

    status: ShadowStatus
    reasons: tuple[str, ...]
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the candidate passed."""
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        """The verdict as JSON.

        Returns:
            ``{"status", "passed", "reasons", "numbers"}``.
        """
        return {"status": self.status, "passed": self.passed, "reasons": list(self.reasons), "numbers": self.numbers}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShadowVerdict:
        """A verdict back from `to_json`.

        Args:
            data: the JSON.

        Returns:
            The verdict.
        """
        return cls(data["status"], tuple(data.get("reasons") or ()), dict(data.get("numbers") or {}))


def check_share(share: float) -> float:
    """The share of requests a shadow is mirrored, checked.

    Args:
        share: the share, in (0, 1].

    Returns:
        It, as a float.

    Raises:
        ValueError: naming ``--share`` when it is outside (0, 1].
    """
    if not isinstance(share, int | float) or not 0.0 < share <= 1.0:
        raise ValueError(f"--share must be in (0, 1], got {share!r}")
    return float(share)


def judge_shadow(observations: ShadowObservations, criteria: ShadowCriteria = ShadowCriteria()) -> ShadowVerdict:
    """Judges a shadow candidate against production on the same requests.

    Args:
        observations: the paired answers, latency samples and counts of the stage.
        criteria: the bounds.

    Returns:
        ``failed`` with fewer than `min_requests` pairs only when the errors already settle it; ``pending`` otherwise
        until there are enough pairs; then ``passed`` when no judged criterion fails, else ``failed``. Either way one
        reason per criterion.
    """
    numbers = _numbers(observations)
    paired, errors = numbers["paired"], numbers["errors"]
    # At the first moment a verdict is due, at least min_requests answers sit beside the errors so far: a rate above
    # the bound even then cannot come back under it, so the candidate fails now, as the canary's error gate does.
    lowest_rate = errors / max(numbers["mirrored"], criteria.min_requests + errors) if errors else 0.0
    error_ok = numbers["error_rate"] <= criteria.max_error_rate
    error_reason = (
        f"error rate {numbers['error_rate']:.1%} ({errors} of {numbers['mirrored']} mirrored) is "
        f"{'within' if error_ok else 'above'} {criteria.max_error_rate:.1%}: {'pass' if error_ok else 'fail'}"
    )
    if paired < criteria.min_requests:
        if lowest_rate > criteria.max_error_rate:
            return ShadowVerdict("failed", (error_reason + " (before enough paired answers)",), numbers)
        waiting = f"{paired} of {criteria.min_requests} paired answers: not judged yet"
        return ShadowVerdict("pending", (waiting,), numbers)
    verdicts = [_agreement(numbers, criteria), _confidence(numbers, criteria), (error_ok, error_reason)]
    verdicts += [_latency(numbers, criteria), _accuracy(numbers, criteria)]
    status: ShadowStatus = "failed" if any(ok is False for ok, _ in verdicts) else "passed"
    return ShadowVerdict(status, tuple(reason for _, reason in verdicts), numbers)


def _numbers(observations: ShadowObservations) -> dict[str, Any]:
    paired = len(observations.production_labels)
    errors = int(observations.candidate_errors)
    mirrored = int(observations.mirrored) or paired + errors
    production_conf = _mean(observations.production_confidence)
    candidate_conf = _mean(observations.candidate_confidence)
    production_p95 = _p95(observations.production_latency_ms)
    candidate_p95 = _p95(observations.candidate_latency_ms)
    ratio = None
    if production_p95 is not None and candidate_p95 is not None and production_p95 > 0:
        ratio = candidate_p95 / production_p95
    agree = [p == c for p, c in zip(observations.production_labels, observations.candidate_labels, strict=True)]
    numbers: dict[str, Any] = {
        "paired": paired,
        "mirrored": mirrored,
        "errors": errors,
        "error_rate": errors / mirrored if mirrored else 0.0,
        "dropped": int(observations.dropped),
        "agreement": _mean(agree),
        "production_confidence": production_conf,
        "candidate_confidence": candidate_conf,
        "confidence_drop": None
        if production_conf is None or candidate_conf is None
        else production_conf - candidate_conf,
        "production_p95_ms": production_p95,
        "candidate_p95_ms": candidate_p95,
        "latency_ratio": ratio,
    }
    truth = observations.true_labels or [None] * paired
    labelled = [
        (t, p, c)
        for t, p, c in zip(truth, observations.production_labels, observations.candidate_labels, strict=True)
        if t is not None
    ]
    production_acc = _mean([p == t for t, p, _ in labelled])
    candidate_acc = _mean([c == t for t, _, c in labelled])
    numbers |= {
        "labelled": len(labelled),
        "production_accuracy": production_acc,
        "candidate_accuracy": candidate_acc,
        "accuracy_drop": None if production_acc is None or candidate_acc is None else production_acc - candidate_acc,
    }
    return numbers


def _agreement(numbers: dict[str, Any], criteria: ShadowCriteria) -> tuple[bool, str]:
    agreement = numbers["agreement"]
    ok = agreement >= criteria.min_agreement
    relation = "at least" if ok else "below"
    return ok, (
        f"agreement {agreement:.1%} of {numbers['paired']} paired answers is {relation} "
        f"{criteria.min_agreement:.1%}: {'pass' if ok else 'fail'}"
    )


def _confidence(numbers: dict[str, Any], criteria: ShadowCriteria) -> tuple[bool, str]:
    drop = numbers["confidence_drop"]
    ok = drop <= criteria.max_confidence_drop + 1e-12
    return ok, (
        f"mean top-1 probability {numbers['candidate_confidence']:.3f} vs production's "
        f"{numbers['production_confidence']:.3f}, a drop of {drop:.3f}, is {'within' if ok else 'above'} "
        f"{criteria.max_confidence_drop:.3f}: {'pass' if ok else 'fail'}"
    )


def _latency(numbers: dict[str, Any], criteria: ShadowCriteria) -> tuple[bool | None, str]:
    ratio = numbers["latency_ratio"]
    if ratio is None or math.isinf(criteria.max_latency_ratio):
        why = "not asked for" if math.isinf(criteria.max_latency_ratio) else "no latency samples on both sides"
        return None, f"model latency p95: {why}: not judged"
    ok = ratio <= criteria.max_latency_ratio
    return ok, (
        f"model latency p95 {numbers['candidate_p95_ms']:.1f} ms vs production's {numbers['production_p95_ms']:.1f} "
        f"ms, ×{ratio:.2f}, is {'within' if ok else 'above'} ×{criteria.max_latency_ratio:.2f}: "
        f"{'pass' if ok else 'fail'}"
    )


def _accuracy(numbers: dict[str, Any], criteria: ShadowCriteria) -> tuple[bool | None, str]:
    labelled = numbers["labelled"]
    if labelled < criteria.min_labelled:
        return None, f"accuracy: {labelled} of {criteria.min_labelled} labelled pairs needed: not judged"
    drop = numbers["accuracy_drop"]
    ok = drop <= criteria.max_accuracy_drop + 1e-12
    return ok, (
        f"accuracy {numbers['candidate_accuracy']:.1%} vs production's {numbers['production_accuracy']:.1%} on "
        f"{labelled} labelled pairs, a drop of {drop:.1%}, is {'within' if ok else 'above'} "
        f"{criteria.max_accuracy_drop:.1%}: {'pass' if ok else 'fail'}"
    )


def _mean(values: Sequence[float] | Sequence[bool]) -> float | None:
    return float(np.mean(np.asarray(values, dtype=float))) if len(values) else None


def _p95(values: Sequence[float]) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), 95)) if len(values) else None
