"""The layering of docs/ARCHITECTURE.md holds: the import-linter contracts in pyproject.toml pass, and breaking one
(in a scratch copy of the code) fails them, naming the contract."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import clf
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


def test_the_layers_name_every_part_of_clf():
    """A new package or module of clf has to be given its place in the layering (or the layers would not see it)."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (layers,) = [contract["layers"] for contract in contracts["contracts"] if contract["type"] == "layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    children = {f"clf.{module.name}" for module in pkgutil.iter_modules(clf.__path__)}
    assert children - named == set()
    assert named - children == {"lightning_app"}


@pytest.mark.parametrize(
    ("file", "line", "contract"),
    [
        ("clf/registry/versions.py", "import torch", "the registry and the artifact are storage"),
        ("clf/registry/versions.py", "import clf.inference.selective", "the registry and the artifact are storage"),
        ("clf/monitoring/alerts.py", "import clf.serving.service", "the layers, top to bottom"),
        ("clf/data/paper.py", "import clf.registry", "the layers, top to bottom"),
        ("clf/inference/passes.py", "import lightning_app.app", "the layers, top to bottom"),
        ("clf/training/finishing.py", "import clf.evaluation.metrics", "the layers, top to bottom"),
        ("clf/evaluation/metrics.py", "import clf.training", "the layers, top to bottom"),
        ("clf/serving/inputs.py", "import clf.model.module", "the predictor, serving and evaluation run artifacts"),
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
