"""`JSONFormatter` and `configure_logging`: JSON lines, tracebacks, extras, idempotence and uvicorn's loggers."""

from __future__ import annotations

import inspect
import io
import json
import logging
import logging.config
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn.config

from clf.data.progress import JSON_LOGS_ENV
from clf.monitoring import JSONFormatter, configure_logging
from clf.monitoring.logs import UVICORN_LOGGERS

FIELDS = {"timestamp", "level", "logger", "message", "module", "function", "line"}


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Puts the root and uvicorn loggers back as they were, so no other test sees this module's handlers.

    On the root logger only the handlers `configure_logging` installed are removed: pytest swaps its own capture
    handlers there between test phases, and those must be left to pytest.
    """
    monkeypatch.delenv(JSON_LOGS_ENV, raising=False)
    root = logging.getLogger()
    root_level = root.level
    saved = {}
    for name in (*UVICORN_LOGGERS, "clf"):
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in [h for h in root.handlers if getattr(h, "_clf_installed", False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(root_level)
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_every_field() -> None:
    stream = io.StringIO()
    configure_logging(json_logs=True, stream=stream)
    before = datetime.now(UTC)

    line = inspect.currentframe().f_lineno + 1
    logging.getLogger("clf.serving").warning("served %d requests\nin a burst", 3)

    [entry] = _lines(stream)
    assert set(entry) == FIELDS
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "clf.serving"
    assert entry["message"] == "served 3 requests\nin a burst"
    assert entry["module"] == "test_logs"
    assert entry["function"] == "test_each_record_is_one_json_line_with_every_field"
    assert entry["line"] == line
    stamp = datetime.fromisoformat(entry["timestamp"])
    assert entry["timestamp"].endswith("Z") and stamp.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)


def test_an_exception_carries_its_formatted_traceback() -> None:
    stream = io.StringIO()
    configure_logging(json_logs=True, stream=stream)

    try:
        {}["model"]  # noqa: B018 - raising is the point
    except KeyError:
        logging.getLogger("clf.serving").exception("prediction failed")

    [entry] = _lines(stream)
    assert entry["message"] == "prediction failed"
    assert entry["level"] == "ERROR"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "test_an_exception_carries_its_formatted_traceback" in entry["exception"]
    assert entry["exception"].endswith("KeyError: 'model'")


def test_extra_fields_are_included() -> None:
    stream = io.StringIO()
    configure_logging(json_logs=True, stream=stream)

    logging.getLogger("clf.serving").info(
        "predicted",
        extra={"version": "v1.2.0", "latency_ms": 41.5, "labels": ["cs.LG"], "when": datetime(2026, 1, 1), "level": 3},
    )

    [entry] = _lines(stream)
    assert entry["version"] == "v1.2.0"
    assert entry["latency_ms"] == 41.5
    assert entry["labels"] == ["cs.LG"]
    assert entry["when"] == "2026-01-01 00:00:00"  # str() of what JSON cannot hold
    assert (entry["level"], entry["extra_level"]) == ("INFO", 3)  # a clashing name does not overwrite a field


def test_configuring_twice_leaves_one_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    others = list(root.handlers)  # pytest's capture handlers

    configure_logging(json_logs=True, stream=first)
    installed = configure_logging(json_logs=True, stream=second)
    logging.getLogger("clf").error("once")

    assert root.handlers == [*others, installed]
    assert first.getvalue() == ""
    assert [e["message"] for e in _lines(second)] == ["once"]


def test_uvicorn_loggers_go_through_the_json_handler() -> None:
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)  # what uvicorn does at start-up by default
    stream = io.StringIO()

    configure_logging(json_logs=True, level="INFO", stream=stream)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42, extra={"color_message": "\x1b[36m42"})
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "POST", "/predict", "1.1", 200
    )

    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        assert (logger.handlers, logger.propagate) == ([], True), name
    entries = _lines(stream)
    assert [(e["logger"], e["message"]) for e in entries] == [
        ("uvicorn.error", "Started server process [42]"),
        ("uvicorn.access", '127.0.0.1:50000 - "POST /predict HTTP/1.1" 200'),
    ]
    assert "color_message" not in entries[0]


def test_the_environment_variable_turns_json_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(JSON_LOGS_ENV, "1")
    stream = io.StringIO()

    configure_logging(stream=stream)
    logging.getLogger("clf").info("hello")

    assert _lines(stream)[0]["message"] == "hello"


def test_plain_lines_when_json_is_off() -> None:
    stream = io.StringIO()
    logging.getLogger("clf").setLevel(logging.INFO)  # as the CLI leaves it: --logging.level must still win

    configure_logging(json_logs=False, level="WARNING", stream=stream)
    logging.getLogger("clf.serving").info("hidden")
    logging.getLogger("clf.serving").warning("shown")

    assert stream.getvalue().endswith(" WARNING clf.serving: shown\n")
    assert "hidden" not in stream.getvalue()


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level must be one of"):
        configure_logging(level="LOUD")


def test_the_formatter_works_on_its_own_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("clf.tests.standalone")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("alone", stack_info=True)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    [entry] = _lines(stream)
    assert entry["message"] == "alone"
    assert entry["stack"].startswith("Stack (most recent call last):")
