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

