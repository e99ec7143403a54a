"""Tests for lightning_app/payloads.py: any bytes, any JSON text and any JSON value end in the documented value or in
an `InvalidInputError` with its `ClientErrorReason`, and nothing else escapes.

The oracles below restate the documented contract (strict UTF-8 with an optional BOM, then JSON; the request models
of `lightning_app.schemas`) independently of the code under test. Every error message must also be sendable, since
the HTTP layer answers with it as UTF-8 JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from clf.serving.errors import ClientErrorReason, InvalidInputError
from lightning_app.payloads import check_identifier, papers_and_user, parse_json, read_json

FAST = settings(max_examples=300, deadline=None, derandomize=True, database=None)
LONG = settings(
    max_examples=5000, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Every code point, lone surrogates included, with the characters the service treats specially drawn often.
TRICKY = st.sampled_from(["\x00", "\x1f", "\x85", "\ud800", "\udfff", "\u202e", "\u200b", "\ufeff", '"', "\\", "\n"])
TEXT = st.one_of(st.text(st.characters(codec=None)), st.lists(st.one_of(TRICKY, st.text(max_size=4))).map("".join))
KEYS = st.one_of(st.sampled_from(["title", "abstract", "text", "papers", "user_id"]), TEXT)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20
)
FIELD = st.one_of(TEXT, st.none(), JSON_VALUES)
USER_ID = st.one_of(st.none(), TEXT, st.integers(), st.booleans(), st.floats(), JSON_VALUES)
PAPER = st.fixed_dictionaries({}, optional={"title": FIELD, "abstract": FIELD, "text": FIELD})
PAPER_WITH_USER = st.fixed_dictionaries(
    {}, optional={"title": FIELD, "abstract": FIELD, "text": FIELD, "user_id": USER_ID}
)
PAYLOADS = st.one_of(
    JSON_VALUES,
    PAPER_WITH_USER,
    st.lists(PAPER, max_size=4),
    st.fixed_dictionaries(
        {"papers": st.one_of(st.lists(PAPER, max_size=4), JSON_VALUES)}, optional={"user_id": USER_ID}
    ),
    # Near misses: a valid shape with one more key.
    st.tuples(st.one_of(PAPER_WITH_USER, st.fixed_dictionaries({"papers": st.lists(PAPER)})), KEYS, JSON_VALUES).map(
        lambda parts: {**parts[0], parts[1]: parts[2]}
    ),
)

PARSE_REASONS = {ClientErrorReason.INVALID_JSON, ClientErrorReason.INVALID_ENCODING, ClientErrorReason.TOO_DEEP}


def sendable(err: InvalidInputError) -> None:
    """The error as the HTTP layer sends it: a non-empty message that encodes to UTF-8 JSON."""
    assert isinstance(err.reason, ClientErrorReason) and 400 <= err.status < 500
    assert str(err)
    json.dumps({"error": str(err), "reason": err.reason}, ensure_ascii=False, allow_nan=False).encode("utf-8")


def same(a: Any, b: Any) -> bool:
    """JSON equality that tells True from 1 and takes NaN for NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return a == b


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, list):
        return any(has_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(has_surrogate(key) or has_surrogate(item) for key, item in value.items())
    return False


def paired(value: Any) -> Any:
    """`value` as JSON reads it back: a high surrogate followed by a low one, escaped apart, is one character."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, list):
        return [paired(item) for item in value]
    if isinstance(value, dict):
        return {paired(key): paired(item) for key, item in value.items()}
    return value


# ------------------------------------------------------------------------------------------------- parse_json


def check_parse(body: bytes) -> Any:
    """`parse_json(body)` against the contract: strict UTF-8 (BOM allowed), then JSON; or the named refusal."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        expected: Any = ClientErrorReason.INVALID_ENCODING
    else:
        try:
            expected = ("value", json.loads(text))
        except RecursionError:
            expected = ClientErrorReason.TOO_DEEP
        except ValueError:
            expected = ClientErrorReason.INVALID_JSON
        if not body.strip():
            expected = ClientErrorReason.INVALID_JSON
    try:
        value = parse_json(body)
    except InvalidInputError as err:
        sendable(err)
        # The stdlib's own recursion limit moves with the stack it is called from: too deep is too deep either way.
        if expected == ClientErrorReason.TOO_DEEP or err.reason == ClientErrorReason.TOO_DEEP:
            assert err.reason in (ClientErrorReason.TOO_DEEP, expected)
        else:
            assert err.reason == expected, (body, err)
        return err
    assert isinstance(expected, tuple) and same(value, expected[1]), body
    return value


def json_text(value: Any, ascii_only: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate written raw: bytes that are not UTF-8


def insert(body: bytes, where: int, junk: bytes) -> bytes:
    where = where % (len(body) + 1)
    return body[:where] + junk + body[where:]


BODIES = st.one_of(
    st.binary(max_size=200),
    st.builds(json_text, JSON_VALUES, st.booleans()),
    st.builds(
        insert, st.builds(json_text, JSON_VALUES, st.booleans()), st.integers(0, 400), st.binary(min_size=1, max_size=4)
    ),
    st.builds(
        lambda body, bom: (b"\xef\xbb\xbf" if bom else b"") + body,
        st.builds(json_text, PAYLOADS, st.just(True)),
        st.booleans(),
    ),
)


@FAST
@given(BODIES)
def test_any_bytes_parse_to_their_json_value_or_a_named_refusal(body):
    check_parse(body)


@pytest.mark.slow
@LONG
@given(BODIES)
def test_any_bytes_parse_to_their_json_value_or_a_named_refusal_long_run(body):
    check_parse(body)


@FAST
@given(JSON_VALUES)
def test_json_with_surrogate_escapes_nan_and_infinity_parses_to_the_value_it_writes(value):
    # ensure_ascii writes lone surrogates as \ud800 escapes and non-finite floats as NaN/Infinity literals.
    assert same(parse_json(json_text(value, ascii_only=True)), paired(value))


@FAST
@given(st.text("0123456789", min_size=1, max_size=2 * sys.get_int_max_str_digits()), st.booleans())
def test_integers_of_any_length_parse_or_are_refused_as_invalid_json(digits, negative):
    body = ("-" if negative else "") + digits
    if len(digits) > 1 and digits[0] == "0":
        reason = ClientErrorReason.INVALID_JSON  # JSON has no leading zeros
    elif len(digits) > sys.get_int_max_str_digits():
        reason = ClientErrorReason.INVALID_JSON  # longer than Python reads
    else:
        assert parse_json(body.encode()) == int(body)
        return
    with pytest.raises(InvalidInputError) as refused:
        parse_json(body.encode())
    assert refused.value.reason == reason


OPENERS = {
    "[": lambda value: value[0],
    '{"papers": ': lambda value: value["papers"],
    '{"a": [': lambda value: value["a"][0],
}
CLOSERS = {"[": "]", '{"papers": ': "}", '{"a": [': "]}"}


@FAST
@given(st.integers(1, 200_000), st.sampled_from(sorted(OPENERS)), st.booleans())
def test_any_depth_parses_or_is_refused_as_too_deep(depth, opener, closed):
    body = (opener * depth + "0" + (CLOSERS[opener] * depth if closed else "")).encode()
    try:
        value = parse_json(body)
    except InvalidInputError as err:
        sendable(err)
        if closed:
            assert err.reason == ClientErrorReason.TOO_DEEP and depth > 200, "a document 200 levels deep is refused"
        elif depth <= 200:
            assert err.reason == ClientErrorReason.INVALID_JSON
        else:  # the parser may give up on the depth before it reaches the missing end
            assert err.reason in (ClientErrorReason.INVALID_JSON, ClientErrorReason.TOO_DEEP)
        return
    assert closed
    for _ in range(depth):
        value = OPENERS[opener](value)
    assert value == 0


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b"NaN", math.nan),
        (b"-Infinity", -math.inf),
        (b'"\\ud800"', "\ud800"),
        (b'"\\udfff\\ud800"', "\udfff\ud800"),
        (b'"\\ud83d\\ude00"', "\U0001f600"),
        (b"\xef\xbb\xbf[1]", [1]),
        (b" \n[]\t", []),
    ],
)
def test_json_the_stdlib_reads_is_passed_on_for_validation(body, value):
    assert same(parse_json(body), value)


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b"", ClientErrorReason.INVALID_JSON, "empty body"),
        (b" \r\n", ClientErrorReason.INVALID_JSON, "empty body"),
        (b"\xef\xbb\xbf", ClientErrorReason.INVALID_JSON, "not valid JSON"),
        (b'{"title": "\xed\xa0\x80"}', ClientErrorReason.INVALID_ENCODING, "byte 0xed at offset 11"),
        (b"\xff\xfe[]", ClientErrorReason.INVALID_ENCODING, "byte 0xff at offset 0"),
        (b'{"title": "x"', ClientErrorReason.INVALID_JSON, "not valid JSON"),
        (b"[" * 100_000, ClientErrorReason.TOO_DEEP, "nested too deeply"),
    ],
)
def test_bodies_that_cannot_be_read_name_why(body, reason, message):
    with pytest.raises(InvalidInputError, match=message) as refused:
        parse_json(body)
    assert refused.value.reason == reason and refused.value.status == 422


# -------------------------------------------------------------------------------------------------- read_json


def request_with(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> Request:
    messages = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers, "query_string": b""}
    return Request(scope, receive)


@FAST
@given(
    content_length=st.one_of(
        st.none(),
        st.integers(0, 200).map(str).map(str.encode),
        st.binary(max_size=6),
        # Latin-1 holds digits that str.isdigit() takes and int() does not: superscripts.
        st.text("0123456789\xb2\xb3\xb9 +-", min_size=1, max_size=4).map(lambda text: text.encode("latin-1")),
    ),
    chunks=st.lists(st.one_of(st.binary(max_size=40), st.builds(json_text, PAYLOADS, st.just(True))), max_size=4),
)
def test_any_headers_and_body_read_to_a_value_or_a_named_refusal(content_length, chunks):
    # Servers check Content-Length before the app sees it (uvicorn's h11 answers 400 itself); the app must not
    # depend on that: an ASGI scope can carry any bytes there.
    headers = [] if content_length is None else [(b"content-length", content_length)]
    body = b"".join(chunks)
    try:
        asyncio.run(read_json(request_with(headers, chunks), max_body_bytes=100))
    except InvalidInputError as err:
        sendable(err)
        declared = content_length.decode("latin-1") if content_length is not None else ""
        too_large = len(body) > 100 or (declared.isascii() and declared.isdigit() and int(declared) > 100)
        assert (err.reason == ClientErrorReason.TOO_LARGE) == too_large, err
        assert too_large or err.reason in PARSE_REASONS
        return
    assert len(body) <= 100


# -------------------------------------------------------------------------------------------- papers_and_user


def paper_ok(paper: Any, with_user: bool) -> bool:
    """`PaperInput` (or `PaperWithUser`), strict: known keys only, string title and abstract, text string or null."""
    keys = {"title", "abstract", "text"} | ({"user_id"} if with_user else set())
    return (
        isinstance(paper, dict)
        and set(paper) <= keys
        and isinstance(paper.get("title", ""), str)
        and isinstance(paper.get("abstract", ""), str)
        and (paper.get("text") is None or isinstance(paper["text"], str))
        and (not with_user or user_ok(paper.get("user_id")))
    )


def user_ok(user_id: Any) -> bool:
    return user_id is None or isinstance(user_id, str) or (isinstance(user_id, int) and not isinstance(user_id, bool))


def fields_of(paper: dict[str, Any]) -> dict[str, str]:
    given_text = {"text": paper["text"]} if paper.get("text") is not None else {}
    return {"title": paper.get("title", ""), "abstract": paper.get("abstract", ""), **given_text}


def expected_papers(payload: Any) -> tuple[list[dict[str, str]], str | None] | None:
    """What `papers_and_user` documents for `payload`, or None where it must refuse it."""
    if isinstance(payload, dict) and "papers" in payload:
        papers, user_id = payload["papers"], payload.get("user_id")
        valid = (
            set(payload) <= {"papers", "user_id"}
            and isinstance(papers, list)
            and all(paper_ok(paper, with_user=False) for paper in papers)
            and user_ok(user_id)
        )
    elif isinstance(payload, dict):
        papers, user_id, valid = [payload], payload.get("user_id"), paper_ok(payload, with_user=True)
    elif isinstance(payload, list):
        papers, user_id, valid = payload, None, all(paper_ok(paper, with_user=False) for paper in payload)
    else:
        return None
    return ([fields_of(paper) for paper in papers], None if user_id is None else str(user_id)) if valid else None


def check_papers_and_user(payload: Any) -> None:
    expected = expected_papers(payload)
    try:
        papers, user_id = papers_and_user(payload)
    except InvalidInputError as err:
        sendable(err)
        if err.reason == ClientErrorReason.INVALID_ENCODING:
            # A lone surrogate anywhere, or a user id that cannot be stored as sent.
            assert has_surrogate(payload) or (expected is not None and expected[1] is not None), payload
        else:
            assert err.reason == ClientErrorReason.INVALID_SHAPE and expected is None, (payload, err)
        return
    assert expected is not None, payload
    assert papers == expected[0] and user_id == expected[1]
    assert user_id is None or not any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in user_id)


@FAST
@given(PAYLOADS)
def test_any_json_value_is_split_into_papers_and_user_or_refused_as_the_clients_fault(payload):
    check_papers_and_user(payload)


@pytest.mark.slow
@LONG
@given(PAYLOADS)
def test_any_json_value_is_split_into_papers_and_user_or_refused_long_run(payload):
    check_papers_and_user(payload)


@pytest.mark.parametrize(
    ("payload", "reason", "message"),
    [
        ({"title": "x", "user_id": "\ud800"}, ClientErrorReason.INVALID_ENCODING, "'user_id' holds a lone UTF-16"),
        ({"papers": [], "user_id": "u\x00"}, ClientErrorReason.INVALID_ENCODING, r"control character \(U\+0000\)"),
        ({"title": "x", "\udc00": 1}, ClientErrorReason.INVALID_ENCODING, "not Unicode"),
        ({"papers": [{"\ud800": 1}]}, ClientErrorReason.INVALID_ENCODING, "'papers\\[0\\]' holds text that is not"),
        ({"title": "x", "user_id": True}, ClientErrorReason.INVALID_SHAPE, "'user_id' must be a string or an integer"),
        ({"title": math.nan}, ClientErrorReason.INVALID_SHAPE, "'title' must be a string"),
        ([{"title": "x"}, 3], ClientErrorReason.INVALID_SHAPE, r"'papers\[1\]' must be an object"),
        ({"papers": [{"title": "x", "user_id": "u"}]}, ClientErrorReason.INVALID_SHAPE, "unknown field"),
        (math.inf, ClientErrorReason.INVALID_SHAPE, "got a number"),
    ],
)
def test_payloads_that_are_not_papers_name_the_field(payload, reason, message):
    with pytest.raises(InvalidInputError, match=message) as refused:
        papers_and_user(payload)
    assert refused.value.reason == reason
    sendable(refused.value)


def test_a_user_id_number_becomes_its_text_and_a_title_surrogate_is_left_for_paper_texts():
    big = 10 ** (sys.get_int_max_str_digits() - 1)
    assert papers_and_user({"papers": [{"title": "x"}], "user_id": big}) == ([{"title": "x", "abstract": ""}], str(big))
    # Paper texts are judged by clf.serving.inputs.paper_texts, which names the paper and the field.
    assert papers_and_user([{"abstract": "\ud800"}]) == ([{"title": "", "abstract": "\ud800"}], None)


@pytest.mark.parametrize("value", ["cs.CL", "user-7", "Zoë 🙂", "\u202eid", " "])
def test_printable_identifiers_pass_unchanged(value):
    assert check_identifier(value, "user_id") is value


def test_a_content_length_of_latin1_superscripts_is_left_to_the_streaming_limit():
    # Was ValueError (a 500 under any ASGI server that passes the header on): "²".isdigit() is True, int("²") fails.
    request = request_with([(b"content-length", "²".encode("latin-1"))], [b'{"title": "x"}'])
    assert asyncio.run(read_json(request, max_body_bytes=100)) == {"title": "x"}
    with pytest.raises(InvalidInputError, match="over the 10-byte limit") as refused:
        asyncio.run(read_json(request_with([(b"content-length", "²".encode("latin-1"))], [b"[" * 20]), 10))
    assert refused.value.reason == ClientErrorReason.TOO_LARGE and refused.value.status == 413
