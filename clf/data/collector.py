"""Collect arXiv papers per category, from the arXiv API or a local snapshot, resumably.

Offline (the default)::

    clf collect --source snapshot --snapshot-path ../shared/data/arxiv/papers.jsonl.gz --num-papers 5000

From the API (polite by default: at least 3 s between pages, as arXiv asks)::

    clf collect --source api --num-papers 2000

Papers of each category are appended to ``DATA_DIR/raw/arxiv/<category>.jsonl`` page by page, and a small state
file beside it records the next page to fetch, so an interrupted run picks up where it stopped: saved pages are not
fetched again and no paper is saved twice.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import arxiv

from clf import DEFAULT_CATEGORIES
from clf.data.api_pager import ArxivApiPager, PageFetchError
from clf.data.collection_state import CollectionState
from clf.data.paper import Paper, strip_version
from clf.data.progress import Progress, interactive
from clf.data.snapshot import DateRange, SnapshotReader
from clf.io import (
    DataFileError,
    read_jsonl,
    sha256_of_strings,
    truncate_partial_last_line,
    write_json_atomic,
    write_jsonl_atomic,
)
from clf.io import append_jsonl as _append_jsonl

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://export.arxiv.org/api/query"
DATASET_FILE = "classification_dataset.jsonl"
MANIFEST_FILE = "manifest.json"
# "_" cannot appear in a category name, so a category's out-of-scope file never names another category's papers.
_OTHERS_SUFFIX = ".out_of_scope.jsonl"
_CATEGORY = re.compile(r"^[a-z][a-z-]*(\.[A-Za-z][A-Za-z-]*)?$")


class CollectionError(RuntimeError):
    """Collection stopped; everything saved before the failure is kept and a re-run resumes from it."""


class EmptyCategoryError(CollectionError):
    """A category yielded no papers at all."""


class ArxivCollector:
    """Collects papers per category into append-only JSON Lines files under ``data_dir/raw/arxiv/``.

    Args:
        data_dir: root of the data folder; papers go to ``<data_dir>/raw/arxiv/``.
        source: ``snapshot`` reads a local JSON Lines snapshot (offline); ``api`` queries the arXiv API.
        snapshot_path: the snapshot file, for ``source="snapshot"``.
        api_url: the arXiv API query endpoint (a loopback server in tests).
        delay_seconds: least time between two API requests; arXiv asks for at least 3 s.
        category_delay_seconds: pause between two categories (API only); defaults to ``delay_seconds``.
        page_size: papers per API request (arXiv allows up to 2000; 100 keeps pages quick to retry).
        max_retries: retries of a failed page before giving up (HTTP 429/5xx, timeouts, malformed or empty feeds).
        backoff_seconds: wait before the first retry; doubled on each further retry.
        max_backoff_seconds: upper bound on a single back-off wait.
        timeout_seconds: socket timeout of one API request.
        primary_only: keep only papers whose primary category is the one asked for.
        start_date: keep papers published on or after this day (``YYYY-MM-DD``).
        end_date: keep papers published on or before this day (``YYYY-MM-DD``).
        seed: seed of the snapshot sampling.
        out_of_scope_papers: most papers of no requested category that `create_classification_dataset` adds for
            the out-of-scope model (labelled with their own primary category; the preprocessor keeps them apart):
            a seeded sample of the snapshot, or the cross-listed papers the API pages return anyway; 0 adds none.
        progress_every: log a progress line every this many saved papers.

    Raises:
        ValueError: naming the option that is out of range.

    Examples:
        >>> collector = ArxivCollector("data", source="snapshot",
        ...                            snapshot_path="../shared/data/arxiv/papers.jsonl.gz")  # doctest: +SKIP
        >>> collector.create_classification_dataset(1000)  # doctest: +SKIP
    """

    def __init__(
        self,
        data_dir: str | Path = "data",
        source: Literal["snapshot", "api"] = "snapshot",
        snapshot_path: str | Path | None = None,
        api_url: str = DEFAULT_API_URL,
        delay_seconds: float = 3.0,
        category_delay_seconds: float | None = None,
        page_size: int = 100,
        max_retries: int = 4,
        backoff_seconds: float = 5.0,
        max_backoff_seconds: float = 120.0,
        timeout_seconds: float = 30.0,
        primary_only: bool = True,
        start_date: str | None = None,
        end_date: str | None = None,
        seed: int = 42,
        out_of_scope_papers: int = 2000,
        progress_every: int = 100,
    ) -> None:
        if source not in ("snapshot", "api"):
            raise ValueError(f"--source must be 'snapshot' or 'api', got {source!r}")
        if source == "snapshot" and snapshot_path is None:
            raise ValueError(
                "--source snapshot needs --snapshot_path PATH (e.g. ../shared/data/arxiv/papers.jsonl.gz, or the "
                "public arxiv-metadata-oai-snapshot.json); use --source api to query arXiv instead"
            )
        for name, value in (("delay_seconds", delay_seconds), ("backoff_seconds", backoff_seconds)):
            if value < 0:
                raise ValueError(f"--{name} must be >= 0, got {value}")
        if not 1 <= page_size <= 2000:
            raise ValueError(f"--page_size must be in [1, 2000] (the API's limit), got {page_size}")
        if max_retries < 0:
            raise ValueError(f"--max_retries must be >= 0, got {max_retries}")
        if timeout_seconds <= 0:
            raise ValueError(f"--timeout_seconds must be > 0, got {timeout_seconds}")
        if out_of_scope_papers < 0:
            raise ValueError(f"--out_of_scope_papers must be >= 0, got {out_of_scope_papers}")
        self.data_dir = Path(data_dir)
        self.raw_dir = self.data_dir / "raw" / "arxiv"
        self.source = source
        self.snapshot_path = Path(snapshot_path) if snapshot_path is not None else None
        self.api_url = api_url
        self.category_delay_seconds = delay_seconds if category_delay_seconds is None else category_delay_seconds
        self.pager = (
            ArxivApiPager(
                api_url,
                page_size=page_size,
                delay_seconds=delay_seconds,
                max_retries=max_retries,
                backoff_seconds=backoff_seconds,
                max_backoff_seconds=max_backoff_seconds,
                timeout_seconds=timeout_seconds,
            )
            if source == "api"
            else None
        )
        self.page_size = page_size
        self.primary_only = primary_only
        self.dates = DateRange(_parse_day(start_date, "start_date"), _parse_day(end_date, "end_date"))
        if self.dates.start and self.dates.end and self.dates.start > self.dates.end:
            raise ValueError(f"--start_date {start_date} is after --end_date {end_date}")
        self.seed = seed
        self.out_of_scope_papers = out_of_scope_papers
        self.progress_every = progress_every

    # ------------------------------------------------------------------ public API

    def collect_papers_by_category(
        self,
        category: str,
        max_results: int,
        start_date: str | None = None,
        end_date: str | None = None,
    ) -> list[Paper]:
        """Collects up to `max_results` papers of one category, resuming any earlier run into the same folder.

        Args:
            category: an arXiv category such as ``cs.CL``.
            max_results: how many papers to keep for it.
            start_date: overrides the collector's ``start_date`` for this call.
            end_date: overrides the collector's ``end_date`` for this call.

        Returns:
            The category's papers (those saved by earlier runs included), at most `max_results`.

        Raises:
            CollectionError: when a page still fails after the last retry; what was saved stays saved.
            EmptyCategoryError: when the category yields no papers at all.
        """
        dates = self.dates
        if start_date or end_date:
            dates = DateRange(
                _parse_day(start_date, "start_date") or self.dates.start,
                _parse_day(end_date, "end_date") or self.dates.end,
            )
        papers = self._collect([category], max_results, dates)[0][category]
        if not papers:
            raise EmptyCategoryError(self._empty_message([category], dates))
        return papers

    def collect_balanced_dataset(self, categories: Sequence[str], per_category: int) -> dict[str, list[Paper]]:
        """Collects `per_category` papers for each category into one JSON Lines file per category.

        Categories are collected one after the other; when one fails, those before it stay saved and a re-run
        resumes. Categories with no papers at all are reported together once the others are done.

        Args:
            categories: the arXiv categories to collect, e.g. ``["cs.CL", "cs.CV"]``.
            per_category: how many papers to collect for each category.

        Returns:
            Each category's papers, at most `per_category` of them (fewer when the source has fewer).

        Raises:
            ValueError: when `per_category` is below 1, or a category is malformed or listed twice.
            CollectionError: when a page still fails after the last retry.
            EmptyCategoryError: naming every category that yielded no papers.
        """
        return self._collect_all(categories, per_category, others=0)[0]

    def _collect_all(
        self, categories: Sequence[str], per_category: int, others: int
    ) -> tuple[dict[str, list[Paper]], list[Paper]]:
        """`collect_balanced_dataset`, and up to `others` papers of no requested category."""
        result, kept_others = self._collect(categories, per_category, self.dates, others)
        empty = [c for c, papers in result.items() if not papers]
        if empty:
            raise EmptyCategoryError(self._empty_message(empty, self.dates))
        return result, kept_others

    def create_classification_dataset(self, num_papers: int, categories: Sequence[str] = DEFAULT_CATEGORIES) -> Path:
        """Builds the balanced classification dataset and its manifest.

        Collects ``num_papers // len(categories)`` papers per category, flattens them to samples with
        ``text = title + ". " + abstract`` and ``label`` = primary category, and writes
        ``raw/arxiv/classification_dataset.jsonl`` and ``raw/arxiv/manifest.json`` (num_samples, categories,
        counts, out_of_scope, created_at, source, content hash).

        After the categories' samples come up to `out_of_scope_papers` papers of no requested category, labelled
        with their own primary category, sorted by arXiv id: the preprocessor sets them aside for the out-of-scope
        model, and the categories' samples are the same, in the same order, with or without them. ``num_samples``
        and ``counts`` count the categories' samples, ``out_of_scope`` the others.

        Args:
            num_papers: total number of papers wanted, split evenly across `categories`.
            categories: the arXiv categories, which become the class labels.

        Returns:
            The path of the dataset file.

        Raises:
            ValueError: when `num_papers` is smaller than the number of categories.
            CollectionError: see `collect_balanced_dataset`.
        """
        if num_papers < len(categories):
            raise ValueError(
                f"--num_papers ({num_papers}) must be at least the number of categories ({len(categories)})"
            )
        per_category = num_papers // len(categories)
        by_category, others = self._collect_all(categories, per_category, self.out_of_scope_papers)
        samples = [paper.to_sample() for c in categories for paper in by_category[c]]
        other_samples = [paper.to_sample() for paper in others]
        dataset_path = self.raw_dir / DATASET_FILE
        write_jsonl_atomic(dataset_path, samples + other_samples)
        counts = {c: len(by_category[c]) for c in categories}
        manifest = {
            "num_samples": len(samples),
            "categories": list(categories),
            "per_category_requested": per_category,
            "counts": counts,
            "out_of_scope": len(other_samples),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": self._source_description(),
            "content_hash": sha256_of_strings(
                f"{s['arxiv_id']}\t{s['label']}\t{s['text']}" for s in samples + other_samples
            ),
        }
        write_json_atomic(self.raw_dir / MANIFEST_FILE, manifest)
        _log_statistics(samples, counts, per_category)
        return dataset_path

    # ------------------------------------------------------------------ collection

    def _collect(
        self, categories: Sequence[str], per_category: int, dates: DateRange, others: int = 0
    ) -> tuple[dict[str, list[Paper]], list[Paper]]:
        """Each category's papers, and up to `others` papers of none of them (see `out_of_scope_papers`)."""
        if per_category < 1:
            raise ValueError(f"papers per category must be >= 1, got {per_category}")
        for category in categories:
            _check_category(category)
        if len(set(categories)) != len(categories):
            raise ValueError(f"--categories lists a category twice: {list(categories)}")
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        if self.source == "snapshot":
            return self._collect_from_snapshot(categories, per_category, dates, others)
        result: dict[str, list[Paper]] = {}
        for index, category in enumerate(categories):
            if index and self.category_delay_seconds:
                time.sleep(self.category_delay_seconds)
            result[category] = self._collect_from_api(category, per_category, dates, set(categories), others)
        return result, self._saved_others(categories, result, others)

    def _collect_from_snapshot(
        self, categories: Sequence[str], per_category: int, dates: DateRange, others: int
    ) -> tuple[dict[str, list[Paper]], list[Paper]]:
        assert self.snapshot_path is not None
        reader = SnapshotReader(self.snapshot_path)
        for category in categories:
            self._resumable_state(category, dates)
        sample = reader.sample(
            categories, per_category, others=others, dates=dates, primary_only=self.primary_only, seed=self.seed
        )
        for category, papers in sample.by_category.items():
            write_jsonl_atomic(self._papers_path(category), (p.to_dict() for p in papers))
            CollectionState(self._signature(category, dates), kept=len(papers), exhausted=True).save(
                self._state_path(category)
            )
            log.info("%s: %d papers sampled from %s", category, len(papers), self.snapshot_path)
        if others:
            log.info("%d papers of other categories sampled for the out-of-scope model", len(sample.others))
        return sample.by_category, sample.others

    def _collect_from_api(
        self, category: str, max_results: int, dates: DateRange, wanted: set[str], others: int
    ) -> list[Paper]:
        path = self._papers_path(category)
        other_path = self._others_path(category)
        state = self._resumable_state(category, dates)
        for saved in (path, other_path):
            if truncate_partial_last_line(saved):
                log.warning("%s: cut an incomplete last line left by an interrupted run", saved)
        papers = self._load_saved(path)
        # Cross-listed papers whose primary category is none asked for, kept for the out-of-scope model.
        other_ids = {p.arxiv_id for p in self._load_saved(other_path)}
        seen = self._ids_in_other_categories(category) | {p.arxiv_id for p in papers}
        next_start = state.next_start if state else 0
        exhausted = state.exhausted if state else False
        if papers:
            log.info("%s: resuming with %d saved papers, next page starts at %d", category, len(papers), next_start)
        query = self._query(category, dates)
        last_logged = len(papers) // self.progress_every
        # On a terminal a bar; elsewhere the log lines below say the same every progress_every papers.
        bar = Progress(f"collecting {category}", total=max_results, bar=True) if interactive() else None
        if bar is not None:
            bar.move_to(min(len(papers), max_results))
        while len(papers) < max_results and not exhausted:
            results, total = self._fetch_page(query, next_start, category, saved=len(papers))
            kept: list[Paper] = []
            other_kept: list[Paper] = []
            for result in results:
                paper = paper_from_result(result)
                if paper.arxiv_id in seen or paper.published not in dates:
                    continue
                if self.primary_only and paper.primary_category != category:
                    outside = paper.primary_category not in wanted and paper.arxiv_id not in other_ids
                    if outside and len(other_ids) < others:
                        other_ids.add(paper.arxiv_id)
                        other_kept.append(paper)
                    continue
                seen.add(paper.arxiv_id)
                kept.append(paper)
            # The whole page is saved, even past max_results, so a later, larger request misses none of it.
            if other_kept:
                _append_jsonl(other_path, (p.to_dict() for p in other_kept))
            _append_jsonl(path, (p.to_dict() for p in kept))
            papers.extend(kept)
            if bar is not None:
                bar.move_to(min(len(papers), max_results), scanned=next_start + len(results))
            next_start += len(results)
            exhausted = not results or next_start >= total
            CollectionState(self._signature(category, dates), next_start, len(papers), exhausted).save(
                self._state_path(category)
            )
            if len(papers) // self.progress_every > last_logged or exhausted or len(papers) >= max_results:
                last_logged = len(papers) // self.progress_every
                log.info(
                    "%s: %d/%d papers saved (%d of %d results scanned)",
                    category,
                    len(papers),
                    max_results,
                    next_start,
                    total,
                )
        if bar is not None:
            bar.close()
        return papers[:max_results]

    # ------------------------------------------------------------------ helpers

    def _fetch_page(self, query: str, start: int, category: str, saved: int) -> tuple[list[arxiv.Result], int]:
        assert self.pager is not None
        try:
            page = self.pager.fetch(query, start, label=category)
        except PageFetchError as err:
            advice = (
                "Re-run the same command to resume from that page, or raise --max_retries / --backoff_seconds."
                if err.retryable
                else "Check --categories, --start_date and --end_date."
            )
            raise CollectionError(
                f"{category}: gave up on the page starting at {err.start} after {err.attempts} attempt(s); last error: "
                f"{err.reason}. {self._kept_message(category, saved)} {advice}"
            ) from err
        return page.results, page.total

    def _query(self, category: str, dates: DateRange) -> str:
        query = f"cat:{category}"
        if dates.start or dates.end:
            start = (dates.start or date(1991, 1, 1)).strftime("%Y%m%d") + "0000"
            end = (dates.end or date(9999, 12, 31)).strftime("%Y%m%d") + "2359"
            query += f" AND submittedDate:[{start} TO {end}]"
        return query

    def _papers_path(self, category: str) -> Path:
        return self.raw_dir / f"{category}.jsonl"

    def _others_path(self, category: str) -> Path:
        return self.raw_dir / f"{category}{_OTHERS_SUFFIX}"

    def _saved_others(self, categories: Sequence[str], by_category: dict[str, list[Paper]], others: int) -> list[Paper]:
        """A seeded draw of at most `others` saved cross-listed papers of none of `categories`, sorted by id."""
        if not others:
            return []
        drawn = {p.arxiv_id for papers in by_category.values() for p in papers}
        pool: dict[str, Paper] = {}
        for category in categories:
            for paper in self._load_saved(self._others_path(category)):
                if paper.primary_category not in categories and paper.arxiv_id not in drawn:
                    pool.setdefault(paper.arxiv_id, paper)
        chosen = sorted(pool)
        if len(chosen) > others:
            chosen = sorted(random.Random(self.seed).sample(chosen, others))
        return [pool[arxiv_id] for arxiv_id in chosen]

    def _state_path(self, category: str) -> Path:
        return self.raw_dir / f"{category}.state.json"

    def _signature(self, category: str, dates: DateRange) -> dict[str, Any]:
        return {
            "category": category,
            "source": self.source,
            "primary_only": self.primary_only,
            "start_date": _iso(dates.start),
            "end_date": _iso(dates.end),
            "page_size": self.page_size if self.source == "api" else None,
        }

    def _resumable_state(self, category: str, dates: DateRange) -> CollectionState | None:
        """The saved state of `category`, after checking it was collected under the settings asked for now."""
        state = CollectionState.load(self._state_path(category))
        if state is None:
            return None
        if self.source == "snapshot" and state.signature.get("source") == "snapshot":
            return state  # a snapshot sample is drawn whole again, so nothing saved can be lost
        differing = state.differences(self._signature(category, dates))
        if differing:
            listed = "; ".join(f"{k}: {saved!r} then, {now!r} now" for k, (saved, now) in differing.items())
            raise CollectionError(
                f"{self._papers_path(category)} was collected with other settings ({listed}). Use another "
                "--data_dir, or delete that file and its .state.json to start this category over."
            )
        return state

    def _load_saved(self, path: Path) -> list[Paper]:
        if not path.is_file():
            return []
        papers = []
        for number, record in read_jsonl(path):
            try:
                papers.append(Paper.from_dict(record))
            except KeyError as err:
                raise DataFileError(
                    f"{path}, line {number}: missing field {err.args[0]!r}. Fix or delete that line and re-run."
                ) from err
        return papers

    def _ids_in_other_categories(self, category: str) -> set[str]:
        ids: set[str] = set()
        for path in self.raw_dir.glob("*.jsonl"):
            if path.name == DATASET_FILE or path.name.endswith(_OTHERS_SUFFIX) or path == self._papers_path(category):
                continue
            ids.update(record["arxiv_id"] for _, record in read_jsonl(path, skip_partial_last_line=True))
        return ids

    def _kept_message(self, category: str, saved: int) -> str:
        return f"The {saved} papers already saved in {self._papers_path(category)} are kept."

    def _empty_message(self, categories: Sequence[str], dates: DateRange) -> str:
        where = f"in {self.snapshot_path}" if self.source == "snapshot" else f"from {self.api_url}"
        span = ""
        if dates.start or dates.end:
            span = f" published between {dates.start or 'the beginning'} and {dates.end or 'today'}"
        kind = "primary category" if self.primary_only else "category"
        return (
            f"no papers with {kind} {', '.join(categories)}{span} {where}. Check the spelling against arXiv's "
            "category taxonomy, widen --start_date/--end_date, or pass --primary_only false. Papers collected "
            f"for the other categories are kept in {self.raw_dir}."
        )

    def _source_description(self) -> dict[str, Any]:
        described: dict[str, Any] = {"kind": self.source, "primary_only": self.primary_only}
        if self.source == "snapshot":
            described.update(path=str(self.snapshot_path), seed=self.seed)
        else:
            described.update(api_url=self.api_url)
        described.update(start_date=_iso(self.dates.start), end_date=_iso(self.dates.end))
        return described


def paper_from_result(result: arxiv.Result) -> Paper:
    """Converts an `arxiv.Result` into a `Paper` (version stripped from the id, primary category first).

    Args:
        result: one entry of an arXiv API answer.

    Returns:
        The paper, with whitespace in its title and abstract collapsed, each category once, and dates as
        ``YYYY-MM-DD``.
    """
    primary = result.primary_category or (result.categories[0] if result.categories else "")
    categories = list(dict.fromkeys([primary, *result.categories]))  # a category listed twice is kept once
    return Paper(
        arxiv_id=strip_version(result.get_short_id()),
        title=" ".join(result.title.split()),
        abstract=" ".join(result.summary.split()),
        primary_category=primary,
        categories=categories,
        authors=[author.name for author in result.authors],
        published=result.published.date().isoformat(),
        updated=result.updated.date().isoformat(),
    )


def _check_category(category: str) -> None:
    if not _CATEGORY.match(category or ""):
        raise ValueError(
            f"--categories: {category!r} is not an arXiv category; use names like cs.CL or stat.ML "
            f"(the defaults are {', '.join(DEFAULT_CATEGORIES)})"
        )


def _parse_day(value: str | None, option: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"--{option} must be a date as YYYY-MM-DD, got {value!r}") from err


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _log_statistics(samples: list[dict[str, Any]], counts: dict[str, int], per_category: int) -> None:
    short = {c: n for c, n in counts.items() if n < per_category}
    if short:
        log.warning("Fewer papers than requested (%d each) for: %s", per_category, short)
    words = [len(s["text"].split()) for s in samples]
    log.info(
        "Dataset: %d samples in %d categories %s; words per text: mean %.0f, median %.0f, min %d",
        len(samples),
        len(counts),
        counts,
        statistics.fmean(words),
        statistics.median(words),
        min(words),
    )
