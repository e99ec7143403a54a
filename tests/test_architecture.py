"""The layering of docs/ARCHITECTURE.md holds: the import-linter contracts in pyproject.toml pass, and breaking one
(in a scratch copy of the code) fails them, naming the contract."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(root), "PATH": str(LINT_IMPORTS.parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_import_contracts_hold():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("file", "line", "contract"),
    [
        ("clf/registry/versions.py", "import torch", "the registry and the artifact are storage"),
        ("clf/monitoring/alerts.py", "import clf.serving.service", "monitoring is a leaf"),
        ("clf/data/paper.py", "import clf.registry", "data is the bottom"),
        ("clf/inference/passes.py", "import lightning_app.app", "nothing in clf imports the HTTP application"),
        ("clf/evaluation/metrics.py", "import clf.training", "evaluation scores artifacts through the predictor"),
    ],
)
def test_breaking_a_rule_fails_the_check(tmp_path, file, line, contract):
    for name in ("clf", "lightning_app"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / file
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert contract in result.stdout and "BROKEN" in result.stdout
