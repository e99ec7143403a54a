"""clf/serving/config.py: the service's typed settings, importable without torch (`clf --help` reads them)."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest

from clf.inference import predictor
from clf.serving import config
from tests.conftest import REPO


def test_its_backends_and_dtypes_are_the_predictors():
    assert get_args(config.Backend) == get_args(predictor.Backend)
    assert get_args(config.Dtype) == get_args(predictor.Dtype)


def test_clf_serve_options_load_without_torch():
    code = "import sys, lightning_app.server; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


@pytest.mark.parametrize("on_gpu", [False, True])
def test_unset_batch_sizes_are_filled_in_for_the_device(on_gpu):
    resolved = config.Batching(max_wait_ms=1).resolved(on_gpu)
    assert (resolved.max_batch_size, resolved.forward_batch_size, resolved.max_queue) == (
        (64, 64, 256) if on_gpu else (8, 8, 32)
    )
    assert config.Batching(max_batch_size=4, max_queue=5).resolved(on_gpu).max_queue == 5
