"""Tests for clf/artifact/reference.py: the reference sample's files round-trip, are sealed in the manifest, and a
damaged or inconsistent one is an error naming the file."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from clf.artifact import (
    ArtifactError,
    ModelArtifact,
    OutOfScopeModel,
    ReferenceError,
    ReferenceSample,
    read_reference,
    record_reference,
)

LABELS = ("cs.CV", "cs.DB", "cs.RO")


def sample(papers: int = 40, *, with_tfidf: bool = True, seed: int = 0) -> ReferenceSample:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(len(LABELS)), papers).astype(np.float32)
    components = ("tfidf", "entropy") if with_tfidf else ("entropy",)
    model = OutOfScopeModel(
        coef=rng.normal(size=17).astype(np.float32) if with_tfidf else None,
        intercept=-1.5,
        centre=dict.fromkeys(components, 0.25),
        scale=dict.fromkeys(components, 0.5),
        threshold=1.75,
        components=components,
        flag_rate=0.05,
        fitted_on="40 papers",
        evidence={"train_papers": 100, "out_of_scope_papers": 30},
    )
    return ReferenceSample(
        labels=LABELS,
        probabilities=probabilities,
        true_labels=rng.integers(-1, len(LABELS), papers),
        text_chars=rng.integers(300, 2000, papers),
        oos_scores=rng.normal(size=papers) * 2,
        bandwidth=0.4,
        out_of_scope=model,
        fitted_on="the val split, 40 papers (stratified)",
        accuracy=0.8,
        estimated_accuracy=0.78,
        created_at="2026-12-07T12:00:00+00:00",
    )


@pytest.mark.parametrize("with_tfidf", [True, False])
def test_a_recorded_reference_reads_back_equal_and_is_sealed(tiny_exports, tmp_path, with_tfidf):
    folder = Path(shutil.copytree(tiny_exports["v1.0.0"], tmp_path / "export"))
    assert ModelArtifact.open(folder).reference is None, "an artifact without one has none"
    written = sample(with_tfidf=with_tfidf)

    artifact = record_reference(folder, written)

    read = artifact.reference
    assert read is not None and read.labels == written.labels and read.fitted_on == written.fitted_on
    for name in ("probabilities", "true_labels", "text_chars", "oos_scores"):
        np.testing.assert_array_equal(getattr(read, name), getattr(written, name))
    assert read.out_of_scope is not None and written.out_of_scope is not None
    assert read.out_of_scope.to_json() == written.out_of_scope.to_json()
    if with_tfidf:
        np.testing.assert_array_equal(read.out_of_scope.coef, written.out_of_scope.coef)
    else:
        assert read.out_of_scope.coef is None
    listed = {entry.name for entry in artifact.manifest or []}
    assert {"reference.json", "reference.safetensors"} <= listed
    # The summaries are derived from the arrays.
    assert read.out_of_scope_share == pytest.approx(np.mean(written.oos_scores > 1.75))
    assert sum(read.class_mix.values()) == pytest.approx(1.0) and list(read.class_mix) == list(LABELS)


def test_a_changed_reference_file_fails_the_manifest_check(tiny_exports, tmp_path):
    folder = Path(shutil.copytree(tiny_exports["v1.0.0"], tmp_path / "export"))
    record_reference(folder, sample())
    (folder / "reference.json").write_text((folder / "reference.json").read_text().replace("0.4", "0.5", 1))

    with pytest.raises(ArtifactError, match="reference.json: sha256 differs"):
        ModelArtifact.open(folder)


def test_a_reference_without_its_arrays_names_the_missing_file(tiny_exports, tmp_path):
    folder = Path(shutil.copytree(tiny_exports["v1.0.0"], tmp_path / "export"))
    record_reference(folder, sample())
    (folder / "reference.safetensors").unlink()

    with pytest.raises(ReferenceError, match="reference.safetensors: missing"):
        read_reference(folder)


def test_inconsistent_samples_are_refused():
    good = sample()
    with pytest.raises(ReferenceError, match="one value per paper"):
        dataclasses.replace(good, text_chars=good.text_chars[:-1])
    with pytest.raises(ReferenceError, match="probabilities must be"):
        dataclasses.replace(good, labels=("cs.CV", "cs.DB"))
    with pytest.raises(ReferenceError, match="tfidf component needs its coefficients"):
        dataclasses.replace(good.out_of_scope, coef=None)
    with pytest.raises(ReferenceError, match="non-positive scale for entropy"):
        dataclasses.replace(good.out_of_scope, scale={"tfidf": 1.0, "entropy": 0.0})
