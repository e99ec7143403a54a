"""Tests for clf/cli.py: the dispatch table, generated help, the README's commands, and clear errors."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys

import pytest
from jsonargparse import CLI, capture_parser

from clf.cli import COMMANDS, LIGHTNING_COMMANDS, main, normalize_option_names, old_config_form
from tests.conftest import REPO


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clf", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - set(LIGHTNING_COMMANDS)))
def test_command_help_comes_from_signature_and_docstring(name, capsys):
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    function = COMMANDS[name]
    assert inspect.getdoc(function).splitlines()[0] in " ".join(shown.split())
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is not parameter.VAR_KEYWORD:  # `**settings` are the fields of the class they build
            assert f"--{parameter.name}" in shown


def test_dashes_and_underscores_are_the_same_option():
    assert normalize_option_names(["collect", "--num-papers", "5", "--data-dir=x", "-h", "--"]) == [
        "collect",
        "--num_papers",
        "5",
        "--data_dir=x",
        "-h",
        "--",
    ]


def readme_commands() -> list[list[str]]:
    """Every `clf …` command in the README's code blocks, including those chained with `&&`."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    commands = []
    for line in "\n".join(blocks).splitlines():
        for part in line.split("#")[0].split("&&"):
            if part.strip().startswith("clf "):
                commands.append(part.split())
    return commands


def options_of(name: str) -> set[str]:
    """The options `clf NAME` accepts, from the parser jsonargparse builds for it (``--config`` included)."""
    parser = capture_parser(lambda: CLI(COMMANDS[name], args=[], as_positional=False))
    return {option for action in parser._actions for option in action.option_strings}


def test_readme_commands_use_commands_and_options_that_exist():
    commands = readme_commands()
    assert {words[1] for words in commands} == set(COMMANDS), "every command should be shown in the README"
    for words in commands:
        name = words[1]
        assert name in COMMANDS, f"README uses unknown command {name!r}"
        if name in LIGHTNING_COMMANDS:
            config = words[words.index("--config") + 1]
            made_by_an_earlier_command = config.startswith("runs/")  # e.g. the best.yaml of `clf tune`
            assert made_by_an_earlier_command or (REPO / config).is_file(), f"README: {' '.join(words)}"
            continue
        accepted = options_of(name)
        for word in words[2:]:
            if word.startswith("--"):
                assert "--" + word[2:].split("=")[0].replace("-", "_") in accepted, f"README: {' '.join(words)}"


def test_collect_then_preprocess_end_to_end(shared_papers_path, tmp_path):
    data = str(tmp_path / "data")
    categories = "[cs.DB, cs.NE, cs.RO]"
    main(
        [
            "collect",
            "--source",
            "snapshot",
            "--snapshot",
            str(shared_papers_path),
            "--num-papers",
            "300",
            "--data-dir",
            data,
            "--categories",
            categories,
        ]
    )
    main(["preprocess", "--data-dir", data, "--categories", categories])
    manifest = json.loads((tmp_path / "data" / "raw" / "arxiv" / "manifest.json").read_text())
    assert manifest["num_samples"] == 300
    counts = {
        s: json.loads((tmp_path / "data" / "splits" / f"{s}.json").read_text())["metadata"]["count"]
        for s in ("train", "val", "test")
    }
    assert 250 < sum(counts.values()) <= 300 and counts["train"] > counts["val"] > 0


def test_domain_errors_are_one_clear_line(tmp_path):
    result = run_cli("collect", "--snapshot", str(tmp_path / "gone.jsonl.gz"), "--data-dir", str(tmp_path))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("clf collect: error:") and "gone.jsonl.gz not found" in last
    assert "Traceback" not in result.stderr


def test_bad_option_value_names_the_option(tmp_path):
    result = run_cli("preprocess", "--data-dir", str(tmp_path), "--val-fraction", "0.7")
    assert result.returncode == 1
    assert "val_fraction must be in (0, 0.5), got 0.7" in result.stderr


@pytest.mark.parametrize("name", sorted(LIGHTNING_COMMANDS))
def test_lightning_commands_have_help(name, capsys):
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "--config" in shown and "--model.pretrained" in shown and "--data.data_dir" in shown


def test_old_config_forms_get_a_hint_and_new_ones_pass(tmp_path):
    fit = REPO / "configs" / "tiny.yaml"
    study = tmp_path / "study.yaml"
    study.write_text(f"fit_config: {fit}\nn_trials: 2\n")
    hint = old_config_form("tune", ["--config", str(fit)])
    assert hint and f"clf tune --fit_config {fit}" in hint
    assert old_config_form("tune", [f"--config={fit}"]) == hint
    assert "--config FILE" in old_config_form("retrain", ["--action", "run", "--retrain_config", "x.yaml"])
    for command, options in [
        ("tune", ["--config", str(study)]),
        ("tune", ["--fit_config", str(fit)]),
        ("retrain", ["--config", str(REPO / "configs" / "retraining.yaml")]),
        ("fit", ["--config", str(fit)]),
    ]:
        assert old_config_form(command, options) is None, (command, options)
