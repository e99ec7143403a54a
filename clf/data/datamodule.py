"""`ArxivDataModule`: splits on disk → tokenized, cached datasets → dynamically padded batches.

dm = ArxivDataModule(data_dir="data", snapshot_path="../shared/data/arxiv/papers.jsonl.gz")
dm.prepare_data()   # collects and preprocesses when the splits are missing
dm.setup("fit")
batch = next(iter(dm.train_dataloader()))   # input_ids, attention_mask, labels
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from datasets import Dataset, load_from_disk
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.trainer_pt_utils import LengthGroupedSampler

from clf import DEFAULT_CATEGORIES
from clf.data.building import build_splits
from clf.data.cleaning import model_input_text
from clf.data.collector import DEFAULT_API_URL
from clf.data.preprocess import OUT_OF_SCOPE_DATASET
from clf.data.progress import Progress, interactive
from clf.data.validation import validate_samples
from clf.io import DataFileError, read_json, read_jsonl
from clf.pretrained import resolve_pretrained

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_MODEL_INPUTS = ["input_ids", "attention_mask", "labels", "row"]  # "row": which sample, for the artifact scoring
_CACHE_FORMAT = 2  # bump when the cached columns change (2: the "row" column)


class ArxivDataModule(L.LightningDataModule):
    """Loads the stratified splits, tokenizes them once (cached on disk) and serves padded batches.

    The label set is fixed at construction (the sorted `categories`), so `num_labels`, `id_to_label` and
    `label_to_id` can be linked into the model before any data is read.

    Args:
        data_dir: the data folder holding ``splits/`` (built by ``prepare_data`` when missing).
        tokenizer: a transformers tokenizer name or local directory.
        max_length: longest tokenized input; longer texts are truncated.
        batch_size: training batch size.
        eval_batch_size: batch size of validation, test and prediction; defaults to `batch_size`.
        num_workers: DataLoader worker processes.
        group_by_length: batch training samples of similar length together, so less padding is computed.
        categories: the classes; their sorted order is the label order.
        source: where ``prepare_data`` collects papers when the splits are missing: ``snapshot`` or ``api``.
        snapshot_path: the snapshot file for ``source="snapshot"``.
        api_url: the arXiv API endpoint for ``source="api"``.
        num_papers: how many papers ``prepare_data`` collects.
        min_words: the preprocessor's minimum words per paper.
        out_of_scope_papers: most papers of other categories ``prepare_data`` collects beside the classes' papers,
            for the artifact's out-of-scope model (`ArxivCollector`); 0 collects none.
        seed: seed of sampling and splitting.
        train_papers: train the encoder on a stratified, seeded subset of this many training papers (the whole
            training split still serves components that use it all, such as a TF-IDF companion); None: all.
        multi_label: labels are every listed category among `categories` (a multi-hot vector), not only the primary.
        predict_file: a JSON Lines file of papers (``title`` and ``abstract``, or ``text``; ``arxiv_id`` optional)
            for ``predict``; without it, ``predict`` runs on the test split.
        cache_dir: where tokenized splits are cached; defaults to ``<data_dir>/cache/tokenized``.
        pin_memory: pin batches in page-locked memory; ``None`` pins when CUDA is available.

    Raises:
        ValueError: naming the option that is out of range.
    """

    def __init__(
        self,
        data_dir: str | Path = "data",
        tokenizer: str = "distilbert-base-uncased",
        max_length: int = 512,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        group_by_length: bool = True,
        categories: Sequence[str] = DEFAULT_CATEGORIES,
        source: Literal["snapshot", "api"] = "snapshot",
        snapshot_path: str | Path | None = None,
        api_url: str = DEFAULT_API_URL,
        num_papers: int = 5000,
        min_words: int = 50,
        out_of_scope_papers: int = 2000,
        seed: int = 42,
        multi_label: bool = False,
        predict_file: str | Path | None = None,
        cache_dir: str | Path | None = None,
        pin_memory: bool | None = None,
        train_papers: int | None = None,
    ) -> None:
        super().__init__()
        if max_length < 8:
            raise ValueError(f"--data.max_length must be >= 8, got {max_length}")
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError(f"--data.batch_size and --data.eval_batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"--data.num_workers must be >= 0, got {num_workers}")
        if len(set(categories)) < 2:
            raise ValueError(f"--data.categories needs at least two distinct classes, got {list(categories)}")
        if train_papers is not None and train_papers < len(set(categories)):
            raise ValueError(f"--data.train_papers must hold at least one paper per class, got {train_papers}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.tokenizer_name = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.group_by_length = group_by_length
        self.categories = list(categories)
        self.multi_label = multi_label
        self.predict_file = Path(predict_file) if predict_file is not None else None
        self.predict_records: list[dict[str, Any]] = []
        self._predict_texts: list[str] = []
        self.train_papers = train_papers
        self.seed = seed
        self._splits: dict[str, tuple[list[dict[str, Any]], bytes]] = {}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.data_dir / "cache" / "tokenized"
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.id_to_label: dict[int, str] = dict(enumerate(sorted(self.categories)))
        self.label_to_id: dict[str, int] = {label: i for i, label in self.id_to_label.items()}
        self.datasets: dict[str, Dataset] = {}
        self._tokenizer: PreTrainedTokenizerBase | None = None

    @property
    def num_labels(self) -> int:
        """Number of classes, for linking into the model."""
        return len(self.id_to_label)

    @property
    def splits_dir(self) -> Path:
        """Folder of ``train.json``, ``val.json`` and ``test.json``."""
        return self.data_dir / "splits"

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The tokenizer, loaded on first use."""
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(self.tokenizer_name))
        return self._tokenizer

    def prepare_data(self) -> None:
        """Builds the splits when they are missing (collect → preprocess → split) and tokenizes them into the cache.

        Lightning calls this on one process per node only; it does nothing when splits and cache exist.
        """
        if not all((self.splits_dir / f"{split}.json").is_file() for split in SPLITS):
            hp = self.hparams
            build_splits(
                self.data_dir,
                categories=self.categories,
                source=hp["source"],
                snapshot_path=hp["snapshot_path"],
                api_url=hp["api_url"],
                num_papers=hp["num_papers"],
                min_words=hp["min_words"],
                out_of_scope_papers=hp["out_of_scope_papers"],
                seed=hp["seed"],
            )
        for split in SPLITS:
            self._tokenized(split)

    def setup(self, stage: str | None = None) -> None:
        """Loads the tokenized splits the stage needs (tokenizing and caching any that are not cached yet).

        Every sample is validated (fields, labels) before any training starts.
        """
        if stage == "predict" and self.predict_file is not None:
            self.datasets["predict"] = self._predict_dataset(self.predict_file)
            return
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "", SPLITS):
            if split not in self.datasets:
                self.datasets[split] = self._tokenized(split)
        if stage == "predict":
            self.datasets["predict"] = self.datasets["test"]
            samples, _ = self._load_split("test")
            self.predict_records = [{"arxiv_id": s["arxiv_id"], "true_label": s["label"]} for s in samples]

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, grouped by length when `group_by_length` is set."""
        dataset = self._dataset("train")
        sampler = None
        if self.group_by_length:
            sampler = LengthGroupedSampler(self.batch_size, lengths=list(dataset["length"]))
        return self._loader(dataset, self.batch_size, shuffle=sampler is None, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in file order."""
        return self._loader(self._dataset("val"), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        """Test batches in file order."""
        return self._loader(self._dataset("test"), self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """Batches of `predict_file`'s papers, or of the test split; `predict_records` says which paper is which."""
        return self._loader(self._dataset("predict"), self.eval_batch_size)

    # ------------------------------------------------------------------ helpers

    def statistics(self) -> dict[str, dict[str, Any]]:
        """Per loaded split: papers, papers per class, token lengths and the share cut at `max_length`.

        Returns:
            ``{split: {"papers", "classes": {label: count}, "tokens_p50", "tokens_p95", "truncated_share"}}`` for
            each split set up so far (a multi-label paper counts for each of its classes).
        """
        import numpy as np

        stats: dict[str, dict[str, Any]] = {}
        for split, dataset in self.datasets.items():
            if split == "predict" or "length" not in dataset.column_names:
                continue
            lengths = np.asarray(dataset["length"])
            counts: dict[str, int] = {}
            if "labels" in dataset.column_names:
                for target in dataset["labels"]:
                    indices = [i for i, on in enumerate(target) if on] if isinstance(target, list) else [int(target)]
                    for index in indices:
                        label = self.id_to_label[index]
                        counts[label] = counts.get(label, 0) + 1
            stats[split] = {
                "papers": len(dataset),
                "classes": dict(sorted(counts.items())),
                "tokens_p50": float(np.percentile(lengths, 50)) if len(lengths) else None,
                "tokens_p95": float(np.percentile(lengths, 95)) if len(lengths) else None,
                "truncated_share": float(np.mean(lengths >= self.max_length)) if len(lengths) else None,
            }
        return stats

    def _dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            raise RuntimeError(f"the {split} split is not loaded; call setup() first")
        return self.datasets[split]

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False, sampler: Any = None) -> DataLoader:
        return DataLoader(
            dataset.select_columns([c for c in _MODEL_INPUTS if c in dataset.column_names]),
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=PadToLongest(self.tokenizer),
        )

    def split_samples(self, split: str) -> list[dict[str, Any]]:
        """Every sample of a split file, validated (the whole training split, whatever `train_papers` says).

        Args:
            split: ``train``, ``val`` or ``test``.

        Returns:
            The samples (``text``, ``label``, ``categories``, ...), in file order.
        """
        return self._read_split(split)[0]

    def out_of_scope_samples(self) -> list[dict[str, Any]]:
        """The papers of other categories the preprocessor kept aside (``processed/out_of_scope.json``).

        Returns:
            Their samples (``text``, ``label``: their own primary category, ...); [] when the data folder has no such
            file (prepared before it existed).

        Raises:
            DataFileError: when the file is not a samples file.
        """
        path = self.data_dir / OUT_OF_SCOPE_DATASET
        if not path.is_file():
            return []
        document = read_json(path)
        samples = document.get("samples") if isinstance(document, dict) else None
        if not isinstance(samples, list):
            raise DataFileError(f"{path}: not a samples file; run clf preprocess --data_dir {self.data_dir} again")
        return [sample for sample in samples if isinstance(sample, dict) and isinstance(sample.get("text"), str)]

    def row_texts(self, stage: str) -> list[str]:
        """The model input text of every row a stage's batches carry (their ``row`` column indexes it).

        Args:
            stage: ``test``, ``val``, ``train`` (its `train_papers` subset) or ``predict``.

        Returns:
            The texts, in row order.
        """
        if stage == "predict":
            if self.predict_file is None:
                stage = "test"
            else:
                if "predict" not in self.datasets:
                    self.setup("predict")
                return list(self._predict_texts)
        return [sample["text"] for sample in self._load_split(stage)[0]]

    def _load_split(self, split: str) -> tuple[list[dict[str, Any]], bytes]:
        """The samples a stage uses and the bytes that key their cache: the training subset when `train_papers`
        is set."""
        samples, raw = self._read_split(split)
        if split != "train" or self.train_papers is None or self.train_papers >= len(samples):
            return samples, raw
        return stratified_subset(
            samples, self.train_papers, self.seed
        ), raw + f"\x00train_papers={self.train_papers}".encode()

    def _read_split(self, split: str) -> tuple[list[dict[str, Any]], bytes]:
        """The split's validated samples and its bytes (the cache key), read once per DataModule."""
        if split in self._splits:
            return self._splits[split]
        path = self.splits_dir / f"{split}.json"
        if not path.is_file():
            raise DataFileError(
                f"{path} not found. Run `clf preprocess --data-dir {self.data_dir}` (after `clf collect`), or call "
                "prepare_data() to build the splits from the configured source."
            )
        raw = path.read_bytes()
        try:
            content = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataFileError(f"{path}: not valid JSON ({err}). Re-run `clf preprocess`.") from err
        samples = content.get("samples") if isinstance(content, dict) else None
        if not isinstance(samples, list):
            raise DataFileError(f"{path}: expected an object with a 'samples' list; re-run `clf preprocess`.")
        validate_samples(samples, labels=self.categories, min_words=1, source=str(path))
        self._splits[split] = samples, raw
        return samples, raw

    def _cache_key(self, split_bytes: bytes) -> str:
        tokenizer = self.tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            # Truncation and padding settings change the first time the tokenizer runs; they are not the vocabulary
            # or the rules, and max_length is in the key on its own.
            state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
            tokenizer_state = json.dumps(state, sort_keys=True)
        else:
            tokenizer_state = json.dumps(tokenizer.get_vocab(), sort_keys=True)
        digest = hashlib.sha256()
        for part in (
            str(_CACHE_FORMAT),
            hashlib.sha256(split_bytes).hexdigest(),
            hashlib.sha256(tokenizer_state.encode()).hexdigest(),
            str(self.max_length),
            json.dumps(self.label_to_id, sort_keys=True),
            "multi-label" if self.multi_label else "single-label",
        ):
            digest.update(part.encode())
            digest.update(b"\x00")
        return digest.hexdigest()[:20]

    def _tokenized(self, split: str) -> Dataset:
        samples, raw = self._load_split(split)
        path = self.cache_dir / f"{split}-{self._cache_key(raw)}"
        if (path / "dataset_info.json").is_file():
            log.info("%s: using tokenized cache %s", split, path)
            return load_from_disk(str(path))
        log.info("%s: tokenizing %d samples (max_length=%d) into %s", split, len(samples), self.max_length, path)
        dataset = Dataset.from_dict(
            {
                "text": [s["text"] for s in samples],
                "labels": [self._target(s) for s in samples],
                "row": list(range(len(samples))),
            }
        )
        dataset = self._encode(dataset, split)
        dataset.save_to_disk(str(path))
        return load_from_disk(str(path))

    def _target(self, sample: dict[str, Any]) -> int | list[float]:
        if not self.multi_label:
            return self.label_to_id[sample["label"]]
        listed = set(sample.get("categories") or []) | {sample["label"]}
        return [1.0 if label in listed else 0.0 for label in self.label_to_id]

    def _encode(self, dataset: Dataset, split: str) -> Dataset:
        tokenizer = self.tokenizer

        if interactive():  # datasets draws its own bar, with rate and ETA
            return dataset.map(_Encoder(tokenizer, self.max_length), batched=True, remove_columns=["text"],
                               desc=f"tokenizing {split}")  # fmt: skip
        # In a log, datasets' bar would be noise: the same progress as periodic lines instead.
        from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

        was_on = is_progress_bar_enabled()
        disable_progress_bar()
        try:
            with Progress(f"tokenizing {split}", total=len(dataset), unit="texts") as progress:
                encoder = _Encoder(tokenizer, self.max_length, progress)
                return dataset.map(encoder, batched=True, remove_columns=["text"])
        finally:
            if was_on:
                enable_progress_bar()

    def _predict_dataset(self, path: Path) -> Dataset:
        records, texts = [], []
        for number, paper in read_jsonl(path):
            if paper.get("text") or paper.get("title") or paper.get("abstract"):
                text = model_input_text(
                    str(paper.get("title") or ""), str(paper.get("abstract") or ""), paper.get("text")
                )
            else:
                raise DataFileError(
                    f"{path}, line {number}: a paper needs 'title' and 'abstract', or 'text'. Fix or remove that line."
                )
            records.append({"arxiv_id": paper.get("arxiv_id") or paper.get("id") or f"line-{number}", "line": number})
            texts.append(text)
        if not records:
            raise DataFileError(f"{path}: holds no papers to predict.")
        self.predict_records = records
        self._predict_texts = texts
        log.info("predict: %d papers from %s", len(records), path)
        return self._encode(Dataset.from_dict({"text": texts, "row": list(range(len(texts)))}), "predict")


def stratified_subset(samples: list[dict[str, Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` samples, each label keeping its share (at least one), drawn with `seed`; file order is kept.

    Args:
        samples: labelled samples (``label``).
        count: how many to keep.
        seed: the draw's seed.

    Returns:
        The subset, in the order of `samples`.
    """
    import random

    by_label: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        by_label.setdefault(sample["label"], []).append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        indices = by_label[label]
        share = max(1, round(count * len(indices) / len(samples)))
        chosen += rng.sample(indices, min(share, len(indices)))
    return [samples[index] for index in sorted(chosen)]


class PadToLongest:
    """Collates tokenized samples into a batch padded to its longest sample, as a plain dict of tensors.

    A dict rather than transformers' ``BatchEncoding``: Lightning moves a dict's tensors to the GPU one by one with
    ``non_blocking=True`` (asynchronous from pinned memory), but calls ``BatchEncoding.to`` without it, which
    costs a host sync per tensor on every step.

    Args:
        tokenizer: the tokenizer that encoded the samples (its pad token and padding side are used).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self._pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Pads `features` into one batch.

        Args:
            features: tokenized samples (``input_ids``, ``attention_mask``, and ``labels`` where known).

        Returns:
            Name → tensor of shape ``(batch, longest)`` (``labels``: ``(batch,)`` or ``(batch, classes)``).
        """
        return dict(self._pad(features))


class _Encoder:
    """Tokenizes a batch of texts (truncated to `max_length`) and records each length; reports its progress."""

    def __init__(self, tokenizer: Any, max_length: int, progress: Progress | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.progress = progress

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = self.tokenizer(batch["text"], truncation=True, max_length=self.max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        if self.progress is not None:
            self.progress.advance(len(batch["text"]))
        return encoded
