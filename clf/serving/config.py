"""The typed settings of a `ClassificationService`: the model it serves, its batching, and the limits of a request.

`clf serve` takes these dataclasses as its option groups (``--service.dtype``, ``--batching.max_queue``,
``--limits.max_inputs``); the field docstrings below are its ``--help`` and the comments of ``configs/serve.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

# clf.inference.predictor's Backend and Dtype (tests/serving/test_config.py checks they agree), spelt out here because
# importing the predictor loads torch, and `clf --help` reads these groups.
Backend = Literal["torch", "onnx"]
Dtype = Literal["auto", "float32", "bfloat16"]


@dataclass(frozen=True)
class ServiceConfig:
    """Which version is served first, and how its model runs.

    Attributes:
        version: serve this registered version instead of the production one (rollouts are then off by default).
        base_model: an export folder (runs/<name>/export) served when the registry holds no versions.
        device: cpu, cuda, cuda:N, or auto (CUDA when there is a GPU).
        backend: torch, or onnx to run every version with onnxruntime on the ONNX files `clf export --format onnx`
            wrote beside its weights (the int8 model when there is one). A version without them is refused.
        dtype: the torch backend's weights: auto (bfloat16 on a GPU or CPU that runs it natively — AVX512-BF16 or
            AMX — where it measured 1.6x the papers/s of float32 with 0.997 agreement, float32 elsewhere), float32,
            or bfloat16. The start-up log says which was picked.
    """

    version: str | None = None
    base_model: str | None = None
    device: str = "auto"
    backend: Backend = "torch"
    dtype: Dtype = "auto"


@dataclass(frozen=True)
class Batching:
    """How each version's worker gathers concurrent requests into shared forward passes, and how many may wait.

    Attributes:
        max_batch_size: most texts gathered from concurrent requests into one step of a version's worker (default:
            8 on a CPU, 64 on a GPU).
        forward_batch_size: texts per forward pass within a step, sorted by length first (default: 8 on a CPU, where
            larger passes cost more per paper, max_batch_size on a GPU).
        max_wait_ms: how long a partly filled batch waits for more requests.
        enabled: gather concurrent requests into shared forward passes (false: one request per pass).
        max_queue: most papers waiting per version; beyond it requests are shed with 429 and Retry-After (default:
            4 × max_batch_size, so an accepted request waits at most about four batches).
    """

    max_batch_size: int | None = None
    forward_batch_size: int | None = None
    max_wait_ms: float = 5.0
    enabled: bool = True
    max_queue: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "forward_batch_size", "max_queue"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--batching.{name} must be at least 1, got {value}")
        if self.max_wait_ms < 0:
            raise ValueError(f"--batching.max_wait_ms must be >= 0, got {self.max_wait_ms}")

    def resolved(self, on_gpu: bool) -> Batching:
        """These settings with every default filled in for the device.

        Args:
            on_gpu: whether the models run on a GPU.

        Returns:
            A copy whose sizes are all set.
        """
        batch = self.max_batch_size or (64 if on_gpu else 8)
        forward = self.forward_batch_size or (batch if on_gpu else 8)
        return replace(self, max_batch_size=batch, forward_batch_size=forward, max_queue=self.max_queue or 4 * batch)


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask of the service.

    Attributes:
        request_timeout: seconds a prediction may take; past it the client gets 504 and the request leaves the queue
            if its batch has not started.
        max_body_bytes: larger request bodies are refused with 413.
        max_inputs: most papers in one request (more: 422 too_many_papers).
        max_text_chars: most characters in one paper's title and abstract together (more: 422 text_too_long).
    """

    request_timeout: float = 30.0
    max_body_bytes: int = 1_000_000
    max_inputs: int = 64
    max_text_chars: int = 20_000

    def __post_init__(self) -> None:
        if not self.request_timeout > 0:
            raise ValueError(f"--limits.request_timeout must be positive, got {self.request_timeout}")
        for name in ("max_body_bytes", "max_inputs", "max_text_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"--limits.{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class QualityConfig:
    """Whether the answers are still right: out-of-scope answers, drift against each version's reference sample,
    estimated accuracy, and measured accuracy once true labels arrive (docs/MONITORING.md).

    Attributes:
        enabled: watch every version whose artifact carries a reference sample (`clf reference build` adds one).
        window_papers: answers per tested window; each full window is compared with the reference sample.
        alpha: a window alarms when a test's p-value is at most alpha / 2 (two tests: the MMD of the probability
            vectors, and the out-of-scope share against the reference's).
        permutations: permutations of the MMD test (its smallest p-value is 1 / (permutations + 1)).
        check_interval_seconds: how often full windows are tested (off the request path).
        db: a SQLAlchemy URL where every answer is logged, and true labels join them (POST /feedback, clf labels
            import); default: --feedback.experiments_db. Without either, measured accuracy is not available.
        window_hours: the time window measured accuracy is reported over.
        measured_interval_seconds: how often measured accuracy is read from the database.
    """

    enabled: bool = True
    window_papers: int = 300
    alpha: float = 0.01
    permutations: int = 1000
    check_interval_seconds: float = 5.0
    db: str | None = None
    window_hours: float = 24.0
    measured_interval_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.window_papers < 20:
            raise ValueError(f"--quality.window_papers must be at least 20, got {self.window_papers}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"--quality.alpha must be in (0, 1), got {self.alpha}")
        if self.permutations < 20:
            raise ValueError(f"--quality.permutations must be at least 20, got {self.permutations}")
        for name in ("check_interval_seconds", "window_hours", "measured_interval_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--quality.{name} must be positive, got {getattr(self, name)}")
