"""True labels from files: arXiv papers as JSON Lines (``.gz`` too), one file or every file of a collection run.

    read_labels(Path("../shared/data/arxiv/new_papers.jsonl.gz"))   # [("2603.17893", "cs.SE"), ...]

A line names its paper by ``id`` (or ``arxiv_id``, as the collector writes it) and its true category by
``primary`` (or ``label``); other fields are ignored. Every line is checked before anything is returned, so a bad
file stores nothing.
"""

from __future__ import annotations

from pathlib import Path

from clf.io import DataFileError, read_jsonl

ID_FIELDS = ("id", "arxiv_id")
"""The fields a line may name its paper by, first found wins."""

LABEL_FIELDS = ("primary", "label")
"""The fields a line may give its true category in, first found wins."""


def label_files(path: Path) -> list[Path]:
    """`path` itself, or every ``*.jsonl`` and ``*.jsonl.gz`` file in a folder, sorted by name.

    Args:
        path: a JSON Lines file, or a folder of them (a collection run).

    Returns:
        The files to read.

    Raises:
        DataFileError: when the path does not exist or the folder holds no JSON Lines file.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted({*path.glob("*.jsonl"), *path.glob("*.jsonl.gz")})
        if not files:
            raise DataFileError(f"{path}: no *.jsonl or *.jsonl.gz file in this folder; give a papers file or a run")
        return files
    if not path.is_file():
        raise DataFileError(f"{path}: no such file or folder. Check the path (absolute, or relative to {Path.cwd()}).")
    return [path]


def read_labels(path: Path) -> list[tuple[str, str]]:
    """The ``(arxiv_id, true_label)`` pairs of a papers file or folder, in file and line order.

    Args:
        path: a JSON Lines file (plain or ``.gz``), or a folder of them.

    Returns:
        One pair per paper line.

    Raises:
        DataFileError: naming the file and line of a line that is not a JSON object, or that lacks an id or a
            label, with the fix.
    """
    pairs = []
    for file in label_files(path):
        for number, record in read_jsonl(file):
            arxiv_id = next((record[key] for key in ID_FIELDS if record.get(key)), None)
            label = next((record[key] for key in LABEL_FIELDS if record.get(key)), None)
            if not isinstance(arxiv_id, str) or not isinstance(label, str) or not label.strip():
                raise DataFileError(
                    f"{file}, line {number}: needs an arXiv id in {' or '.join(ID_FIELDS)} and a true category in "
                    f'{" or ".join(LABEL_FIELDS)} (strings), e.g. {{"id": "2401.01234", "primary": "cs.CL"}}; '
                    "fix or delete that line (nothing was imported)"
                )
            pairs.append((arxiv_id, label))
    return pairs
