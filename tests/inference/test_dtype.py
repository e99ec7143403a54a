"""The torch backend's weights type: float32 by default, bfloat16 on request, and `auto` by the hardware."""

from __future__ import annotations

import pytest
import torch

from clf.inference import predictor as predictor_module
from clf.inference.predictor import ModelPredictor, resolve_dtype
from clf.serving.errors import ModelLoadError
from tests.conftest import load_shared_papers

TEXTS = [f"{p['title']}. {p['abstract']}" for p in load_shared_papers(limit=24)]


def test_bfloat16_weights_answer_like_float32_ones(tiny_exports):
    export = tiny_exports["v1.1.0"]
    full = ModelPredictor(export, "v1.1.0")
    half = ModelPredictor(export, "v1.1.0", dtype="bfloat16")
    assert (full.dtype, half.dtype) == ("float32", "bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    a, b = full.predict_probabilities(TEXTS), half.predict_probabilities(TEXTS)
    assert b.dtype == torch.float32, "probabilities stay float32"
    assert float((a - b).abs().max()) < 0.05


@pytest.mark.parametrize(("native", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_picks_bfloat16_only_where_the_cpu_runs_it_natively(monkeypatch, native, expected):
    monkeypatch.setattr(predictor_module, "cpu_has_native_bfloat16", lambda: native)
    assert resolve_dtype("auto", "cpu") == expected
    assert resolve_dtype("float32", "cpu") == "float32" and resolve_dtype("bfloat16", "cpu") == "bfloat16"


def test_an_unknown_dtype_is_refused_with_the_choices():
    with pytest.raises(ModelLoadError, match="use auto, float32 or bfloat16"):
        resolve_dtype("float16", "cpu")  # type: ignore[arg-type]
