"""Structured logs: `JSONFormatter` writes one JSON object per line, and `configure_logging` switches it on.

    configure_logging(json_logs=True, level="INFO")  # or set CLF_JSON_LOGS=1
    logging.getLogger("clf.serving").info("predicted", extra={"version": "v1.2.0", "latency_ms": 41.3})

gives, on one line::

    {"timestamp": "2026-05-01T12:00:00.123Z", "level": "INFO", "logger": "clf.serving", "message": "predicted",
     "module": "app", "function": "predict", "line": 88, "version": "v1.2.0", "latency_ms": 41.3}

Under uvicorn, either pass ``log_config=None`` to `uvicorn.run`, or call `configure_logging` at application
start-up (a FastAPI lifespan handler): uvicorn applies its own logging config when it starts, and a call made
before that would see its plain handlers put back.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

from clf.data.progress import json_logs_requested

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
"""Loggers that uvicorn gives their own handlers; `configure_logging` routes them through the root logger."""

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The line format when JSON logs are off."""

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# uvicorn passes an ANSI-coloured copy of some messages for its own formatter; it is noise in JSON.
_DROPPED_EXTRAS = frozenset({"color_message"})
_FIELDS = ("timestamp", "level", "logger", "message", "module", "function", "line", "exception", "stack")


class JSONFormatter(logging.Formatter):
    """Formats a record as one line of JSON.

    The fields are ``timestamp`` (ISO 8601 UTC, milliseconds, ``Z`` suffix), ``level``, ``logger``, ``message``
    (with its arguments filled in), ``module``, ``function``, ``line``; ``exception`` (the formatted traceback)
    when the record has ``exc_info``; ``stack`` when it has ``stack_info``; then every field passed with
    ``extra={...}``. An extra field named like one of those is kept as ``extra_<name>``. Values JSON cannot hold
    are written as their ``str()``.

    >>> record = logging.LogRecord("clf.serving", logging.INFO, "app.py", 7, "took %d ms", (41,), None)
    >>> record.created, record.version = 0.0, "v1.2.0"
    >>> print(JSONFormatter().format(record))  # doctest: +NORMALIZE_WHITESPACE
    {"timestamp": "1970-01-01T00:00:00.000Z", "level": "INFO", "logger": "clf.serving", "message": "took 41 ms",
     "module": "app", "function": null, "line": 7, "version": "v1.2.0"}
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line (newlines inside values are escaped).

        Args:
            record: the log record; its ``extra`` fields become keys of the object.

        Returns:
            The JSON text, with ``timestamp`` (UTC), ``level``, ``logger``, ``message``, the code location, any
            exception text and the extras.
        """
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "module": record.module,
            "function": record.funcName,
            "line": record.lineno,
        }
        if record.exc_info:
            # Cached on the record, as logging.Formatter does, so several handlers format the traceback once.
            if not record.exc_text:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            entry["exception"] = record.exc_text
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRIBUTES or key in _DROPPED_EXTRAS:
                continue
            entry[f"extra_{key}" if key in _FIELDS else key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    json_logs: bool = False, level: int | str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Sets up the process's logging: one handler on the root logger, in JSON or plain lines.

    The one switch for the whole app: uvicorn's loggers (`UVICORN_LOGGERS`) and clf's own top logger lose their own
    handlers and levels and propagate to the root logger, so their lines come out in the same format and obey
    `level`. Handlers that other code put on the root
    logger (e.g. pytest's) are left alone. Calling it again replaces the handler it installed before rather than
    adding a second one.

    Args:
        json_logs: write JSON lines (`JSONFormatter`); the environment variable ``CLF_JSON_LOGS=1`` also turns
            them on.
        level: the root logger's level, a name such as ``"INFO"`` or a number.
        stream: where lines go; standard error when None.

    Returns:
        The handler installed on the root logger.

    Raises:
        ValueError: when `level` is not a logging level name.
    """
    if isinstance(level, str):
        number = logging.getLevelNamesMapping().get(level.upper())
        if number is None:
            raise ValueError(f"level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {level!r}")
        level = number
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if json_logs or json_logs_requested() else logging.Formatter(PLAIN_FORMAT))
    handler._clf_installed = True  # type: ignore[attr-defined]  # marks the handler a later call replaces
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_clf_installed", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in (*UVICORN_LOGGERS, "clf"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    return handler
