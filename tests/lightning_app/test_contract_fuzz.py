"""Fuzzing the HTTP contract: schemathesis runs every operation of ``/openapi.json`` against the real app on loopback.

Whatever schemathesis sends (bodies that fit the schema and bodies that do not, wrong types, odd query strings), with
the feedback token, a wrong one, a malformed ``Authorization`` header or none, the answer is never a 5xx, its status
code is one the operation documents, its content type is the documented one, and its body matches the published
schema. A tiny model answers, and ``/feedback`` writes to a real experiments database (sqlite) with a running A/B
experiment, so feedback on real prediction ids gets all the way to it. Pinned requests below are the bugs the
fuzzers found or led to, each with the input that triggered it.

    pytest tests/lightning_app/test_contract_fuzz.py
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from clf.experiments import ABTestingFramework, ExperimentSync
from clf.serving import ClassificationService
from clf.serving.config import Batching, RequestLimits
from lightning_app.app import create_app
from lightning_app.feedback import FeedbackGuard
from tests.helpers.exports import build_registry
from tests.helpers.http_service import LoopbackServer

TOKEN = "labelling-team-token-0123456789"
AUTHORISED = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PAPER = {"title": "Attention is all you need", "abstract": "We propose the Transformer, based on attention alone."}

# Per operation: the two that read a body get the most; /health/ml runs the model's checks on every call.
OPERATIONS = {
    "POST /predict": 150,
    "POST /feedback": 150,
    "GET /metrics": 60,
    "GET /health": 15,
    "GET /health/ml": 15,
    "GET /versions": 15,
    "GET /quality": 15,
    "GET /shadow": 15,
}
_HEADER_TEXT = st.text(st.characters(codec="latin-1", min_codepoint=0x20, exclude_characters="\x7f"), max_size=40)
AUTH_HEADERS = st.one_of(
    st.sampled_from([AUTHORISED, {"Authorization": "Bearer not-the-token-0123456789"}, {}]),
    # Any header value requests can send: a scheme without a token, a token of Latin-1 bytes, nothing at all.
    _HEADER_TEXT.map(lambda value: {"Authorization": value.strip()}),
    _HEADER_TEXT.map(lambda value: {"Authorization": f"Bearer {value}".strip()}),
)


@dataclass
class Api:
    """The app on loopback, and the ids of predictions its experiment logged (what feedback can name)."""

    url: str
    framework: ABTestingFramework
    experiment_id: int
    prediction_ids: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def api(tiny_exports, tmp_path_factory):
    """One server for the module (the `tiny_registry` layout, built once): each test adds its own requests."""
    root = tmp_path_factory.mktemp("contract")
    registry = build_registry(root / "registry", tiny_exports, production="v1.0.0")
    service = ClassificationService(registry, batching=Batching(max_wait_ms=1))
    framework = ABTestingFramework(f"sqlite:///{root / 'experiments.db'}", registry=registry)
    experiment = framework.create_experiment("fuzz", "v1.0.0", "v1.1.0", 0.5)
    sync = ExperimentSync(framework, service)
    sync.sync()
    app = create_app(
        service,
        limits=RequestLimits(max_body_bytes=20_000),
        on_shutdown=[sync.close],
        feedback=functools.partial(framework.record_feedback, verify=service.prediction_ids.verify),
        # A limit no run reaches, so that the fuzzer gets past it to the token, the id and the label.
        feedback_guard=FeedbackGuard([TOKEN], rate_limit="100000/minute"),
    )
    with LoopbackServer(app) as server:
        running = Api(server.url, framework, experiment.id)
        for user in ("alice", "bob", "carol", "dave"):
            answer = requests.post(f"{server.url}/predict", json={**PAPER, "user_id": user}, timeout=30)
            running.prediction_ids.append(answer.json()["predictions"][0]["prediction_id"])
        yield running


def test_every_published_operation_is_fuzzed(api):
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    published = [result.ok() for result in schema.get_all_operations()]
    assert sorted(f"{operation.method.upper()} {operation.path}" for operation in published) == sorted(OPERATIONS)


# schemathesis's pytest integration (`@schema.parametrize()` over `from_fixture`) reads `Item._nodeid`, which pytest 9
# no longer has; its strategies under plain Hypothesis need no pytest internals.
@pytest.mark.parametrize("operation", OPERATIONS)
def test_no_request_breaks_the_contract(api, operation):
    fuzz(api, operation, OPERATIONS[operation])


@pytest.mark.slow
@pytest.mark.parametrize("operation", OPERATIONS)
def test_no_request_breaks_the_contract_long_run(api, operation):
    fuzz(api, operation, 10 * OPERATIONS[operation])


def fuzz(api: Api, operation: str, max_examples: int) -> None:
    """Sends `max_examples` schemathesis cases (positive and negative) to `operation` and checks every answer."""
    method, path = operation.split()
    endpoint = schemathesis.openapi.from_url(f"{api.url}/openapi.json")[path][method]
    cases = st.one_of(endpoint.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))
    session = requests.Session()

    @given(case=cases, auth=AUTH_HEADERS, known_id=st.integers(min_value=-1, max_value=len(api.prediction_ids) - 1))
    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def no_request_breaks_the_contract(case, auth, known_id):
        # Signed ids cannot be guessed, so a fuzzer alone never gets past the signature check: most feedback bodies
        # get a real id (a prediction the experiment logged) and keep their fuzzed label and other fields.
        if path == "/feedback" and known_id >= 0 and isinstance(case.body, dict) and "prediction_id" in case.body:
            case.body = {**case.body, "prediction_id": api.prediction_ids[known_id]}
        case.call_and_validate(session=session, headers=auth, checks=CHECKS)

    no_request_breaks_the_contract()


@pytest.mark.parametrize(
    ("operation", "body", "query", "status"),
    [
        # Generated papers are mostly empty once cleaned, so the answers of real ones are checked here too.
        ("POST /predict", PAPER, None, 200),
        ("POST /predict", [PAPER, {"text": "Robots grasp objects."}], None, 200),
        ("POST /predict", {"papers": [PAPER], "user_id": 7}, None, 200),
        ("POST /predict", {"papers": [PAPER] * 65}, None, 422),
        ("POST /predict", [{"title": "x" * 25_000}], None, 413),
        ("POST /feedback", {"prediction_id": 0, "true_label": "cs.CV"}, None, 422),
        ("GET /metrics", None, {"format": "prometheus"}, 200),
        ("GET /metrics", None, {"window_minutes": "nan"}, 422),
    ],
)
def test_answers_to_chosen_requests_match_the_published_schema(api, operation, body, query, status):
    method, path = operation.split()
    endpoint = schemathesis.openapi.from_url(f"{api.url}/openapi.json")[path][method]
    case = endpoint.Case(body=body, query=query) if body is not None else endpoint.Case(query=query)
    assert case.call_and_validate(headers=AUTHORISED, checks=CHECKS).status_code == status


def test_feedback_on_a_prediction_needs_its_signed_id_and_the_token(api):
    answer = requests.post(f"{api.url}/predict", json={**PAPER, "user_id": "erin"}, timeout=30)
    assert answer.status_code == 200
    prediction_id = answer.json()["predictions"][0]["prediction_id"]
    feedback = {"prediction_id": prediction_id, "true_label": "cs.CV"}

    unauthorised = requests.post(f"{api.url}/feedback", json=feedback, timeout=30)
    assert unauthorised.status_code == 401 and unauthorised.json()["reason"] == "unauthorized"
    assert unauthorised.headers["WWW-Authenticate"].startswith("Bearer")
    wrong_token = requests.post(
        f"{api.url}/feedback", json=feedback, headers={"Authorization": f"Bearer {'x' * 30}"}, timeout=30
    )
    assert wrong_token.status_code == 403 and wrong_token.json()["reason"] == "forbidden"
    random_part, issued, tag, binding = prediction_id.split(".")
    flipped = "0" if random_part[0] != "0" else "1"
    for mutated in (f"{flipped}{random_part[1:]}.{issued}.{tag}.{binding}", prediction_id[:-1], prediction_id + "0"):
        forged = requests.post(
            f"{api.url}/feedback", json={**feedback, "prediction_id": mutated}, headers=AUTHORISED, timeout=30
        )
        assert forged.status_code == 403 and forged.json()["reason"] == "foreign_prediction", mutated
    before = sum(arm["with_feedback"] for arm in api.framework.arm_counts(api.experiment_id).values())

    recorded = requests.post(f"{api.url}/feedback", json=feedback, headers=AUTHORISED, timeout=30)
    assert recorded.status_code == 200
    assert recorded.json() == {"recorded": True, "prediction_id": prediction_id}
    after = sum(arm["with_feedback"] for arm in api.framework.arm_counts(api.experiment_id).values())
    assert after == before + 1


# ------------------------------------------------------------------- bugs found while writing these fuzzers


def post_raw(api: Api, path: str, body: str, headers: dict[str, str] | None = None) -> requests.Response:
    """POSTs `body` as written: JSON escapes such as ``\\ud800`` reach the server as the client wrote them."""
    return requests.post(
        f"{api.url}/{path}",
        data=body.encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        timeout=30,
    )


def test_a_lone_surrogate_user_id_is_a_client_error_not_a_500(api):
    # Was 500 (UnicodeEncodeError): the experiment's split hashes the user id as UTF-8.
    answer = post_raw(api, "predict", '{"title": "Graphs", "abstract": "Trees.", "user_id": "\\ud800"}')
    assert answer.status_code == 422
    assert answer.json() == {
        "error": "'user_id' holds a lone UTF-16 surrogate (U+D800) at character 0; send valid Unicode (pair each "
        "surrogate or drop it)",
        "reason": "invalid_encoding",
    }


@pytest.mark.parametrize(
    ("title", "status", "reason"),
    [
        # Was 500 "model_error": \unicode{xd800} decoded to a lone surrogate after cleaning, and the tokenizer
        # refused it (a client could make a canary look broken).
        (r"\unicode{xd800}", 422, "empty_text"),
        (r"Graphs \unicode{xd800}", 200, None),
        # Was 500 "server_error": chr() refused the code point and its ValueError escaped validation.
        (r"Graphs \unicode{x110000}", 200, None),
        # Was 200 with NUL and U+202E in the model's input.
        (r"\unicode{x0}\unicode{x202e}", 422, "empty_text"),
    ],
)
def test_latex_unicode_escapes_are_cleaned_like_the_characters_they_name(api, title, status, reason):
    answer = requests.post(f"{api.url}/predict", json={"title": title, "abstract": ""}, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json().get("reason") == reason


def test_a_lone_surrogate_field_name_is_invalid_encoding(api):
    answer = post_raw(api, "predict", '{"title": "Graphs", "\\udc00": 1}')
    assert answer.status_code == 422 and answer.json()["reason"] == "invalid_encoding"


@pytest.mark.parametrize("label", ["\\u0000", "cs.CV\\u0000", "cs.\\u001bCV", "cs.CV\\u0085", "\\ud800"])
def test_a_label_holding_a_control_character_or_a_surrogate_is_refused(api, label):
    # Was 200 on sqlite, which stored the NUL, and 503 on PostgreSQL, which refuses NUL in text.
    body = f'{{"prediction_id": "{api.prediction_ids[0]}", "true_label": "{label}"}}'
    answer = post_raw(api, "feedback", body, AUTHORISED)
    assert answer.status_code == 422 and answer.json()["reason"] == "invalid_encoding", answer.text
