"""Text cleaning for arXiv titles and abstracts: LaTeX, math and URLs out, prose intact.

>>> clean_text(r"\\emph{Fast} $k$-NN search in C++, e.g. 3.5\\% faster~\\cite{x} (code: \\url{https://x.org}).")
'Fast k-NN search in C++, e.g. 3.5% faster (code:).'
"""

from __future__ import annotations

import re
import sys

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from clf.io import sha256_of_strings

# Text cleaning. Order matters: escapes are parked in private-use characters so that `\$` is not taken for math
# and `\{` not for a group; LaTeX link commands go before bare URLs, whose pattern would eat their braces; a tie `~`
# becomes a space while commands and math still stand beside it; math goes before commands so that
# `$\mathcal{H}$` disappears whole instead of leaving an `H`.
_ESCAPES = {"%": "\ue000", "&": "\ue001", "_": "\ue002", "#": "\ue003", "$": "\ue004", "{": "\ue005", "}": "\ue006"}
_RESTORE = str.maketrans({v: k for k, v in _ESCAPES.items()})
_ESCAPED = re.compile(r"\\([%&_#${}])")
_LINE_BREAK = re.compile(r"\\\\")
_UNICODE = re.compile(r"\\unicode\{x([0-9a-fA-F]{2,6})\}")
_ACCENT_BRACED = re.compile(r"\{\\(?:['\"`^~=.]|[cvuHkr]\s)\s*([A-Za-z])\}")
_ACCENT_ARG = re.compile(r"\\(?:['\"`^~=.]|[cvuHkr])\s*\{([A-Za-z])\}")
_ACCENT_BARE = re.compile(r"\\['\"`^~=.]([A-Za-z])")
_HREF = re.compile(r"\\href\s*\{[^{}]*\}\s*\{([^{}]*)\}")
_LINK = re.compile(r"\\(?:url|href)\s*\{[^{}]*\}")
_URL = re.compile(r"(?:(?:https?|ftp)://|\bwww\.)\S+?(?=[.,;:!?'\")\]}]*(?:\s|$))")
# A `\(` or `\[` without its closer would make a lazy `.*?` scan to the end of the text from every opener, quadratic in
# the length (0.75 s for one 20,000-character paper of openers, with the event loop blocked): a span stops at the
# next opener of its kind and after 2,000 characters, which no shared abstract's math comes near.
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$|\\\[(?:(?!\\\[).){0,2000}?\\\]", re.DOTALL)
_INLINE_MATH = re.compile(r"\$([^$]*)\$|\\\(((?:(?!\\\().){0,2000}?)\\\)", re.DOTALL)
_SIMPLE_MATH = re.compile(r"(?:[^\W_]+(?:[.,][0-9]+)*)?%?|[-\u2013\u2014]{1,3}")
_SWITCH = re.compile(r"\{\\(?:em|bf|it|rm|tt|sc|sf|sl|cal|ttfamily|bfseries|itshape|scshape|upshape)\b\s*([^{}]*)\}")
_COMMAND = re.compile(r"\\([a-zA-Z]+)\*?(?:\[[^\[\]{}]*\])?((?:\s*\{[^{}]*\})+)")
_BARE_COMMAND = re.compile(r"\\([a-zA-Z]+)\*?")
_STRAY = re.compile(r"\\[^\w\s]?")
_TIE = re.compile(r"(?<=\S)~(?=\S)")
_REPEATS = re.compile(r"([!?,;])\1+")
_ELLIPSIS = re.compile(r"\.{4,}")
_EMPTY_BRACKETS = re.compile(r"(?<!\S)(?:\(\s*[,;:]?\s*\)|\[\s*[,;:]?\s*\])")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,;:!?]|\.(?!\.))(?=\s|$)")
_WHITESPACE = re.compile(r"\s+")
# Characters that are not prose: C0/C1 controls (NUL included) become spaces; format characters that only steer
# rendering (bidi embeddings and isolates, zero-width joiners, soft hyphens, the BOM) and lone UTF-16 surrogates,
# which are not text at all and which tokenizers refuse, go.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")
_SPACE_INSIDE_BRACKETS = re.compile(r"(?<=[(\[]) | (?=[)\]])")

# Formatting commands whose argument is prose; any other command with arguments goes, arguments and all.
_KEEP_TEXT = frozenset(
    ("textbf", "emph", "textit", "text", "textrm", "textsf", "texttt", "textsc", "textsl", "textup", "textnormal")
    + ("mathrm", "mathit", "mathbf", "mathsf", "mathtt", "boldsymbol", "bm", "underline", "uppercase", "lowercase")
    + ("em", "bf", "it", "rm", "tt", "sc", "sf", "sl", "textcolor", "colorbox", "mbox", "hbox", "footnote")
)
_WORDS = {"ldots": "...", "dots": "...", "cdots": "...", "LaTeX": "LaTeX", "TeX": "TeX"}

_WORD = re.compile(r"[^\W\d_]+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def normalised_title_hash(title: str) -> str:
    """The sha256 of a title lowercased with only `[a-z0-9]` kept, so case and punctuation do not matter.

    Args:
        title: a paper title as collected.

    Returns:
        The hex digest, or "" when nothing of the title is left (such titles are never treated as duplicates).
    """
    key = _NOT_ALNUM.sub("", title.lower())
    return sha256_of_strings([key]) if key else ""


def english_ratio(text: str) -> float:
    """The share of alphabetic word tokens that are English stop words (0.0 for text without words).

    Args:
        text: the text to measure (title and abstract).

    Returns:
        A share in [0, 1]; low values flag abstracts that are not in English.
    """
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    return sum(word in ENGLISH_STOP_WORDS for word in words) / len(words)


def clean_text(text: str) -> str:
    """Strips URLs, LaTeX markup and non-trivial math from arXiv text, keeping the prose intact.

    Formatting commands (`\\textbf{x}`, `\\emph{x}`, `{\\em x}`) keep their text, references (`\\cite{x}`,
    `\\ref{x}`, `\\url{x}`) go, escapes (`\\%`) and accents (`\\'e`) become plain characters, math that is a
    single token (`$k$`, `$100$`, `$95\\%$`) keeps it and other math goes, a LaTeX tie `~` becomes a space,
    runs of `!?,;` and of four or more dots shrink, control characters become spaces, invisible format characters
    (bidi controls, zero-width spaces, soft hyphens) and lone surrogates go, and whitespace collapses.

    Args:
        text: a title or abstract as arXiv serves it.

    Returns:
        The cleaned text, stripped.
    """
    text = _INVISIBLE.sub("", _CONTROL.sub(" ", text))
    text = _LINE_BREAK.sub(" ", text)
    text = _ESCAPED.sub(lambda m: _ESCAPES[m.group(1)], text)
    text = _UNICODE.sub(_unicode_char, text)
    text = _ACCENT_BRACED.sub(r"\1", text)
    text = _ACCENT_ARG.sub(r"\1", text)
    text = _ACCENT_BARE.sub(r"\1", text)
    text = _HREF.sub(r"\1", text)
    text = _LINK.sub(" ", text)
    text = _URL.sub("", text)
    text = _TIE.sub(" ", text)
    text = _DISPLAY_MATH.sub(" ", text)
    text = _INLINE_MATH.sub(_replace_math, text)
    # Each pass resolves the innermost groups, so `\textbf{\emph{x}}` takes two.
    for _ in range(10):
        before = text
        text = _COMMAND.sub(_replace_command, _SWITCH.sub(r"\1", text))
        if text == before:
            break
    text = _BARE_COMMAND.sub(lambda m: _WORDS.get(m.group(1), " "), text)
    text = _STRAY.sub(" ", text)
    text = text.replace("{", "").replace("}", "").translate(_RESTORE)
    text = _ELLIPSIS.sub("...", _REPEATS.sub(r"\1", text))
    text = _EMPTY_BRACKETS.sub(" ", text)
    text = _WHITESPACE.sub(" ", text)
    text = _SPACE_INSIDE_BRACKETS.sub("", text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text).strip()


def _unicode_char(match: re.Match[str]) -> str:
    # `\unicode{x...}` can name any code point, so its character is cleaned like a raw one: a control becomes a
    # space, an invisible one or a surrogate goes, and a number past U+10FFFF (which `chr` refuses) is no character.
    code = int(match.group(1), 16)
    return _INVISIBLE.sub("", _CONTROL.sub(" ", chr(code))) if code <= sys.maxunicode else " "


def _replace_math(match: re.Match[str]) -> str:
    body = match.group(1) if match.group(1) is not None else match.group(2)
    body = body.translate(_RESTORE).strip()
    return body if body and _SIMPLE_MATH.fullmatch(body) else " "


def _replace_command(match: re.Match[str]) -> str:
    name, args = match.group(1), match.group(2)
    if name in _KEEP_TEXT:
        kept = args[args.rindex("{") + 1 : -1]
        # A footnote is an aside, not part of the word it hangs on.
        return f" {kept} " if name == "footnote" else kept
    return _WORDS.get(name, " ")


def model_input_text(title: str = "", abstract: str = "", text: str | None = None) -> str:
    """The text a model sees for one paper, built as the preprocessor builds training samples.

    Training, ``clf predict`` and the HTTP service all go through here, so a paper is classified from the same
    cleaned ``title. abstract`` it would have been trained on.

    Args:
        title: the title, raw (LaTeX and all).
        abstract: the abstract, raw.
        text: an already-joined text; used instead of title and abstract when given.

    Returns:
        The cleaned text; empty when nothing usable is left.

    >>> model_input_text("Attention Is All You Need.", "We propose the Transformer,  see https://example.org.")
    'Attention Is All You Need. We propose the Transformer, see.'
    """
    if text:
        return clean_text(text)
    head = clean_text(title or "").rstrip(".")
    body = clean_text(abstract or "")
    return f"{head}. {body}" if head and body else head or body
