"""Candidates side by side on one protocol: model versions through the predictor, and the TF-IDF baseline beside them.

    protocol = build_protocol("temporal", categories=predictor.labels)
    seen = seen_papers(predictor.artifact)                       # what the model trained and validated on
    samples = unseen_test_samples(protocol, predictor.labels, exclude=seen.ids)
    model, *stages = score_model_stages(predictor, samples)      # every metric of clf.evaluation.metrics
    baseline = score_baseline(protocol, samples, predictor.labels)

A model is scored on what `clf.inference.ModelPredictor.predict_probabilities` returns, the probabilities the
service answers with. The baseline is trained on the protocol's training papers, its C chosen on the protocol's
validation papers, never on the test papers.

A test set is honest only if the model never saw its papers. The protocols' test papers are disjoint from their own
training papers, but a model may have been trained on another split of the same file (the quickstart trains on a
3,000-paper sample of it): `seen_papers` reads the split files its lineage records (or the data folder named with
``--trained-on``), and `unseen_test_samples` leaves those papers out, for every candidate alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clf.artifact import ModelArtifact
from clf.data.paper import strip_version
from clf.evaluation.baseline import DEFAULT_C_GRID, fit_tfidf_baseline
from clf.evaluation.compare import EvaluationError, label_index, load_samples, sample_texts
from clf.evaluation.metrics import BOOTSTRAP_RESAMPLES, ClassificationReport, listed_of
from clf.evaluation.paired import Difference, paired_bootstrap
from clf.evaluation.protocol import Protocol, describe_part
from clf.io import sha256_of_file

if TYPE_CHECKING:
    from clf.inference import ModelPredictor

log = logging.getLogger(__name__)

BASELINE_NAME = "tfidf_logreg"
"""The name the TF-IDF + logistic-regression baseline is reported under."""


@dataclass(frozen=True)
class SeenPapers:
    """The papers a model was trained or validated on, as far as its artifact tells.

    Attributes:
        ids: their arXiv ids, without version.
        known: whether its training and validation split files could be read; when not, nothing is excluded and
            the report says so.
        sources: the split files read.
        verified: whether each file still has the sha256 its lineage recorded (False for ``--trained-on`` folders
            and for files that changed since training).
        note: how the papers were found, or why they were not.
    """

    ids: frozenset[str] = frozenset()
    known: bool = False
    sources: list[str] = field(default_factory=list)
    verified: bool = False
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The fields, with the number of ids instead of the ids.
        """
        return {
            "count": len(self.ids),
            "known": self.known,
            "sources": self.sources,
            "verified": self.verified,
            "note": self.note,
        }


def seen_papers(artifact: ModelArtifact, trained_on: str | Path | None = None) -> SeenPapers:
    """Reads the ids of the papers a model was trained and validated on.

    Args:
        artifact: the model's artifact; its lineage names its split files.
        trained_on: a data folder whose ``splits/train.json`` and ``splits/val.json`` the model was trained on,
            for an artifact without lineage (or whose data moved).

    Returns:
        The papers; ``known`` is False when the split files cannot be found.

    Raises:
        EvaluationError: when `trained_on` lacks those files.
    """
    recorded = artifact.lineage.splits
    if trained_on is not None:
        files = {name: Path(trained_on) / "splits" / f"{name}.json" for name in ("train", "val")}
        missing = [str(path) for path in files.values() if not path.is_file()]
        if missing:
            raise EvaluationError(f"--trained_on {trained_on}: no {', '.join(missing)}")
        verified = False
        note = f"the split files of --trained_on {trained_on}"
    else:
        files = {name: Path(recorded[name].file) for name in ("train", "val") if name in recorded}
        if artifact.lineage.data_dir and not all(path.is_file() for path in files.values()):
            files = {name: Path(artifact.lineage.data_dir) / "splits" / f"{name}.json" for name in ("train", "val")}
        if set(files) != {"train", "val"} or not all(path.is_file() for path in files.values()):
            return SeenPapers(
                note=f"{artifact.path}: its lineage names no readable train and val split files, so papers it was "
                "trained on cannot be left out of the test set; pass --trained_on DATA_DIR"
            )
        verified = all(sha256_of_file(path) == recorded[name].sha256 for name, path in files.items())
        note = "the train and val split files its lineage records" + ("" if verified else " (changed since training)")
    ids = frozenset(_id(s) for path in files.values() for s in load_samples(path))
    return SeenPapers(ids - {""}, True, [str(path) for path in files.values()], verified, note)


def unseen_test_samples(
    protocol: Protocol, labels: Sequence[str], exclude: Collection[str] = ()
) -> list[dict[str, Any]]:
    """The protocol's test papers, less those in `exclude` (papers a candidate was trained or validated on).

    Args:
        protocol: the protocol.
        labels: the classes scored; a built protocol holds no other label.
        exclude: arXiv ids to leave out.

    Returns:
        The test samples kept, in order.

    Raises:
        EvaluationError: when no test paper is left, or one has a label outside `labels`.
    """
    outside = sorted({s["label"] for s in protocol.test if isinstance(s["label"], str)} - set(labels))
    if outside:
        raise EvaluationError(f"{protocol.name}: test labels {outside} are not among the model's classes {labels}")
    kept = [s for s in protocol.test if _id(s) not in exclude]
    if not kept:
        raise EvaluationError(f"{protocol.name}: every test paper was excluded as seen in training")
    return kept


@dataclass(frozen=True)
class ScoredCandidate:
    """One candidate's scores on the test papers.

    Attributes:
        name: the version (``v1.2.0``, ``base`` for an export folder) or `BASELINE_NAME`.
        kind: ``model`` or ``baseline``.
        report: every metric, with intervals.
        seconds: wall time: predicting the test papers (the baseline: fitting, choosing C and predicting).
        details: what the candidate is: path and backend, or the baseline's config and validation scores.
        probabilities: its ``(N, C)`` probabilities of the test papers (for paired comparisons; not in `to_json`).
        truth: the papers' true class indices, in the same order.
    """

    name: str
    kind: str
    report: ClassificationReport
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)
    truth: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The fields but the arrays, the report as nested dicts.
        """
        return {k: v for k, v in asdict(self).items() if k not in ("probabilities", "truth")}


def truth_of(samples: Sequence[dict[str, Any]], labels: Sequence[str], version: str = "") -> np.ndarray:
    """The class index of every sample's label.

    Args:
        samples: labelled samples.
        labels: the classes, in index order.
        version: the model named in an error.

    Returns:
        The ``N`` class indices.

    Raises:
        EvaluationError: for a label outside `labels`.
    """
    label2id = {label: i for i, label in enumerate(labels)}
    return np.array([label_index(s["label"], label2id, version) for s in samples], dtype=np.int64)


def score_model_stages(
    predictor: ModelPredictor,
    samples: Sequence[dict[str, Any]],
    *,
    batch_size: int = 32,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    stages: bool = True,
) -> list[ScoredCandidate]:
    """Scores a model as it answers and, with `stages`, at each stage of its artifact's scoring, from one pass.

    The stages of an artifact with a TF-IDF companion and a temperature are ``NAME`` (what it answers),
    ``NAME [encoder]`` (the fine-tuned encoder alone, uncalibrated) and ``NAME [mixture]`` (encoder and companion
    mixed, no temperature); an artifact with a temperature only adds ``NAME [encoder]``. Every stage is computed from
    the same encoder probabilities, so the differences are the stages' alone.

    Args:
        predictor: the model.
        samples: test samples (``text`` or ``title``/``abstract``, ``label``, ``categories``).
        batch_size: texts per forward pass.
        resamples: bootstrap resamples of each interval.
        seed: the bootstrap's seed.
        stages: also score the stages; False: only what the model answers.

    Returns:
        What it answers first, then each stage; ``seconds`` is the time to predict every sample (the answers).

    Raises:
        EvaluationError: for a label the model does not know.
    """
    import dataclasses

    from clf.artifact import Calibration
    from clf.inference.scoring import Scorer

    labels, scoring = predictor.labels, predictor.artifact.scoring
    truth = truth_of(samples, labels, predictor.version)
    listed = listed_of(samples, labels)
    texts = sample_texts(list(samples))
    started = time.perf_counter()
    encoder = predictor.encoder_probabilities(texts, batch_size=batch_size)
    answers = predictor.scorer(encoder, texts)
    seconds = time.perf_counter() - started
    details = {
        "path": str(predictor.model_dir),
        "backend": predictor.backend,
        "multi_label": predictor.multi_label,
        "batch_size": batch_size,
        "papers_per_second": round(len(texts) / seconds, 2) if seconds > 0 else None,
        "scoring": scoring.describe(),
    }

    def scored(name: str, probabilities: Any, stage: str) -> ScoredCandidate:
        report = ClassificationReport.from_probabilities(
            probabilities.numpy(),
            truth,
            labels,
            listed,
            resamples=resamples,
            seed=seed,
            abstain_below=scoring.abstain_below,
        )
        return ScoredCandidate(
            name, "model", report, round(seconds, 3), {**details, "stage": stage}, probabilities.numpy(), truth
        )

    results = [scored(predictor.version, answers, "answers")]
    if stages and not scoring.is_plain:
        results.append(scored(f"{predictor.version} [encoder]", encoder, "encoder"))
        if scoring.companion is not None and scoring.encoder_weight < 1:
            uncalibrated = Scorer(dataclasses.replace(scoring, calibration=Calibration()), predictor.multi_label)
            results.append(scored(f"{predictor.version} [mixture]", uncalibrated(encoder, texts), "mixture"))
    return results


def score_baseline(
    protocol: Protocol,
    samples: Sequence[dict[str, Any]],
    labels: Sequence[str],
    *,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    seed: int = 42,
    resamples: int = BOOTSTRAP_RESAMPLES,
    bootstrap_seed: int = 0,
) -> ScoredCandidate:
    """Trains the TF-IDF + logistic-regression baseline on the protocol's train papers (C on val) and scores it.

    Args:
        protocol: the protocol, whose train and val papers it learns from.
        samples: the test samples the models are scored on.
        labels: the classes, in the models' index order.
        c_grid: the values of C to choose from on val.
        seed: the classifier's random state.
        resamples: bootstrap resamples of each interval.
        bootstrap_seed: the bootstrap's seed.

    Returns:
        Its scores; ``seconds`` covers fitting, choosing C and predicting.

    Raises:
        EvaluationError: when the protocol has no train or val papers.
    """
    if not protocol.train or not protocol.val:
        raise EvaluationError(f"{protocol.name}: no train and val papers to fit the baseline on")
    started = time.perf_counter()
    known = set(labels)
    train = [s for s in protocol.train if s["label"] in known]
    val = [s for s in protocol.val if s["label"] in known]
    baseline = fit_tfidf_baseline(
        sample_texts(train),
        [s["label"] for s in train],
        sample_texts(val),
        [s["label"] for s in val],
        c_grid=c_grid,
        seed=seed,
    )
    probabilities = baseline.predict_proba(sample_texts(list(samples)), labels)
    seconds = time.perf_counter() - started
    truth = truth_of(samples, labels)
    report = ClassificationReport.from_probabilities(
        probabilities,
        truth,
        labels,
        listed_of(samples, labels),
        resamples=resamples,
        seed=bootstrap_seed,
    )
    details = {
        **baseline.config(),
        "val_scores": baseline.val_scores,
        "fit_seconds": baseline.fit_seconds,
        "train": len(train),
        "val": len(val),
    }
    return ScoredCandidate(BASELINE_NAME, "baseline", report, round(seconds, 3), details, probabilities, truth)


def differences(candidate: ScoredCandidate, reference: ScoredCandidate) -> dict[str, float]:
    """How much better `candidate` scores than `reference` (positive = better; for ECE, lower is better).

    Args:
        candidate: the candidate.
        reference: what it is compared with (the baseline).

    Returns:
        ``accuracy``, ``macro_f1``, ``top_k_accuracy``, ``any_listed_accuracy``: candidate minus reference;
        ``ece``: reference minus candidate.
    """
    a, b = candidate.report, reference.report
    gains = {name: getattr(a, name) - getattr(b, name) for name in ("accuracy", "macro_f1", "top_k_accuracy")}
    gains["any_listed_accuracy"] = a.any_listed_accuracy - b.any_listed_accuracy
    gains["ece"] = b.ece - a.ece
    return {name: round(value, 6) for name, value in gains.items()}


def paired_against(candidate: ScoredCandidate, reference: ScoredCandidate) -> dict[str, Difference]:
    """Accuracy and macro-F1 of `candidate` minus `reference`, with paired bootstrap intervals.

    Args:
        candidate: a scored model, with its probabilities.
        reference: another (the baseline), scored on the same papers in the same order.

    Returns:
        ``{"accuracy": Difference, "macro_f1": Difference}``.

    Raises:
        EvaluationError: when either lacks probabilities or they were scored on different papers.
    """
    if candidate.probabilities is None or reference.probabilities is None or candidate.truth is None:
        raise EvaluationError(f"{candidate.name} or {reference.name} was scored without keeping its probabilities")
    if reference.truth is None or not np.array_equal(candidate.truth, reference.truth):
        raise EvaluationError(f"{candidate.name} and {reference.name} were not scored on the same papers")
    return paired_bootstrap(candidate.probabilities, reference.probabilities, candidate.truth)


@dataclass(frozen=True)
class ProtocolResult:
    """Every candidate's scores on one protocol's test papers.

    Attributes:
        protocol: the protocol.
        samples: the test papers scored (the protocol's, less those any model candidate was trained on).
        seen: model candidate name → the papers it was trained or validated on.
        candidates: the scored candidates, models first, the baseline last.
    """

    protocol: Protocol
    samples: list[dict[str, Any]]
    seen: dict[str, SeenPapers]
    candidates: list[ScoredCandidate]

    @property
    def baseline(self) -> ScoredCandidate | None:
        """The baseline's scores, when it ran."""
        return next((c for c in self.candidates if c.kind == "baseline"), None)

    def to_json(self) -> dict[str, Any]:
        """The evaluation document.

        Returns:
            ``protocol`` (its summary), ``test_scored`` (the papers scored: count, classes, dates, id hash),
            ``excluded_as_seen`` (per model, how many of its training papers were in the test set, and from where
            that is known), ``candidates`` (each one's report, time and details), ``versus_baseline`` (each
            model minus the baseline) and ``paired_versus_baseline`` (accuracy and macro-F1 of each model minus the
            baseline with paired bootstrap intervals, `clf.evaluation.paired`).
        """
        baseline = self.baseline
        return {
            "protocol": self.protocol.summary(),
            "test_scored": describe_part(self.samples),
            "excluded_as_seen": {
                name: {**seen.to_json(), "in_test": sum(_id(s) in seen.ids for s in self.protocol.test)}
                for name, seen in self.seen.items()
            },
            "candidates": [candidate.to_json() for candidate in self.candidates],
            "versus_baseline": {
                c.name: differences(c, baseline) for c in self.candidates if baseline is not None and c.kind == "model"
            },
            "paired_versus_baseline": {
                c.name: {name: asdict(d) for name, d in paired_against(c, baseline).items()}
                for c in self.candidates
                if baseline is not None and c.kind == "model" and c.probabilities is not None
            },
        }


def evaluate_on_protocol(
    protocol: Protocol,
    predictors: Sequence[ModelPredictor],
    *,
    baseline: bool = True,
    trained_on: dict[str, str | Path] | None = None,
    exclude_seen: bool = True,
    stages: bool = False,
    batch_size: int = 32,
    resamples: int = BOOTSTRAP_RESAMPLES,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    seed: int = 42,
) -> ProtocolResult:
    """Scores every model, and the baseline, on the same test papers of `protocol`.

    Args:
        protocol: the protocol.
        predictors: the models; they must share their classes. Each is named by its ``version``.
        baseline: also train and score the TF-IDF + logistic-regression baseline.
        trained_on: model name → the data folder it was trained on, for artifacts whose lineage does not say.
        exclude_seen: leave out of the test set every paper any model was trained or validated on.
        stages: also score each stage of the models' scoring (`score_model_stages`).
        batch_size: texts per forward pass.
        resamples: bootstrap resamples of each interval.
        c_grid: the baseline's values of C.
        seed: the baseline's random state.

    Returns:
        The scores.

    Raises:
        EvaluationError: when there is no candidate, the models' classes differ, or no test paper is left.
    """
    if not predictors and not baseline:
        raise EvaluationError("nothing to evaluate: no model and no baseline")
    if len({tuple(p.labels) for p in predictors}) > 1:
        raise EvaluationError(f"the candidates' classes differ: {sorted({tuple(p.labels) for p in predictors})}")
    labels = predictors[0].labels if predictors else sorted({s["label"] for s in protocol.train})
    trained_on = trained_on or {}
    seen = {p.version: seen_papers(p.artifact, trained_on.get(p.version)) for p in predictors}
    for name, papers in seen.items():
        if not papers.known:
            log.warning("%s: %s", name, papers.note)
    exclude = frozenset().union(*(papers.ids for papers in seen.values())) if exclude_seen else frozenset()
    samples = unseen_test_samples(protocol, labels, exclude)
    left_out = len(protocol.test) - len(samples)
    log.info("%s: scoring %d test papers (%d left out as seen in training)", protocol.name, len(samples), left_out)
    scored = [
        candidate
        for p in predictors
        for candidate in score_model_stages(p, samples, batch_size=batch_size, resamples=resamples, stages=stages)
    ]
    if baseline:
        scored.append(score_baseline(protocol, samples, labels, c_grid=c_grid, seed=seed, resamples=resamples))
    return ProtocolResult(protocol, samples, seen, scored)


def _id(sample: dict[str, Any]) -> str:
    return strip_version(str(sample.get("arxiv_id", "")))
