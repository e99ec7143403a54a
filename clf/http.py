"""HTTP rules every client in clf follows alike: the one reading of a ``Retry-After`` header.

The arXiv collector (`clf.data.api_pager`) and the alert webhooks (`clf.monitoring.alerts`) both back off when a
server says how long to wait; they read the header here, in both of its forms, and never wait longer than they
allow.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def retry_after_seconds(value: str | None, *, cap: float, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, at most `cap`.

    Args:
        value: the header's value: delta-seconds (``120``) or an HTTP date (``Wed, 21 Oct 2026 07:28:00 GMT``).
        cap: the longest wait the caller accepts; a server asking for more gets this much.
        now: the current time, for an HTTP date (default: the clock's).

    Returns:
        Seconds in ``[0, cap]``; None for no header or one that is neither form (the caller's own back-off applies).
    """
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)
