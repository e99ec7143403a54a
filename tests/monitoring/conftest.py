"""A settable clock for the monitor's windows and the alerts' cooldown, so no test sleeps."""

from __future__ import annotations

import pytest


class FakeClock:
    """Returns `now` (epoch seconds) until a test moves it with `advance`."""

    def __init__(self, now: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
