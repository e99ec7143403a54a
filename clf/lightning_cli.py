"""`clf fit|validate|test|predict`: the command face of `clf.training`, LightningCLI over clf's model and data.

    clf fit --config configs/quickstart.yaml
    clf fit --config configs/quickstart.yaml --ckpt_path last      # resume an interrupted run
    clf test --config configs/quickstart.yaml --ckpt_path best
    clf predict --config configs/quickstart.yaml --ckpt_path best --data.predict_file papers.jsonl

The command line is parsed by the same `clf.training.TrainingSession` that `clf.training.fit` uses from Python, so
a YAML file, its keys and their ``--key value`` flags mean the same in both; see that class for the always-on
callbacks (``checkpoint``, ``early_stopping``, ``divergence_guard``, ``export``, ``lr_monitor``).
"""

from __future__ import annotations

import warnings

from clf.training.distributed import leaving_process_group
from clf.training.session import TrainingSession


def run_lightning(args: list[str], *, run: bool = True) -> TrainingSession:
    """Runs a LightningCLI subcommand (`fit`, `validate`, `test`, `predict`) on clf's model and data.

    Args:
        args: the subcommand and its options, e.g. ``["fit", "--config", "configs/tiny.yaml"]``; with
            ``run=False``, only the options (the classes are instantiated, nothing runs).
        run: run the subcommand, or only parse and instantiate.

    Returns:
        The session, with ``model``, ``datamodule``, ``trainer`` and, after a subcommand, ``result``.
    """
    # `clf` passes the arguments it parsed from sys.argv (spelling normalised); sys.argv itself must stay as it is,
    # because DDP's launcher starts the other ranks with it.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
    # A DDP stage leaves its process group behind; destroyed here, while the interpreter is whole, so a run that did
    # its work does not abort at exit (see clf.training.distributed).
    with leaving_process_group():
        return TrainingSession(args, run=run, parser_kwargs={"prog": "clf"})
