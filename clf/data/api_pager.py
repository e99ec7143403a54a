"""Fetch one page of an arXiv API query at a time: rate-limited, retried with back-off, checked whole.

The `arxiv` client builds the URLs and parses the Atom entries; this module adds what the client lacks: a timeout,
back-off between retries, a clear reason for each failure, and a strict check that a feed arrived whole.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import arxiv
import requests
from lxml import etree

log = logging.getLogger(__name__)

_OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses worth another try: rate limiting and server-side trouble."""


class MalformedFeedError(requests.RequestException):
    """An API answer with status 200 that is not a complete Atom feed (truncated, HTML, garbage).

    Args:
        url: the request URL whose answer was malformed.
        detail: what was wrong with the answer (e.g. "not well-formed XML").
    """

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"malformed feed from {url}: {detail}")
        self.url = url
        self.detail = detail


class FeedSession(requests.Session):
    """A `requests.Session` that times out, rejects incomplete feeds and remembers the page header.

    The `arxiv` client parses with a recovering XML parser, so a feed cut off mid-transfer would look like a short
    last page; checking the document strictly here turns it into an error the collector retries.

    Args:
        timeout: seconds to wait for the server to answer (connect and each read).
    """

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.total_results: int | None = None
        self.retry_after: float | None = None

    def reset(self) -> None:
        """Forgets what the previous answer said."""
        self.total_results = None
        self.retry_after = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Sends the request with the session timeout and checks a successful answer is a whole Atom feed.

        Args:
            method: the HTTP method, e.g. ``GET``.
            url: the request URL.
            *args: passed on to `requests.Session.request`.
            **kwargs: passed on to `requests.Session.request`; ``timeout`` defaults to the session's timeout.

        Returns:
            The response, whatever its status; a 200 answer has been checked to be a whole Atom feed.

        Raises:
            MalformedFeedError: when a 200 answer is not well-formed XML with an Atom ``feed`` root.
        """
        kwargs.setdefault("timeout", self.timeout)
        response = super().request(method, url, *args, **kwargs)
        self.retry_after = _seconds(response.headers.get("Retry-After"))
        if response.status_code == requests.codes.ok:
            self.total_results = _total_results(str(url), response.content)
        return response


def _total_results(url: str, content: bytes) -> int | None:
    if not content.strip():
        raise MalformedFeedError(url, "empty body")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=False)
    try:
        root = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError as err:
        raise MalformedFeedError(url, f"not well-formed XML: {err}") from err
    if root.tag != "{http://www.w3.org/2005/Atom}feed":
        raise MalformedFeedError(url, f"root element is {root.tag!r}, not an Atom feed")
    total = root.findtext(f"{_OPENSEARCH}totalResults")
    try:
        return int(total) if total is not None else None
    except ValueError:
        return None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date; the back-off schedule applies instead


class PageFetchError(RuntimeError):
    """A page could not be fetched: the query was refused, or every attempt failed.

    Args:
        start: offset of the first result of the page.
        attempts: how many requests were made for the page.
        reason: what went wrong on the last attempt.
        retryable: False when the server refused the query itself, so a re-run cannot help either.

    Attributes:
        start: offset of the page.
        attempts: how many requests were made for it.
        reason: what went wrong on the last attempt.
        retryable: False when the server refused the query itself (retrying the same request cannot help).
    """

    def __init__(self, start: int, attempts: int, reason: str, retryable: bool = True) -> None:
        super().__init__(f"page starting at {start} failed after {attempts} attempt(s): {reason}")
        self.start = start
        self.attempts = attempts
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class Page:
    """One page of results and the total number of results the query has."""

    results: list[arxiv.Result]
    """The results of the page, newest submission first; empty past the end of the query."""
    total: int
    """The total number of results of the query, as the feed announced it."""


class ArxivApiPager:
    """Fetches pages of an arXiv API query, newest submissions first.

    Args:
        api_url: the query endpoint, e.g. ``https://export.arxiv.org/api/query``.
        page_size: results per request.
        delay_seconds: least time between the starts of two requests.
        max_retries: further attempts after a failed one.
        backoff_seconds: wait before the first retry, doubled on each further one (at least ``Retry-After``).
        max_backoff_seconds: upper bound of one back-off wait.
        timeout_seconds: how long to wait for an answer.
    """

    def __init__(
        self,
        api_url: str,
        page_size: int,
        delay_seconds: float,
        max_retries: int,
        backoff_seconds: float,
        max_backoff_seconds: float,
        timeout_seconds: float,
    ) -> None:
        self.page_size = page_size
        self.delay_seconds = delay_seconds
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout_seconds = timeout_seconds
        # Our own retries replace the client's, which retry at once without back-off. The client's session is
        # swapped for ours because the client offers no timeout and would take a truncated feed for a short page.
        self._client = arxiv.Client(page_size=page_size, delay_seconds=delay_seconds, num_retries=0)
        self._client.query_url_format = api_url + "?{}"
        self._session = FeedSession(timeout=timeout_seconds)
        self._client._session = self._session
        self._last_request = float("-inf")

    def fetch(self, query: str, start: int, label: str = "") -> Page:
        """Fetches the page of `query` that starts at result `start`.

        Args:
            query: an arXiv ``search_query`` such as ``cat:cs.CL``.
            start: offset of the first result.
            label: a name for log lines (e.g. the category).

        Returns:
            The page's results and the query's total number of results.

        Raises:
            PageFetchError: when the query is refused (HTTP 4xx other than 429) or every attempt failed.
        """
        search = arxiv.Search(
            query=query,
            max_results=start + self.page_size,
            sort_by=arxiv.SortCriterion.SubmittedDate,
            sort_order=arxiv.SortOrder.Descending,
        )
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            self._wait_for_rate_limit()
            self._session.reset()
            retry_after = 0.0
            try:
                results = list(self._client.results(search, offset=start))
                total = self._session.total_results
                if results or total is None or start >= total:
                    return Page(results, total if total is not None else start + len(results))
                failure = f"empty feed although {total} results were announced"
            except arxiv.HTTPError as err:
                if err.status not in RETRYABLE_STATUS:
                    raise PageFetchError(start, attempt, f"HTTP {err.status}: query {query!r} refused", False) from err
                failure = f"HTTP {err.status}" + (" (rate limited by arXiv)" if err.status == 429 else "")
                retry_after = self._session.retry_after or 0.0
            except requests.Timeout:
                failure = f"no answer within {self.timeout_seconds:g} s (timeout)"
            except requests.ConnectionError as err:
                failure = f"connection failed ({err.__class__.__name__})"
            except MalformedFeedError as err:
                failure = f"malformed feed ({err.detail})"
            except arxiv.UnexpectedEmptyPageError:
                failure = "empty feed"
            if attempt == attempts:
                raise PageFetchError(start, attempts, failure)
            wait = max(retry_after, min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds))
            log.warning(
                "%s: page starting at %d failed: %s (attempt %d/%d); retrying in %.1f s",
                label or query,
                start,
                failure,
                attempt,
                attempts,
                wait,
            )
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _wait_for_rate_limit(self) -> None:
        wait = self._last_request + self.delay_seconds - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()
