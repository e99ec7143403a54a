"""Grow a dataset with new papers without moving any old paper between splits.

The old splits are kept exactly as they were: every old test paper stays in test (so none leaks into training) and
every old training paper stays out of test (so the production model is not compared on papers it was trained on).
Only the new papers are split, stratified by label with the old split's fractions, and added to each split.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clf.data.paper import Paper
from clf.data.preprocess import (
    PROCESSED_DATASET,
    RAW_DATASET,
    SPLIT_NAMES,
    SPLITS_DIR,
    DatasetPreprocessor,
    check_no_leakage,
    content_hash,
)
from clf.io import DataFileError, read_json, sha256_of_strings, write_jsonl_atomic, write_samples_json
from clf.retrain.outcomes import AugmentedDataset, RetrainingError

log = logging.getLogger(__name__)


def read_splits(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The train, val and test samples of a data folder.

    Args:
        data_dir: a data folder with ``splits/train.json``, ``val.json`` and ``test.json``.

    Returns:
        Split name → its samples.

    Raises:
        RetrainingError: when a split file is missing or malformed, saying which.
    """
    splits = {}
    for name in SPLIT_NAMES:
        path = data_dir / SPLITS_DIR / f"{name}.json"
        try:
            data = read_json(path)
        except (DataFileError, FileNotFoundError) as err:
            raise RetrainingError(
                f"{path}: cannot read the {name} split of the production version's data ({err}); the retraining "
                "pipeline needs the old splits to keep old test papers out of training"
            ) from err
        if not isinstance(data, dict) or not isinstance(data.get("samples"), list):
            raise RetrainingError(f"{path}: not a split file (expected an object with 'samples')")
        splits[name] = data["samples"]
    return splits


def augment_dataset(
    previous_dir: str | Path,
    new_papers: Sequence[Paper],
    out_dir: str | Path,
    *,
    categories: Sequence[str],
    min_words: int = 50,
    seed: int = 42,
) -> AugmentedDataset:
    """Preprocesses the new papers, adds them to the previous splits and writes the result to `out_dir`.

    Args:
        previous_dir: the data folder the production version was trained on (its ``splits/``).
        new_papers: the new papers.
        out_dir: the new data folder (replaced when it exists): ``raw/`` (the new papers), ``new/processed/``
            (them, preprocessed), ``processed/dataset.json`` (everything) and ``splits/``.
        categories: the classes.
        min_words: the preprocessor's fewest words per paper.
        seed: seed of the new papers' split.

    Returns:
        The augmented dataset.

    Raises:
        RetrainingError: when the previous splits cannot be read, or no new paper survives preprocessing.
    """
    previous_dir, out_dir = Path(previous_dir), Path(out_dir)
    old = read_splits(previous_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    raw = out_dir / RAW_DATASET
    write_jsonl_atomic(raw, (paper.to_sample() for paper in new_papers))

    preprocessor = DatasetPreprocessor(out_dir / "new", min_words=min_words, categories=categories, seed=seed)
    try:
        processed = read_json(preprocessor.preprocess_dataset(raw))["samples"]
    except (DataFileError, ValueError) as err:
        raise RetrainingError(f"none of the {len(new_papers)} new papers could be used: {err}") from err
    old_samples = [s for name in SPLIT_NAMES for s in old[name]]
    kept = preprocessor.deduplicate_samples([*old_samples, *processed])[len(old_samples) :]
    log.info(
        "New papers: %d offered, %d after preprocessing, %d not already in the dataset",
        len(new_papers),
        len(processed),
        len(kept),
    )
    if not kept:
        raise RetrainingError(f"all {len(new_papers)} new papers were filtered out or are already in the dataset")

    fractions = _fractions(previous_dir)
    new_parts = _stratified_split(kept, fractions, seed)
    splits = {name: sorted([*old[name], *new_parts[name]], key=lambda s: s["arxiv_id"]) for name in SPLIT_NAMES}
    check_no_leakage(splits)

    every = sorted((s for part in splits.values() for s in part), key=lambda s: s["arxiv_id"])
    dataset_hash = content_hash(every)
    lineage = {"previous_data_dir": str(previous_dir), "new_samples": len(kept), "new_papers_offered": len(new_papers)}
    write_samples_json(
        out_dir / PROCESSED_DATASET,
        {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "input": str(raw),
            "augmented": lineage,
            "config": {"categories": list(categories), "min_words": min_words},
            "num_samples": len(every),
            "label_distribution": dict(sorted(Counter(s["label"] for s in every).items())),
            "content_hash": dataset_hash,
        },
        every,
    )
    for name, part in splits.items():
        write_samples_json(
            out_dir / SPLITS_DIR / f"{name}.json",
            {
                "split": name,
                "count": len(part),
                "seed": seed,
                "fractions": fractions,
                "label_distribution": dict(sorted(Counter(s["label"] for s in part).items())),
                "ids_hash": sha256_of_strings(sorted(s["arxiv_id"] for s in part)),
                "dataset_hash": dataset_hash,
                "augmented": {**lineage, "previous_count": len(old[name]), "added": len(new_parts[name])},
            },
            part,
        )
    counts = {name: len(part) for name, part in splits.items()}
    added = {name: len(part) for name, part in new_parts.items()}
    log.info("Augmented dataset in %s: %s (new per split: %s)", out_dir, counts, added)
    return AugmentedDataset(
        data_dir=out_dir,
        num_samples=len(every),
        new_samples=len(kept),
        split_counts=counts,
        previous_data_dir=previous_dir,
    )


def _fractions(previous_dir: Path) -> dict[str, float]:
    """The split fractions the previous dataset was made with (the preprocessor's defaults when unrecorded)."""
    try:
        recorded = read_json(previous_dir / SPLITS_DIR / "train.json")["metadata"]["fractions"]
        return {name: float(recorded[name]) for name in SPLIT_NAMES}
    except (DataFileError, KeyError, TypeError, ValueError):
        return {"train": 0.8, "val": 0.1, "test": 0.1}


def _stratified_split(
    samples: Sequence[dict[str, Any]], fractions: dict[str, float], seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Splits each label's samples by `fractions`, rounding per label.

    Unlike sklearn's stratified split, a label with only a few new papers is fine: it may land in train only.
    """
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in sorted(samples, key=lambda s: s["arxiv_id"]):
        by_label[sample["label"]].append(sample)
    rng = random.Random(seed)
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        n_test = round(len(group) * fractions["test"])
        n_val = round(len(group) * fractions["val"])
        parts["test"].extend(group[:n_test])
        parts["val"].extend(group[n_test : n_test + n_val])
        parts["train"].extend(group[n_test + n_val :])
    return parts
