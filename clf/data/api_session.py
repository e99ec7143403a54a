"""The HTTP session the collector hands to the `arxiv` client: timeouts, whole-feed checks, page header."""

from __future__ import annotations

from typing import Any

import requests
from lxml import etree

_OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"


class MalformedFeedError(requests.RequestException):
    """An API answer with status 200 that is not a complete Atom feed (truncated, HTML, garbage)."""

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
