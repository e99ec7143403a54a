"""Errors of the inference layer."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model folder that is missing, incomplete, whose weights (or ONNX file) do not load, or whose backend is not
    installed; the message names the file and the fix."""
