"""The evaluation protocols: which papers a model is trained on and which it is tested on, built from the shared data.

    protocol = build_protocol("temporal")                 # or "standard", "date_ordered"
    protocol.train, protocol.val, protocol.test           # samples: arxiv_id, text, label, categories, published
    protocol.data_dir                                     # its splits/{train,val,test}.json, for `clf fit`

Three protocols, each deterministic (the same files and settings give the same papers in every part) and disjoint
(no paper, by id or normalised title, in two parts; checked by `clf.data.preprocess.check_no_leakage`):

* ``standard``: the preprocessor's stratified 80/10/10 split, seed 42, of every paper of ``papers.jsonl.gz`` whose
  primary category is one of the model's classes (collected in clf's default class order, `canonical_order`). It is
  exactly what ``clf collect --source snapshot --snapshot-path papers.jsonl.gz --num-papers N`` followed by ``clf
  preprocess`` writes when ``N`` is the number of classes times the largest class (30,000 for the ten classes:
  ``num_papers // classes`` papers are drawn per class, so that takes all of them); the cleaning, deduplication,
  filtering and splitting are clf.data's own.
* ``temporal``: trained and validated on the standard protocol's train and val (so the model trained for the
  standard protocol serves this one too), tested on ``new_papers.jsonl.gz``, the papers published after every
  training paper (2026-06-01 onward), cleaned and filtered the same way. Only papers whose primary category is one
  of the classes are kept; a new paper that repeats a training or validation paper (id or title), or that is not
  later than the latest of them, is dropped and counted.
* ``date_ordered``: every cleaned paper of ``papers.jsonl.gz`` (as in ``standard``) ordered by ``published``; the
  newest 20 % are the test set, the oldest 80 % the training pool, of which a stratified 10 % (seed 42) is the
  validation set. The cut falls between two days (papers of one day never straddle it), on whichever day boundary
  comes closest to 80 %, so every test paper is later than every training and validation paper. The validation set
  is drawn from the whole pool rather than from its newest part so that every class is in it.

A ``split`` protocol also evaluates on any split file (``--protocol split --split-file data/x/splits/test.json``); the
baseline then trains on the ``train.json`` and ``val.json`` beside it.

`max_papers` builds a protocol from a sample of at most that many papers of each source file (drawn per class as
``clf collect --num-papers`` draws them: ``max_papers // classes`` each, seeded) so that a check runs in seconds; real
numbers use every paper, the default.

Everything is written once under `cache_dir` (one folder per protocol and settings, e.g. ``data/evaluation/
date_ordered``) and read back on the next run, unless the source files or the settings changed; each folder is a data
folder in the preprocessor's layout, so ``clf fit --data.data_dir data/evaluation/date_ordered`` trains a candidate on
exactly that protocol's training papers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sklearn.model_selection import train_test_split

import clf
from clf.data.cleaning import normalised_title_hash
from clf.data.collector import ArxivCollector
from clf.data.paper import strip_version
from clf.data.preprocess import PROCESSED_DATASET, SPLIT_NAMES, DatasetPreprocessor, check_no_leakage
from clf.data.snapshot import SnapshotReader
from clf.evaluation.compare import load_samples
from clf.io import read_json, sha256_of_file, sha256_of_strings, write_json_atomic, write_samples_json

log = logging.getLogger(__name__)

ProtocolName = Literal["standard", "temporal", "date_ordered"]
"""The protocols built from the shared data."""
PROTOCOLS: tuple[str, ...] = ("standard", "temporal", "date_ordered")
DEFAULT_SNAPSHOT = "../shared/data/arxiv/papers.jsonl.gz"
"""The papers every protocol trains on (and ``standard`` and ``date_ordered`` test on)."""
DEFAULT_NEW_SNAPSHOT = "../shared/data/arxiv/new_papers.jsonl.gz"
"""The papers published after all of `DEFAULT_SNAPSHOT`: the temporal test set."""
DEFAULT_CACHE_DIR = "data/evaluation"
"""Where built protocols are kept."""
DATE_TEST_FRACTION = 0.2
"""The newest share of the papers that is the date-ordered test set."""
DATE_VAL_FRACTION = 0.1
"""The share of the date-ordered training pool drawn (stratified) as its validation set."""
MIN_PER_CLASS = 10
"""The fewest papers per class `max_papers` may leave: the 10 % splits need one of each class."""
PROTOCOL_FILE = "protocol.json"
_FORMAT = 1  # bump when a protocol's construction changes, so caches built the old way are rebuilt


class ProtocolError(ValueError):
    """A protocol that cannot be built as asked: a missing source file, too few papers, an unknown name."""


@dataclass(frozen=True)
class Protocol:
    """The train, validation and test papers of one protocol, and how they were chosen.

    Attributes:
        name: ``standard``, ``temporal``, ``date_ordered`` or ``split``.
        description: how the parts were built, in a sentence or two.
        train: training samples (``arxiv_id``, ``text``, ``label``, ``categories``, ``published``, ...), by id.
        val: validation samples, to choose hyperparameters on (the baseline's C).
        test: test samples, never trained or tuned on.
        details: sources, settings, counts, date ranges and what was dropped, for the report.
        data_dir: the folder holding its ``splits/{train,val,test}.json`` (None for a ``split`` protocol).
    """

    name: str
    description: str
    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    test: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    data_dir: Path | None = None

    @property
    def parts(self) -> dict[str, list[dict[str, Any]]]:
        """``train``, ``val`` and ``test`` → their samples."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def summary(self) -> dict[str, Any]:
        """What identifies the protocol, without the samples.

        Returns:
            Name, description, data folder, details and, per part, its count, class counts, date range and the
            sha256 of its sorted ids.
        """
        return {
            "name": self.name,
            "description": self.description,
            "data_dir": None if self.data_dir is None else str(self.data_dir),
            "parts": {name: describe_part(samples) for name, samples in self.parts.items()},
            "details": self.details,
        }


def describe_part(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts, class distribution, date range and id hash of some samples.

    Args:
        samples: samples with ``arxiv_id``, ``label`` and optionally ``published``.

    Returns:
        ``count``, ``label_distribution``, ``published`` (first and last day, or None) and ``ids_hash``.
    """
    days = sorted(s["published"] for s in samples if s.get("published"))
    return {
        "count": len(samples),
        "label_distribution": dict(sorted(Counter(str(s["label"]) for s in samples).items())),
        "published": [days[0], days[-1]] if days else None,
        "ids_hash": sha256_of_strings(sorted(str(s.get("arxiv_id", "")) for s in samples)),
    }


def build_protocol(
    name: str,
    *,
    categories: Sequence[str] = clf.DEFAULT_CATEGORIES,
    snapshot: str | Path = DEFAULT_SNAPSHOT,
    new_snapshot: str | Path = DEFAULT_NEW_SNAPSHOT,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    max_papers: int | None = None,
    seed: int = 42,
) -> Protocol:
    """Builds (or reads back from `cache_dir`) one protocol.

    Args:
        name: ``standard``, ``temporal`` or ``date_ordered`` (see the module).
        categories: the classes: papers with another primary category are left out.
        snapshot: the papers to train on, in the shared snapshot format.
        new_snapshot: for ``temporal``: the later papers to test on.
        cache_dir: where the protocol's folders are written and read back.
        max_papers: build from at most this many papers of each source file (``max_papers // classes`` per class),
            for quick checks; None uses every paper.
        seed: the seed of the sampling and the splits.

    Returns:
        The protocol.

    Raises:
        ProtocolError: for an unknown name, a missing source file, or a `max_papers` below 10 per class.
    """
    if name not in PROTOCOLS:
        raise ProtocolError(f"--protocol must be one of {', '.join(PROTOCOLS)} or split, got {name!r}")
    categories = canonical_order(categories)
    if max_papers is not None and max_papers < MIN_PER_CLASS * len(categories):
        raise ProtocolError(
            f"--max_papers must be at least {MIN_PER_CLASS} per class ({MIN_PER_CLASS * len(categories)} for "
            f"{len(categories)} classes), got {max_papers}"
        )
    builder = _Builder(Path(cache_dir), categories, Path(snapshot), Path(new_snapshot), max_papers, seed)
    return {"standard": builder.standard, "temporal": builder.temporal, "date_ordered": builder.date_ordered}[name]()


def canonical_order(categories: Sequence[str]) -> tuple[str, ...]:
    """The classes in the order `clf collect` collects them: clf's default order, then any others sorted.

    The order of the collected papers decides the seeded split, so a model's classes (indexed alphabetically) are
    put back in the order the standard protocol's papers were collected in.

    Args:
        categories: the classes, in any order.

    Returns:
        The same classes, each once, in canonical order.
    """
    default = [c for c in clf.DEFAULT_CATEGORIES if c in set(categories)]
    return tuple(default + sorted(set(categories) - set(default)))


def split_protocol(split_file: str | Path, *, max_papers: int | None = None, seed: int = 42) -> Protocol:
    """A protocol testing on one split file; the baseline trains on the ``train.json`` and ``val.json`` beside it.

    Args:
        split_file: a split file as ``clf preprocess`` writes it (or a JSON Lines file of labelled papers).
        max_papers: test on a seeded sample of at most this many of its papers; None uses all.
        seed: the seed of that sample.

    Returns:
        The protocol; ``train`` and ``val`` are empty when the files beside it are missing.

    Raises:
        EvaluationError: when the file holds no usable samples.
    """
    path = Path(split_file)
    test = load_samples(path)
    if max_papers is not None and len(test) > max_papers:
        test = _sample(test, max_papers, seed)
    siblings = {name: path.with_name(f"{name}.json") for name in ("train", "val")}
    found = all(p.is_file() and p != path for p in siblings.values())
    parts = {name: load_samples(p) for name, p in siblings.items()} if found else {"train": [], "val": []}
    beside = f"; the baseline trains on {siblings['train']} and {siblings['val']}" if found else ""
    return Protocol(
        name="split",
        description=f"the papers of {path}{beside}",
        train=parts["train"],
        val=parts["val"],
        test=test,
        details={"split_file": str(path), "max_papers": max_papers, "seed": seed},
    )


class _Builder:
    """Builds the protocols' folders under one cache folder, each once, and reads them back."""

    def __init__(
        self,
        cache_dir: Path,
        categories: tuple[str, ...],
        snapshot: Path,
        new_snapshot: Path,
        max_papers: int | None,
        seed: int,
    ) -> None:
        self.cache_dir = cache_dir
        self.categories = categories
        self.snapshot = snapshot
        self.new_snapshot = new_snapshot
        self.max_papers = max_papers
        self.seed = seed
        suffix = ""
        if max_papers is not None:
            suffix += f"-max{max_papers}"
        if categories != tuple(clf.DEFAULT_CATEGORIES):
            suffix += f"-{len(categories)}classes-{sha256_of_strings(categories)[:8]}"
        if seed != 42:
            suffix += f"-seed{seed}"
        self.suffix = suffix
        self.settings = {"categories": list(categories), "max_papers": max_papers, "seed": seed, "format": _FORMAT}

    # ------------------------------------------------------------------ the protocols

    def standard(self) -> Protocol:
        folder = self.cache_dir / f"standard{self.suffix}"
        key = self._key(papers=self._file_hash(self.snapshot))
        cached = _read_cached("standard", folder, key)
        if cached is not None:
            return cached
        counts = self._collect(folder, self.snapshot)
        preprocessor = DatasetPreprocessor(data_dir=folder, categories=self.categories, seed=self.seed)
        preprocessor.run()
        num_papers = counts["num_papers"]
        description = (
            f"the preprocessor's stratified 80/10/10 split (seed {self.seed}) of "
            + (f"a per-class sample of {num_papers} papers" if self.max_papers else "every paper")
            + f" of {self.snapshot.name} with a primary category among the {len(self.categories)} classes: "
            f"`clf collect --source snapshot --snapshot-path {self.snapshot} --num-papers {num_papers} "
            f"--data-dir {folder}` "
            f"then `clf preprocess --data-dir {folder}`"
        )
        parts = {name: _samples_of(path) for name, path in preprocessor.split_paths.items()}
        details = {"source": str(self.snapshot), **counts, "steps": _steps(folder)}
        return _finish("standard", description, parts, details, folder, key, written=True)

    def temporal(self) -> Protocol:
        standard = self.standard()
        folder = self.cache_dir / f"temporal{self.suffix}"
        key = self._key(standard=standard.details["key"], new=self._file_hash(self.new_snapshot))
        cached = _read_cached("temporal", folder, key)
        if cached is not None:
            return cached
        new_dir = self.cache_dir / f"new_papers{self.suffix}"
        counts = self._collect(new_dir, self.new_snapshot, skip_absent=True)
        DatasetPreprocessor(data_dir=new_dir, categories=self.categories, seed=self.seed).preprocess_dataset()
        known = standard.train + standard.val
        ids = {strip_version(s["arxiv_id"]) for s in known}
        titles = {normalised_title_hash(s.get("title") or "") for s in known} - {""}
        latest = max((s.get("published") or "" for s in known), default="")
        test, repeated, not_later = [], 0, 0
        for sample in _samples_of(new_dir / PROCESSED_DATASET):
            if strip_version(sample["arxiv_id"]) in ids or normalised_title_hash(sample.get("title") or "") in titles:
                repeated += 1
            elif not (sample.get("published") or "") > latest:
                not_later += 1
            else:
                test.append(sample)
        description = (
            f"trained and validated on the standard protocol's train and val ({self.snapshot.name}), tested on "
            + (f"a per-class sample of {counts['num_papers']} papers" if self.max_papers else "every paper")
            + f" of {self.new_snapshot.name} (published after {latest}) with a primary category among the classes, "
            "cleaned and filtered the same way"
        )
        details = {
            "source": str(self.snapshot),
            "test_source": str(self.new_snapshot),
            "latest_training_paper": latest,
            **{f"test_{k}": v for k, v in counts.items()},
            "test_steps": _steps(new_dir),
            "test_dropped_repeating_a_training_paper": repeated,
            "test_dropped_not_later_than_training": not_later,
        }
        parts = {"train": standard.train, "val": standard.val, "test": _by_id(test)}
        return _finish("temporal", description, parts, details, folder, key)

    def date_ordered(self) -> Protocol:
        standard = self.standard()
        folder = self.cache_dir / f"date_ordered{self.suffix}"
        key = self._key(standard=standard.details["key"], test=DATE_TEST_FRACTION, val=DATE_VAL_FRACTION)
        cached = _read_cached("date_ordered", folder, key)
        if cached is not None:
            return cached
        assert standard.data_dir is not None
        pool = _samples_of(standard.data_dir / PROCESSED_DATASET)
        dated = sorted((s for s in pool if s.get("published")), key=lambda s: (s["published"], s["arxiv_id"]))
        cut = _cut_day(dated, 1 - DATE_TEST_FRACTION)
        older = [s for s in dated if s["published"] < cut]
        test = [s for s in dated if s["published"] >= cut]
        small = {label: n for label, n in Counter(s["label"] for s in older).items() if n < 2}
        if small or len({s["label"] for s in older}) < 2:
            raise ProtocolError(
                f"date_ordered: too few papers before {cut} to stratify a validation set ({small or 'one class'}); "
                "raise --max_papers"
            )
        train_idx, val_idx = train_test_split(
            list(range(len(older))),
            test_size=DATE_VAL_FRACTION,
            stratify=[s["label"] for s in older],
            random_state=self.seed,
        )
        parts = {
            "train": _by_id(older[i] for i in train_idx),
            "val": _by_id(older[i] for i in val_idx),
            "test": _by_id(test),
        }
        description = (
            f"the cleaned papers of the standard protocol ({self.snapshot.name}) ordered by publication date: those "
            f"published before {cut} ({len(older) / len(dated):.1%}) train, a stratified {DATE_VAL_FRACTION:.0%} of "
            f"them (seed {self.seed}) validating, and those published on or after {cut} test"
        )
        details = {
            "source": str(self.snapshot),
            "cut_day": cut,
            "test_fraction": round(len(test) / len(dated), 4),
            "dropped_without_date": len(pool) - len(dated),
            "val_from": f"a stratified {DATE_VAL_FRACTION:.0%} of the training pool",
        }
        return _finish("date_ordered", description, parts, details, folder, key)

    # ------------------------------------------------------------------ helpers

    def _key(self, **inputs: Any) -> str:
        document = json.dumps({**self.settings, **inputs}, sort_keys=True)
        return hashlib.sha256(document.encode("utf-8")).hexdigest()

    @staticmethod
    def _file_hash(path: Path) -> str:
        if not path.is_file():
            raise ProtocolError(
                f"{path}: not found; pass --snapshot/--new_snapshot with the shared files (papers.jsonl.gz, "
                "new_papers.jsonl.gz in ../shared/data/arxiv/)"
            )
        return sha256_of_file(path)

    def _collect(self, folder: Path, snapshot: Path, *, skip_absent: bool = False) -> dict[str, Any]:
        """Collects the classes' papers of `snapshot` into `folder` as ``clf collect --source snapshot`` does."""
        if folder.exists():
            shutil.rmtree(folder)  # built under other settings or source files: start over
        present = Counter(
            paper.primary_category
            for paper in SnapshotReader(snapshot).iter_papers()
            if paper.primary_category in self.categories
        )
        categories = [c for c in self.categories if present[c]] if skip_absent else list(self.categories)
        if not categories:
            raise ProtocolError(f"{snapshot}: no paper has a primary category among {', '.join(self.categories)}")
        # num_papers // classes per class: the largest class times the classes draws every paper.
        num_papers = self.max_papers or max(present.values(), default=1) * len(categories)
        collector = ArxivCollector(folder, source="snapshot", snapshot_path=snapshot, seed=self.seed)
        collector.create_classification_dataset(num_papers, categories)
        return {"num_papers": num_papers, "papers_per_class_available": dict(sorted(present.items()))}


def _cut_day(dated: Sequence[dict[str, Any]], train_share: float) -> str:
    """The first test day: the day boundary nearest to `train_share` of the date-sorted papers."""
    target = train_share * len(dated)
    index = min(int(math.floor(target)), len(dated) - 1)
    day = dated[index]["published"]
    first = next(i for i, s in enumerate(dated) if s["published"] == day)  # papers before `day`
    after = next((i for i in range(index, len(dated)) if dated[i]["published"] != day), len(dated))
    # Cut before `day` (first papers train) or after it (after papers train), whichever is nearer the target.
    if after < len(dated) and (abs(after - target) < abs(first - target) or first == 0):
        return dated[after]["published"]
    if first == 0:
        raise ProtocolError(f"date_ordered: every paper is from {day}; no day boundary to cut at")
    return day


def _finish(
    name: str,
    description: str,
    parts: dict[str, list[dict[str, Any]]],
    details: dict[str, Any],
    folder: Path,
    key: str,
    *,
    written: bool = False,
) -> Protocol:
    """Checks the parts are disjoint, writes them as split files (unless `written`) and the protocol file."""
    check_no_leakage(parts)
    details = {**details, "key": key}
    protocol = Protocol(name, description, parts["train"], parts["val"], parts["test"], details, folder)
    if not written:
        for split, samples in parts.items():
            metadata = {"split": split, "protocol": name, **describe_part(samples)}
            write_samples_json(folder / "splits" / f"{split}.json", metadata, samples)
    write_json_atomic(folder / PROTOCOL_FILE, protocol.summary())
    log.info("%s protocol: %s", name, {split: len(samples) for split, samples in parts.items()})
    return protocol


def _read_cached(name: str, folder: Path, key: str) -> Protocol | None:
    path = folder / PROTOCOL_FILE
    if not path.is_file():
        return None
    try:
        summary = read_json(path)
        if summary["details"]["key"] != key:
            log.info("%s: built from other files or settings; building the %s protocol again", folder, name)
            return None
        parts = {split: _samples_of(folder / "splits" / f"{split}.json") for split in SPLIT_NAMES}
    except (ValueError, KeyError, TypeError, OSError):
        return None
    details = summary["details"]
    return Protocol(name, summary["description"], parts["train"], parts["val"], parts["test"], details, folder)


def _by_id(samples: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples in the order split files keep them: by arXiv id."""
    return sorted(samples, key=lambda s: s["arxiv_id"])


def _samples_of(path: Path) -> list[dict[str, Any]]:
    return read_json(path)["samples"]


def _steps(folder: Path) -> list[dict[str, Any]]:
    """The preprocessor's record of what it cleaned, deduplicated and filtered."""
    return read_json(folder / PROCESSED_DATASET)["metadata"]["steps"]


def _sample(samples: list[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    import random

    chosen = random.Random(seed).sample(range(len(samples)), count)
    return [samples[i] for i in sorted(chosen)]
