"""The paper record every part of the data pipeline speaks."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_VERSION_SUFFIX = re.compile(r"v\d+$")


def strip_version(arxiv_id: str) -> str:
    """`2104.12255v1` → `2104.12255`; `quant-ph/0201082v1` → `quant-ph/0201082`.

    Args:
        arxiv_id: an arXiv id, with or without its version suffix.

    Returns:
        The id without its ``vN`` suffix (and without surrounding whitespace).
    """
    return _VERSION_SUFFIX.sub("", arxiv_id.strip())


@dataclass(frozen=True)
class Paper:
    """One arXiv paper's metadata, as the collector saves it (one JSON line per paper).

    Attributes:
        arxiv_id: the identifier without version suffix (`2506.01234`, `cs/0102003`).
        title: the title as arXiv gives it (LaTeX and all).
        abstract: the abstract as arXiv gives it.
        authors: author names in order.
        categories: every listed category, primary first.
        primary_category: the primary category, the classification label.
        published: submission date, `YYYY-MM-DD`.
        updated: date of the latest version, `YYYY-MM-DD`.
    """

    arxiv_id: str
    title: str
    abstract: str
    primary_category: str
    categories: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    published: str = ""
    updated: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form saved in the raw JSON Lines files.

        Returns:
            The paper's fields as a dict, ready for `json.dumps`.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Paper:
        """Rebuilds a paper from its saved form.

        Args:
            record: a dict written by `to_dict`; ``categories``, ``authors``, ``published`` and ``updated`` may
                be missing.

        Returns:
            The paper; missing categories default to the primary one.

        Raises:
            KeyError: naming the first missing required field.
        """
        for name in ("arxiv_id", "title", "abstract", "primary_category"):
            if name not in record:
                raise KeyError(name)
        return cls(
            arxiv_id=record["arxiv_id"],
            title=record["title"],
            abstract=record["abstract"],
            primary_category=record["primary_category"],
            categories=list(record.get("categories") or [record["primary_category"]]),
            authors=list(record.get("authors") or []),
            published=record.get("published", ""),
            updated=record.get("updated", ""),
        )

    def to_sample(self) -> dict[str, Any]:
        """The flattened classification sample: `text = title + ". " + abstract`, `label` = primary category.

        Returns:
            The sample dict with ``arxiv_id``, ``text``, ``title``, ``abstract``, ``label``, ``categories`` and
            ``published``.
        """
        title = self.title.strip().rstrip(".")
        return {
            "arxiv_id": self.arxiv_id,
            "text": f"{title}. {self.abstract.strip()}",
            "title": self.title,
            "abstract": self.abstract,
            "label": self.primary_category,
            "categories": list(self.categories),
            "published": self.published,
        }
