"""Fetch one page of an arXiv API query at a time: rate-limited, retried with back-off, checked whole.

The `arxiv` client builds the URLs and parses the Atom entries; this module adds what the client lacks: a timeout,
back-off between retries, a clear reason for each failure, and a strict check that a feed arrived whole.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import arxiv
import requests
from lxml import etree

from clf.data.paper import strip_version
from clf.http import retry_after_seconds

log = logging.getLogger(__name__)

_ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV = "{http://arxiv.org/schemas/atom}"
_OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
_COUNT = re.compile(r"\s*[0-9]+\s*")
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
    last page, and it skips entries without an id or a date without a word (or raises ``ValueError`` on a date it
    cannot read); checking the document strictly here turns each of these into an error the collector retries.

    Args:
        timeout: seconds to wait for the server to answer (connect and each read).
    """

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.total_results: int | None = None
        self.retry_after: str | None = None
        """The last answer's ``Retry-After`` header as sent (read with `clf.http.retry_after_seconds`)."""

    def reset(self) -> None:
        """Forgets what the previous answer said."""
        self.total_results = None
        self.retry_after = None

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Sends the request with the session timeout and checks a successful answer is a whole Atom feed.

        Args:
            method: the HTTP method, e.g. ``GET``.
            url: the request URL.
            *args: passed on to `requests.Session.request`.
            **kwargs: passed on to `requests.Session.request`; ``timeout`` defaults to the session's timeout.

        Returns:
            The response, whatever its status; a 200 answer has been checked to be a whole Atom feed.

        Raises:
            MalformedFeedError: when the body is cut short or cannot be decoded, or a 200 answer is not a whole
                Atom feed: see `check_feed`.
        """
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = super().request(method, url, *args, **kwargs)
        # Raised while reading the body: the connection closed before Content-Length (or the last chunk) arrived,
        # or a gzip-encoded body does not decompress. Both are a feed that did not arrive whole.
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as err:
            raise MalformedFeedError(str(url), f"incomplete body: {err}") from err
        self.retry_after = response.headers.get("Retry-After")
        if response.status_code == requests.codes.ok:
            self.total_results = check_feed(str(url), response.content)
        return response


def check_feed(url: str, content: bytes) -> int:
    """Checks that an answer is a whole arXiv Atom feed whose every entry becomes a usable paper.

    Args:
        url: the request URL, named in the error.
        content: the body of the answer.

    Returns:
        The feed's ``opensearch:totalResults``.

    Raises:
        MalformedFeedError: when the body is empty, not well-formed XML, declares a DOCTYPE (arXiv feeds have none,
            and its entities would not be expanded), has another root than an Atom ``feed``, lacks a numeric
            ``opensearch:totalResults``, holds an entry outside the Atom namespace, or an entry without an arXiv
            id, a title, a summary, an ``arxiv:primary_category`` (every category term a bare name), or a
            ``published`` and ``updated`` date the client can read.
    """
    if not content.strip():
        raise MalformedFeedError(url, "empty body")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=False)
    try:
        root = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError as err:
        raise MalformedFeedError(url, f"not well-formed XML: {err}") from err
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise MalformedFeedError(url, "the document declares a DOCTYPE, which arXiv feeds never do")
    if root.tag != f"{_ATOM}feed":
        raise MalformedFeedError(url, f"root element is {root.tag!r}, not an Atom feed")
    total = _total_results(url, root)
    for child in root:
        # The client reads Atom entries only: one in another namespace would be a paper silently skipped.
        if isinstance(child.tag, str) and etree.QName(child).localname == "entry" and child.tag != f"{_ATOM}entry":
            raise MalformedFeedError(url, f"an entry is in namespace {etree.QName(child).namespace!r}, not Atom's")
    for index, entry in enumerate(root.iterfind(f"{_ATOM}entry"), start=1):
        _check_entry(url, index, entry)
    return total


def _total_results(url: str, root: Any) -> int:
    total = root.findtext(f"{_OPENSEARCH}totalResults")
    if total is None:
        # Without it a full page would pass for the last one, and the category would be marked exhausted.
        raise MalformedFeedError(url, "no opensearch:totalResults")
    if not _COUNT.fullmatch(total):
        raise MalformedFeedError(url, f"opensearch:totalResults is {total[:40]!r}, not a count")
    return int(total)


def _check_entry(url: str, index: int, entry: Any) -> None:
    # Read each element as the client does (the text of the first matching child), so that what passes here cannot
    # be skipped or fail there.
    entry_id = _child_text(entry, f"{_ATOM}id") or ""
    # The collector takes the id from after "arxiv.org/abs/", as `arxiv.Result.get_short_id` does.
    if "arxiv.org/abs/" not in entry_id or not strip_version(entry_id.split("arxiv.org/abs/")[-1]):
        raise MalformedFeedError(url, f"entry {index} has no arXiv id (<id> is {entry_id[:80]!r})")
    where = f"entry {index} ({entry_id.strip()[:80]})"
    if not (_child_text(entry, f"{_ATOM}title") or "").strip():
        raise MalformedFeedError(url, f"{where} has no title")
    if entry.find(f"{_ATOM}summary") is None:
        raise MalformedFeedError(url, f"{where} has no summary")
    # Without its primary category the client would label the paper with the first category listed.
    primary = entry.find(f"{_ARXIV}primary_category")
    primary_term = primary.get("term") if primary is not None else None
    if primary_term is None:
        raise MalformedFeedError(url, f"{where} has no arxiv:primary_category")
    terms = [primary_term] + [c.get("term") for c in entry.iterfind(f"{_ATOM}category") if c.get("term") is not None]
    bad = next((term for term in terms if term.split() != [term]), None)
    if bad is not None:
        raise MalformedFeedError(url, f"{where} has a category term {bad[:40]!r}, not a category name")
    for tag in ("published", "updated"):
        text = _child_text(entry, f"{_ATOM}{tag}")
        if text is None:
            raise MalformedFeedError(url, f"{where} has no <{tag}> date")
        try:
            _atom_datetime(text)
        except (ValueError, OverflowError):
            raise MalformedFeedError(url, f"{where}: <{tag}> is {text[:40]!r}, not a readable RFC 3339 date") from None


def _child_text(element: Any, tag: str) -> str | None:
    found = element.find(tag)
    return found.text if found is not None else None


def _atom_datetime(text: str) -> datetime:
    """Reads an Atom timestamp the way the `arxiv` client's parser does, errors included."""
    stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC)


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
                retry_after = retry_after_seconds(self._session.retry_after, cap=self.max_backoff_seconds) or 0.0
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
