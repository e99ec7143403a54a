"""The onnxruntime backend: an ONNX file as a function from a padded batch to logits.

The ONNX graph (written by ``clf export --format onnx``, `clf.model.onnx_export`) takes ``input_ids`` and
``attention_mask``, int64 tensors of shape (batch, sequence), and returns the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clf.inference.errors import ModelLoadError

INPUT_NAMES = ("input_ids", "attention_mask")
"""The ONNX graph's inputs, int64 tensors of shape (batch, sequence)."""


def onnxruntime_module() -> Any:
    """The onnxruntime module, or an error that says how to install it.

    Returns:
        The imported module.

    Raises:
        ModelLoadError: when onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ImportError as err:
        raise ModelLoadError(
            "ONNX export and serving need onnx, onnxruntime and onnxscript: pip install 'clf[onnx]'"
        ) from err
    return onnxruntime


def onnx_forward(path: str | Path, device: str = "cpu", threads: int | None = None) -> Callable[[Any], Any]:
    """An onnxruntime session on `path` as a function from padded tokenizer output to logits.

    Args:
        path: the ONNX file.
        device: ``cpu``, or ``cuda``/``cuda:N`` to use onnxruntime's CUDA provider where it is installed.
        threads: intra-op threads; by default torch's thread count, so both backends use the same cores.

    Returns:
        A function taking a mapping with ``input_ids`` and ``attention_mask`` (torch tensors or arrays) and
        returning float32 logits as a torch tensor.

    Raises:
        ModelLoadError: when `path` does not load as an ONNX model, or onnxruntime is not installed.
    """
    onnxruntime = onnxruntime_module()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Idle intra-op threads would otherwise spin for work: with two versions loaded (a canary, blue-green) each
    # session's spinning threads take the cores the other needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        index = int(device.partition(":")[2] or 0)
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile kinds
        raise ModelLoadError(f"{path} does not load as an ONNX model: {err}") from err

    def forward(inputs: Any) -> Any:
        feed = {name: np.asarray(_to_numpy(inputs[name]), dtype=np.int64) for name in INPUT_NAMES}
        return torch.from_numpy(session.run(None, feed)[0]).float()

    return forward


def _to_numpy(value: Any) -> Any:
    return value.cpu().numpy() if hasattr(value, "cpu") else value
