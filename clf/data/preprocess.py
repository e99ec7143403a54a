"""Turn the collected arXiv papers into a clean, deduplicated dataset and stratified train/val/test splits.

Run it after collecting:

    clf preprocess --data-dir data

It reads `data/raw/arxiv/classification_dataset.jsonl` (never modifying anything under `raw/`; a snapshot file in
the shared format, ``id`` and ``primary``, reads too), cleans the LaTeX, URLs and math out of titles and abstracts,
drops duplicates, short and non-English papers and papers outside --categories, and writes
`data/processed/dataset.json` and `data/splits/{train,val,test}.json`. The same data and seed give byte-identical
split files.

The papers dropped only because their primary category is none of --categories (clean, long enough, English) are
kept aside in `data/processed/out_of_scope.json` (a seeded draw of at most --out_of_scope_papers): the artifact's
out-of-scope model learns from them what the classes are not (`clf.training.reference`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sklearn.model_selection import train_test_split

import clf
from clf.data.cleaning import clean_text, english_ratio, normalised_title_hash
from clf.data.paper import strip_version
from clf.data.progress import Progress
from clf.data.snapshot import paper_from_snapshot_record
from clf.data.validation import DataValidationError, validate_samples
from clf.io import DataFileError, read_json, read_jsonl, sha256_of_strings, write_samples_json

logger = logging.getLogger(__name__)

RAW_DATASET = Path("raw/arxiv/classification_dataset.jsonl")
"""Where the collector leaves the samples, relative to the data directory."""
PROCESSED_DATASET = Path("processed/dataset.json")
"""Where the cleaned dataset goes, relative to the data directory."""
OUT_OF_SCOPE_DATASET = Path("processed/out_of_scope.json")
"""Where the papers of other categories go, relative to the data directory (the samples format of the dataset)."""
SPLITS_DIR = Path("splits")
"""Where `train.json`, `val.json` and `test.json` go, relative to the data directory."""
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

_RAW_FIELDS = ("arxiv_id", "title", "abstract", "label")


class SplitError(ValueError):
    """The dataset cannot be split as asked, e.g. a class has too few samples to appear in every split."""


class LeakageError(ValueError):
    """The same paper ended up in two splits.

    Args:
        message: what leaked and how to fix it.
        ids: the arXiv ids found in more than one split.

    Attributes:
        ids: the arXiv ids of the papers found in more than one split.
    """

    def __init__(self, message: str, ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.ids: list[str] = list(ids)


def content_hash(samples: Sequence[Mapping[str, Any]]) -> str:
    """The sha256 over each sample's arxiv_id and text, in order.

    Args:
        samples: samples with ``arxiv_id`` and ``text`` keys.

    Returns:
        The hex digest; it changes when a sample is added, removed, reordered or edited.
    """
    return sha256_of_strings(value for sample in samples for value in (sample["arxiv_id"], sample["text"]))


def check_no_leakage(splits: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Checks that no paper is in two splits, by arXiv id (version ignored) and by normalised title.

    Args:
        splits: split name → its samples.

    Raises:
        LeakageError: naming each paper found in two splits and the splits it is in.
    """
    seen_ids: dict[str, str] = {}
    seen_titles: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    leaked: list[str] = []
    for name, samples in splits.items():
        for sample in samples:
            arxiv_id = strip_version(sample["arxiv_id"])
            other = seen_ids.setdefault(arxiv_id, name)
            if other != name:
                problems.append(f"{arxiv_id} is in both {other} and {name}")
                leaked.append(arxiv_id)
                continue
            title = normalised_title_hash(sample.get("title") or "")
            if not title:
                continue
            other_id, other_split = seen_titles.setdefault(title, (arxiv_id, name))
            if other_split != name:
                problems.append(f"{arxiv_id} ({name}) has the same title as {other_id} ({other_split})")
                leaked.extend((other_id, arxiv_id))
    if problems:
        raise LeakageError(
            f"{len(problems)} paper(s) are in more than one split: "
            + "; ".join(problems[:10])
            + ". Deduplicate the dataset (re-run `clf preprocess`) before splitting.",
            ids=leaked,
        )


class DatasetPreprocessor:
    """Cleans, deduplicates, filters and splits the collected samples.

    Examples:
        >>> paths = DatasetPreprocessor(data_dir="data").run()  # doctest: +SKIP
        >>> sorted(paths)  # doctest: +SKIP
        ['test', 'train', 'val']

    Args:
        data_dir: the data directory; reads `raw/arxiv/classification_dataset.jsonl` in it, writes
            `processed/dataset.json` and `splits/{train,val,test}.json` in it.
        min_words: fewest words (title and abstract together, after cleaning) a paper needs to be kept.
        categories: the labels to keep, papers with any other primary category are dropped; None means
            `clf.DEFAULT_CATEGORIES`.
        seed: random seed of the split; the same data and seed give the same split.
        val_fraction: share of each class that goes to the validation split, in (0, 0.5).
        test_fraction: share of each class that goes to the test split, in (0, 0.5).
        min_english_ratio: a paper whose share of English stop words among its words is below this is dropped as
            not English, in [0, 1]; English abstracts score about 0.13 and up.
        out_of_scope_papers: most papers of other primary categories kept in `processed/out_of_scope.json` (a
            seeded draw when there are more); 0 keeps none.

    Raises:
        ValueError: naming the option that is out of range and the range allowed.
    """

    def __init__(
        self,
        data_dir: str | Path = "data",
        min_words: int = 50,
        categories: Sequence[str] | None = None,
        seed: int = 42,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        min_english_ratio: float = 0.1,
        out_of_scope_papers: int = 5000,
    ) -> None:
        if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
            raise ValueError(f"min_words must be an integer >= 1, got {min_words!r}")
        categories = tuple(clf.DEFAULT_CATEGORIES if categories is None else categories)
        if not categories or not all(isinstance(c, str) and c.strip() for c in categories):
            raise ValueError(f"categories must be a non-empty list of category names such as cs.CL, got {categories}")
        duplicates = sorted(c for c, n in Counter(categories).items() if n > 1)
        if duplicates:
            raise ValueError(f"categories lists {', '.join(duplicates)} more than once")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {value}")
        if not 0 <= min_english_ratio <= 1:
            raise ValueError(f"min_english_ratio must be in [0, 1], got {min_english_ratio}")
        if isinstance(out_of_scope_papers, bool) or not isinstance(out_of_scope_papers, int) or out_of_scope_papers < 0:
            raise ValueError(f"out_of_scope_papers must be an integer >= 0, got {out_of_scope_papers!r}")
        self.data_dir = Path(data_dir)
        self.min_words = min_words
        self.categories = categories
        self.seed = seed
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.min_english_ratio = float(min_english_ratio)
        self.out_of_scope_papers = out_of_scope_papers

    @property
    def raw_path(self) -> Path:
        """The collector's samples, read by `preprocess_dataset`."""
        return self.data_dir / RAW_DATASET

    @property
    def processed_path(self) -> Path:
        """The cleaned dataset `preprocess_dataset` writes."""
        return self.data_dir / PROCESSED_DATASET

    @property
    def out_of_scope_path(self) -> Path:
        """The papers of other categories `preprocess_dataset` keeps aside."""
        return self.data_dir / OUT_OF_SCOPE_DATASET

    @property
    def split_paths(self) -> dict[str, Path]:
        """Split name → the file `create_train_val_test_split` writes."""
        return {name: self.data_dir / SPLITS_DIR / f"{name}.json" for name in SPLIT_NAMES}

    def run(self, input_path: str | Path | None = None) -> dict[str, Path]:
        """Preprocesses the raw samples and splits them: what `clf preprocess` does.

        Args:
            input_path: the JSON Lines file of samples; None means `raw_path`.

        Returns:
            Split name → path of the written split file.
        """
        self.preprocess_dataset(input_path)
        return self.create_train_val_test_split()

    @staticmethod
    def clean_text(text: str) -> str:
        """Strips URLs, LaTeX markup and non-trivial math from arXiv text, keeping the prose intact.

        See `clf.data.cleaning.clean_text` for what is kept and what goes.

        Args:
            text: a title or abstract as arXiv serves it.

        Returns:
            The cleaned text, stripped.
        """
        return clean_text(text)

    def deduplicate_samples(self, samples: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drops repeated papers, keeping the first: same arXiv id (version ignored), or same normalised title.

        Args:
            samples: samples with an ``arxiv_id`` key and, usually, a ``title`` key.

        Returns:
            The samples kept, in their original order. The counts removed are logged.
        """
        return self._deduplicate(samples)[0]

    def filter_by_quality(
        self, samples: Iterable[dict[str, Any]], min_words: int | None = None
    ) -> list[dict[str, Any]]:
        """Drops samples that are empty, off-label, short or not English, checked in that order.

        Off-label means a label outside `categories`; not English means a share of English stop words below
        `min_english_ratio`.

        Args:
            samples: the samples to filter.
            min_words: fewest words to keep a sample; None means the preprocessor's `min_words`.

        Returns:
            The samples kept, in their original order. The counts removed at each step are logged.
        """
        return self._filter(samples, min_words)[0]

    def preprocess_dataset(self, input_path: str | Path | None = None) -> Path:
        """Loads, cleans, deduplicates, filters and validates the raw samples and saves them with their history.

        Args:
            input_path: the JSON Lines file of samples (plain or .gz); None means `raw_path`. A `manifest.json`
                beside it, as the collector writes, supplies the input hash recorded in the metadata.

        Returns:
            The path of the written dataset, `processed_path`.

        Raises:
            DataFileError: naming the file and line of a record that is not JSON or lacks a field.
            DataValidationError: when no sample is left after filtering.
        """
        source = Path(input_path) if input_path is not None else self.raw_path
        samples = self._load_raw(source)
        steps: list[dict[str, Any]] = [{"step": "load", "count": len(samples)}]

        cleaned = []
        with Progress("cleaning papers", total=len(samples)) as progress:
            for sample in samples:
                cleaned.append(self._clean_sample(sample))
                if len(cleaned) % 500 == 0:
                    progress.move_to(len(cleaned))
            progress.move_to(len(cleaned))
        changed = sum(a["text"] != b["text"] for a, b in zip(samples, cleaned, strict=True))
        steps.append({"step": "clean", "changed": changed, "count": len(cleaned)})
        logger.info("cleaned %d samples, %d of them changed", len(cleaned), changed)

        samples, removed = self._deduplicate(cleaned)
        steps.append({"step": "dedup", **removed, "count": len(samples)})
        samples, removed, off_label = self._filter(samples)
        steps.append({"step": "filter", **removed, "count": len(samples)})
        out_of_scope = self._keep_out_of_scope(off_label)
        steps.append({"step": "out_of_scope", "available": len(off_label), "count": len(out_of_scope)})
        if not samples:
            raise DataValidationError(
                f"{source}: no sample is left after preprocessing (steps: {steps}). Check that --categories "
                f"({', '.join(self.categories)}) matches the collected labels and that min_words ({self.min_words}) "
                "is not too high."
            )
        validate_samples(samples, labels=self.categories, min_words=self.min_words, source=str(source))

        manifest_path = source.parent / "manifest.json"
        manifest = read_json(manifest_path) if manifest_path.is_file() else {}
        metadata = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "input": str(source),
            "input_hash": manifest.get("content_hash") if isinstance(manifest, dict) else None,
            "config": {
                "categories": list(self.categories),
                "min_words": self.min_words,
                "min_english_ratio": self.min_english_ratio,
            },
            "steps": steps,
            "num_samples": len(samples),
            "label_distribution": _label_distribution(samples),
            "content_hash": content_hash(samples),
        }
        write_samples_json(self.processed_path, metadata, samples)
        logger.info("wrote %d samples to %s", len(samples), self.processed_path)
        oos_metadata = {
            "created_at": metadata["created_at"],
            "input": str(source),
            "excluded_categories": list(self.categories),
            "available": len(off_label),
            "num_samples": len(out_of_scope),
            "seed": self.seed,
            "label_distribution": _label_distribution(out_of_scope),
            "content_hash": content_hash(out_of_scope),
        }
        write_samples_json(self.out_of_scope_path, oos_metadata, out_of_scope)
        logger.info(
            "kept %d of %d out-of-scope papers in %s", len(out_of_scope), len(off_label), self.out_of_scope_path
        )
        return self.processed_path

    def create_train_val_test_split(self, samples: Sequence[dict[str, Any]] | None = None) -> dict[str, Path]:
        """Splits the samples into train, val and test, stratified by label, and saves each split.

        Each split file holds `{"metadata": {...}, "samples": [...]}` with the samples sorted by arXiv id, so the
        same samples and seed give byte-identical files.

        Args:
            samples: the samples to split; None loads them from `processed_path`.

        Returns:
            Split name → path of the written split file.

        Raises:
            DataFileError: when the processed dataset is missing or malformed.
            DataValidationError: when a sample is invalid or its label is not in `categories`.
            SplitError: when a category has too few samples to appear in every split.
            LeakageError: when a paper would be in two splits (duplicates in `samples`).
        """
        if samples is None:
            samples, dataset_hash, source = self._load_processed()
        else:
            samples = list(samples)
            source = "samples"
            validate_samples(samples, labels=self.categories, min_words=1, source=source)
            dataset_hash = content_hash(samples)
        labels = [sample["label"] for sample in samples]
        self._check_class_sizes(labels, source)

        fractions = {
            "train": round(1 - self.val_fraction - self.test_fraction, 10),
            "val": self.val_fraction,
            "test": self.test_fraction,
        }
        indices = list(range(len(samples)))
        rest, test = train_test_split(indices, test_size=self.test_fraction, stratify=labels, random_state=self.seed)
        train, val = train_test_split(
            rest,
            test_size=self.val_fraction / (1 - self.test_fraction),
            stratify=[labels[i] for i in rest],
            random_state=self.seed,
        )
        splits = {
            name: sorted((samples[i] for i in part), key=lambda s: s["arxiv_id"])
            for name, part in (("train", train), ("val", val), ("test", test))
        }
        check_no_leakage(splits)

        paths = self.split_paths
        for name, part in splits.items():
            metadata = {
                "split": name,
                "count": len(part),
                "seed": self.seed,
                "fractions": fractions,
                "label_distribution": _label_distribution(part),
                "ids_hash": sha256_of_strings(sorted(s["arxiv_id"] for s in part)),
                "dataset_hash": dataset_hash,
            }
            write_samples_json(paths[name], metadata, part)
            logger.info("wrote %d %s samples to %s", len(part), name, paths[name])
        return paths

    def _keep_out_of_scope(self, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        import random

        if len(samples) > self.out_of_scope_papers:
            samples = random.Random(self.seed).sample(samples, self.out_of_scope_papers)
        return sorted(samples, key=lambda s: s["arxiv_id"])

    def _load_raw(self, path: Path) -> list[dict[str, Any]]:
        samples = []
        for line, record in read_jsonl(path):
            if "arxiv_id" not in record and "id" in record:  # a snapshot line in the shared format
                try:
                    record = paper_from_snapshot_record(record).to_sample()
                except ValueError as err:
                    raise DataFileError(f"{path}, line {line}: {err}") from None
            for name in _RAW_FIELDS:
                value = record.get(name)
                if value is None:
                    problem = f"missing field {name!r}"
                elif not isinstance(value, str):
                    problem = f"field {name!r} must be a string, got {type(value).__name__}"
                else:
                    continue
                raise DataFileError(
                    f"{path}, line {line}: {problem}; every line needs {', '.join(_RAW_FIELDS)} as the collector "
                    "writes them. Fix or delete that line, or collect again."
                )
            samples.append(record)
        if not samples:
            raise DataFileError(f"{path}: holds no samples. Collect papers into it first.")
        logger.info("loaded %d samples from %s", len(samples), path)
        return samples

    def _clean_sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        title = self.clean_text(sample["title"])
        abstract = self.clean_text(sample["abstract"])
        head = title.rstrip(".")
        text = f"{head}. {abstract}" if head and abstract else head or abstract
        return {**sample, "text": text, "title": title, "abstract": abstract}

    def _deduplicate(self, samples: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        seen_ids: set[str] = set()
        seen_titles: set[str] = set()
        kept = []
        by_id = by_title = 0
        for sample in samples:
            arxiv_id = strip_version(sample["arxiv_id"])
            if arxiv_id in seen_ids:
                by_id += 1
                continue
            title = normalised_title_hash(sample.get("title") or "")
            if title and title in seen_titles:
                by_title += 1
                continue
            seen_ids.add(arxiv_id)
            if title:
                seen_titles.add(title)
            kept.append(sample)
        logger.info("dedup: removed %d repeated ids and %d repeated titles, %d left", by_id, by_title, len(kept))
        return kept, {"removed_by_id": by_id, "removed_by_title": by_title}

    def _filter(
        self, samples: Iterable[dict[str, Any]], min_words: int | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
        """The samples kept, the counts removed at each check, and the papers dropped only for their label (those
        that pass every other check), in order."""
        min_words = self.min_words if min_words is None else min_words
        checks = (
            ("removed_empty", lambda s: isinstance(s.get("text"), str) and bool(s["text"].strip())),
            ("removed_label", lambda s: s.get("label") in self.categories),
            ("removed_short", lambda s: len(s["text"].split()) >= min_words),
            ("removed_non_english", lambda s: english_ratio(s["text"]) >= self.min_english_ratio),
        )
        kept = list(samples)
        removed = {}
        off_label: list[dict[str, Any]] = []
        for name, keep in checks:
            before = len(kept)
            if name == "removed_label":
                off_label = [sample for sample in kept if not keep(sample)]
            else:
                off_label = [sample for sample in off_label if keep(sample)]
            kept = [sample for sample in kept if keep(sample)]
            removed[name] = before - len(kept)
        logger.info("filter: %s, %d left", ", ".join(f"{k} {v}" for k, v in removed.items()), len(kept))
        return kept, removed, off_label

    def _load_processed(self) -> tuple[list[dict[str, Any]], str, str]:
        path = self.processed_path
        if not path.is_file():
            raise DataFileError(f"{path}: not found. Run `clf preprocess --data-dir {self.data_dir}` first.")
        dataset = read_json(path)
        if not (
            isinstance(dataset, dict)
            and isinstance(dataset.get("samples"), list)
            and isinstance(dataset.get("metadata"), dict)
        ):
            raise DataFileError(
                f"{path}: not a processed dataset (expected an object with 'metadata' and 'samples'). "
                f"Re-run `clf preprocess --data-dir {self.data_dir}`."
            )
        samples = dataset["samples"]
        validate_samples(samples, labels=self.categories, min_words=1, source=str(path))
        return samples, dataset["metadata"].get("content_hash") or content_hash(samples), str(path)

    def _check_class_sizes(self, labels: Sequence[str], source: str) -> None:
        smallest = min(self.val_fraction, self.test_fraction)
        # Rounded first so that 1 / 0.1 cannot become 10.000000000000002 and ask for 11.
        minimum = math.ceil(round(1 / smallest, 9))
        counts = Counter(labels)
        small = [(label, counts.get(label, 0)) for label in self.categories if counts.get(label, 0) < minimum]
        if not small:
            return
        listed = ", ".join(f"{label} has {count}" for label, count in small)
        raise SplitError(
            f"{source}: too few samples to stratify: {listed}; each category needs at least {minimum} so that "
            f"val_fraction {self.val_fraction} and test_fraction {self.test_fraction} leave it at least one sample "
            "in every split. Collect more papers for those categories, or drop them from --categories."
        )


def _label_distribution(samples: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(sample["label"] for sample in samples).items()))
