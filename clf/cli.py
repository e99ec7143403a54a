"""The `clf` command line: one nested table from subcommand (and action) to function.

    clf collect --source snapshot --snapshot_path ../shared/data/arxiv/papers.jsonl.gz --num_papers 5000
    clf preprocess --data_dir data
    clf fit --config configs/quickstart.yaml
    clf registry promote v1.0.0 --reason "first release"
    clf <command> [<action>] --help

``fit``, ``validate``, ``test`` and ``predict`` run LightningCLI (`clf.lightning_cli`); every other command, and every
action of ``registry``, ``deploy``, ``ab``, ``db``, ``labels`` and ``retrain``, is a plain function run by jsonargparse:
its typed signature and docstring are its options and ``--help``, its required parameters are required (positional
unless keyword-only), and ``--config`` / ``--print_config`` read and write its options as YAML. Options may be spelt
with dashes (``--num-papers``): jsonargparse registers only the underscore form, so `normalize_option_names` rewrites
the names (and nothing else) before parsing.
"""

from __future__ import annotations

import inspect
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from jsonargparse import CLI

from clf import DEFAULT_CATEGORIES, __version__
from clf.backtest import commands as backtesting
from clf.commands import reference
from clf.commands.compare import compare
from clf.commands.evaluate import evaluate
from clf.commands.export import export
from clf.commands.report import report
from clf.commands.reproduce import reproduce
from clf.data.collector import ArxivCollector
from clf.data.preprocess import DatasetPreprocessor
from clf.deploy import commands as deploy
from clf.experiments import commands as experiments
from clf.registry import commands as registry_commands
from clf.retrain import commands as retraining
from clf.tune.tuner import tune

log = logging.getLogger("clf")

LIGHTNING_COMMANDS = {
    "fit": "Train the classifier (LightningCLI); resume with --ckpt_path last.",
    "validate": "Evaluate on the validation split.",
    "test": "Evaluate on the test split; writes the test report and confusion matrix.",
    "predict": "Predict the categories of --data.predict_file (or the test split) into predictions.jsonl.",
}
"""The LightningCLI subcommands and their one-line summaries."""


def collect(num_papers: int = 5000, categories: Sequence[str] = DEFAULT_CATEGORIES, **collector: Any) -> Path:
    """Collect a balanced set of arXiv papers into DATA_DIR/raw/arxiv/.

    Writes one JSON Lines file per category, the flattened classification_dataset.jsonl and a manifest.json.
    An interrupted API collection resumes where it stopped when the same command is run again.

    Args:
        num_papers: total papers to collect, split evenly over the categories.
        categories: arXiv categories to collect, e.g. "[cs.CL, cs.CV]".
        **collector: the parameters of `ArxivCollector` (--source, --snapshot_path, --data_dir, --api_url, ...),
            each its own option with the collector's default and documentation.

    Returns:
        The path of the classification dataset.
    """
    # jsonargparse reads the call below to build the options: each ArxivCollector parameter becomes one.
    path = ArxivCollector(**collector).create_classification_dataset(num_papers, list(categories))
    log.info("Wrote %s", path)
    return path


def preprocess(**preprocessor: Any) -> dict[str, Path]:
    """Clean, deduplicate and filter the collected papers, then split them 80/10/10, stratified and seeded.

    Reads DATA_DIR/raw/arxiv/classification_dataset.jsonl; writes DATA_DIR/processed/dataset.json and
    DATA_DIR/splits/{train,val,test}.json.

    Args:
        **preprocessor: the parameters of `DatasetPreprocessor` (--data_dir, --min_words, --categories, --seed,
            --val_fraction, ...), each its own option with the preprocessor's default and documentation.

    Returns:
        Split name → path of its file.
    """
    # jsonargparse reads the call below to build the options: each DatasetPreprocessor parameter becomes one.
    paths = DatasetPreprocessor(**preprocessor).run()
    for split, path in paths.items():
        log.info("%s split: %s", split, path)
    return paths


def lightning(args: Sequence[str]) -> None:
    """Run a LightningCLI subcommand over ArxivClassifier and ArxivDataModule.

    Args:
        args: the subcommand (fit, validate, test, predict) followed by its options.
    """
    from clf.lightning_cli import run_lightning  # imported here so `clf collect` does not load torch and Lightning

    run_lightning(list(args))


OLD_SPELLINGS: dict[str, dict[str, str]] = {
    "collect": {"--snapshot": "--snapshot_path"},
    "retrain": {"--retrain_config": "--config"},
    "deploy": {
        f"--{name}": f"--deployment.{name}"
        for name in ("registry", "state_db", "stages", "stage_seconds", "watch_seconds")
    },
}
"""Options renamed when their command's options became one typed group: command → old option → new option. A plugin
command names its own as the function's ``old_spellings`` attribute (``clf serve``'s flat options)."""


def old_spelling(command: str, options: Sequence[str]) -> str | None:
    """What to write instead of a command line in a form this CLI used to accept, checked before parsing.

    Old forms: `clf registry --action promote --version v1` (now ``clf registry promote v1``), the options of
    `OLD_SPELLINGS`, and `clf tune --config FIT.yaml` (a fit config; now ``--fit_config``).

    Args:
        command: the subcommand.
        options: its arguments, after the subcommand's name.

    Returns:
        The message naming the new form, or None when `options` are in no old form.
    """
    if command == "tune":
        path = _option_value(list(options), "--config")
        if path and _is_fit_config(Path(path)):
            return (
                f"--config {path} is a fit config; `clf tune --config` reads a YAML of clf tune's own options "
                f"(fit_config, n_trials, ...), as for every command. Tune it with: clf tune --fit_config {path}"
            )
    renames = OLD_SPELLINGS.get(command) or getattr(COMMANDS.get(command), "old_spellings", {})
    new = [renames.get(o.partition("=")[0], o.partition("=")[0]) + "".join(o.partition("=")[1:]) for o in options]
    actions = COMMANDS.get(command)
    if isinstance(actions, dict):
        action = _option_value(new, "--action", remove=True) or (new.pop(0) if new else None)
        if action is not None and callable(actions.get(action)):
            parameters = inspect.signature(actions[action]).parameters.values()
            required = [p.name for p in parameters if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
            moved = [_option_value(new, f"--{name}", remove=True) for name in required]
            new = [*(value for value in moved if value is not None), *new]
        new = [action, *new] if action is not None else new
    if new == list(options):
        return None
    return "use: " + shlex.join(["clf", command, *new])


def _option_value(options: list[str], name: str, remove: bool = False) -> str | None:
    """The value of option `name` in `options` (``--name value`` or ``--name=value``), removed when `remove`."""
    for index, option in enumerate(options):
        if option.startswith(name + "=") or (option == name and index + 1 < len(options)):
            value = option.partition("=")[2] if "=" in option else options[index + 1]
            if remove:
                del options[index : index + (1 if "=" in option else 2)]
            return value
    return None


def _is_fit_config(path: Path) -> bool:
    import yaml

    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(values, dict) and "fit_config" not in values and bool({"trainer", "model", "data"} & set(values))


PLUGIN_GROUP = "clf.commands"
"""The entry-point group through which installed packages add subcommands: the HTTP application (`lightning_app`)
adds ``serve`` this way, since nothing in clf may import the layer above it."""


def plugin_commands() -> dict[str, Callable[..., Any]]:
    """The subcommands installed packages register under `PLUGIN_GROUP` (``serve`` from ``lightning_app``).

    Returns:
        Name → function, in the order the entry points are listed.
    """
    return {point.name: point.load() for point in entry_points(group=PLUGIN_GROUP)}


Command = Callable[..., Any] | dict[str, Any]

COMMANDS: dict[str, Command] = {
    "collect": collect,
    "preprocess": preprocess,
    **dict.fromkeys(LIGHTNING_COMMANDS, lightning),
    "tune": tune,
    "registry": {
        "_help": "Manage model versions: create, list, show, promote, rollback, history, compare.",
        "create": registry_commands.create,
        "list": registry_commands.list_versions,
        "show": registry_commands.show,
        "promote": registry_commands.promote,
        "rollback": registry_commands.rollback,
        "history": registry_commands.history,
        "compare": compare,
    },
    "evaluate": evaluate,
    "report": report,
    "export": export,
    "reproduce": reproduce,
    "reference": {
        "_help": "The reference sample production's drift and out-of-scope checks compare with: build.",
        "build": reference.build,
    },
    **plugin_commands(),
    "deploy": {
        "_help": "Deploy a registered version: validate, shadow, blue-green, canary, rollback, status.",
        "validate": deploy.validate,
        "shadow": deploy.shadow,
        "blue-green": deploy.blue_green,
        "canary": deploy.canary,
        "rollback": deploy.rollback,
        "status": deploy.status,
    },
    "ab": {
        "_help": "A/B experiments between two registered versions: create, status, analyze, promote, stop, list.",
        "create": experiments.create,
        "status": experiments.status,
        "analyze": experiments.analyze,
        "promote": experiments.promote,
        "stop": experiments.stop,
        "list": experiments.list_experiments,
    },
    "db": {
        "_help": "The experiments database: upgrade (create or migrate its tables) or current (its revision).",
        "upgrade": experiments.upgrade,
        "current": experiments.current,
    },
    "labels": {
        "_help": "True labels that arrive late: import them by arXiv id, report measured vs estimated accuracy.",
        "import": experiments.import_labels,
        "report": experiments.label_report,
    },
    "backtest": backtesting.backtest,
    "retrain": {
        "_help": "Retrain on new arXiv papers: run once, run on a schedule, or list past runs.",
        "run": retraining.run,
        "schedule": retraining.scheduled,
        "history": retraining.history,
    },
}
"""Subcommand → function, or action → function with the table's one-line summary under ``_help``. A function's
typed signature and docstring are its options and `--help`; `lightning` gets the subcommand and its arguments."""


def overview() -> str:
    """The top-level help: every subcommand with its one-line summary.

    Returns:
        The help text.
    """
    lines = [f"usage: clf <command> [options]   (clf {__version__})", "", "commands:"]
    for name, command in COMMANDS.items():
        doc = command["_help"] if isinstance(command, dict) else LIGHTNING_COMMANDS.get(name, command.__doc__ or "")
        lines.append(f"  {name:<11} {doc.strip().splitlines()[0]}")
    lines += ["", "Run `clf <command> --help` for a command's options (and `clf <command> <action> --help`)."]
    return "\n".join(lines)


def normalize_option_names(args: Sequence[str]) -> list[str]:
    """Spells `--some-option` as `--some_option`, the form jsonargparse registers; values are left alone.

    jsonargparse has no dashed spelling of its own (its maintainers' answer in jsonargparse issue 301), while dashed
    options are the shell's convention and are in users' scripts, so the names alone are rewritten here.

    Args:
        args: command-line arguments.

    Returns:
        The arguments with option names normalised.
    """
    normalized = []
    for arg in args:
        if arg.startswith("--") and len(arg) > 2:
            name, sep, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + sep + value
        normalized.append(arg)
    return normalized


def main(args: Sequence[str] | None = None) -> None:
    """Runs one `clf` subcommand; domain errors print one clear line and exit with status 1.

    Args:
        args: the command line after ``clf``; by default ``sys.argv[1:]``.
    """
    args = normalize_option_names(sys.argv[1:] if args is None else args)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return
    name = args[0]
    if name not in COMMANDS:
        sys.exit(f"clf: unknown command {name!r}\n\n{overview()}")
    _log_clf_to_stderr()
    try:
        command = COMMANDS[name]
        if command is lightning:
            lightning(args)
            return
        hint = old_spelling(name, args[1:])
        if hint:
            print(f"clf {name}: error: {hint}", file=sys.stderr)
            sys.exit(2)
        if isinstance(command, dict):
            actions = {action: function for action, function in command.items() if action != "_help"}
            CLI(actions, args=args[1:], prog=f"clf {name}", description=command["_help"])
        else:
            CLI(command, args=args[1:], prog=f"clf {name}")
    except (ValueError, OSError, RuntimeError) as err:
        if not _is_clf_error(err):
            raise
        log.debug("Traceback of the error below", exc_info=True)
        print(f"clf {name}: error: {err}", file=sys.stderr)
        sys.exit(1)


def _log_clf_to_stderr() -> None:
    """INFO lines of clf's own loggers go to stderr; Lightning and transformers keep their own handlers."""
    logger = logging.getLogger("clf")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _is_clf_error(err: BaseException) -> bool:
    """Errors raised by clf's own checks are for the user; anything else keeps its traceback."""
    return type(err).__module__.startswith("clf.") or isinstance(err, (ValueError, FileNotFoundError))
