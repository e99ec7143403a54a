"""Shared fixtures: the real arXiv data in ../shared, and tiny offline tokenizers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.postgres import PostgresServer
from tests.helpers.tiny import build_tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def load_shared_papers(limit: int | None = None, categories: set[str] | None = None) -> list[dict[str, Any]]:
    """Reads real papers from ../shared/data/arxiv/papers.jsonl.gz (optionally the first `limit` of some classes)."""
    papers = []
    with gzip.open(SHARED_DATA / "arxiv" / "papers.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if categories is None or record["primary"] in categories:
                papers.append(record)
                if limit is not None and len(papers) >= limit:
                    break
    return papers


@pytest.fixture(scope="session")
def shared_papers_path() -> Path:
    """The shared snapshot of 26,222 real arXiv papers."""
    path = SHARED_DATA / "arxiv" / "papers.jsonl.gz"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the tests need the shared data folder beside the repository")
    return path


@pytest.fixture(scope="session")
def atom_dir() -> Path:
    """Recorded Atom responses of the arXiv API."""
    return SHARED_DATA / "atom"


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,000-token uncased WordPiece tokenizer trained on 400 real abstracts, saved as a local directory."""
    texts = [p["title"] + ". " + p["abstract"] for p in load_shared_papers(limit=400)]
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tokenizer"), texts)


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real exports of tiny random DistilBERTs with different weights, keyed by the version they get."""
    from tests.helpers.exports import build_export

    root = tmp_path_factory.mktemp("tiny_exports")
    return {
        "v1.0.0": build_export(root / "a" / "export", seed=1, accuracy=0.5),
        "v1.1.0": build_export(root / "b" / "export", seed=2, accuracy=0.6),
    }


@pytest.fixture
def tiny_registry(tmp_path: Path, tiny_exports: dict[str, Path]):
    """A registry holding v1.0.0 (in production) and v1.1.0."""
    from tests.helpers.exports import build_registry

    return build_registry(tmp_path / "registry", tiny_exports, production="v1.0.0")


@pytest.fixture(scope="session")
def trained_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pretrained MiniLM with a head fitted on real cv/db/ro papers (diverse, ~85 % accurate predictions)."""
    from tests.helpers.exports import build_trained_export

    return build_trained_export(tmp_path_factory.mktemp("trained_export") / "export")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (experiments and deployment stores); each test makes its own database."""
    with PostgresServer() as server:
        yield server
