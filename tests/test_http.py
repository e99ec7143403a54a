"""The one reading of Retry-After (clf.http), both forms, capped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clf.http import retry_after_seconds

NOW = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("3600", 30.0),  # a server asking for an hour gets the cap
        ("Wed, 21 Oct 2026 07:28:12 GMT", 12.0),  # the HTTP-date form
        ("Wed, 21 Oct 2026 08:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),  # a date already past
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_both_forms_are_read_and_no_wait_passes_the_cap(value, expected):
    assert retry_after_seconds(value, cap=30.0, now=NOW) == expected


def test_the_collector_and_the_alerts_read_it_through_the_one_rule():
    from clf.data import api_pager
    from clf.monitoring import alerts

    assert api_pager.retry_after_seconds is retry_after_seconds
    assert alerts.retry_after_seconds is retry_after_seconds
