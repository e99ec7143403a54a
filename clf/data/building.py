"""One way to build a data folder's splits: collect → preprocess → split, for `clf fit` and for the backtest.

    build_splits("data/2025-09", source="snapshot", snapshot_path="papers.jsonl.gz", num_papers=60000,
                 categories=DEFAULT_CATEGORIES, end_date="2025-08-31")   # the papers published up to that day

The DataModule calls it when its splits are missing; the backtest calls it for the data a model trained at a moment
of the replay would have had (`end_date`), so both collect and split the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from clf.data.collector import DATASET_FILE, DEFAULT_API_URL, ArxivCollector
from clf.data.preprocess import DatasetPreprocessor

log = logging.getLogger(__name__)


def build_splits(
    data_dir: str | Path,
    *,
    categories: Sequence[str],
    source: Literal["snapshot", "api"] = "snapshot",
    snapshot_path: str | Path | None = None,
    api_url: str = DEFAULT_API_URL,
    num_papers: int = 5000,
    min_words: int = 50,
    out_of_scope_papers: int = 2000,
    seed: int = 42,
    end_date: str | None = None,
) -> dict[str, Path]:
    """Collects papers into `data_dir` (unless its raw dataset exists), then preprocesses and splits them.

    Args:
        data_dir: the data folder; ``raw/arxiv/`` and ``splits/`` are written in it.
        categories: the classes.
        source: ``snapshot`` or ``api``.
        snapshot_path: the snapshot file for ``source="snapshot"``.
        api_url: the arXiv API endpoint for ``source="api"``.
        num_papers: how many papers to collect, split evenly across `categories`.
        min_words: the preprocessor's minimum words per paper.
        out_of_scope_papers: most papers of other categories collected beside them (0: none).
        seed: seed of sampling and splitting.
        end_date: collect only papers published on or before this day (``YYYY-MM-DD``); None: every paper.

    Returns:
        Split name → path of the written split file.
    """
    data_dir = Path(data_dir)
    if not (data_dir / "raw" / "arxiv" / DATASET_FILE).is_file():
        log.info("No splits in %s: collecting %d papers from the %s source", data_dir, num_papers, source)
        collector = ArxivCollector(
            data_dir=data_dir,
            source=source,
            snapshot_path=snapshot_path,
            api_url=api_url,
            seed=seed,
            out_of_scope_papers=out_of_scope_papers,
            end_date=end_date,
        )
        collector.create_classification_dataset(num_papers, categories)
    return DatasetPreprocessor(data_dir=data_dir, min_words=min_words, categories=categories, seed=seed).run()
