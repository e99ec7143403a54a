"""`PredictionLogBuffer`: rows held in memory and written to a table in batches, off-request.

The A/B framework buffers ``prediction_logs`` rows with it, the quality log (`clf.experiments.quality_log`)
``served_predictions`` rows: any table whose primary key is one column the rows carry.

    buffer = PredictionLogBuffer(engine, batch_size=100, flush_interval_seconds=5.0)
    buffer.add(row)        # never touches the database, never raises for a database fault
    buffer.flush()         # FlushResult(written=..., pending=..., ...)
    buffer.close()         # stops the flusher thread and writes what is left

A background thread writes the buffer once it holds `batch_size` rows and every `flush_interval_seconds`; each
transaction inserts at most `batch_size` rows. When the database is unavailable the rows stay in the buffer, in
order, and the next flush tries again (the thread then retries on the timer only, not on every new row). Inserts
skip ids already stored, so a retry after a commit whose answer was lost writes no duplicates. The buffer is
bounded by `max_rows`: when it is full the oldest rows are dropped and every drop is logged as an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from clf.experiments.database import is_unavailable, redacted
from clf.experiments.tables import PredictionLog

log = logging.getLogger(__name__)

_DROP_LOG_EVERY = 10_000


@dataclass(frozen=True)
class FlushResult:
    """What one flush did.

    Attributes:
        written: rows stored by this flush.
        pending: rows still in the buffer afterwards (new ones, or ones the database could not take).
        rejected: rows the database refused for their content (e.g. an unknown experiment id); logged and dropped,
            since retrying them can never succeed.
        error: why rows are still pending (the database was unavailable); None when the flush got through.
    """

    written: int
    pending: int
    rejected: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the database took everything this flush tried to write."""
        return self.error is None


class PredictionLogBuffer:
    """A bounded, thread-safe buffer of rows of one table (``prediction_logs`` by default) with a background flusher.

    Args:
        engine: the experiments database.
        batch_size: rows per insert transaction; reaching it wakes the flusher.
        flush_interval_seconds: the flusher also writes (and retries after a failure) this often.
        max_rows: most rows held; beyond it the oldest are dropped, each drop logged as an error.
        before_write: called before each flush writes (the framework creates the tables on first use here); a
            database error it raises keeps the rows pending like any other.
        table: the table written; its primary key must be a single column, which makes a retried row a no-op.
        what: how log messages name one row (``prediction log``).

    Raises:
        ValueError: naming the setting that is out of range.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        batch_size: int = 100,
        flush_interval_seconds: float = 5.0,
        max_rows: int = 100_000,
        before_write: Callable[[], None] | None = None,
        table: sa.Table | None = None,
        what: str = "prediction log",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not flush_interval_seconds > 0:
            raise ValueError(f"flush_interval_seconds must be > 0, got {flush_interval_seconds}")
        if max_rows < batch_size:
            raise ValueError(f"max_rows must be >= batch_size ({batch_size}), got {max_rows}")
        self.engine = engine
        self.batch_size = batch_size
        self.flush_interval_seconds = flush_interval_seconds
        self.max_rows = max_rows
        self._before_write = before_write
        # A declarative class's __table__ is its Table; DeclarativeBase types it as the general FromClause.
        self.table = table if table is not None else cast(sa.Table, PredictionLog.__table__)
        keys = [column.name for column in self.table.primary_key.columns]
        if len(keys) != 1:
            raise ValueError(f"table {self.table.name} needs a one-column primary key, has {keys}")
        self._key = keys[0]
        self.what = what
        self._rows: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy = True
        self._unhealthy_since: float | None = None
        self.dropped = 0
        """Rows dropped because the buffer was full, since the buffer was made."""
        self.rejected = 0
        """Rows the database refused for their content, since the buffer was made."""
        self.written = 0
        """Rows written, since the buffer was made."""

    @property
    def pending(self) -> int:
        """Rows waiting to be written."""
        with self._lock:
            return len(self._rows)

    @property
    def healthy(self) -> bool:
        """False from a flush the database failed until the next one that succeeds."""
        return self._healthy

    def add(self, rows: dict[str, Any] | Iterable[dict[str, Any]]) -> None:
        """Queues one row or several; returns at once and never raises for a database fault.

        Args:
            rows: rows of the table, each with every column (see `clf.experiments.records.log_row`).

        Raises:
            RuntimeError: after `close`.
        """
        batch = [rows] if isinstance(rows, dict) else list(rows)
        if self._closing.is_set():
            raise RuntimeError(f"the {self.what} buffer is closed; create a new one")
        with self._lock:
            self._rows.extend(batch)
            overflow = len(self._rows) - self.max_rows
            for _ in range(max(overflow, 0)):
                self._rows.popleft()
            wake = len(self._rows) >= self.batch_size and self._healthy
            if self._thread is None:
                name = f"{self.table.name}-flusher"
                self._thread = threading.Thread(target=self._run, name=name, daemon=True)
                self._thread.start()
        if overflow > 0:
            self._count_drops(overflow)
        if wake:
            self._wake.set()

    def flush(self) -> FlushResult:
        """Writes every buffered row now, `batch_size` per transaction; never raises for a database fault.

        Returns:
            How many rows were written, are still pending, were rejected, and why any are pending.
        """
        with self._flush_lock:
            with self._lock:
                batch = list(self._rows)
                self._rows.clear()
            if not batch:  # nothing tried, so nothing learnt about the database's health
                return FlushResult(written=0, pending=self.pending)
            written = rejected = 0
            done = 0
            error = None
            try:
                if self._before_write is not None:
                    self._before_write()
                while done < len(batch):
                    chunk = batch[done : done + self.batch_size]
                    rejected += self._write(chunk)
                    written += len(chunk)
                    done += len(chunk)
            except Exception as err:
                error = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
                if not is_unavailable(err):
                    log.exception("unexpected error writing %ss; they stay buffered and are retried", self.what)
                self._put_back(batch[done:])
            written -= rejected
            self.written += written
            self.rejected += rejected
            self._set_health(error, written)
            return FlushResult(written=written, pending=self.pending, rejected=rejected, error=error)

    def close(self, timeout: float = 30.0) -> FlushResult:
        """Stops the flusher thread and writes what is left (once); rows that still cannot be written are lost.

        Args:
            timeout: seconds to wait for the flusher thread to finish a flush in progress.

        Returns:
            The final flush; a non-zero ``pending`` is logged as an error with the count of lost rows.
        """
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        result = self.flush()
        if result.pending:
            log.error(
                "%d %ss could not be written to %s before shutdown and are lost: %s",
                result.pending,
                self.what,
                redacted(self.engine),
                result.error,
            )
        return result

    # ------------------------------------------------------------------------------------------------- internals

    def _run(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.flush_interval_seconds)
            self._wake.clear()
            if self._closing.is_set():
                return
            if self.pending:
                self.flush()

    def _write(self, chunk: list[dict[str, Any]]) -> int:
        """Inserts `chunk` in one transaction; returns how many rows were rejected for their content."""
        try:
            with self.engine.begin() as connection:
                _insert(connection, self.table, self._key, chunk)
            return 0
        except StatementError as err:
            if not _bad_rows(err):
                raise
        # One bad row must not hold back the others: write them one at a time and drop only the ones refused.
        rejected = 0
        for row in chunk:
            try:
                with self.engine.begin() as connection:
                    _insert(connection, self.table, self._key, [row])
            except StatementError as err:
                if not _bad_rows(err):
                    raise
                rejected += 1
                log.error("dropped %s %s: the database refused it: %s", self.what, row.get(self._key), err.orig or err)
        return rejected

    def _put_back(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extendleft(reversed(rows))
            overflow = len(self._rows) - self.max_rows
            for _ in range(max(overflow, 0)):
                self._rows.popleft()
        if overflow > 0:
            self._count_drops(overflow)

    def _count_drops(self, count: int) -> None:
        before = self.dropped
        self.dropped += count
        if before == 0 or before // _DROP_LOG_EVERY != self.dropped // _DROP_LOG_EVERY:
            log.error(
                "%s buffer full (%d rows): dropped the oldest %d, %d dropped in all; the experiments "
                "database %s has been unavailable for %.0f s",
                self.what,
                self.max_rows,
                count,
                self.dropped,
                redacted(self.engine),
                time.monotonic() - (self._unhealthy_since or time.monotonic()),
            )

    def _set_health(self, error: str | None, written: int) -> None:
        if error is None:
            if not self._healthy:
                log.warning(
                    "experiments database %s is back after %.0f s: %d buffered %ss written",
                    redacted(self.engine),
                    time.monotonic() - (self._unhealthy_since or time.monotonic()),
                    written,
                    self.what,
                )
            self._healthy, self._unhealthy_since = True, None
            return
        first = self._healthy
        if first:
            self._unhealthy_since = time.monotonic()
        self._healthy = False
        # Once per outage at WARNING; the retries every interval would otherwise flood the log.
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "cannot write %ss to %s (%s); %d rows kept in the buffer, retried every %g s",
            self.what,
            redacted(self.engine),
            error,
            self.pending,
            self.flush_interval_seconds,
        )


def _bad_rows(err: StatementError) -> bool:
    """Whether the rows themselves were refused (retrying cannot help), rather than the database being unreachable."""
    if is_unavailable(err):
        return False
    return isinstance(err, IntegrityError | DataError) or not isinstance(err, DBAPIError)


def _insert(connection: Connection, table: sa.Table, key: str, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT (key) DO NOTHING where the dialect has it, so a retried row is not stored twice."""
    dialect = connection.dialect.name
    statement: sa.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
    elif dialect == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
    else:
        statement = sa.insert(table)
    connection.execute(statement, rows)
