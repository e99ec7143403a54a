"""The quick start of docs/MODEL_TRAINING.md runs as written, so the guide cannot drift from the code.

    python -m pytest tests/docs -q

Every command in the ```bash blocks of the "Quick start" section is extracted (line continuations joined, comments
dropped, ``&&`` and ``;`` chains split). The install step cannot run offline in test time: it is recognised, checked
to pin ``torch==2.13.0``, and skipped. Every other command must be a ``clf`` command; it runs as
``python -m clf ...`` in a temporary working directory, on the tiny config instead of the quickstart one:

- ``configs/quickstart.yaml`` becomes the absolute path of ``configs/tiny.yaml`` (a tiny random DistilBERT);
- the quickstart's ``data.data_dir`` becomes the tiny config's (relative, so it lands in the temporary directory,
  where the tiny config's ``clf fit`` finds the splits the earlier steps built);
- the value of ``--num-papers`` that equals the quickstart's ``data.num_papers`` becomes the tiny config's;
- the quickstart's ``data.snapshot_path`` (relative to the repository) becomes its absolute path.

Outputs (``data/``, ``runs/``) land in the temporary directory, never in the repository.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from clf.cli import COMMANDS
from tests.conftest import REPO

GUIDE = REPO / "docs" / "MODEL_TRAINING.md"
QUICKSTART_CONFIG = "configs/quickstart.yaml"
TINY_CONFIG = "configs/tiny.yaml"
PINNED_TORCH = "torch==2.13.0"
NUM_PAPERS_OPTIONS = ("--num-papers", "--num_papers")
DATA_DIR_OPTIONS = ("--data-dir", "--data_dir")
SNAPSHOT_OPTIONS = ("--snapshot-path", "--snapshot_path")
SEPARATORS = ("&&", ";")


def quick_start_section(markdown: str) -> str:
    """The text from the "## Quick start" heading to the next level-2 heading."""
    match = re.search(r"^## Quick start\s*$(.*?)(?=^## |\Z)", markdown, flags=re.M | re.S)
    assert match, f"{GUIDE.relative_to(REPO)} has no '## Quick start' section"
    return match.group(1)


def shell_commands(section: str) -> list[list[str]]:
    """Every command of the section's ```bash blocks, as argument lists, in order."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", section, flags=re.M | re.S):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            command: list[str] = []
            for token in lexer:
                if token in SEPARATORS:
                    commands.append(command)
                    command = []
                elif set(token) <= set(lexer.punctuation_chars):
                    raise AssertionError(f"quick start: {token!r} in {line!r}: keep to plain commands, && and ;")
                else:
                    command.append(token)
            commands.append(command)
    return [command for command in commands if command]


def is_install(command: list[str]) -> bool:
    """pip installs, creating the virtual environment and activating it."""
    program = command[0].rsplit("/", 1)[-1]  # not Path(...).name, which is "" for "."
    return program in ("pip", "pip3", ".", "source") or (
        program.startswith("python") and command[1:3] in (["-m", "pip"], ["-m", "venv"])
    )


def read_config(path: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / path).read_text())


def option_values(commands: list[list[str]], options: tuple[str, ...]) -> list[str]:
    """The values every command gives to any spelling of one option (``--opt value`` or ``--opt=value``)."""
    values = []
    for command in commands:
        for i, word in enumerate(command):
            name, sep, value = word.partition("=")
            if name in options:
                values.append(value if sep else command[i + 1])
    return values


def to_tiny(command: list[str]) -> list[str]:
    """The `clf` command with the quickstart's config, data folder, paper count and snapshot swapped for tiny ones."""
    quick, tiny = read_config(QUICKSTART_CONFIG)["data"], read_config(TINY_CONFIG)["data"]
    paths = {
        QUICKSTART_CONFIG: str(REPO / TINY_CONFIG),
        quick["data_dir"]: tiny["data_dir"],
        quick["snapshot_path"]: str((REPO / quick["snapshot_path"]).resolve()),
    }
    mapped, previous = [], ""
    for word in command:
        name, sep, value = word.partition("=")
        if sep and name.startswith("--"):
            option, value = name, value
        else:
            option, value = previous, word
        if option in NUM_PAPERS_OPTIONS and value == str(quick["num_papers"]):
            value = str(tiny["num_papers"])
        value = paths.get(value, value)
        mapped.append(f"{name}={value}" if sep and name.startswith("--") else value)
        previous = word
    return [sys.executable, "-m", "clf", *mapped[1:]]


@pytest.fixture(scope="module")
def commands() -> list[list[str]]:
    found = shell_commands(quick_start_section(GUIDE.read_text()))
    assert found, f"the quick start of {GUIDE.relative_to(REPO)} has no commands in ```bash blocks"
    return found


def test_the_install_step_is_there_and_pins_torch(commands):
    installs = [command for command in commands if is_install(command)]
    pip_installs = [c for c in installs if "install" in c and ("pip" in Path(c[0]).name or "pip" in c[1:3])]
    assert pip_installs, "the quick start should install clf with pip"
    assert any(PINNED_TORCH in command for command in pip_installs), f"the install step should pin {PINNED_TORCH}"
    assert any("-e" in command for command in pip_installs), "the install step should install this repository"


def test_every_other_command_is_a_clf_command_that_exists(commands):
    runnable = [command for command in commands if not is_install(command)]
    for command in runnable:
        assert command[0] == "clf", f"quick start: the test cannot run {shlex.join(command)!r} offline"
        assert len(command) > 1 and command[1] in COMMANDS, f"quick start: unknown command {shlex.join(command)!r}"
    assert [c[1] for c in runnable if c[1] in ("collect", "preprocess", "fit")] == ["collect", "preprocess", "fit"]


def test_the_data_steps_build_the_data_the_quickstart_config_trains_on(commands):
    """Otherwise `clf fit` would quietly collect its own data and the collect and preprocess steps would be idle."""
    data = read_config(QUICKSTART_CONFIG)["data"]
    collect = [c for c in commands if c[:2] == ["clf", "collect"]]
    preprocess = [c for c in commands if c[:2] == ["clf", "preprocess"]]
    assert option_values(collect, DATA_DIR_OPTIONS) == [data["data_dir"]]
    assert option_values(preprocess, DATA_DIR_OPTIONS) == [data["data_dir"]]
    assert option_values(collect, NUM_PAPERS_OPTIONS) == [str(data["num_papers"])]
    assert option_values(collect, SNAPSHOT_OPTIONS) == [data["snapshot_path"]]
    fits = [c for c in commands if c[:2] == ["clf", "fit"]]
    assert fits, "the quick start should train with `clf fit`"
    assert all(QUICKSTART_CONFIG in c for c in fits), f"every quick-start `clf fit` should use {QUICKSTART_CONFIG}"


def test_the_quick_start_runs_on_the_tiny_config(commands, tmp_path):
    runnable = [to_tiny(command) for command in commands if not is_install(command)]
    assert any(str(REPO / TINY_CONFIG) in command for command in runnable), "no quick-start command took the config"
    for command in runnable:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        shown = shlex.join(["clf", *command[3:]])
        assert done.returncode == 0, f"quick start: `{shown}` failed:\n{done.stderr[-3000:]}"

    tiny = read_config(TINY_CONFIG)
    data_dir, run_dir = tmp_path / tiny["data"]["data_dir"], tmp_path / tiny["trainer"]["default_root_dir"]
    assert all((data_dir / "splits" / f"{split}.json").is_file() for split in ("train", "val", "test"))
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "export" / "label_map.json").is_file()
    if any(command[3] == "test" for command in runnable):
        assert list(run_dir.glob("version_*/test_report.json")), "clf test wrote no test report"
