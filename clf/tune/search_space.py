"""Search spaces for `clf tune`, read from YAML: one entry per fit-config key.

model.learning_rate: {type: float, low: 1.0e-5, high: 5.0e-5, log: true}
data.batch_size: {type: categorical, choices: [8, 16, 32]}
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import yaml


class SearchSpaceError(ValueError):
    """A search space entry that cannot be searched; the message names the key and the fix."""


@dataclass(frozen=True)
class Parameter:
    """One searched config key.

    Attributes:
        key: the fit-config key, e.g. ``model.learning_rate``.
        kind: ``float``, ``int`` or ``categorical``.
        low: lower bound (``float``/``int``).
        high: upper bound (``float``/``int``).
        log: sample on a log scale.
        step: grid step (``int``, or ``float`` without log).
        choices: the values of a ``categorical`` parameter.
    """

    key: str
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        where = f"search space key {self.key!r}"
        if self.kind == "categorical":
            if not self.choices:
                raise SearchSpaceError(f"{where}: 'choices' is empty; list at least one value")
            return
        if self.low is None or self.high is None:
            raise SearchSpaceError(f"{where}: a {self.kind} parameter needs 'low' and 'high'")
        if not self.low < self.high:
            raise SearchSpaceError(f"{where}: empty range, low {self.low} must be below high {self.high}")
        if self.log and self.low <= 0:
            raise SearchSpaceError(f"{where}: a log-scale range must be positive, got low {self.low}")

    def suggest(self, trial: optuna.Trial) -> Any:
        """Draws this parameter's value for `trial`.

        Args:
            trial: the Optuna trial being set up.

        Returns:
            The value drawn: an int, a float or one of `choices`.
        """
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        assert self.low is not None and self.high is not None, "__post_init__ requires both bounds"
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


def default_search_space() -> list[Parameter]:
    """Learning rate log-uniform in [1e-5, 5e-5], batch size {8, 16, 32}, warmup steps {100, 500, 1000}.

    The same space is written out in ``configs/tune/default.yaml``.

    Returns:
        The three parameters, in that order.
    """
    return [
        Parameter("model.learning_rate", "float", low=1e-5, high=5e-5, log=True),
        Parameter("data.batch_size", "categorical", choices=(8, 16, 32)),
        Parameter("model.warmup_steps", "categorical", choices=(100, 500, 1000)),
    ]


def load_search_space(path: str | Path | None = None) -> list[Parameter]:
    """Reads a search space YAML; `default_search_space` when `path` is None.

    Args:
        path: YAML mapping each config key (``model.learning_rate``) to its ``type`` (float, int, categorical) and
            ``low``/``high``/``log``/``step`` or ``choices``; None for the default space.

    Returns:
        The parameters, in file order.

    Raises:
        SearchSpaceError: naming the file and the entry that is malformed.
    """
    if path is None:
        return default_search_space()
    path = Path(path)
    if not path.is_file():
        raise SearchSpaceError(f"search space {path} not found; pass --search_space with a YAML file")
    entries = yaml.safe_load(path.read_text()) or {}
    if not isinstance(entries, dict) or not entries:
        raise SearchSpaceError(f"{path}: expected a mapping of config keys to parameter specs")
    parameters = []
    for key, spec in entries.items():
        if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
            raise SearchSpaceError(f"{path}: {key!r} needs 'type' float, int or categorical, got {spec!r}")
        unknown = set(spec) - {"type", "low", "high", "log", "step", "choices"}
        if unknown:
            raise SearchSpaceError(f"{path}: {key!r} has unknown fields {sorted(unknown)}")
        parameters.append(
            Parameter(
                key=str(key),
                kind=spec["type"],
                low=spec.get("low"),
                high=spec.get("high"),
                log=bool(spec.get("log", False)),
                step=spec.get("step"),
                choices=tuple(spec.get("choices") or ()),
            )
        )
    return parameters


def check_keys(parameters: list[Parameter], config_keys: Collection[str]) -> None:
    """Checks every searched key exists in the fit config.

    Args:
        parameters: the search space.
        config_keys: the dotted keys of the fit config (``model.learning_rate``, ``data.batch_size``...).

    Raises:
        SearchSpaceError: naming each unknown key and the closest known ones.
    """
    problems = []
    for parameter in parameters:
        if parameter.key not in config_keys:
            close = difflib.get_close_matches(parameter.key, list(config_keys), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"{parameter.key!r} is not a key of the fit config{hint}")
    if problems:
        raise SearchSpaceError("search space: " + "; ".join(problems) + ". `clf fit --print_config` lists the keys.")
