"""What every source of papers promises about a `Paper` it returns, as one assertion the fuzz tests share."""

from __future__ import annotations

import json
from datetime import date

from clf.data.paper import Paper


def assert_valid_paper(paper: Paper) -> None:
    """Fails unless `paper` is one the rest of the pipeline can use without a surprise.

    That is: every field has its declared type and holds valid Unicode; the id is non-empty and trimmed; title and
    abstract have their whitespace collapsed; the primary category is a bare name listed first among unique ones;
    dates are empty or ``YYYY-MM-DD``; and the paper survives the JSON Lines round trip the collector saves it by.
    """
    assert isinstance(paper, Paper), paper
    for name in ("arxiv_id", "title", "abstract", "primary_category", "published", "updated"):
        assert isinstance(getattr(paper, name), str), (name, paper)
    assert paper.arxiv_id and paper.arxiv_id == paper.arxiv_id.strip(), paper.arxiv_id
    for name in ("title", "abstract"):
        text = getattr(paper, name)
        assert text == " ".join(text.split()), (name, text)
    assert isinstance(paper.categories, list) and paper.categories, paper
    assert paper.categories[0] == paper.primary_category, paper
    assert len(set(paper.categories)) == len(paper.categories), paper.categories
    assert all(isinstance(c, str) and c.split() == [c] for c in paper.categories), paper.categories
    assert isinstance(paper.authors, list) and all(isinstance(a, str) for a in paper.authors), paper.authors
    for name in ("published", "updated"):
        day = getattr(paper, name)
        assert day == "" or date.fromisoformat(day).isoformat() == day, (name, day)
    # The collector writes papers as UTF-8 JSON (ensure_ascii=False): an unpaired surrogate would fail here.
    line = json.dumps(paper.to_dict(), ensure_ascii=False).encode("utf-8")
    assert Paper.from_dict(json.loads(line)) == paper
    assert paper.to_sample()["label"] == paper.primary_category
