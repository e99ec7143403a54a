"""`QualityLog`: every answered paper in ``served_predictions``, its true label once known, and how right each version
was per time window.

    quality = QualityLog("sqlite:///models/experiments.db")
    service.add_prediction_listener(quality.log_event)    # every answered paper, in or outside experiments
    quality.record_label(prediction_id, "cs.CL")           # feedback, by prediction id
    quality.import_labels([("2401.01234v2", "cs.CL")])     # arXiv's listing, by arXiv id (the version ignored)
    quality.windows("v1.2.0", window_hours=24)             # measured and estimated accuracy, coverage, label delay
    quality.recent("v1.2.0", papers=300, labels=classes)   # the newest answers, for a drift check

Ground truth comes late but for free on arXiv: a served paper's primary category is known once arXiv lists it. Rows
are written off-request by the same buffer as the A/B logs (`PredictionLogBuffer`), so a database outage never fails
a prediction. No text is stored, only what measuring and drift checks need: the calibrated probabilities, the
text's length and the out-of-scope flag.

A true label need not be one of the model's classes: an out-of-scope paper (say math.AG) is stored as it is and
counts as a wrong answer, which is what it was, so out-of-scope traffic shows in measured accuracy.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Engine

from clf.data.paper import strip_version
from clf.experiments.database import DEFAULT_DB_URL, make_engine
from clf.experiments.errors import InvalidExperimentError, UnknownPredictionError
from clf.experiments.logbuffer import FlushResult, PredictionLogBuffer
from clf.experiments.store import ExperimentStore
from clf.experiments.tables import ServedPrediction, utc_now
from clf.monitoring.estimates import Estimate, MeasuredScores, estimated_accuracy, measured_scores

if TYPE_CHECKING:
    from clf.serving.service import PredictionEvent

log = logging.getLogger(__name__)

LABEL_SOURCES = ("feedback", "import")
"""Where a true label came from: POST /feedback (by prediction id) or ``clf labels import`` (by arXiv id)."""

_CHUNK = 500  # ids per IN (...) query: well under every database's parameter limit
_TABLE = cast(sa.Table, ServedPrediction.__table__)


@dataclass(frozen=True)
class LabelImport:
    """What one `QualityLog.import_labels` did.

    Attributes:
        papers: distinct arXiv ids read (version suffixes ignored).
        matched: those answered at least once.
        updated: rows that got a label or a different one (a label already stored is left as it was, so an import
            run twice updates nothing the second time).
        unmatched: ids never answered (or answered without an arXiv id).
    """

    papers: int
    matched: int
    updated: int
    unmatched: int

    def to_json(self) -> dict[str, Any]:
        """The counts as JSON.

        Returns:
            ``{"papers", "matched", "updated", "unmatched"}``.
        """
        return {"papers": self.papers, "matched": self.matched, "updated": self.updated, "unmatched": self.unmatched}


@dataclass(frozen=True)
class QualityWindow:
    """One version's answers in one time window, and how right they were.

    Attributes:
        version: the model version.
        start: the window's start (UTC, a multiple of its length since the Unix epoch).
        end: its end (exclusive).
        papers: papers answered in it.
        labelled: those whose true label is known.
        coverage: ``labelled / papers``.
        measured: accuracy (Wilson interval) and macro-F1 on the labelled papers; None without any.
        estimated: the accuracy the calibrated top-1 probabilities predict, over every paper.
        estimated_labelled: the same over the labelled papers only: what `measured` checks, like for like.
        out_of_scope_share: the share flagged out of scope; None when the model flags none (no reference).
        median_label_delay_hours: median time from answer to label; None without labels.
    """

    version: str
    start: datetime
    end: datetime
    papers: int
    labelled: int
    coverage: float
    measured: MeasuredScores | None
    estimated: Estimate | None
    estimated_labelled: Estimate | None
    out_of_scope_share: float | None
    median_label_delay_hours: float | None

    def to_json(self) -> dict[str, Any]:
        """The window as JSON (times as ISO 8601).

        Returns:
            Every attribute; the nested scores as their own ``to_json``.
        """
        return {
            "version": self.version,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "papers": self.papers,
            "labelled": self.labelled,
            "coverage": self.coverage,
            "measured": self.measured.to_json() if self.measured else None,
            "estimated": self.estimated.to_json() if self.estimated else None,
            "estimated_labelled": self.estimated_labelled.to_json() if self.estimated_labelled else None,
            "out_of_scope_share": self.out_of_scope_share,
            "median_label_delay_hours": self.median_label_delay_hours,
        }


@dataclass(frozen=True)
class ServedSample:
    """A version's newest answers, oldest first, as a drift check reads them.

    Attributes:
        labels: the class order of `probabilities`' columns.
        probabilities: ``(n, C)`` calibrated probabilities (a class a row lacks is 0).
        text_chars: ``(n,)`` characters of each cleaned input.
        out_of_scope: ``(n,)`` bool flags; None when any row has none (the model carries no reference).
        predicted: the answered label of each.
        true_labels: each true label, None where unknown.
        created_at: when each was answered.
    """

    labels: tuple[str, ...]
    probabilities: np.ndarray
    text_chars: np.ndarray
    out_of_scope: np.ndarray | None
    predicted: tuple[str, ...]
    true_labels: tuple[str | None, ...]
    created_at: tuple[datetime, ...]

    def __len__(self) -> int:
        return len(self.predicted)


class QualityLog:
    """Logs every answered paper and joins it with its true label when that arrives.

    Args:
        db: the experiments database, a SQLAlchemy URL or an engine.
        batch_size: rows per insert; a full batch is written at once by the background flusher.
        flush_interval_seconds: the flusher writes (or retries) at least this often.
        max_buffered_rows: most rows held in memory while the database is away (the oldest are dropped beyond it).
        auto_upgrade: create or upgrade the tables on first use.

    Raises:
        ExperimentError: for a database URL that does not parse or whose driver is missing.
        ValueError: for a buffer setting out of range.
    """

    def __init__(
        self,
        db: str | Engine = DEFAULT_DB_URL,
        *,
        batch_size: int = 200,
        flush_interval_seconds: float = 5.0,
        max_buffered_rows: int = 100_000,
        auto_upgrade: bool = True,
    ) -> None:
        self.engine = make_engine(db)
        self.store = ExperimentStore(self.engine, auto_upgrade=auto_upgrade)
        self.rows = PredictionLogBuffer(
            self.engine,
            batch_size=batch_size,
            flush_interval_seconds=flush_interval_seconds,
            max_rows=max_buffered_rows,
            before_write=self.store.ensure_schema,
            table=_TABLE,
            what="served prediction",
        )

    # --------------------------------------------------------------------------------------------------- logging

    def log_event(self, event: PredictionEvent) -> None:
        """The prediction listener: ``service.add_prediction_listener(quality.log_event)``.

        Buffers one row per answered paper of the request, whichever traffic rule routed it; failed papers are not
        logged. Never touches the database on the caller's thread.

        Args:
            event: what the service answered for one request.
        """
        if event.error is not None:
            return
        created_at = datetime.fromtimestamp(event.timestamp, UTC)
        arxiv_ids = event.arxiv_ids or (None,) * len(event.records)
        rows = []
        for text, record, arxiv_id in zip(event.texts, event.records, arxiv_ids, strict=True):
            if record.error or not record.prediction_id or not record.version or record.label is None:
                continue
            ranked = record.top_k or record.top3
            rows.append(
                {
                    "prediction_id": record.prediction_id,
                    "arxiv_id": strip_version(arxiv_id) if arxiv_id else None,
                    "model_version": record.version,
                    "arm": record.arm,
                    "created_at": created_at,
                    "label": record.label,
                    "probability": record.probability,
                    "probabilities": {entry.label: entry.probability for entry in ranked},
                    "text_chars": len(text),
                    # Set by predictors whose artifact carries a reference sample; older predictions lack the field.
                    "out_of_scope": getattr(record, "out_of_scope", None),
                    "true_label": None,
                    "label_source": None,
                    "labelled_at": None,
                }
            )
        if rows:
            self.rows.add(rows)

    def flush(self) -> FlushResult:
        """Writes the buffered rows now; never raises for a database fault (see `FlushResult.error`).

        Returns:
            How many rows were written, and the database error if the write failed (the rows stay buffered).
        """
        return self.rows.flush()

    def close(self) -> FlushResult:
        """Stops the background flusher and writes what is left.

        Returns:
            The final flush.
        """
        result = self.rows.close()
        self.engine.dispose()
        return result

    def __enter__(self) -> QualityLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------------- labels

    def route(self, prediction_id: str) -> tuple[str, str]:
        """The version and arm a served prediction was answered by (what its signed id binds).

        Args:
            prediction_id: the ``prediction_id`` of a `/predict` answer.

        Returns:
            ``(model_version, arm)``.

        Raises:
            UnknownPredictionError: when no served prediction has that id.
        """
        self.flush()
        query = sa.select(ServedPrediction.model_version, ServedPrediction.arm).where(
            ServedPrediction.prediction_id == prediction_id
        )
        with self.store.session(f"looking up prediction {prediction_id}") as session:
            row = session.execute(query).first()
        if row is None:
            raise UnknownPredictionError(
                f"no served prediction has id {prediction_id!r}; send the prediction_id of a /predict answer"
            )
        return row[0], row[1] or ""

    def record_label(self, prediction_id: str, true_label: str, source: str = "feedback") -> bool:
        """Stores the true label of one served prediction (flushing the buffer first, where it may still wait).

        Args:
            prediction_id: the ``prediction_id`` of a `/predict` answer.
            true_label: its true category (any text: a category outside the model's classes is kept too).
            source: ``feedback`` or ``import``.

        Returns:
            Whether a served prediction had that id.

        Raises:
            InvalidExperimentError: for an empty label or an unknown source.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        label = _checked_label(true_label)
        if source not in LABEL_SOURCES:
            raise InvalidExperimentError(f"source must be one of {LABEL_SOURCES}, got {source!r}")
        self.flush()
        statement = (
            sa.update(_TABLE)
            .where(_TABLE.c.prediction_id == prediction_id)
            .values(true_label=label, label_source=source, labelled_at=utc_now())
        )
        with self.store.session(f"recording the label of {prediction_id}") as session:
            return bool(cast(CursorResult[Any], session.execute(statement)).rowcount)

    def import_labels(self, pairs: Iterable[tuple[str, str]], labelled_at: datetime | None = None) -> LabelImport:
        """Labels every served answer of each paper, by arXiv id (``2401.01234v2`` and ``2401.01234`` are one paper).

        A paper answered several times gets the label on every row. A row already holding the same label is left
        alone (its label delay stays the first arrival's); a different label replaces it (arXiv's listing is the
        truth). The whole import is one transaction: it is stored entirely or not at all.

        Args:
            pairs: ``(arxiv_id, true_label)``; for an id given twice the last label wins.
            labelled_at: when the labels became known; now by default.

        Returns:
            The counts of papers read, matched and unmatched, and rows updated.

        Raises:
            InvalidExperimentError: for an empty id or label.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        labels: dict[str, str] = {}
        for arxiv_id, true_label in pairs:
            if not isinstance(arxiv_id, str) or not arxiv_id.strip():
                raise InvalidExperimentError(f"an arXiv id must be a non-empty string, got {arxiv_id!r}")
            labels[strip_version(arxiv_id)] = _checked_label(true_label)
        when = labelled_at or utc_now()
        self.flush()
        ids = list(labels)
        matched: set[str] = set()
        changes = []
        with self.store.session(f"importing {len(ids)} labels") as session:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                query = sa.select(_TABLE.c.prediction_id, _TABLE.c.arxiv_id, _TABLE.c.true_label).where(
                    _TABLE.c.arxiv_id.in_(chunk)
                )
                for prediction_id, arxiv_id, stored in session.execute(query):
                    matched.add(arxiv_id)
                    if stored != labels[arxiv_id]:
                        changes.append({"key": prediction_id, "new_label": labels[arxiv_id]})
            if changes:
                statement = (
                    sa.update(_TABLE)
                    .where(_TABLE.c.prediction_id == sa.bindparam("key"))
                    .values(true_label=sa.bindparam("new_label"), label_source="import", labelled_at=when)
                )
                session.connection().execute(statement, changes)
        result = LabelImport(len(ids), len(matched), len(changes), len(ids) - len(matched))
        log.info("imported labels: %s", result.to_json())
        return result

    def true_labels(self, arxiv_ids: Iterable[str]) -> dict[str, str]:
        """The true labels that arrived for served papers, by arXiv id (what a shadow stage's accuracy reads).

        Args:
            arxiv_ids: the papers, as requests sent them (``2401.01234v2`` and ``2401.01234`` are one paper).

        Returns:
            Each given id whose paper was answered and has a true label → that label (of the most recently labelled
            answer, where feedback labelled one answer differently); ids without one are left out.

        Raises:
            DatabaseUnavailableError: when the database cannot be reached.
        """
        asked: dict[str, list[str]] = {}
        for arxiv_id in arxiv_ids:
            asked.setdefault(strip_version(arxiv_id), []).append(arxiv_id)
        if not asked:
            return {}
        self.flush()
        ids = list(asked)
        labels: dict[str, str] = {}
        table = _TABLE.c
        with self.store.session(f"reading the true labels of {len(ids)} papers") as session:
            for start in range(0, len(ids), _CHUNK):
                query = (
                    sa.select(table.arxiv_id, table.true_label)
                    .where(table.arxiv_id.in_(ids[start : start + _CHUNK]), table.true_label.is_not(None))
                    .order_by(table.labelled_at)
                )
                labels.update((arxiv_id, label) for arxiv_id, label in session.execute(query))
        return {given: label for paper, label in labels.items() for given in asked[paper]}

    # -------------------------------------------------------------------------------------------------- reading

    def windows(
        self,
        version: str | None = None,
        window_hours: float = 24.0,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[QualityWindow]:
        """Per version and time window: papers, coverage, measured and estimated accuracy, out-of-scope share, delay.

        Windows are aligned to multiples of `window_hours` since the Unix epoch, so the same answers fall in the same
        windows on every call; windows without answers are left out. Reads the scalar columns only (not the
        probability vectors), one pass over the rows in time order.

        Args:
            version: one version; None: every version.
            window_hours: the window length.
            since: only answers at or after this time.
            until: only answers before this time.

        Returns:
            The windows, by version, oldest first.

        Raises:
            ValueError: for a window length that is not positive.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        if not window_hours > 0 or not math.isfinite(window_hours):
            raise ValueError(f"window_hours must be > 0, got {window_hours}")
        self.flush()
        table = _TABLE.c
        query = sa.select(
            table.model_version,
            table.created_at,
            table.label,
            table.probability,
            table.out_of_scope,
            table.true_label,
            table.labelled_at,
        ).order_by(table.model_version, table.created_at)
        query = _between(query, version, since, until)
        with self.store.session("reading served predictions") as session:
            rows = session.execute(query).all()
            classes = {name: self._classes(session, name) for name in sorted({row[0] for row in rows})}
        width = window_hours * 3600.0
        groups: dict[tuple[str, int], list[Any]] = {}
        for row in rows:
            groups.setdefault((row[0], math.floor(row[1].timestamp() / width)), []).append(row)
        return [_window(name, index, width, group, classes[name]) for (name, index), group in sorted(groups.items())]

    def recent(
        self, version: str, papers: int, labels: Sequence[str] | None = None, *, labelled: bool = False
    ) -> ServedSample:
        """The newest `papers` answers of `version`, oldest first, for a drift check against the reference.

        Args:
            version: the model version.
            papers: how many answers at most.
            labels: the column order of the probabilities (the reference's class order); None: the classes of
                the newest answer, sorted.
            labelled: only answers whose true label has arrived (the newest answers are the last to be labelled,
                so the measured accuracy reads these, not the newest window).

        Returns:
            The sample (empty when the version answered nothing yet).

        Raises:
            ValueError: for `papers` below 1.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        if papers < 1:
            raise ValueError(f"papers must be >= 1, got {papers}")
        self.flush()
        table = _TABLE.c
        query = (
            sa.select(
                table.probabilities,
                table.text_chars,
                table.out_of_scope,
                table.label,
                table.true_label,
                table.created_at,
            )
            .where(table.model_version == version)
            .order_by(table.created_at.desc(), table.prediction_id.desc())
            .limit(papers)
        )
        if labelled:
            query = query.where(table.true_label.is_not(None))
        with self.store.session(f"reading the newest answers of {version}") as session:
            rows = session.execute(query).all()[::-1]
        order = tuple(labels) if labels is not None else tuple(sorted(rows[-1][0] or {})) if rows else ()
        probabilities = np.array(
            [[(row[0] or {}).get(label, 0.0) for label in order] for row in rows], dtype=np.float32
        ).reshape(len(rows), len(order))
        flags = [row[2] for row in rows]
        return ServedSample(
            labels=order,
            probabilities=probabilities,
            text_chars=np.array([row[1] for row in rows], dtype=np.int64),
            out_of_scope=None if any(flag is None for flag in flags) else np.array(flags, dtype=bool),
            predicted=tuple(row[3] for row in rows),
            true_labels=tuple(row[4] for row in rows),
            created_at=tuple(row[5] for row in rows),
        )

    @staticmethod
    def _classes(session: Any, version: str) -> tuple[str, ...]:
        """The model's classes, from one stored probability vector of `version` (one row's JSON, not every row's)."""
        query = sa.select(_TABLE.c.probabilities).where(_TABLE.c.model_version == version).limit(1)
        return tuple(session.execute(query).scalar_one_or_none() or ())


def _between(query: sa.Select, version: str | None, since: datetime | None, until: datetime | None) -> sa.Select:
    table = _TABLE.c
    if version is not None:
        query = query.where(table.model_version == version)
    if since is not None:
        query = query.where(table.created_at >= since)
    if until is not None:
        query = query.where(table.created_at < until)
    return query


def _window(version: str, index: int, width: float, rows: list[Any], classes: Sequence[str]) -> QualityWindow:
    """One `QualityWindow` from its rows ``(version, created_at, label, probability, out_of_scope, true, at)``."""
    labelled = [row for row in rows if row[5] is not None]
    flags = [row[4] for row in rows if row[4] is not None]
    delays = [(row[6] - row[1]).total_seconds() / 3600 for row in labelled if row[6] is not None]
    start = datetime.fromtimestamp(index * width, UTC)
    return QualityWindow(
        version=version,
        start=start,
        end=start + timedelta(seconds=width),
        papers=len(rows),
        labelled=len(labelled),
        coverage=len(labelled) / len(rows),
        measured=measured_scores([row[5] for row in labelled], [row[2] for row in labelled], classes or None)
        if labelled
        else None,
        estimated=estimated_accuracy([row[3] for row in rows if row[3] is not None]),
        estimated_labelled=estimated_accuracy([row[3] for row in labelled if row[3] is not None]),
        out_of_scope_share=sum(flags) / len(flags) if flags else None,
        median_label_delay_hours=statistics.median(delays) if delays else None,
    )


def _checked_label(true_label: Any) -> str:
    if not isinstance(true_label, str) or not true_label.strip():
        raise InvalidExperimentError(f"true_label must be a category such as 'cs.CL', got {true_label!r}")
    label = true_label.strip()
    if len(label) > 100:
        raise InvalidExperimentError(f"true_label is {len(label)} characters; a category has at most 100")
    return label
