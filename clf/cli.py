"""The `clf` command line: one table from subcommand to function.

    clf collect --source snapshot --snapshot ../shared/data/arxiv/papers.jsonl.gz --num-papers 5000
    clf preprocess --data-dir data
    clf fit --config configs/quickstart.yaml
    clf <command> --help

``fit``, ``validate``, ``test`` and ``predict`` run LightningCLI (`clf.lightning_cli`); the other commands are plain
functions whose options jsonargparse generates from their typed signatures and docstrings. Options may be spelt
with dashes or underscores (``--num-papers`` or ``--num_papers``), and every command reads YAML with ``--config``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from jsonargparse import CLI

from clf import DEFAULT_CATEGORIES, __version__
from clf.commands.evaluate import evaluate
from clf.commands.export import export
from clf.commands.report import report
from clf.commands.reproduce import reproduce
from clf.data.collector import DEFAULT_API_URL, ArxivCollector
from clf.data.preprocess import DatasetPreprocessor
from clf.deploy.commands import deploy
from clf.experiments.commands import ab, db
from clf.retrain.commands import retrain
from clf.tune.tuner import tune

log = logging.getLogger("clf")

LIGHTNING_COMMANDS = {
    "fit": "Train the classifier (LightningCLI); resume with --ckpt_path last.",
    "validate": "Evaluate on the validation split.",
    "test": "Evaluate on the test split; writes the test report and confusion matrix.",
    "predict": "Predict the categories of --data.predict_file (or the test split) into predictions.jsonl.",
}
"""The LightningCLI subcommands and their one-line summaries."""


def collect(
    source: Literal["snapshot", "api"] = "snapshot",
    snapshot: str | None = None,
    num_papers: int = 5000,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    data_dir: str = "data",
    api_url: str = DEFAULT_API_URL,
    delay_seconds: float = 3.0,
    page_size: int = 100,
    max_retries: int = 4,
    backoff_seconds: float = 5.0,
    timeout_seconds: float = 30.0,
    start_date: str | None = None,
    end_date: str | None = None,
    primary_only: bool = True,
    seed: int = 42,
) -> Path:
    """Collect a balanced set of arXiv papers into DATA_DIR/raw/arxiv/.

    Writes one JSON Lines file per category, the flattened classification_dataset.jsonl and a manifest.json.
    An interrupted API collection resumes where it stopped when the same command is run again.

    Args:
        source: `snapshot` reads a local JSON Lines snapshot (offline); `api` queries the arXiv API.
        snapshot: the snapshot file for --source snapshot (the shared format or arxiv-metadata-oai-snapshot).
        num_papers: total papers to collect, split evenly over the categories.
        categories: arXiv categories to collect, e.g. "[cs.CL, cs.CV]".
        data_dir: the data folder.
        api_url: the arXiv API query endpoint.
        delay_seconds: least seconds between two API requests (arXiv asks for 3).
        page_size: papers per API request.
        max_retries: retries of a failed API page (HTTP 429/5xx, timeout, malformed feed) before giving up.
        backoff_seconds: wait before the first retry, doubled on each further one.
        timeout_seconds: seconds to wait for one API answer.
        start_date: keep papers published on or after this day (YYYY-MM-DD).
        end_date: keep papers published on or before this day (YYYY-MM-DD).
        primary_only: keep only papers whose primary category is the one collected.
        seed: seed of the snapshot sampling.

    Returns:
        The path of the classification dataset.
    """
    collector = ArxivCollector(
        data_dir=data_dir,
        source=source,
        snapshot_path=snapshot,
        api_url=api_url,
        delay_seconds=delay_seconds,
        page_size=page_size,
        max_retries=max_retries,
        backoff_seconds=backoff_seconds,
        timeout_seconds=timeout_seconds,
        primary_only=primary_only,
        start_date=start_date,
        end_date=end_date,
        seed=seed,
    )
    path = collector.create_classification_dataset(num_papers, list(categories))
    log.info("Wrote %s", path)
    return path


def preprocess(
    data_dir: str = "data",
    min_words: int = 50,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    seed: int = 42,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict[str, Path]:
    """Clean, deduplicate and filter the collected papers, then split them 80/10/10, stratified and seeded.

    Reads DATA_DIR/raw/arxiv/classification_dataset.jsonl; writes DATA_DIR/processed/dataset.json and
    DATA_DIR/splits/{train,val,test}.json.

    Args:
        data_dir: the data folder.
        min_words: drop papers whose title and abstract have fewer words.
        categories: the labels to keep.
        seed: seed of the split.
        val_fraction: share of papers in the validation split.
        test_fraction: share of papers in the test split.

    Returns:
        Split name → path of its file.
    """
    preprocessor = DatasetPreprocessor(
        data_dir=data_dir,
        min_words=min_words,
        categories=list(categories),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    paths = preprocessor.run()
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


def registry(
    action: Literal["create", "list", "show", "promote", "rollback", "history", "compare"],
    version: str | None = None,
    model_path: str | None = None,
    reason: str = "",
    other: str | None = None,
    test_data: str | None = None,
    registry: str = "models/classification",
    bump: Literal["major", "minor", "patch"] = "minor",
) -> Any:
    """Manage model versions: create, list, show, promote, rollback, history, compare.

    `clf registry ACTION [VERSION]`: the action and the version may also be given positionally. Prints JSON.

    Args:
        action: create (register --model-path), list, show (one version's metadata), promote (--version to
            production), rollback (to the previous production version), history (every production change), compare
            (--version against --other on --test-data).
        version: the version, vX.Y.Z; for create, the next --bump version when left out.
        model_path: for create: the export folder of a run (runs/<name>/export).
        reason: for promote and rollback: why, recorded in the audit log.
        other: for compare: the candidate version compared with --version.
        test_data: for compare: a split file such as data/quickstart/splits/test.json.
        registry: the registry folder.
        bump: for create without --version: which part of the highest version to increment.

    Returns:
        What was printed, as Python objects.

    Raises:
        RegistryError: when an action misses the option it needs (--model-path, --version, --other, --test-data).
    """
    from clf.registry import ModelRegistry, RegistryError

    models = ModelRegistry(registry)
    result: Any
    if action == "create":
        if model_path is None:
            raise RegistryError("clf registry create needs --model-path (a run's export folder)")
        created = models.create_version(model_path, version, bump=bump)
        result = models.get_metadata(created)
    elif action == "list":
        production = models.production_version()
        result = [{**entry.to_json(), "production": entry.version == production} for entry in models.list_versions()]
    elif action in ("show", "promote", "compare") and version is None:
        raise RegistryError(f"clf registry {action} needs --version vX.Y.Z")
    elif action == "show":
        result = models.get_metadata(version)
    elif action == "promote":
        result = models.promote_to_production(version, reason).to_json()
    elif action == "rollback":
        result = models.rollback(reason).to_json()
    elif action == "history":
        result = [change.to_json() for change in models.history()]
    else:
        if other is None or test_data is None:
            raise RegistryError("clf registry compare needs --other vX.Y.Z and --test-data SPLIT_FILE")
        from clf.evaluation import compare_versions  # loads torch: only for this action

        result = compare_versions(models, version, other, test_data).to_json()
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def old_config_form(command: str, options: Sequence[str]) -> str | None:
    """A hint for a command line written before `--config` meant a YAML of the command's own options everywhere.

    `clf tune --config FIT.yaml` used to tune a fit config (now ``--fit_config``); `clf retrain --retrain_config FILE`
    used to read the retraining settings (now ``--config``, as for every command).

    Args:
        command: the subcommand.
        options: its arguments, after the subcommand's name.

    Returns:
        What to write instead, or None when `options` are not in an old form.
    """
    if command == "retrain" and any(o == "--retrain_config" or o.startswith("--retrain_config=") for o in options):
        return "--retrain_config is gone: pass the retraining settings with --config FILE (see configs/retraining.yaml)"
    if command != "tune":
        return None
    for index, option in enumerate(options):
        path = option.partition("=")[2] if option.startswith("--config=") else None
        if option == "--config" and index + 1 < len(options):
            path = options[index + 1]
        if path and _is_fit_config(Path(path)):
            return (
                f"--config {path} is a fit config; `clf tune --config` now reads a YAML of clf tune's own options "
                f"(fit_config, n_trials, ...), as for every command. Tune it with: clf tune --fit_config {path}"
            )
    return None


def _is_fit_config(path: Path) -> bool:
    import yaml

    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(values, dict) and "fit_config" not in values and bool({"trainer", "model", "data"} & set(values))


POSITIONAL_OPTIONS = {
    "registry": ("--action", "--version"),
    "reproduce": ("--version",),
    "report": ("--run_dir",),
    "deploy": ("--action", "--version"),
    "ab": ("--action", "--experiment_id"),
    "db": ("--action",),
    "retrain": ("--action",),
}
"""Commands whose leading bare arguments name options: `clf registry promote v1.0.0`, `clf ab status 3`."""


def positional_args(command: str, options: Sequence[str]) -> list[str]:
    """Turns `clf registry promote v1.0.0 ...` into `--action promote --version v1.0.0 ...` (see POSITIONAL_OPTIONS).

    Args:
        command: the subcommand.
        options: its arguments, after the subcommand's name.

    Returns:
        The arguments with the leading bare ones turned into named options.
    """
    options = list(options)
    named = []
    for flag in POSITIONAL_OPTIONS.get(command, ()):
        if options and not options[0].startswith("-"):
            named += [flag, options.pop(0)]
    return named + options


PLUGIN_GROUP = "clf.commands"
"""The entry-point group through which installed packages add subcommands: the HTTP application (`lightning_app`)
adds ``serve`` this way, since nothing in clf may import the layer above it."""


def plugin_commands() -> dict[str, Callable[..., Any]]:
    """The subcommands installed packages register under `PLUGIN_GROUP` (``serve`` from ``lightning_app``).

    Returns:
        Name → function, in the order the entry points are listed.
    """
    return {point.name: point.load() for point in entry_points(group=PLUGIN_GROUP)}


COMMANDS: dict[str, Callable[..., Any]] = {
    "collect": collect,
    "preprocess": preprocess,
    **dict.fromkeys(LIGHTNING_COMMANDS, lightning),
    "tune": tune,
    "registry": registry,
    "evaluate": evaluate,
    "report": report,
    "export": export,
    "reproduce": reproduce,
    **plugin_commands(),
    "deploy": deploy,
    "ab": ab,
    "db": db,
    "retrain": retrain,
}
"""Subcommand → function. A plain function's signature and docstring are its `--help`; `lightning` gets the
subcommand and its arguments."""


def overview() -> str:
    """The top-level help: every subcommand with its one-line summary.

    Returns:
        The help text.
    """
    lines = [f"usage: clf <command> [options]   (clf {__version__})", "", "commands:"]
    for name, function in COMMANDS.items():
        summary = LIGHTNING_COMMANDS.get(name) or (function.__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name:<11} {summary}")
    lines += ["", "Run `clf <command> --help` for a command's options."]
    return "\n".join(lines)


def normalize_option_names(args: Sequence[str]) -> list[str]:
    """Spells `--some-option` as `--some_option`, the form jsonargparse registers; values are left alone.

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
        if COMMANDS[name] is lightning:
            lightning(args)
        else:
            options = args[1:]
            hint = old_config_form(name, options)
            if hint:
                print(f"clf {name}: error: {hint}", file=sys.stderr)
                sys.exit(2)
            options = positional_args(name, options)
            CLI(COMMANDS[name], args=options, as_positional=False, prog=f"clf {name}")
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
