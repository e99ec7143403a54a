"""The papers of a backtest in time order: its periods, each period's traffic, and when each label arrives.

world = World(["papers.jsonl.gz", "new_papers.jsonl.gz"], categories, Path("runs/backtest"))
world.snapshot              # every paper once, one file the collector reads (with an end date) for training data
world.traffic(period)       # that period's papers of the classes, in publication order
"""

from __future__ import annotations

import calendar
import gzip
import json
import logging
import os
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from clf.data.cleaning import model_input_text
from clf.data.paper import Paper, strip_version
from clf.data.snapshot import SnapshotReader, paper_from_snapshot_record
from clf.io import read_jsonl

log = logging.getLogger(__name__)

SNAPSHOT_FILE = "world.jsonl.gz"
"""The merged snapshot in the work folder: every paper of the replay's files once."""


@dataclass(frozen=True)
class Period:
    """One period of the replay: the papers published from `start` up to the day before `end`."""

    index: int
    """0 for the first period."""
    start: date
    """Its first day."""
    end: date
    """The day after its last day."""

    @property
    def name(self) -> str:
        """``2025-09`` for a calendar month, else ``2025-09-01..2025-09-30``."""
        last = self.end - timedelta(days=1)
        if (
            self.start.day == 1
            and last.day == calendar.monthrange(last.year, last.month)[1]
            and last.month == (self.start.month)
        ):
            return self.start.strftime("%Y-%m")
        return f"{self.start.isoformat()}..{last.isoformat()}"


def periods(start: date, end: date, days: int | None = None) -> list[Period]:
    """Splits [start, end) into calendar months (`days` None) or runs of `days` days; the last may be shorter.

    Args:
        start: the first day.
        end: the day after the last.
        days: the length of a period; None: calendar months (a start mid-month makes a short first period).

    Returns:
        The periods in order.

    Examples:
        >>> [p.name for p in periods(date(2025, 9, 1), date(2025, 11, 1))]
        ['2025-09', '2025-10']
    """
    out: list[Period] = []
    current = start
    while current < end:
        if days is None:
            following = date(current.year + current.month // 12, current.month % 12 + 1, 1)
        else:
            following = current + timedelta(days=days)
        out.append(Period(len(out), current, min(following, end)))
        current = following
    return out


class World:
    """Every paper of the replay's files, once, and the merged snapshot file training data is collected from.

    Args:
        files: the snapshot files, in order of precedence (a paper in two files keeps the first one's record).
        categories: the classes; only their papers are traffic (every paper stays in the snapshot).
        work_dir: where the merged snapshot is written (once; an existing one is reused).

    Raises:
        DataFileError: naming a file that is missing or a record that does not read.
    """

    def __init__(self, files: Sequence[str | Path], categories: Sequence[str], work_dir: Path) -> None:
        self.categories = set(categories)
        self.snapshot = work_dir / SNAPSHOT_FILE
        if not self.snapshot.is_file():
            _merge(files, self.snapshot)
        papers = sorted(SnapshotReader(self.snapshot).iter_papers(), key=lambda p: (p.published[:10], p.arxiv_id))
        self.papers = papers
        # Traffic is every paper of the classes with some text to classify, kept in publication order.
        self._traffic = [
            p for p in papers if p.primary_category in self.categories and model_input_text(p.title, p.abstract)
        ]
        self._days = [p.published[:10] for p in self._traffic]
        log.info("The replay's world: %d papers from %s", len(self.papers), [str(f) for f in files])

    def traffic(self, start: date, end: date) -> list[Paper]:
        """The papers of the classes published in [start, end), in publication order (those with some text).

        Args:
            start: the first day.
            end: the day after the last.

        Returns:
            The papers, oldest first (ties by arXiv id).
        """
        return self._traffic[bisect_left(self._days, start.isoformat()) : bisect_left(self._days, end.isoformat())]


def label_day(paper: Paper, delay_days: int) -> date:
    """The day `paper`'s true category reaches the loop.

    Args:
        paper: a paper.
        delay_days: the label delay.

    Returns:
        Its publication day plus the delay.
    """
    return date.fromisoformat(paper.published[:10]) + timedelta(days=delay_days)


def _merge(files: Sequence[str | Path], out: Path) -> None:
    seen: set[str] = set()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    kept = 0
    with gzip.open(partial, "wt", encoding="utf-8", compresslevel=1) as sink:
        for path in files:
            SnapshotReader(path)  # names a missing file
            for _, record in read_jsonl(Path(path)):
                key = strip_version(paper_from_snapshot_record(record).arxiv_id)
                if key not in seen:
                    seen.add(key)
                    sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                    kept += 1
    os.replace(partial, out)
    log.info("Merged %d papers into %s", kept, out)
