"""Client input, checked before it reaches a model: papers in, cleaned model texts out, or a named client error.

Everything a client sends passes through `paper_texts` before it is queued, so nothing a client can send reaches
the tokenizer in a form that makes the model fail: lone UTF-16 surrogates are refused (they are not text), control
and invisible format characters are cleaned away by the same `model_input_text` as training data, and shape, count
and size are checked. Each refusal is an `InvalidInputError` naming the paper, the field and the fix, with a
`ClientErrorReason`.

>>> paper_texts({"title": "Attention", "abstract": "We propose\\u202e it."}, max_inputs=4, max_text_chars=100)
['Attention. We propose it.']
>>> paper_texts({"title": "ab", "abstract": "c \\ud800 d"}, max_inputs=4, max_text_chars=100)
Traceback (most recent call last):
...
clf.serving.errors.InvalidInputError: paper 0: 'abstract' holds a lone UTF-16 surrogate (U+D800) at character 2; \
send valid Unicode (pair each surrogate or drop it)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from clf.data.cleaning import model_input_text
from clf.serving.errors import ClientErrorReason, InvalidInputError

PAPER_FIELDS = ("title", "abstract", "text")
"""The fields of a paper: ``title`` and ``abstract``, or an already joined ``text``."""

ARXIV_ID_FIELD = "arxiv_id"
"""A paper's optional arXiv id: kept with its answer so that its true category, once arXiv lists it, can be joined."""

ARXIV_ID_FORMS = "a new-style id such as '2401.01234' or '2401.01234v2', or an old-style one such as 'hep-th/9901001'"
"""The accepted spellings of an arXiv id, as error messages name them."""

ARXIV_ID_PATTERN = r"^(?:[0-9]{4}\.[0-9]{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/[0-9]{7})(?:v[1-9][0-9]*)?$"
"""An arXiv id as a regular expression (what the HTTP schema publishes)."""

_ARXIV_ID = re.compile(ARXIV_ID_PATTERN)

Input = str | Mapping[str, Any]
"""One paper: ``{"title", "abstract"}``, ``{"text"}``, or a plain text."""


def paper_texts(inputs: Input | Sequence[Input], *, max_inputs: int, max_text_chars: int) -> list[str]:
    """The cleaned model input of each paper, validated.

    Args:
        inputs: a paper (``{"title", "abstract"}`` or ``{"text"}``), a plain text, or a list of them.
        max_inputs: most papers in one request.
        max_text_chars: most characters in one paper's fields together.

    Returns:
        One model input text per paper, in order.

    Raises:
        InvalidInputError: naming the paper and what is wrong with it, with its `ClientErrorReason`.
    """
    items = [inputs] if isinstance(inputs, str | Mapping) else inputs
    if not isinstance(items, Sequence) or isinstance(items, bytes | bytearray):
        raise InvalidInputError("send a paper {'title': ..., 'abstract': ...}, a text, or a list of them")
    if not items:
        raise InvalidInputError(
            "the request holds no papers; send at least one {'title', 'abstract'}", ClientErrorReason.NO_PAPERS
        )
    if len(items) > max_inputs:
        raise InvalidInputError(
            f"{len(items)} papers in one request; send at most {max_inputs}", ClientErrorReason.TOO_MANY_PAPERS
        )
    return [_text_of(item, f"paper {index}", max_text_chars) for index, item in enumerate(items)]


def paper_arxiv_ids(inputs: Input | Sequence[Input]) -> tuple[str | None, ...]:
    """The arXiv id each paper carries (None where it has none), for papers `paper_texts` accepted.

    Args:
        inputs: what `paper_texts` validated.

    Returns:
        One id or None per paper, as sent.
    """
    items = [inputs] if isinstance(inputs, str | Mapping) else inputs
    return tuple(item.get(ARXIV_ID_FIELD) if isinstance(item, Mapping) else None for item in items)


def check_arxiv_id(value: Any, field: str = ARXIV_ID_FIELD) -> str:
    """`value` if it is an arXiv id (new style ``2401.01234``, old style ``hep-th/9901001``, either with ``vN``).

    Args:
        value: what the client sent.
        field: how the error names it.

    Returns:
        `value`, unchanged.

    Raises:
        InvalidInputError: naming the field and the accepted forms.
    """
    if not isinstance(value, str) or _ARXIV_ID.fullmatch(value) is None:
        shown = repr(value)[:80] if isinstance(value, str) else f"of type {type(value).__name__}"
        raise InvalidInputError(f"{field} is {shown}, not an arXiv id; send {ARXIV_ID_FORMS}")
    return value


def _text_of(item: Any, where: str, max_text_chars: int) -> str:
    if isinstance(item, str):
        fields = {"text": item}
    elif isinstance(item, Mapping):
        unknown = sorted(str(key) for key in item if key not in PAPER_FIELDS and key != ARXIV_ID_FIELD)
        if unknown:
            raise InvalidInputError(
                f"{where}: unknown fields {unknown}; a paper has 'title' and 'abstract' (or 'text'), and optionally "
                f"'{ARXIV_ID_FIELD}'"
            )
        if item.get(ARXIV_ID_FIELD) is not None:
            check_arxiv_id(item[ARXIV_ID_FIELD], f"{where}: '{ARXIV_ID_FIELD}'")
        fields = {key: item[key] for key in PAPER_FIELDS if item.get(key) is not None}
    else:
        raise InvalidInputError(f"{where}: expected an object with 'title' and 'abstract', got {type(item).__name__}")
    for key, value in fields.items():
        if not isinstance(value, str):
            raise InvalidInputError(f"{where}: '{key}' must be a string, got {type(value).__name__}")
    length = sum(len(value) for value in fields.values())
    if length > max_text_chars:
        raise InvalidInputError(
            f"{where}: {length} characters; title + abstract may hold at most {max_text_chars}",
            ClientErrorReason.TEXT_TOO_LONG,
        )
    for key, value in fields.items():
        check_unicode(value, f"{where}: '{key}'")
    text = model_input_text(fields.get("title", ""), fields.get("abstract", ""), fields.get("text"))
    if not has_words(text):
        raise InvalidInputError(
            f"{where}: empty text once cleaned (no letter or digit); give a 'title' and 'abstract' with words",
            ClientErrorReason.EMPTY_TEXT,
        )
    return text


def has_words(text: str) -> bool:
    """Whether `text` holds something to classify: a letter or a digit. A text of spaces, combining marks or
    punctuation alone tokenizes to nothing (uncased tokenizers strip the marks), and a model would answer it anyway.

    Args:
        text: a cleaned model input text.

    Returns:
        True when one of its characters is a letter or a digit.
    """
    return any(char.isalnum() for char in text)


def check_unicode(value: str, field: str) -> None:
    """Refuses a lone surrogate: JSON can carry one (``"\\ud800"``) but it is not a character, and no UTF-8 holds it.

    Args:
        value: a string the client sent.
        field: how the error names it (``paper 0: 'abstract'``, ``'user_id'``).

    Raises:
        InvalidInputError: `INVALID_ENCODING`, naming the surrogate and where it is.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInputError(
            f"{field} holds a lone UTF-16 surrogate (U+{ord(value[err.start]):04X}) at character {err.start}; send "
            "valid Unicode (pair each surrogate or drop it)",
            ClientErrorReason.INVALID_ENCODING,
        ) from None
