"""Errors of the serving layer; the HTTP application maps each to its status code and the JSON error shape.

Three classes of failure are kept apart everywhere they are counted, because each calls for a different response:

* a **client error** (`InvalidInputError`, with a `ClientErrorReason`): the request is wrong; answered 4xx and counted
  under ``client_errors`` by reason, never as a failure of the model;
* **shed load** (`OverloadedError`, `DeadlineExceededError`): the service is too busy; answered 429 or 504 with a
  ``Retry-After`` hint, counted as ``shed`` or ``timeouts``, never as a failure of the model;
* a **model or server error**: anything else raised while answering; answered 500 and counted as an error, the only
  kind that error-rate alerts, canary gates and the rollback monitor judge.
"""

from __future__ import annotations

import math
from enum import StrEnum

from clf.inference.errors import ModelLoadError

__all__ = [
    "ClientErrorReason",
    "DeadlineExceededError",
    "InvalidInputError",
    "ModelLoadError",
    "NoModelError",
    "OverloadedError",
    "ServiceClosedError",
    "ServingError",
]


class ClientErrorReason(StrEnum):
    """Why a request was refused as the client's fault; the ``reason`` of the JSON error and of ``client_errors``."""

    INVALID_JSON = "invalid_json"
    """The body is not JSON (or a number in it is too long to read)."""
    INVALID_ENCODING = "invalid_encoding"
    """The body is not UTF-8, a string holds a lone UTF-16 surrogate (``\\ud800``), which is not text, or an id or
    label holds a control character (NUL included)."""
    TOO_DEEP = "too_deep"
    """The JSON is nested deeper than any request can be."""
    TOO_LARGE = "too_large"
    """The body is over the size limit."""
    INVALID_SHAPE = "invalid_shape"
    """Not a paper or a list of papers: a wrong type, an unknown field, ``papers`` not a list."""
    EMPTY_TEXT = "empty_text"
    """A paper with nothing left to classify once cleaned: no letter or digit (only spaces, marks, punctuation)."""
    NO_PAPERS = "no_papers"
    """An empty list of papers."""
    TOO_MANY_PAPERS = "too_many_papers"
    """More papers in one request than the service takes."""
    TEXT_TOO_LONG = "text_too_long"
    """A paper longer than the service takes."""
    INVALID_PARAMETER = "invalid_parameter"
    """A query parameter out of range or of the wrong type."""
    NOT_FOUND = "not_found"
    """No such endpoint."""
    METHOD_NOT_ALLOWED = "method_not_allowed"
    """The endpoint exists, the method does not."""
    UNAUTHORIZED = "unauthorized"
    """A mutating endpoint called without a token."""
    FORBIDDEN = "forbidden"
    """A wrong token, or an endpoint that is switched off until a token is configured."""
    RATE_LIMITED = "rate_limited"
    """Too many requests from one client to a rate-limited endpoint."""
    UNKNOWN_PREDICTION = "unknown_prediction"
    """Feedback names a prediction id that was never logged."""
    FOREIGN_PREDICTION = "foreign_prediction"
    """Feedback names a prediction id this service did not issue (forged, or signed with another key)."""
    EXPIRED_PREDICTION = "expired_prediction"
    """Feedback on a prediction older than the service accepts feedback for."""
    INVALID_LABEL = "invalid_label"
    """Feedback whose true label is not a category."""


class ServingError(RuntimeError):
    """Base class of the serving layer's errors."""


class InvalidInputError(ValueError):
    """A request the service cannot take, through the client's fault; answered with a 4xx.

    Args:
        message: what is wrong and how to fix it.
        reason: the kind of client error, counted under ``client_errors``.
        status: the HTTP status code that answers it.
        retry_after_s: for a rate limit, when the client may try again (sent as ``Retry-After``).
    """

    def __init__(
        self,
        message: str,
        reason: ClientErrorReason = ClientErrorReason.INVALID_SHAPE,
        status: int = 422,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = ClientErrorReason(reason)
        self.status = status
        self.retry_after_s = retry_after_s


class NoModelError(ServingError):
    """No version to serve: the registry is empty and no base model is configured."""


class ServiceClosedError(ServingError):
    """A request reached a service (or a version's batcher) that has been shut down; answered with HTTP 503."""


class OverloadedError(ServingError):
    """A version's queue is full: the request is shed at once (HTTP 429 with ``Retry-After``), never queued.

    Args:
        version: the version whose queue is full.
        queued: papers waiting in its queue.
        limit: the most papers its queue holds (``--batching.max_queue``).
        retry_after_s: when the queue is expected to have drained enough, in seconds.
    """

    def __init__(self, version: str, queued: int, limit: int, retry_after_s: float) -> None:
        self.version, self.queued, self.limit = version, queued, limit
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        super().__init__(
            f"{version} is overloaded: {queued} papers already wait (the queue holds {limit}); "
            f"retry after {self.retry_after_s} s, or send fewer requests at once"
        )


class DeadlineExceededError(ServingError):
    """A request not answered by its deadline (``--limits.request_timeout``): HTTP 504; work not begun is dropped.

    Args:
        timeout_s: the deadline the request had, in seconds.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"no answer within {timeout_s:g} s; the service is busy, retry later")
