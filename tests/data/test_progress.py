"""Progress of long steps (clf/data/progress.py): a bar on a terminal, periodic log lines elsewhere.

The real check runs `clf collect --source snapshot` on the shared snapshot twice: under a pseudo-terminal (Python's
`pty`, as a user's shell gives it) its stderr shows a tqdm bar with a rate; with stderr a file it shows log lines
with the percentage, the papers scanned, the rate and an ETA.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest

from clf.data.progress import Progress, interactive, json_logs_requested
from clf.monitoring.logs import JSONFormatter, configure_logging
from tests.conftest import REPO

SNAPSHOT = REPO.parent / "shared" / "data" / "arxiv" / "papers.jsonl.gz"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_progress_is_a_log_line_every_interval(caplog):
    clock = _Clock()
    caplog.set_level(logging.INFO, logger="clf.progress")
    with Progress("scanning x.jsonl.gz", total=40e6, unit="B", interval_s=10, bar=False, clock=clock) as progress:
        clock.now = 5
        progress.move_to(10e6, papers=5000)
        assert not caplog.records, "nothing before the interval"
        clock.now = 10
        progress.move_to(20e6, papers=10000)
        clock.now = 12
        progress.move_to(40e6, papers=20000)
    first, last = (record.getMessage() for record in caplog.records)
    assert first == "scanning x.jsonl.gz: 20.0 of 40.0 MB (50 %), 10,000 papers, 2.0 MB/s, ETA 10 s"
    assert last.startswith("scanning x.jsonl.gz: 40.0 of 40.0 MB (100 %), 20,000 papers") and "done in 12 s" in last


def test_counting_papers_without_a_total_gives_no_eta(caplog):
    clock = _Clock()
    caplog.set_level(logging.INFO, logger="clf.progress")
    with Progress("cleaning", bar=False, clock=clock) as progress:
        clock.now = 2
        progress.advance(300)
    assert caplog.records[-1].getMessage() == "cleaning: 300 papers, 150 papers/s (done in 2 s)"


def test_json_logs_or_a_file_are_not_interactive(monkeypatch, tmp_path):
    with (tmp_path / "log").open("w") as handle:
        assert not interactive(handle)
    monkeypatch.setenv("CLF_JSON_LOGS", "1")
    primary, replica = pty.openpty()
    with os.fdopen(replica, "w") as terminal:
        assert not interactive(terminal), "JSON logs never get a bar"
    os.close(primary)


@pytest.mark.parametrize("value", ["1", "true", "YES", "on", " On "])
def test_every_spelling_that_turns_bars_off_also_turns_json_logs_on(monkeypatch, value):
    monkeypatch.setenv("CLF_JSON_LOGS", value)
    assert json_logs_requested()
    handler = configure_logging()
    try:
        assert isinstance(handler.formatter, JSONFormatter), f"CLF_JSON_LOGS={value!r} gave plain logs"
    finally:
        logging.getLogger().removeHandler(handler)
    primary, replica = pty.openpty()
    with os.fdopen(replica, "w") as terminal:
        assert not interactive(terminal)
    os.close(primary)


@pytest.mark.parametrize("value", ["", "0", "off", "no"])
def test_other_values_leave_plain_logs(value):
    assert not json_logs_requested({"CLF_JSON_LOGS": value})


def test_the_bar_and_the_log_line_mean_the_same_megabyte(tmp_path):
    with (tmp_path / "bar").open("w") as stream:
        progress = Progress("reading", total=5_000_000, unit="B", stream=stream, bar=True)
        progress.advance(2_500_000)
        assert "2.5 of 5.0 MB" in progress.line()
        progress.close()
    drawn = (tmp_path / "bar").read_text()
    assert re.search(r"2\.50?M/5\.00?M", drawn), f"the bar counts 10^6-byte MB like the line: {drawn!r}"


def _collect_command(tmp_path) -> list[str]:
    return [
        sys.executable, "-m", "clf", "collect", "--source", "snapshot", "--snapshot-path", str(SNAPSHOT),
        "--num-papers", "200", "--data-dir", str(tmp_path / "data"),
    ]  # fmt: skip


@pytest.mark.skipif(not SNAPSHOT.is_file(), reason="the shared snapshot is not there")
def test_a_snapshot_collection_draws_a_bar_on_a_terminal(tmp_path):
    primary, replica = pty.openpty()
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal has a size
    env = {**os.environ, "CLF_JSON_LOGS": "0"}
    process = subprocess.Popen(
        _collect_command(tmp_path), cwd=REPO, stdin=subprocess.DEVNULL, stdout=replica, stderr=replica, env=env
    )
    os.close(replica)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert process.wait(timeout=300) == 0, output.decode(errors="replace")[-3000:]
    text = output.decode(errors="replace")
    assert re.search(r"scanning papers\.jsonl\.gz: +\d+%\|", text), text[-2000:]
    assert "\r" in text and re.search(r"[kM]?B/s", text), "a bar redrawn in place, with its rate"


@pytest.mark.skipif(not SNAPSHOT.is_file(), reason="the shared snapshot is not there")
def test_a_snapshot_collection_logs_progress_lines_without_a_terminal(tmp_path):
    result = subprocess.run(
        _collect_command(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "CLF_JSON_LOGS": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "%|" not in result.stderr, "no bar in a log"
    done = [line for line in result.stderr.splitlines() if "scanning papers.jsonl.gz:" in line]
    assert done and re.search(r"of [\d.]+ MB \(100 %\), [\d,]+ papers, [\d.]+ MB/s \(done in", done[-1]), done
