"""Pick the fastest numerically safe precision for the hardware at hand."""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX).

    Returns:
        True when torch or ``/proc/cpuinfo`` reports AVX512-BF16 or AMX-BF16.
    """
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if probe is not None and probe():
        return True
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_precision(accelerator: str = "auto") -> str:
    """``bf16-mixed`` on CUDA GPUs that support bf16, ``16-mixed`` on older ones, ``bf16-mixed`` on CPUs with
    native bf16, ``32-true`` otherwise.

    Args:
        accelerator: the Trainer's accelerator (``auto``, ``cpu``, ``gpu``, ``cuda``).

    Returns:
        A Lightning ``precision`` value.
    """
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_supports_bf16() else "32-true"
