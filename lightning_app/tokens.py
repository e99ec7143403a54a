"""Bearer tokens: the one way the service reads an ``Authorization`` header and checks it against its tokens."""

from __future__ import annotations

import hmac
from collections.abc import Iterable


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header.

    Args:
        header: the header's value, or None when absent.

    Returns:
        The token, stripped; None for another scheme, no header or an empty token.
    """
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_matches(token: str | None, allowed: Iterable[str]) -> bool:
    """Whether `token` is one of `allowed`, in time that says nothing about which one is close.

    Every allowed token is compared with `hmac.compare_digest`, whichever matches: stopping at the first match would
    tell a caller, by the time taken, where the match sits among several tokens.

    Args:
        token: what the client sent (`bearer_token`'s answer).
        allowed: the configured tokens.

    Returns:
        True when it equals one of them; False for None.
    """
    if token is None:
        return False
    candidate = token.encode()
    matched = [hmac.compare_digest(candidate, expected.encode()) for expected in allowed]
    return any(matched)
