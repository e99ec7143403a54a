"""One bearer-token check for every endpoint that takes one (lightning_app.tokens)."""

from __future__ import annotations

import hmac

import pytest

from lightning_app import tokens
from lightning_app.tokens import bearer_token, token_matches


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc"), ("Basic abc", None), ("Bearer ", None),
     ("", None), (None, None), ("abc", None)],
)  # fmt: skip
def test_only_a_bearer_header_with_a_token_gives_one(header, expected):
    assert bearer_token(header) == expected


def test_a_token_matches_any_configured_one_and_nothing_else():
    allowed = ["first-token-0123456789", "second-token-0123456789"]
    assert token_matches("second-token-0123456789", allowed)
    assert not token_matches("second-token-012345678", allowed)
    assert not token_matches(None, allowed)
    assert not token_matches("anything", [])


def test_every_configured_token_is_compared_whichever_matches(monkeypatch):
    compared, compare = [], hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return compare(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", counting)
    assert token_matches("a-0123456789abcdef", ["a-0123456789abcdef", "b-0123456789abcdef", "c-0123456789abcdef"])
    assert len(compared) == 3, "a match on the first token must not end the comparison early"
