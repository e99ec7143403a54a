"""A ``limits`` storage in one SQLite file, so that the worker processes of one `clf serve` share each rate limit.

``limits`` keeps its counters in the process (``memory://``) or in a server (Redis, Memcached, MongoDB). The workers
of ``clf serve --workers N`` share a folder but no server, and with per-process counters a client got N times its
limit. Registering this class with ``limits`` (its ``STORAGE_SCHEME``) makes ``sqlite:///PATH`` a storage URI like
the library's own (``storage_from_string``); SQLite's file lock makes each check-and-count atomic across processes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from limits.storage import MovingWindowSupport, Storage


class SQLiteStorage(Storage, MovingWindowSupport):
    """Moving-window (and fixed-window) rate-limit counters in a SQLite file shared by processes on one host.

    Each method is the ``limits`` storage interface's (`limits.storage.Storage`, `MovingWindowSupport`).

    Args:
        uri: ``sqlite:///PATH`` (``sqlite:////tmp/x`` for an absolute path; the file is created when missing).
        wrap_exceptions: wrap SQLite errors in `limits.errors.StorageError`.
        **options: accepted for the ``limits`` storage interface; unused.

    Raises:
        ValueError: for a URI that names no file.
    """

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = uri.removeprefix("sqlite:///")  # SQLAlchemy's form: sqlite:////tmp/x is the absolute /tmp/x
        if self.path == uri or not self.path:
            raise ValueError(f"a SQLite rate-limit storage is sqlite:///PATH, got {uri!r}")
        self._local = threading.local()
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, at REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS hits_key_at ON hits (key, at)")
            db.execute("CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER, expires REAL)")

    @property
    def base_exceptions(self) -> type[Exception]:
        """SQLite's errors: what ``wrap_exceptions`` wraps."""
        return sqlite3.Error

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before the first read, so that a check and its count are one step."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Counts `amount` hits of `key` if the last `expiry` seconds then hold at most `limit`.

        Args:
            key: the limit's key (the client and the limit).
            limit: most hits in the window.
            expiry: the window, in seconds.
            amount: hits to count.

        Returns:
            True when counted, False when the window is full.
        """
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM hits WHERE key = ? AND at < ?", (key, now - expiry))
            (count,) = db.execute("SELECT COUNT(*) FROM hits WHERE key = ?", (key,)).fetchone()
            if count + amount > limit:
                return False
            db.executemany("INSERT INTO hits (key, at) VALUES (?, ?)", [(key, now)] * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """The moving window of `key`.

        Args:
            key: the limit's key.
            limit: most hits in the window (unused: the count is the answer).
            expiry: the window, in seconds.

        Returns:
            ``(time of the oldest hit in the last `expiry` seconds, hits there)``; ``(now, 0)`` when none.
        """
        now = time.time()
        with self._transaction() as db:
            oldest, count = db.execute(
                "SELECT MIN(at), COUNT(*) FROM hits WHERE key = ? AND at >= ?", (key, now - expiry)
            ).fetchone()
        return (oldest if count else now), count

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Adds `amount` to the fixed-window counter of `key`, which expires `expiry` seconds after it starts.

        Args:
            key: the counter's key.
            expiry: the window, in seconds.
            amount: what to add.

        Returns:
            The counter after the addition.
        """
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM counters WHERE key = ? AND expires <= ?", (key, now))
            db.execute(
                "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                (key, amount, now + expiry),
            )
            (value,) = db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
        return int(value)

    def get(self, key: str) -> int:
        """The fixed-window counter of `key`.

        Args:
            key: the counter's key.

        Returns:
            Its value; 0 when it expired or never started.
        """
        with self._transaction() as db:
            row = db.execute("SELECT value FROM counters WHERE key = ? AND expires > ?", (key, time.time())).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        """When the fixed-window counter of `key` expires.

        Args:
            key: the counter's key.

        Returns:
            Epoch seconds; now when there is no counter.
        """
        with self._transaction() as db:
            row = db.execute("SELECT expires FROM counters WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        """Whether the file can be read and written.

        Returns:
            True when a transaction succeeds.
        """
        try:
            with self._transaction() as db:
                db.execute("SELECT 1")
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        """Forgets every hit and counter.

        Returns:
            How many rows were deleted.
        """
        with self._transaction() as db:
            hits = db.execute("DELETE FROM hits").rowcount
            counters = db.execute("DELETE FROM counters").rowcount
        return hits + counters

    def clear(self, key: str) -> None:
        """Forgets the hits and the counter of `key`.

        Args:
            key: the limit's key.
        """
        with self._transaction() as db:
            db.execute("DELETE FROM hits WHERE key = ?", (key,))
            db.execute("DELETE FROM counters WHERE key = ?", (key,))
