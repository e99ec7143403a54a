"""Tests for clf/model/precision.py."""

from __future__ import annotations

import torch

from clf.model.precision import auto_precision, cpu_supports_bf16


def test_cpu_precision_follows_the_cpu():
    expected = "bf16-mixed" if cpu_supports_bf16() else "32-true"
    assert auto_precision("cpu") == expected


def test_auto_without_cuda_is_the_cpu_choice():
    if not torch.cuda.is_available():
        assert auto_precision("auto") == auto_precision("cpu")
