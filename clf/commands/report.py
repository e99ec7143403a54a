"""`clf report RUN_DIR`: the run report (`clf.model.run_report`) written again from a run's files."""

from __future__ import annotations

from pathlib import Path


def report(run_dir: str, output: str | None = None) -> Path:
    """Write a run's report.html: learning curves, test metrics, confusion matrix, calibration, data, config.

    `clf report RUN_DIR`. RUN_DIR is a run folder (``runs/quickstart``: its latest ``version_N`` with a test report
    is used) or a ``version_N`` folder. Writes ``report.html`` there (or --output) and prints its path.

    Args:
        run_dir: the run folder, or one of its logger folders.
        output: where to write the report instead.

    Returns:
        The report's path.

    Raises:
        FileNotFoundError: when the folder holds no run with a test report (run ``clf test`` first).
    """
    from clf.model.run_report import write_run_report  # matplotlib and TensorBoard load on use: `clf --help` stays fast

    path = write_run_report(Path(run_dir), Path(output) if output else None)
    print(path)
    return path
