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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from clf.data.paper import Paper, strip_version
from clf.data.progress import Progress
from clf.io import DataFileError, read_jsonl

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
                f"snapshot {self.path} not found. Pass --snapshot_path with the path of a JSON Lines snapshot, e.g. "
                "../shared/data/arxiv/papers.jsonl.gz or arxiv-metadata-oai-snapshot.json."
            )

    def iter_papers(self, position: Callable[[int], None] | None = None) -> Iterator[Paper]:
        """Yields every paper in file order.

        Args:
            position: called now and then with the bytes of the file read so far (see `clf.io.read_jsonl`).

        Yields:
            Each record of the snapshot as a `Paper`.

        Raises:
            DataFileError: naming the file, line and field of a corrupt or incomplete record.
        """
        for number, record in read_jsonl(self.path, position=position):
            try:
                yield paper_from_snapshot_record(record)
            except SnapshotRecordError as err:
                raise DataFileError(
                    f"{self.path}, line {number}: field {err.field!r} {err.problem}. Each line needs id, title, "
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
        return self.sample(categories, per_category, dates=dates, primary_only=primary_only, seed=seed).by_category

    def sample(
        self,
        categories: Sequence[str],
        per_category: int,
        *,
        others: int = 0,
        dates: DateRange | None = None,
        primary_only: bool = True,
        seed: int = 42,
    ) -> SnapshotSample:
        """Draws the papers of `sample_by_category` and, in the same pass, up to `others` papers of no category.

        The other papers (those `sample_by_category` would draw for none of `categories`) are a uniform random
        sample drawn with a generator of their own, so asking for them leaves the categories' papers unchanged.

        Args:
            categories: the categories to collect.
            per_category: how many papers to keep for each.
            others: how many papers of no requested category to keep; 0 keeps none.
            dates: keep only papers published in this range (the other papers too).
            primary_only: as in `sample_by_category`.
            seed: seed of the sampling.

        Returns:
            The papers per category and the other papers, each sorted by arXiv id.
        """
        wanted = set(categories)
        rng = random.Random(seed)
        other_rng = random.Random(f"{seed}:others")
        reservoirs: dict[str, list[Paper]] = {c: [] for c in categories}
        seen: dict[str, int] = dict.fromkeys(categories, 0)
        other_reservoir: list[Paper] = []
        other_seen = 0
        dates = dates or DateRange()
        scanned = [0]  # read by the progress callback while the loop counts
        with Progress(f"scanning {self.path.name}", total=self.path.stat().st_size, unit="B") as progress:
            for paper in self.iter_papers(lambda done: progress.move_to(done, papers=scanned[0])):
                scanned[0] += 1
                if paper.published not in dates:
                    continue
                category = _category_for(paper, wanted, primary_only)
                if category is None:
                    if others:
                        other_seen += 1
                        _offer(paper, other_reservoir, others, other_seen, other_rng)
                    continue
                seen[category] += 1
                _offer(paper, reservoirs[category], per_category, seen[category], rng)
            progress.counts["papers"] = scanned[0]
        log.info("Scanned %d papers in %s; matching per category: %s", scanned[0], self.path, seen)
        by_category = {c: sorted(_unique(papers), key=lambda p: p.arxiv_id) for c, papers in reservoirs.items()}
        drawn = {p.arxiv_id for papers in by_category.values() for p in papers}
        kept_others = sorted((p for p in _unique(other_reservoir) if p.arxiv_id not in drawn), key=lambda p: p.arxiv_id)
        return SnapshotSample(by_category, kept_others)


@dataclass(frozen=True)
class SnapshotSample:
    """What `SnapshotReader.sample` draws."""

    by_category: dict[str, list[Paper]]
    """Category → its papers, sorted by arXiv id."""
    others: list[Paper]
    """Papers of none of the categories, sorted by arXiv id."""


def _offer(paper: Paper, reservoir: list[Paper], size: int, seen: int, rng: random.Random) -> None:
    """One step of reservoir sampling: `paper` is the `seen`-th candidate for a reservoir of `size`."""
    if len(reservoir) < size:
        reservoir.append(paper)
    else:
        slot = rng.randrange(seen)
        if slot < size:
            reservoir[slot] = paper


def _category_for(paper: Paper, wanted: set[str], primary_only: bool) -> str | None:
    if primary_only:
        return paper.primary_category if paper.primary_category in wanted else None
    return next((c for c in paper.categories if c in wanted), None)


def _unique(papers: list[Paper]) -> list[Paper]:
    by_id = {p.arxiv_id: p for p in reversed(papers)}
    return list(by_id.values())


class SnapshotRecordError(ValueError):
    """A snapshot record lacks a field it needs or holds a value of the wrong kind in one.

    Args:
        field: the field at fault, e.g. ``title`` or ``versions``.
        problem: what is wrong with it, e.g. ``must be a string, got null``.

    Attributes:
        field: the field at fault.
        problem: what is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")
        self.field = field
        self.problem = problem


def paper_from_snapshot_record(record: dict[str, Any]) -> Paper:
    """Normalises one snapshot line, in either supported format, into a `Paper`.

    Values are checked, not coerced: a title that is ``null`` or a list is an error rather than the text
    ``"None"``, and dates must parse, so every paper returned is one the rest of the pipeline can use.

    Args:
        record: one parsed snapshot line: the public Kaggle metadata format (``id``, ``categories`` as a
            space-separated string, ``versions``) or clf's own (``primary``, a list of categories, ``published``).

    Returns:
        The paper, primary category first; ``published`` and ``updated`` as ``YYYY-MM-DD`` (or empty).

    Raises:
        SnapshotRecordError: naming the field that is missing or unusable (wrong type, empty id or
            categories, a date that does not parse, text that is not valid Unicode).
    """
    arxiv_id = strip_version(_text(record, "id"))
    if not arxiv_id:
        raise SnapshotRecordError("id", "is empty")
    categories = _categories(record)
    primary = _optional_text(record, "primary")
    if primary:
        _check_category(primary, "primary")
    else:
        primary = categories[0]
    categories = [primary] + [c for c in categories if c != primary]
    published = _day(record, "published") or _first_version_date(record.get("versions"))
    updated = _day(record, "updated") or _day(record, "update_date") or published
    return Paper(
        arxiv_id=arxiv_id,
        title=" ".join(_text(record, "title").split()),
        abstract=" ".join(_text(record, "abstract").split()),
        primary_category=primary,
        categories=categories,
        authors=_authors(record),
        published=published,
        updated=updated,
    )


def _kind(value: Any) -> str:
    """How a JSON value is named in an error, without printing what may be megabytes of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40] + "…")
    return "an object" if isinstance(value, dict) else "a list"


def _valid_text(value: str, field: str) -> str:
    # json.loads turns an escaped lone surrogate (\ud800) into a str that cannot be written back as UTF-8.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SnapshotRecordError(field, "holds an unpaired UTF-16 surrogate, which is not valid Unicode") from None
    return value


def _text(record: dict[str, Any], field: str) -> str:
    if field not in record:
        raise SnapshotRecordError(field, "is missing")
    value = record[field]
    if not isinstance(value, str):
        raise SnapshotRecordError(field, f"must be a string, got {_kind(value)}")
    return _valid_text(value, field)


def _optional_text(record: dict[str, Any], field: str) -> str:
    """The field's text; an absent or null field, or an empty string, is ``""``."""
    if record.get(field) is None:
        return ""
    return _text(record, field)


def _check_category(name: str, field: str) -> None:
    if name.split() != [name]:
        raise SnapshotRecordError(field, f"must be a category name such as 'cs.CL', got {_kind(name)}")


def _categories(record: dict[str, Any]) -> list[str]:
    if "categories" not in record:
        raise SnapshotRecordError("categories", "is missing")
    raw = record["categories"]
    if isinstance(raw, str):
        names = _valid_text(raw, "categories").split()
    elif isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        names = [_valid_text(name, "categories") for name in raw]
        for name in names:
            _check_category(name, "categories")
    else:
        raise SnapshotRecordError(
            "categories", f"must be a list of names or a space-separated string, got {_kind(raw)}"
        )
    if not names:
        raise SnapshotRecordError("categories", "is empty")
    return list(dict.fromkeys(names))


def _day(record: dict[str, Any], field: str) -> str:
    """The field's date as ``YYYY-MM-DD``; ``""`` when it is absent, null or empty."""
    value = _optional_text(record, field)
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).date().isoformat()
    except ValueError:
        raise SnapshotRecordError(field, f"must be a date as YYYY-MM-DD, got {_kind(value)}") from None


def _first_version_date(versions: Any) -> str:
    if versions is None or versions == []:
        return ""
    if not isinstance(versions, list) or not isinstance(versions[0], dict):
        raise SnapshotRecordError("versions", f"must be a list of {{version, created}} objects, got {_kind(versions)}")
    created = versions[0].get("created")
    if created is None or created == "":
        return ""
    field = "versions[0].created"
    if not isinstance(created, str):
        raise SnapshotRecordError(field, f"must be a date string, got {_kind(created)}")
    try:
        return parsedate_to_datetime(created).date().isoformat()
    except (ValueError, TypeError, OverflowError):
        raise SnapshotRecordError(
            field, f"must be a date like 'Mon, 2 Apr 2007 19:18:42 GMT', got {_kind(created)}"
        ) from None


def _authors(record: dict[str, Any]) -> list[str]:
    parsed = record.get("authors_parsed")
    if parsed is not None and parsed != []:
        if not isinstance(parsed, list) or not all(
            isinstance(name, list) and len(name) >= 2 and all(isinstance(part, str) for part in name) for name in parsed
        ):
            raise SnapshotRecordError(
                "authors_parsed", f"must be a list of [last, first, …] string lists, got {_kind(parsed)}"
            )
        names = [" ".join(part for part in (first, last) if part) for last, first, *_ in parsed]
        return [_valid_text(name, "authors_parsed") for name in names]
    authors = record.get("authors")
    if authors is None:
        return []
    if isinstance(authors, list) and all(isinstance(name, str) for name in authors):
        return [_valid_text(name, "authors") for name in authors]
    if isinstance(authors, str):
        _valid_text(authors, "authors")
        return [a.strip() for a in authors.replace(" and ", ", ").split(",") if a.strip()]
    raise SnapshotRecordError("authors", f"must be a list of names or a string, got {_kind(authors)}")
