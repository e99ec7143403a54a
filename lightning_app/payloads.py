"""Request bodies, read defensively: size-limited, strict UTF-8, any JSON depth, validated against the contract.

Whatever a client sends, reading it ends in a value of the contract (`lightning_app.schemas`) or in an
`InvalidInputError` with its reason: ``too_large`` (413), ``invalid_encoding`` (bytes that are not UTF-8, a lone
surrogate escape such as ``"\\ud800"``, a control character in an id or a label), ``too_deep`` (JSON nested past what
the parser can take), ``invalid_json``, ``invalid_shape``. Nothing reaches a model or a database before that.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request

from clf.serving.errors import ClientErrorReason, InvalidInputError
from clf.serving.inputs import ARXIV_ID_FIELD, ARXIV_ID_FORMS, check_unicode
from lightning_app.schemas import PaperBatch, PaperInput, PaperWithUser

Model = TypeVar("Model", bound=BaseModel)

_PAPERS = TypeAdapter(list[PaperInput])
_UNION_MEMBERS = {"str", "int", "none"}
_EXAMPLE = '{"title": "...", "abstract": "..."}'
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


async def read_json(request: Request, max_body_bytes: int) -> Any:
    """The request body as a JSON value, read at most `max_body_bytes` into memory.

    Args:
        request: the incoming request.
        max_body_bytes: larger bodies are refused (the declared length first, then as they stream).

    Returns:
        The parsed JSON value.

    Raises:
        InvalidInputError: for a body that is too large, empty, not UTF-8, not JSON, or nested too deep.
    """
    declared = request.headers.get("content-length")
    # isdigit() alone takes Latin-1 superscripts ("²"), which int() refuses; a length that is not ASCII digits is
    # left to the streaming check below.
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > max_body_bytes:
        raise _too_large(int(declared), max_body_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise _too_large(len(body), max_body_bytes)
    return parse_json(bytes(body))


def parse_json(body: bytes) -> Any:
    """Parses a request body: UTF-8 (a BOM is allowed), then JSON.

    Args:
        body: the raw bytes.

    Returns:
        The JSON value.

    Raises:
        InvalidInputError: for an empty body, bytes that are not UTF-8, text that is not JSON, or JSON nested too
            deep to parse.

    >>> parse_json(b'{"title": "x"}')
    {'title': 'x'}
    >>> parse_json(b"[" * 100_000)
    Traceback (most recent call last):
    ...
    clf.serving.errors.InvalidInputError: the JSON is nested too deeply; send a paper or a list of papers
    """
    if not body.strip():
        raise InvalidInputError(f"empty body; send JSON such as {_EXAMPLE}", ClientErrorReason.INVALID_JSON)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidInputError(
            f"the body is not UTF-8 (byte 0x{body[err.start]:02x} at offset {err.start}); send JSON encoded as UTF-8",
            ClientErrorReason.INVALID_ENCODING,
        ) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidInputError(
            "the JSON is nested too deeply; send a paper or a list of papers",
            ClientErrorReason.TOO_DEEP,
        ) from None
    except ValueError as err:  # JSONDecodeError, and integers longer than Python reads
        raise InvalidInputError(
            f"the body is not valid JSON ({err}); send {_EXAMPLE}", ClientErrorReason.INVALID_JSON
        ) from None


def papers_and_user(payload: Any) -> tuple[list[dict[str, str]], str | None]:
    """Validates a ``/predict`` body and splits it into the papers and the user id.

    Args:
        payload: the parsed body: a paper, a list of papers, or ``{"papers": [...], "user_id": ...}``.

    Returns:
        The papers (their given fields only) and the user id as text (None when not given).

    Raises:
        InvalidInputError: naming the field at fault.
    """
    papers: list[PaperInput]
    if isinstance(payload, dict) and "papers" in payload:
        batch = validate(PaperBatch, payload)
        papers, user_id = batch.papers, batch.user_id
    elif isinstance(payload, dict):
        single = validate(PaperWithUser, payload)
        papers, user_id = [single], single.user_id
    elif isinstance(payload, list):
        try:
            papers, user_id = _PAPERS.validate_python(payload), None
        except ValidationError as err:
            raise _invalid(err) from None
    else:
        raise InvalidInputError(
            f"expected a JSON object or list, got {_json_type(payload)}; send {_EXAMPLE} or a list of them"
        )
    fields = [
        paper.model_dump(include={"title", "abstract", "text", "arxiv_id"}, exclude_none=True) for paper in papers
    ]
    return fields, None if user_id is None else check_identifier(str(user_id), "user_id")


def check_identifier(value: str, field: str) -> str:
    """`value`, if it is text an id or a label can be: no lone surrogate and no control character (NUL included).

    PaperInput texts are cleaned instead (`clf.data.cleaning.clean_text`); an id is stored and compared as sent, and
    neither a tokenizer nor a database takes a surrogate (PostgreSQL refuses NUL too).

    Args:
        value: the client's string.
        field: its name in the body.

    Returns:
        `value`, unchanged.

    Raises:
        InvalidInputError: `INVALID_ENCODING`, naming the field and the character.
    """
    check_unicode(value, f"'{field}'")
    control = _CONTROL.search(value)
    if control is not None:
        raise InvalidInputError(
            f"'{field}' holds a control character (U+{ord(control.group()):04X}) at character {control.start()}; "
            "send printable text",
            ClientErrorReason.INVALID_ENCODING,
        )
    return value


def validate(model: type[Model], payload: Any) -> Model:
    """`payload` as `model`, or an `InvalidInputError` that names the first field at fault.

    Args:
        model: the contract's model.
        payload: the parsed body.

    Returns:
        The validated model.

    Raises:
        InvalidInputError: naming the field and what it should be.
    """
    if not isinstance(payload, dict):
        raise InvalidInputError(f"expected a JSON object, got {_json_type(payload)}")
    try:
        return model.model_validate(payload)
    except ValidationError as err:
        raise _invalid(err) from None


def _invalid(err: ValidationError) -> InvalidInputError:
    problem = err.errors(include_url=False, include_input=False)[0]
    # A union's members appear in the location ('user_id', 'str'): the field is what the client wrote.
    parts = [part for part in problem["loc"] if isinstance(part, int) or part not in _UNION_MEMBERS]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".") or "the body"
    if where.startswith("["):
        where = "papers" + where
    kind = problem["type"]
    if kind == "string_unicode":  # a lone surrogate in a field name, or in a length-limited field
        subject = where if where == "the body" else f"'{where}'"
        return InvalidInputError(
            f"{subject} holds text that is not Unicode (a lone UTF-16 surrogate such as \\ud800); send valid Unicode",
            ClientErrorReason.INVALID_ENCODING,
        )
    if len(parts) < len(problem["loc"]):
        message = f"'{where}' must be a string or an integer"
    elif kind == "extra_forbidden":
        message = f"unknown field '{where}'; a paper has 'title' and 'abstract' (or 'text'), and optionally 'arxiv_id'"
    elif kind == "string_pattern_mismatch" and where.endswith(ARXIV_ID_FIELD):
        message = f"'{where}' is not an arXiv id; send {ARXIV_ID_FORMS}"
    elif kind == "missing":
        message = f"'{where}' is missing"
    elif kind.endswith("_type"):
        expected = kind.removesuffix("_type").replace("model", "object").replace("dict", "object")
        message = f"'{where}' must be {'an' if expected[0] in 'aeiou' else 'a'} {expected}"
    else:
        message = f"'{where}': {problem['msg']}"
    return InvalidInputError(message)


def _json_type(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _too_large(size: int, limit: int) -> InvalidInputError:
    return InvalidInputError(
        f"request body of {size} bytes is over the {limit}-byte limit; send fewer or shorter papers",
        ClientErrorReason.TOO_LARGE,
        status=413,
    )
