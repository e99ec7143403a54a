"""lightning_app/rate_limits.py: the SQLite storage of ``limits`` that the worker processes of one `clf serve` share."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from lightning_app.rate_limits import SQLiteStorage


def _hits(uri: str, client: str, tries: int, start: float) -> int:
    """One worker process: `tries` requests of `client` from `start` on, and how many the shared limit let through."""
    limiter = MovingWindowRateLimiter(storage_from_string(uri))
    time.sleep(max(0.0, start - time.time()))  # the processes hit together, not one after another
    return sum(limiter.hit(parse("10/minute"), client) for _ in range(tries))


def test_processes_hitting_one_file_at_once_get_the_limit_once_in_total(tmp_path):
    uri = f"sqlite:///{tmp_path / 'limits.sqlite'}"
    start = time.time() + 2.0
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as workers:
        shares = list(workers.map(_hits, [uri] * 3, ["10.0.0.7"] * 3, [8] * 3, [start] * 3))
    assert sum(shares) == 10, shares


def test_the_window_moves_and_reports_when_it_frees_a_request(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    limiter = MovingWindowRateLimiter(SQLiteStorage(f"sqlite:///{tmp_path / 'limits.sqlite'}"))
    limit = parse("2/minute")
    assert limiter.hit(limit, "a") and limiter.test(limit, "b")
    now[0] += 30
    assert limiter.hit(limit, "a") and not limiter.hit(limit, "a")
    assert limiter.get_window_stats(limit, "a").reset_time == pytest.approx(1060.0)
    now[0] += 31  # the first hit left the window
    assert limiter.hit(limit, "a") and not limiter.hit(limit, "a")


def test_fixed_windows_count_too_and_the_uri_is_checked(tmp_path):
    storage = storage_from_string(f"sqlite:///{tmp_path / 'limits.sqlite'}")
    limiter = FixedWindowRateLimiter(storage)
    assert [limiter.hit(parse("2/hour"), "a") for _ in range(3)] == [True, True, False]
    assert storage.check() and storage.reset() >= 1 and limiter.hit(parse("2/hour"), "a")
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        SQLiteStorage("sqlite://")
