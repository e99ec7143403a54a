"""Who may send feedback, and how often: bearer tokens compared in constant time, and a rate limit per client.

A/B analysis and ``clf ab promote`` decide on the labels ``POST /feedback`` stores, so an open endpoint lets anyone
who can reach the port pick the winning model. `FeedbackGuard` closes it:

* a token is required (``Authorization: Bearer <token>``); without any token configured the endpoint is switched
  off (403), not open;
* every request counts against a moving-window rate limit per client address (the ``limits`` library), checked
  first so that guessing tokens is rate limited too; the workers of one ``clf serve --workers N`` count in one
  SQLite file (`lightning_app.rate_limits`), so that a client gets the limit once, not once per worker;
* the prediction id itself must be signed by this service (`clf.serving.prediction_ids`), checked by the caller.

>>> guard = FeedbackGuard(["s3cret-token-of-the-labelling-team"], rate_limit="2/minute")
>>> guard.authorize("Bearer s3cret-token-of-the-labelling-team")
>>> guard.authorize("Bearer guess")
Traceback (most recent call last):
...
clf.serving.errors.InvalidInputError: wrong feedback token; use a token the service was started with
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from clf.serving.errors import ClientErrorReason, InvalidInputError
from lightning_app.rate_limits import SQLiteStorage  # noqa: F401  (registers sqlite:///PATH with limits)
from lightning_app.tokens import bearer_token, token_matches

MIN_TOKEN_CHARS = 16
"""Shorter tokens are refused at start: they could be guessed within the rate limit."""


class FeedbackGuard:
    """Checks the token and the rate limit of every feedback request.

    Args:
        tokens: the accepted bearer tokens (several, to rotate one without downtime); empty switches feedback off.
        rate_limit: requests per client address, in the ``limits`` notation (``60/minute``, ``10/second``).
        storage: where the requests are counted, a ``limits`` storage URI: ``memory://`` (this process), or
            ``sqlite:///PATH`` for processes that share the limit (`SQLiteStorage`).

    Raises:
        ValueError: for a token shorter than `MIN_TOKEN_CHARS` or a rate limit that does not parse.
    """

    def __init__(self, tokens: Sequence[str] = (), rate_limit: str = "60/minute", storage: str = "memory://") -> None:
        short = [token for token in tokens if len(token) < MIN_TOKEN_CHARS]
        if short:
            raise ValueError(f"a feedback token must hold at least {MIN_TOKEN_CHARS} characters")
        try:
            self._limit = parse(rate_limit)
        except ValueError as err:
            raise ValueError(
                f"--feedback.rate_limit {rate_limit!r} does not parse ({err}); write e.g. 60/minute"
            ) from None
        self._tokens = list(tokens)
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage))

    @property
    def enabled(self) -> bool:
        """Whether any token is configured."""
        return bool(self._tokens)

    def admit(self, client: str) -> None:
        """Counts one request of `client` against the rate limit.

        Args:
            client: the client's address.

        Raises:
            InvalidInputError: `RATE_LIMITED` (429, with ``retry_after_s``) past the limit.
        """
        if self._limiter.hit(self._limit, client):
            return
        reset = self._limiter.get_window_stats(self._limit, client).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        raise InvalidInputError(
            f"too many feedback requests from {client} (limit {self._limit}); retry after {retry} s",
            ClientErrorReason.RATE_LIMITED,
            status=429,
            retry_after_s=retry,
        )

    def authorize(self, header: str | None) -> None:
        """Checks an ``Authorization`` header against the tokens, in constant time.

        Args:
            header: the header's value, or None when absent.

        Raises:
            InvalidInputError: `FORBIDDEN` (403) while no token is configured or for a wrong token, `UNAUTHORIZED`
                (401) for a missing one.
        """
        if not self._tokens:
            raise InvalidInputError(
                "feedback is switched off until a token is configured: start clf serve with --feedback.token_file "
                "FILE (or CLF_FEEDBACK_TOKEN) and send Authorization: Bearer <token>",
                ClientErrorReason.FORBIDDEN,
                status=403,
            )
        given = bearer_token(header)
        if given is None:
            raise InvalidInputError(
                "feedback needs a token: send Authorization: Bearer <token>", ClientErrorReason.UNAUTHORIZED, status=401
            )
        if not token_matches(given, self._tokens):
            raise InvalidInputError(
                "wrong feedback token; use a token the service was started with",
                ClientErrorReason.FORBIDDEN,
                status=403,
            )
