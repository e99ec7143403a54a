"""The HTTP contract: pydantic models of every request and response body, and the JSON error shape.

Request bodies are read by `lightning_app.payloads` (size-limited, strict UTF-8, depth-safe) and then validated
against these models, so the schema published at ``/openapi.json`` is the one the service enforces; responses are
documented with them (and checked against them by the schemathesis run in the tests).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from clf.inference.prediction import Prediction
from clf.serving.inputs import ARXIV_ID_PATTERN

_STRICT = ConfigDict(extra="forbid", strict=True)


class PaperInput(BaseModel):
    """One paper to classify: its title and abstract (raw arXiv text, LaTeX and all), or an already joined text."""

    model_config = _STRICT

    title: str = Field("", description="The title.")
    abstract: str = Field("", description="The abstract.")
    text: str | None = Field(None, description="Title and abstract already joined; used instead of them when given.")
    arxiv_id: str | None = Field(
        None,
        description="The paper's arXiv id ('2401.01234', '2401.01234v2' or 'hep-th/9901001'), echoed in the answer: "
        "its true category, once arXiv lists the paper, is joined with the answer by it (clf labels import).",
        examples=["2401.01234"],
        pattern=ARXIV_ID_PATTERN,
        max_length=64,
    )


class PaperWithUser(PaperInput):
    """One paper, optionally with the caller's user id (which routes it through a running experiment or split)."""

    user_id: str | int | None = Field(None, description="A stable id of the caller: the same user, the same arm.")


class PaperBatch(BaseModel):
    """Several papers in one request, with an optional user id for all of them."""

    model_config = _STRICT

    papers: list[PaperInput] = Field(description="The papers (at most --limits.max_inputs, 64 by default).")
    user_id: str | int | None = Field(None, description="A stable id of the caller.")


PredictRequest = PaperWithUser | list[PaperInput] | PaperBatch
"""What ``POST /predict`` takes: one paper, a list of papers, or ``{"papers": [...], "user_id": ...}``."""


class PredictResponse(BaseModel):
    """The answers, in the order of the papers sent (each a `clf.inference.Prediction` as JSON)."""

    # The predictions' field descriptions are the dataclass's attribute docstrings: the fields are declared once.
    model_config = ConfigDict(use_attribute_docstrings=True)

    predictions: list[Prediction]
    version: str
    arm: str
    user_id: str | None


class Feedback(BaseModel):
    """The true category of an earlier prediction."""

    model_config = _STRICT

    prediction_id: str = Field(description="The prediction_id of a /predict answer.", max_length=200)
    true_label: str = Field(description="The category the paper belongs to, e.g. cs.CL.", max_length=100)


class FeedbackRecorded(BaseModel):
    """Feedback stored."""

    recorded: Literal[True]
    prediction_id: str


class ErrorResponse(BaseModel):
    """Every error answer: what went wrong and how to fix it, and a machine-readable reason."""

    error: str = Field(description="What was wrong, and what to do instead.")
    reason: str = Field(
        description="invalid_json, invalid_encoding, too_deep, too_large, invalid_shape, empty_text, no_papers, "
        "too_many_papers, "
        "text_too_long, invalid_parameter, not_found, method_not_allowed, unauthorized, forbidden, rate_limited, "
        "unknown_prediction, foreign_prediction, expired_prediction, invalid_label (the client's fault); overloaded, "
        "timeout, unavailable (busy: retry after Retry-After); model_error, server_error (the service's fault)."
    )
    retry_after_s: int | None = Field(None, description="With 429 and 503: seconds to wait, as in Retry-After.")


class HealthCheckResult(BaseModel):
    """One check of ``/health/ml``."""

    ok: bool
    detail: str = Field(description="What was found, in words.")
    value: float | None = Field(None, description="The measured value, when there is one (a latency in ms).")


class ModelHealth(BaseModel):
    """Every model check (200 when all pass, 503 when any fails: a load balancer takes the replica out)."""

    status: Literal["healthy", "unhealthy"]
    live_version: str | None
    checks: dict[str, HealthCheckResult] = Field(
        description="Check name → outcome; a version other than the live one has its checks named name[version]."
    )


class BatchStats(BaseModel):
    """One loaded version's batching counters."""

    batching: bool
    batches_run: int
    texts_run: int
    mean_batch_size: float | None
    queued: int = Field(description="Papers waiting now.")
    max_queue: int
    dropped: int = Field(description="Requests taken off the queue unrun: cancelled or past their deadline.")


class Versions(BaseModel):
    """What this replica has loaded, and how it routes traffic."""

    live_version: str
    loaded_versions: list[str]
    traffic_rule: str = Field(description="The installed rule, e.g. a canary's WeightedSplit, in words.")
    traffic_shares: dict[str, float] = Field(description="Version → share of requests the rule sends it.")
    replica: str | None = Field(None, description="This replica's id in the fleet (clf serve --fleet.replica_id).")
    batching: dict[str, BatchStats]


class Liveness(BaseModel):
    """The process answers."""

    status: Literal["ok"]


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` entries in the error shape for `statuses`.

    Args:
        *statuses: HTTP status codes an endpoint can answer with an error.

    Returns:
        FastAPI's ``responses=`` mapping.
    """
    return {status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]} for status in statuses}


_DESCRIPTIONS = {
    400: "The request cannot be read.",
    401: "No token: this endpoint needs Authorization: Bearer <token>.",
    403: "A wrong token, a prediction id this service did not issue, or an endpoint switched off.",
    404: "No such prediction (or endpoint).",
    413: "The body is over the size limit.",
    422: "The body or a parameter is invalid; `reason` says how.",
    429: "Overloaded or rate limited: retry after Retry-After seconds.",
    500: "The model or the service failed.",
    503: "The service is shutting down or a dependency is down: retry after Retry-After seconds.",
    504: "No answer within the request deadline.",
}
