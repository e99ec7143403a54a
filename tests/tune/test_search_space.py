"""Tests for clf/tune/search_space.py."""

from __future__ import annotations

import pytest

from clf.tune.search_space import Parameter, SearchSpaceError, check_keys, default_search_space, load_search_space
from tests.conftest import REPO


def test_shipped_default_file_is_the_built_in_default():
    assert load_search_space(REPO / "configs" / "tune" / "default.yaml") == default_search_space()
    keys = {p.key: p for p in default_search_space()}
    assert keys["model.learning_rate"].log and keys["model.learning_rate"].low == 1e-5
    assert keys["data.batch_size"].choices == (8, 16, 32)
    assert keys["model.warmup_steps"].choices == (100, 500, 1000)


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        (dict(key="model.learning_rate", kind="float", low=1e-3, high=1e-3), "empty range"),
        (dict(key="model.learning_rate", kind="float", low=0.0, high=1.0, log=True), "must be positive"),
        (dict(key="data.batch_size", kind="categorical"), "'choices' is empty"),
        (dict(key="data.batch_size", kind="int", low=8), "needs 'low' and 'high'"),
    ],
)
def test_unusable_ranges_name_the_key(parameter, message):
    with pytest.raises(SearchSpaceError, match=message) as caught:
        Parameter(**parameter)
    assert parameter["key"] in str(caught.value)


def test_unknown_keys_are_named_with_the_closest_ones():
    with pytest.raises(SearchSpaceError, match=r"'model.learnin_rate' is not a key.*did you mean model.learning_rate"):
        check_keys([Parameter("model.learnin_rate", "float", low=1e-5, high=1e-4)], {"model.learning_rate"})


def test_malformed_file_is_named(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("model.learning_rate: {type: gaussian}\n")
    with pytest.raises(SearchSpaceError, match=r"space\.yaml: 'model.learning_rate' needs 'type'"):
        load_search_space(path)
