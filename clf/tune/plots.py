"""Plots of a study: optimisation history, parameter importance, parallel coordinates (HTML and PNG)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import optuna  # noqa: E402
from optuna import visualization  # noqa: E402
from optuna.visualization import matplotlib as static  # noqa: E402

log = logging.getLogger(__name__)

# name -> (the plotly figure, the matplotlib axes) of a study.
PLOTS: dict[str, tuple[Callable[[optuna.Study], Any], Callable[[optuna.Study], Any]]] = {
    "optimization_history": (visualization.plot_optimization_history, static.plot_optimization_history),
    "param_importances": (visualization.plot_param_importances, static.plot_param_importances),
    "parallel_coordinate": (visualization.plot_parallel_coordinate, static.plot_parallel_coordinate),
}


def write_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Writes each plot as ``<name>.html`` (interactive, plotly) and ``<name>.png``; returns the files written.

    A plot the study cannot support yet (parameter importance needs two completed trials) is skipped with a log line.

    Args:
        study: the Optuna study to plot.
        out_dir: folder of the plots; created when missing.

    Returns:
        The files written, HTML and PNG of each plot drawn.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (interactive, still) in PLOTS.items():
        try:
            interactive(study).write_html(out_dir / f"{name}.html")
            axes = still(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
            figure.savefig(out_dir / f"{name}.png", dpi=110, bbox_inches="tight")
            matplotlib.pyplot.close(figure)
            written += [out_dir / f"{name}.html", out_dir / f"{name}.png"]
        except (ValueError, RuntimeError) as err:
            log.info("plot %s skipped: %s", name, err)
    return written
