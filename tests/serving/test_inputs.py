"""Tests for clf/serving/inputs.py: for any Unicode and any JSON-like value, `paper_texts` returns texts the model can
take, or refuses the input with the `ClientErrorReason` its flaw calls for.

The promise checked is the service's: a text that passes validation encodes to UTF-8, holds no control character and
none of the invisible format characters `clf.data.cleaning.clean_text` removes, is not empty, and the served model's
tokenizer and forward pass take it. The oracle of each refusal is stated from the input, not from the code.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clf.data.cleaning import model_input_text
from clf.inference import ModelPredictor
from clf.serving.errors import ClientErrorReason, InvalidInputError
from clf.serving.inputs import PAPER_FIELDS, check_unicode, paper_arxiv_ids, paper_texts

MAX_INPUTS, MAX_CHARS = 4, 300
FAST = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LONG = settings(FAST, max_examples=2000)

# What clean_text promises to remove: bidi embeddings, overrides, isolates and marks, zero-width characters, the
# soft hyphen, the Mongolian vowel separator, the BOM, word joiners and invisible operators (and surrogates).
INVISIBLE = frozenset(
    ["\u00ad", "\u061c", "\u180e", "\ufeff"]
    + [chr(code) for code in range(0x200B, 0x2010)]
    + [chr(code) for code in range(0x202A, 0x202F)]
    + [chr(code) for code in range(0x2060, 0x2070)]
)
TRICKY_CHARS = sorted(INVISIBLE) + ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f", "\ud800", "\udbff", "\udc00"]
# LaTeX that clean_text rewrites: what a paper's text can turn into on its way to the model.
LATEX = [
    "$",
    "$$",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
    "{",
    "}",
    "\\emph{",
    "{\\em ",
    "\\textbf{",
    "\\cite{",
    "\\url{",
    "\\href{",
    "http://",
    "www.",
    "~",
    "\\'",
    "\\\\",
    "\\%",
    "\\ldots",
    "\\alpha",
    "...",
    "!!",
]
FRAGMENTS = st.one_of(
    st.text(st.characters(codec=None), max_size=6),  # any code point, lone surrogates included
    st.sampled_from(TRICKY_CHARS),
    st.sampled_from(LATEX),
    # \unicode{x...} names any code point, the impossible ones past U+10FFFF included.
    st.integers(0, 0xFFFFFF).map(lambda code: f"\\unicode{{x{code:x}}}"),
    st.sampled_from(["Graph", "neural", "networks", " ", "."]),
)
TEXT = st.one_of(
    st.text(st.characters(codec=None)),
    st.lists(FRAGMENTS, max_size=12).map("".join),
    # Around the length limit (MAX_CHARS for a paper's fields together).
    st.text(st.characters(codec=None), min_size=MAX_CHARS // 2 - 5, max_size=MAX_CHARS + 5),
)
JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
FIELD = st.one_of(TEXT, TEXT, st.none(), JSON_LIKE)
ARXIV_IDS = ["2401.01234", "2401.01234v2", "0704.0001", "hep-th/9901001", "math.AG/0601001v3", "cs/0112017"]
NOT_ARXIV_IDS = ["2401.123", "2401.01234v0", "2401.01234 ", "HEP-TH/9901001", "hep-th/990100", "arXiv:2401.01234", ""]
ARXIV_ID = st.one_of(st.sampled_from(ARXIV_IDS), st.sampled_from(NOT_ARXIV_IDS), TEXT, JSON_LIKE)
PAPER = st.fixed_dictionaries({}, optional={"title": FIELD, "abstract": FIELD, "text": FIELD, "arxiv_id": ARXIV_ID})
ITEM = st.one_of(PAPER, TEXT, JSON_LIKE, st.builds(lambda paper, key, value: {**paper, key: value}, PAPER, TEXT, FIELD))
INPUTS = st.one_of(
    PAPER,
    TEXT,
    st.lists(ITEM, max_size=MAX_INPUTS + 2),
    st.tuples(PAPER, PAPER),
    JSON_LIKE,
    st.binary(max_size=10),
    st.builds(bytearray, st.binary(max_size=10)),
)


@pytest.fixture(scope="module")
def predictor(tiny_exports):
    """The tiny served model, loaded as the service loads a version: its tokenizer is the one held to the promise."""
    import torch

    # On a shared 2-core machine a 32-wide model waits ~140 ms per forward pass for its second intra-op thread;
    # with one it takes under 1 ms, which is what lets every passing example run through the model.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ModelPredictor(tiny_exports["v1.0.0"], "v1.0.0")
    torch.set_num_threads(threads)


def has_surrogate(value: str) -> bool:
    return any(unicodedata.category(char) == "Cs" for char in value)


def assert_model_ready(text: str) -> None:
    """The promise for a text that passed validation."""
    text.encode("utf-8")
    assert any(char.isalnum() for char in text), f"a text without a letter or digit passed validation: {text!r}"
    assert not [char for char in text if unicodedata.category(char) == "Cc"], f"control character in {text!r}"
    assert not INVISIBLE.intersection(text), f"invisible format character in {text!r}"


def flaws_of(item: Any) -> set[ClientErrorReason]:
    """What is wrong with one paper, from the contract alone (a paper may have several flaws)."""
    if isinstance(item, str):
        fields: dict[str, Any] = {"text": item}
    elif isinstance(item, Mapping):
        if set(item) - {*PAPER_FIELDS, "arxiv_id"}:
            return {ClientErrorReason.INVALID_SHAPE}
        if item.get("arxiv_id") is not None and item["arxiv_id"] not in ARXIV_IDS:
            return {ClientErrorReason.INVALID_SHAPE}  # a random text is no arXiv id, but for one chance in billions
        fields = {key: value for key, value in item.items() if value is not None and key != "arxiv_id"}
    else:
        return {ClientErrorReason.INVALID_SHAPE}
    if not all(isinstance(value, str) for value in fields.values()):
        return {ClientErrorReason.INVALID_SHAPE}
    flaws = set()
    if sum(len(value) for value in fields.values()) > MAX_CHARS:
        flaws.add(ClientErrorReason.TEXT_TOO_LONG)
    if any(has_surrogate(value) for value in fields.values()):
        flaws.add(ClientErrorReason.INVALID_ENCODING)
    cleaned = model_input_text(fields.get("title", ""), fields.get("abstract", ""), fields.get("text"))
    if not any(char.isalnum() for char in cleaned):
        flaws.add(ClientErrorReason.EMPTY_TEXT)
    return flaws


def check_paper_texts(inputs: Any, predictor: ModelPredictor | None = None) -> None:
    items = [inputs] if isinstance(inputs, str | Mapping) else inputs
    try:
        texts = paper_texts(inputs, max_inputs=MAX_INPUTS, max_text_chars=MAX_CHARS)
    except InvalidInputError as err:
        assert str(err) and 400 <= err.status < 500
        if not isinstance(items, list | tuple):
            assert err.reason == ClientErrorReason.INVALID_SHAPE
        elif not items:
            assert err.reason == ClientErrorReason.NO_PAPERS
        elif len(items) > MAX_INPUTS:
            assert err.reason == ClientErrorReason.TOO_MANY_PAPERS
        else:
            # The first paper with a flaw is named, and the reason is one of its flaws.
            first = next(index for index, item in enumerate(items) if flaws_of(item))
            assert str(err).startswith(f"paper {first}: "), err
            assert err.reason in flaws_of(items[first]), (items[first], err)
        return
    assert isinstance(items, list | tuple) and 0 < len(items) <= MAX_INPUTS
    assert not any(flaws_of(item) for item in items), "a flawed paper passed validation"
    assert len(texts) == len(items)
    for text in texts:
        assert_model_ready(text)
    if predictor is not None:
        predictor.tokenizer(texts, truncation=True, max_length=64)  # as the predictor calls it
        records = predictor.predict_texts(texts)
        assert [record.label in predictor.labels for record in records] == [True] * len(texts)


@FAST
@given(inputs=INPUTS)
def test_any_input_gives_model_ready_texts_or_the_reason_it_is_refused(inputs, predictor):
    check_paper_texts(inputs, predictor)


@pytest.mark.slow
@LONG
@given(inputs=INPUTS)
def test_any_input_gives_model_ready_texts_or_the_reason_it_is_refused_long_run(inputs, predictor):
    check_paper_texts(inputs, predictor)


@FAST
@given(title=TEXT, abstract=TEXT)
def test_any_title_and_abstract_that_pass_reach_the_tokenizer_clean(title, abstract, predictor):
    check_paper_texts({"title": title, "abstract": abstract}, predictor)


@settings(FAST, max_examples=500)
@given(text=st.text(st.characters(codec=None), min_size=1))
def test_any_unicode_string_passes_unless_it_holds_a_lone_surrogate(text):
    if has_surrogate(text):
        with pytest.raises(InvalidInputError, match="lone UTF-16 surrogate") as refused:
            check_unicode(text, "'text'")
        assert refused.value.reason == ClientErrorReason.INVALID_ENCODING
    else:
        check_unicode(text, "'text'")
    check_paper_texts(text)


# ------------------------------------------------------------------------------------------------ named cases


def texts(inputs: Any) -> list[str]:
    return paper_texts(inputs, max_inputs=MAX_INPUTS, max_text_chars=MAX_CHARS)


def test_a_paper_a_text_and_a_list_give_one_cleaned_text_each():
    assert texts({"title": "Attention.", "abstract": "We \\emph{propose} it~\\cite{x}."}) == [
        "Attention. We propose it."
    ]
    assert texts("Graph \u200bneural\x00 networks") == ["Graph neural networks"]
    assert texts([{"text": "a joined text", "title": "ignored"}, {"title": "Only a title"}]) == [
        "a joined text",
        "Only a title",
    ]
    assert texts({"title": "Kept", "abstract": None, "text": None}) == ["Kept"]


@pytest.mark.parametrize(
    ("inputs", "reason", "message"),
    [
        (
            {"title": "ab", "abstract": "c \ud800"},
            ClientErrorReason.INVALID_ENCODING,
            "paper 0: 'abstract' holds a lone",
        ),
        ([{"title": "ok"}, "\udfff"], ClientErrorReason.INVALID_ENCODING, r"paper 1: 'text' holds .* \(U\+DFFF\)"),
        ({"title": "t" * 200, "abstract": "a" * 101}, ClientErrorReason.TEXT_TOO_LONG, "301 characters"),
        ([], ClientErrorReason.NO_PAPERS, "no papers"),
        ({"title": "\u0301\u0308", "abstract": "\u0327 \u20dd"}, ClientErrorReason.EMPTY_TEXT, "no letter or digit"),
        ("... !? --", ClientErrorReason.EMPTY_TEXT, "no letter or digit"),
        (["x"] * (MAX_INPUTS + 1), ClientErrorReason.TOO_MANY_PAPERS, f"send at most {MAX_INPUTS}"),
        ({"title": "\u202e\u200b\ufeff", "abstract": "\x00\x07 $x^2 + y$"}, ClientErrorReason.EMPTY_TEXT, "empty text"),
        ({"title": 3}, ClientErrorReason.INVALID_SHAPE, "'title' must be a string, got int"),
        ({"titel": "x"}, ClientErrorReason.INVALID_SHAPE, r"unknown fields \['titel'\]"),
        ([{"title": "x"}, 4.5], ClientErrorReason.INVALID_SHAPE, "paper 1: expected an object"),
        (b"bytes", ClientErrorReason.INVALID_SHAPE, "send a paper"),
        (7, ClientErrorReason.INVALID_SHAPE, "send a paper"),
    ],
)
def test_each_refusal_names_the_paper_and_its_reason(inputs, reason, message):
    with pytest.raises(InvalidInputError, match=message) as refused:
        texts(inputs)
    assert refused.value.reason == reason and refused.value.status == 422


@pytest.mark.parametrize("arxiv_id", ARXIV_IDS)
def test_a_paper_may_carry_its_arxiv_id_which_is_not_model_input(arxiv_id):
    paper = {"title": "Attention", "abstract": "We propose it.", "arxiv_id": arxiv_id}
    assert texts(paper) == texts({"title": "Attention", "abstract": "We propose it."})
    assert paper_arxiv_ids([paper, "a text", {"title": "x"}]) == (arxiv_id, None, None)


@pytest.mark.parametrize("arxiv_id", [*NOT_ARXIV_IDS, 2401.01234, ["2401.01234"], "2401.01234\n"])
def test_a_malformed_arxiv_id_is_refused_naming_the_field_and_the_accepted_forms(arxiv_id):
    with pytest.raises(
        InvalidInputError, match="paper 1: 'arxiv_id' is .*not an arXiv id; send a new-style"
    ) as refused:
        texts([{"title": "ok"}, {"title": "x", "arxiv_id": arxiv_id}])
    assert refused.value.status == 422 and "hep-th/9901001" in str(refused.value)


def test_the_length_limit_counts_the_fields_as_sent():
    assert texts({"title": "t" * 150, "abstract": "a" * 150})  # exactly MAX_CHARS
    with pytest.raises(InvalidInputError) as refused:
        texts({"text": "x" * (MAX_CHARS + 1)})
    assert refused.value.reason == ClientErrorReason.TEXT_TOO_LONG


@pytest.mark.parametrize(
    ("paper", "expected"),
    [
        # Each was a bug: \unicode{x...} decoded after cleaning, so what it named reached the model as it was.
        ({"title": "Graphs \\unicode{xd800}"}, ["Graphs"]),  # a lone surrogate: the tokenizer raised TypeError
        ({"title": "Graphs \\unicode{x110000}"}, ["Graphs"]),  # past U+10FFFF: chr() raised ValueError
        ({"title": "Graphs\\unicode{x0}x \\unicode{x202e}y"}, ["Graphs x y"]),  # NUL and RLO reached the model
        ({"title": "Caf\\unicode{xe9} \\unicode{x1F600}"}, ["Café 😀"]),  # real characters still decode
    ],
)
def test_latex_unicode_escapes_are_cleaned_like_the_characters_they_name(paper, expected, predictor):
    assert texts(paper) == expected
    predictor.predict_texts(expected)


def test_a_paper_of_only_escaped_invisible_characters_is_empty():
    with pytest.raises(InvalidInputError) as refused:
        texts({"title": "\\unicode{xd800}\\unicode{x200b}", "abstract": "\\unicode{x7}"})
    assert refused.value.reason == ClientErrorReason.EMPTY_TEXT
