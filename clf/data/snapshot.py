"""Stream arXiv metadata from a local JSON Lines snapshot, the offline source of papers.

Two formats are read, detected per line:

* the shared format: ``{"id", "title", "abstract", "categories": [primary first], "primary", "published"}``;
* the public arxiv-metadata-oai-snapshot format: ``{"id", "title", "abstract", "categories": "cs.CL cs.AI",
  "versions": [{"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"}], "update_date", "authors", …}``.

The file is read one line at a time, and sampling keeps at most ``per_category`` papers per category in memory,
so a 4 GB snapshot never has to fit in memory.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from clf.data.io import DataFileError, read_jsonl
from clf.data.paper import Paper, strip_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of `YYYY-MM-DD` publication dates; either end may be open."""

    start: date | None = None
    """The first day included; None leaves the range open at the start."""
    end: date | None = None
    """The last day included; None leaves the range open at the end."""

    def __contains__(self, published: str) -> bool:
        if self.start is None and self.end is None:
            return True
        if not published:
            return False
        day = date.fromisoformat(published[:10])
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)


class SnapshotReader:
    """Reads papers from a snapshot file without loading it into memory.

    Args:
        path: a `.jsonl`, `.json` (one object per line) or `.gz` file in either supported format.

    Raises:
        DataFileError: when the file does not exist (raised on construction), or, while reading, naming the
            line and field of a record that cannot be used.

    Examples:
        >>> reader = SnapshotReader("../shared/data/arxiv/papers.jsonl.gz")  # doctest: +SKIP
        >>> sample = reader.sample_by_category(["cs.CL", "cs.CV"], per_category=100)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataFileError(
                f"snapshot {self.path} not found. Pass --snapshot with the path of a JSON Lines snapshot, e.g. "
                "../shared/data/arxiv/papers.jsonl.gz or arxiv-metadata-oai-snapshot.json."
            )

    def iter_papers(self) -> Iterator[Paper]:
        """Yields every paper in file order.

        Yields:
            Each record of the snapshot as a `Paper`.

        Raises:
            DataFileError: naming the file, line and field of a corrupt or incomplete record.
        """
        for number, record in read_jsonl(self.path):
            try:
                yield paper_from_snapshot_record(record)
            except (KeyError, ValueError, TypeError) as err:
                field = err.args[0] if isinstance(err, KeyError) else str(err)
                raise DataFileError(
                    f"{self.path}, line {number}: missing or invalid field {field!r}. Each line needs id, title, "
                    "abstract and categories; fix or delete that line."
                ) from err

    def sample_by_category(
        self,
        categories: Sequence[str],
        per_category: int,
        *,
        dates: DateRange | None = None,
        primary_only: bool = True,
        seed: int = 42,
    ) -> dict[str, list[Paper]]:
        """Draws up to `per_category` papers for each category in one streaming pass.

        Each category keeps a uniform random sample of its matching papers (reservoir sampling), so the result
        does not depend on how the file happens to be ordered, and the same seed gives the same papers.

        Args:
            categories: the categories to collect.
            per_category: how many papers to keep for each.
            dates: keep only papers published in this range.
            primary_only: a paper counts for a category only when that is its primary category; otherwise it
                counts for the first of its listed categories that is requested, so no paper is drawn twice.
            seed: seed of the sampling.

        Returns:
            Category → papers, sorted by arXiv id.
        """
        wanted = set(categories)
        rng = random.Random(seed)
        reservoirs: dict[str, list[Paper]] = {c: [] for c in categories}
        seen: dict[str, int] = dict.fromkeys(categories, 0)
        dates = dates or DateRange()
        scanned = 0
        for paper in self.iter_papers():
            scanned += 1
            category = _category_for(paper, wanted, primary_only)
            if category is None or paper.published not in dates:
                continue
            seen[category] += 1
            reservoir = reservoirs[category]
            if len(reservoir) < per_category:
                reservoir.append(paper)
            else:
                slot = rng.randrange(seen[category])
                if slot < per_category:
                    reservoir[slot] = paper
        log.info("Scanned %d papers in %s; matching per category: %s", scanned, self.path, seen)
        return {c: sorted(_unique(papers), key=lambda p: p.arxiv_id) for c, papers in reservoirs.items()}


def _category_for(paper: Paper, wanted: set[str], primary_only: bool) -> str | None:
    if primary_only:
        return paper.primary_category if paper.primary_category in wanted else None
    return next((c for c in paper.categories if c in wanted), None)


def _unique(papers: list[Paper]) -> list[Paper]:
    by_id = {p.arxiv_id: p for p in reversed(papers)}
    return list(by_id.values())


def paper_from_snapshot_record(record: dict[str, Any]) -> Paper:
    """Normalises one snapshot line, in either supported format, into a `Paper`.

    Args:
        record: one parsed snapshot line: the public Kaggle metadata format (``id``, ``categories`` as a
            space-separated string, ``versions``) or clf's own (``primary``, a list of categories, ``published``).

    Returns:
        The paper, primary category first.

    Raises:
        KeyError: naming a missing required field.
        ValueError: when a field has an unusable value (e.g. empty categories).
    """
    arxiv_id = strip_version(str(record["id"]))
    title, abstract = record["title"], record["abstract"]
    raw_categories = record["categories"]
    categories = raw_categories.split() if isinstance(raw_categories, str) else list(raw_categories)
    if not categories:
        raise ValueError("categories")
    primary = record.get("primary") or categories[0]
    if primary in categories:
        categories.remove(primary)
    categories.insert(0, primary)
    published = record.get("published") or _first_version_date(record.get("versions"))
    updated = record.get("updated") or record.get("update_date") or published
    return Paper(
        arxiv_id=arxiv_id,
        title=" ".join(str(title).split()),
        abstract=" ".join(str(abstract).split()),
        primary_category=primary,
        categories=categories,
        authors=_authors(record),
        published=published,
        updated=updated,
    )


def _first_version_date(versions: Any) -> str:
    if not versions:
        return ""
    created = versions[0].get("created", "")
    return parsedate_to_datetime(created).date().isoformat() if created else ""


def _authors(record: dict[str, Any]) -> list[str]:
    parsed = record.get("authors_parsed")
    if parsed:
        return [" ".join(part for part in (first, last) if part) for last, first, *_ in parsed]
    authors = record.get("authors")
    if isinstance(authors, list):
        return [str(a) for a in authors]
    if isinstance(authors, str) and authors.strip():
        return [a.strip() for a in authors.replace(" and ", ", ").split(",") if a.strip()]
    return []
