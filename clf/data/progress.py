"""Progress of long steps: a tqdm bar on a terminal, a log line every few seconds anywhere else.

    with Progress("scanning papers.jsonl.gz", total=size, unit="B") as progress:
        for chunk in ...:
            progress.advance(len(chunk), papers=count)

On an interactive terminal (stderr is a TTY and ``CLF_JSON_LOGS`` is not set) the step shows a tqdm bar with its
rate and ETA. Elsewhere — a log file, CI, ``--logging.json_logs`` — a bar's carriage returns would be noise, so the same
numbers go to the log every `interval_s` seconds and once at the end, e.g. ``scanning papers.jsonl.gz: 12.5 of 40.1
MB (31 %), 9,400 papers, 6.2 MB/s, ETA 4 s``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, Any

log = logging.getLogger("clf.progress")

JSON_LOGS_ENV = "CLF_JSON_LOGS"
"""With this set to ``1``, ``true``, ``yes`` or ``on`` (any case), logs are JSON lines (`clf.monitoring.logs`) and no
bar is drawn."""

_TRUE = ("1", "true", "yes", "on")


def json_logs_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `JSON_LOGS_ENV` asks for JSON logs: the one reading of it, for the logs and the bars alike.

    Args:
        environ: the environment to read; None reads `os.environ`.

    Returns:
        True when the variable is ``1``, ``true``, ``yes`` or ``on``, in any case.
    """
    return (os.environ if environ is None else environ).get(JSON_LOGS_ENV, "").strip().lower() in _TRUE


def interactive(stream: IO[str] | None = None) -> bool:
    """Whether a progress bar can be drawn: `stream` (stderr) is a terminal and JSON logs are off.

    Args:
        stream: the stream a bar would go to (stderr by default).

    Returns:
        True on an interactive terminal.
    """
    stream = stream if stream is not None else sys.stderr
    return not json_logs_requested() and bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Tracks one long step; see the module docstring.

    Args:
        description: what is being done, e.g. ``scanning papers.jsonl.gz``.
        total: the amount of work, in `unit`, when known (None: no percentage or ETA).
        unit: ``B`` for bytes (shown in MB), else the name of what is counted (``papers``).
        interval_s: seconds between two log lines when no bar is drawn.
        stream: where the bar goes (stderr by default).
        bar: draw a bar (True), log lines (False), or decide by `interactive` (None).
        clock: monotonic seconds; a test seam.
    """

    def __init__(
        self,
        description: str,
        total: float | None = None,
        unit: str = "papers",
        interval_s: float = 10.0,
        stream: IO[str] | None = None,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.interval_s = interval_s
        self.clock = clock
        self.done = 0.0
        self.counts: dict[str, int] = {}
        self._started = clock()
        self._logged = self._started
        self._bar: Any = None
        if interactive(stream) if bar is None else bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=description,
                unit=unit,
                unit_scale=unit == "B",
                unit_divisor=1000,  # MB as in the log line: 10^6 bytes
                file=stream if stream is not None else sys.stderr,
                # A terminal that reports no size (some ptys) would get a bar of width 0: COLUMNS or 80 then.
                ncols=shutil.get_terminal_size().columns,
                leave=True,
            )

    def advance(self, amount: float = 1, **counts: int) -> None:
        """Adds `amount` of work done, and sets the side counts shown beside it (``papers=9400``).

        Args:
            amount: work done since the last call, in `unit`.
            **counts: running totals to show, e.g. ``papers=9400``.
        """
        self.move_to(self.done + amount, **counts)

    def move_to(self, done: float, **counts: int) -> None:
        """Sets the work done so far (a file position, say), and the side counts.

        Args:
            done: work done since the start, in `unit`.
            **counts: running totals to show.
        """
        step, self.done = done - self.done, done
        self.counts.update(counts)
        if self._bar is not None:
            if counts:
                self._bar.set_postfix({k: f"{v:,}" for k, v in self.counts.items()}, refresh=False)
            self._bar.update(step)
            return
        now = self.clock()
        if now - self._logged >= self.interval_s:
            self._logged = now
            log.info("%s", self.line())

    def line(self) -> str:
        """The progress in words: done of total (percent), side counts, rate, ETA.

        Returns:
            e.g. ``scanning papers.jsonl.gz: 12.5 of 40.1 MB (31 %), 9,400 papers, 6.2 MB/s, ETA 4 s``.
        """
        elapsed = max(self.clock() - self._started, 1e-9)
        rate = self.done / elapsed
        parts = [self._amount(self.done)]
        if self.total:
            parts[0] += f" of {self._amount(self.total)} {self._unit()} ({100 * self.done / self.total:.0f} %)"
        else:
            parts[0] += f" {self._unit()}"
        parts += [f"{value:,} {name}" for name, value in self.counts.items()]
        parts.append(f"{self._amount(rate)} {self._unit()}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        return f"{self.description}: " + ", ".join(parts)

    def close(self) -> None:
        """Ends the bar, or logs the last line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            log.info("%s (done in %s)", self.line(), _duration(self.clock() - self._started))

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        elif self._bar is not None:
            self._bar.close()

    def _unit(self) -> str:
        return "MB" if self.unit == "B" else self.unit

    def _amount(self, value: float) -> str:
        if self.unit == "B":
            return f"{value / 1e6:.1f}"
        return f"{value:,.0f}"


def _duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"
