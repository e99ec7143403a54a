"""Tests for clf/retrain/augment.py on real papers: old splits kept, new papers split stratified, no leakage."""

from __future__ import annotations

from collections import Counter

import pytest

from clf import DEFAULT_CATEGORIES
from clf.data.paper import Paper
from clf.data.preprocess import check_no_leakage
from clf.data.snapshot import SnapshotReader
from clf.io import read_json
from clf.retrain.augment import augment_dataset, read_splits
from clf.retrain.outcomes import RetrainingError
from tests.retrain.conftest import NEW_PAPERS, copy_data_dir


@pytest.fixture(scope="module")
def new_papers() -> list[Paper]:
    sampled = SnapshotReader(NEW_PAPERS).sample_by_category(DEFAULT_CATEGORIES, 20)
    return [p for papers in sampled.values() for p in papers]


def as_paper(sample: dict, **changes) -> Paper:
    fields = {
        "arxiv_id": sample["arxiv_id"],
        "title": sample["title"],
        "abstract": sample["abstract"],
        "primary_category": sample["label"],
        "published": "2026-06-02",
    }
    return Paper(**{**fields, **changes})


def test_old_papers_keep_their_splits_and_new_ones_are_split_by_label(tmp_path, production_run, new_papers):
    previous = copy_data_dir(production_run["data_dir"], tmp_path / "previous")
    old = read_splits(previous)
    # Offered again as "new": an old test paper (same id) and an old training paper under a new id (same title).
    again = as_paper(old["test"][0])
    retitled = as_paper(old["train"][0], arxiv_id="2606.99999")

    result = augment_dataset(
        previous, [*new_papers, again, retitled], tmp_path / "augmented", categories=DEFAULT_CATEGORIES
    )

    splits = read_splits(result.data_dir)
    check_no_leakage(splits)
    ids = {name: {s["arxiv_id"] for s in part} for name, part in splits.items()}
    for name, part in old.items():
        assert {s["arxiv_id"] for s in part} <= ids[name], f"an old {name} paper moved"
    assert "2606.99999" not in set().union(*ids.values()), "a retitled duplicate of an old paper is dropped"
    assert result.new_samples == len(new_papers) == 200
    assert result.num_samples == sum(len(p) for p in old.values()) + 200 == sum(result.split_counts.values())
    added = {name: ids[name] - {s["arxiv_id"] for s in old[name]} for name in ids}
    new_ids = {p.arxiv_id for p in new_papers}
    assert set().union(*added.values()) == new_ids
    by_label = Counter(p.primary_category for p in new_papers if p.arxiv_id in added["test"])
    assert by_label == dict.fromkeys(DEFAULT_CATEGORIES, 2), "10% of each class's 20 new papers go to test"
    assert len(added["val"]) == 20 and len(added["train"]) == 160

    processed = read_json(result.data_dir / "processed" / "dataset.json")
    assert processed["metadata"]["num_samples"] == result.num_samples == len(processed["samples"])
    assert processed["metadata"]["augmented"]["previous_data_dir"] == str(previous)
    test_meta = read_json(result.test_path)["metadata"]
    assert test_meta["augmented"]["added"] == 20 and test_meta["count"] == len(splits["test"])
    assert all(s.get("published") for s in processed["samples"]), "dates kept for the next run's detection"


def test_the_same_inputs_give_the_same_splits(tmp_path, production_run, new_papers):
    previous = copy_data_dir(production_run["data_dir"], tmp_path / "previous")
    first = augment_dataset(previous, new_papers, tmp_path / "a", categories=DEFAULT_CATEGORIES)
    second = augment_dataset(previous, new_papers, tmp_path / "b", categories=DEFAULT_CATEGORIES)
    for name in ("train", "val", "test"):
        assert (first.data_dir / "splits" / f"{name}.json").read_bytes() == (
            second.data_dir / "splits" / f"{name}.json"
        ).read_bytes()


def test_unusable_inputs_are_named(tmp_path, production_run, new_papers):
    previous = copy_data_dir(production_run["data_dir"], tmp_path / "previous")
    old = read_splits(previous)
    with pytest.raises(RetrainingError, match="already in the dataset"):
        augment_dataset(previous, [as_paper(old["val"][0])], tmp_path / "dup", categories=DEFAULT_CATEGORIES)
    (previous / "splits" / "test.json").unlink()
    with pytest.raises(RetrainingError, match=r"test.json: cannot read the test split"):
        augment_dataset(previous, new_papers, tmp_path / "nosplit", categories=DEFAULT_CATEGORIES)
