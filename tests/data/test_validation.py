from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from clf.data.snapshot import paper_from_snapshot_record
from clf.data.validation import (
    MIN_WORDS,
    REQUIRED_FIELDS,
    DataValidationError,
    validate_labels,
    validate_sample,
    validate_samples,
)
from clf.io import read_jsonl

ALLOWED = ("cs.CL", "cs.LG")
TEXT = "A perfectly ordinary abstract about parsing sentences with neural networks and graphs."


def sample(arxiv_id: str = "2501.00001", text: str = TEXT, label: str = "cs.CL") -> dict[str, Any]:
    return {"arxiv_id": arxiv_id, "text": text, "label": label}


@pytest.fixture(scope="module")
def real_samples(shared_papers_path: Path) -> list[dict[str, Any]]:
    return [paper_from_snapshot_record(r).to_sample() for _, r in islice(read_jsonl(shared_papers_path), 200)]


def test_real_samples_pass(real_samples: list[dict[str, Any]]) -> None:
    validate_samples(real_samples)
    validate_labels(real_samples, {s["label"] for s in real_samples})
    assert all(validate_sample(s) == [] for s in real_samples)


def test_a_fine_sample_has_no_problems() -> None:
    assert validate_sample(sample(), labels=ALLOWED) == []
    assert REQUIRED_FIELDS == ("text", "label", "arxiv_id")


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_missing_field_is_named(field: str) -> None:
    broken = sample()
    del broken[field]
    assert f"missing field {field!r}" in validate_sample(broken)


def test_empty_and_non_string_fields_are_named() -> None:
    assert validate_sample(sample(label="  ")) == ["empty field 'label'"]
    assert validate_sample({**sample(), "arxiv_id": 17}) == ["field 'arxiv_id' must be a string, got int"]
    assert validate_sample(["not", "a", "dict"]) == ["not a JSON object but list"]


def test_short_text_names_count_and_minimum() -> None:
    problems = validate_sample(sample(text="Too short to learn from."))
    assert problems == [f"text has 5 words, fewer than the minimum {MIN_WORDS}"]
    assert validate_sample(sample(text="Too short to learn from."), min_words=5) == []


def test_unknown_label_names_label_and_allowed_set() -> None:
    (problem,) = validate_sample(sample(label="math.NA"), labels=ALLOWED)
    assert "'math.NA'" in problem and "cs.CL, cs.LG" in problem
    assert validate_sample(sample(label="math.NA")) == []


def test_validate_samples_lists_offenders_and_fix() -> None:
    samples = [sample("2501.00000"), {"arxiv_id": "2501.00001", "text": TEXT}, sample("2501.00002")]
    samples.append(sample("2501.00003", label="math.NA"))
    with pytest.raises(DataValidationError) as info:
        validate_samples(samples, labels=ALLOWED, source="data/processed/dataset.json")
    message = str(info.value)
    assert info.value.indices == [1, 3]
    assert message.startswith("data/processed/dataset.json: 2 of 4 samples are invalid")
    assert "sample 1 (arxiv_id 2501.00001): missing field 'label'" in message
    assert "sample 3 (arxiv_id 2501.00003): label 'math.NA'" in message
    assert "clf preprocess" in message and "--categories" in message
    assert isinstance(info.value, ValueError)


def test_validate_samples_shows_the_first_ten_but_records_all() -> None:
    samples = [sample(f"2501.{i:05d}", text="short") for i in range(15)]
    with pytest.raises(DataValidationError) as info:
        validate_samples(samples)
    message = str(info.value)
    assert info.value.indices == list(range(15))
    assert "sample 9 (arxiv_id 2501.00009)" in message
    assert "sample 10 " not in message
    assert "... and 5 more" in message


def test_validate_labels_groups_indices_by_unknown_label(real_samples: list[dict[str, Any]]) -> None:
    samples = [dict(s) for s in real_samples[:6]]
    samples[1]["label"] = "math.NA"
    samples[4]["label"] = "math.NA"
    samples[5]["label"] = "q-bio.NC"
    known = {s["label"] for i, s in enumerate(samples) if i not in (1, 4, 5)}
    with pytest.raises(DataValidationError) as info:
        validate_labels(samples, known, source="train.json")
    message = str(info.value)
    assert info.value.indices == [1, 4, 5]
    assert message.startswith("train.json: 2 unknown label(s); allowed are " + ", ".join(sorted(known)))
    assert "label 'math.NA' at samples 1, 4" in message
    assert "label 'q-bio.NC' at samples 5" in message
    assert "--categories" in message
