"""Tests for clf/cli.py: the dispatch table, generated help, the README's commands, and clear errors."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys

import pytest
from jsonargparse import CLI, capture_parser

from clf.cli import COMMANDS, LIGHTNING_COMMANDS, main, normalize_option_names, old_spelling
from tests.conftest import REPO


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clf", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout


def functions() -> dict[tuple[str, ...], object]:
    """Every plain function of the table, keyed by the words that reach it: ("tune",), ("registry", "promote")."""
    found = {}
    for name, command in COMMANDS.items():
        if isinstance(command, dict):
            found.update({(name, action): f for action, f in command.items() if action != "_help"})
        elif name not in LIGHTNING_COMMANDS:
            found[(name,)] = command
    return found


@pytest.mark.parametrize("words", sorted(functions()), ids=" ".join)
def test_command_help_comes_from_signature_and_docstring(words, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*words, "--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    function = functions()[words]
    assert inspect.getdoc(function).splitlines()[0] in shown
    for parameter in inspect.signature(function).parameters.values():
        positional = parameter.default is parameter.empty and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
        if positional:  # a required parameter is a positional argument: `clf registry promote VERSION`
            assert f"{parameter.name} " in shown.split("positional arguments:")[1]
        elif parameter.kind is not parameter.VAR_KEYWORD:  # `**settings` are the fields of the class they build
            assert f"--{parameter.name}" in shown


@pytest.mark.parametrize("name", [name for name, command in COMMANDS.items() if isinstance(command, dict)])
def test_a_table_lists_its_actions_and_needs_one(name, capsys):
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert COMMANDS[name]["_help"].split(":")[0] in " ".join(shown.split())
    assert all(action in shown for action in COMMANDS[name] if action != "_help")
    with pytest.raises(SystemExit) as exited:
        main([name])
    assert exited.value.code == 2


def test_a_required_parameter_is_required_by_the_parser(capsys):
    for words, missing in [(["registry", "promote"], "version"), (["ab", "create", "--name", "x"], "treatment")]:
        with pytest.raises(SystemExit) as exited:
            main(words)
        assert exited.value.code == 2
        assert missing in capsys.readouterr().err


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
    """Every `clf …` command in the README's code blocks, including those chained with `&&` or `;`."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    commands = []
    for line in "\n".join(blocks).splitlines():
        for part in re.split("&&|;", line.split("#")[0]):
            if part.strip().startswith("clf "):
                commands.append(part.split())
    return commands


def options_of(words: tuple[str, ...]) -> set[str]:
    """The options `clf WORDS` accepts, from the parser jsonargparse builds for it (``--config`` included)."""
    parser = capture_parser(lambda: CLI(functions()[words], args=[]))
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
        key = (name, words[2]) if isinstance(COMMANDS[name], dict) else (name,)
        assert key in functions(), f"README: {' '.join(words)}"
        assert old_spelling(name, normalize_option_names(words[2:])) is None, f"README: {' '.join(words)}"
        accepted = options_of(key)
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
            "--snapshot_path",
            str(shared_papers_path),
            "--num-papers",
            "300",
            "--data-dir",
            data,
            "--categories",
            categories,
            "--out-of-scope-papers",
            "40",
        ]
    )
    main(["preprocess", "--data-dir", data, "--categories", categories])
    manifest = json.loads((tmp_path / "data" / "raw" / "arxiv" / "manifest.json").read_text())
    assert manifest["num_samples"] == 300 and manifest["out_of_scope"] == 40
    out_of_scope = json.loads((tmp_path / "data" / "processed" / "out_of_scope.json").read_text())
    assert 30 < out_of_scope["metadata"]["num_samples"] <= 40
    counts = {
        s: json.loads((tmp_path / "data" / "splits" / f"{s}.json").read_text())["metadata"]["count"]
        for s in ("train", "val", "test")
    }
    assert 250 < sum(counts.values()) <= 300 and counts["train"] > counts["val"] > 0


def test_domain_errors_are_one_clear_line(tmp_path):
    result = run_cli("collect", "--snapshot-path", str(tmp_path / "gone.jsonl.gz"), "--data-dir", str(tmp_path))
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


@pytest.mark.parametrize(
    ("words", "hint"),
    [
        (
            ["registry", "--action", "promote", "--version", "v1", "--reason", "a b"],
            "use: clf registry promote v1 --reason 'a b'",
        ),
        (
            ["registry", "compare", "--version", "v1", "--other", "v2", "--test-data", "t.json"],
            "use: clf registry compare v1 v2 --test_data t.json",
        ),
        (["ab", "status", "--experiment-id", "3"], "use: clf ab status 3"),
        (["ab", "--action", "list", "--status", "running"], "use: clf ab list --status running"),
        (
            ["deploy", "canary", "--version", "v2", "--stages", "[10, 100]"],
            "use: clf deploy canary v2 --deployment.stages '[10, 100]'",
        ),
        (["deploy", "status", "--registry=r"], "use: clf deploy status --deployment.registry=r"),
        (["retrain", "--action", "run", "--retrain-config", "r.yaml"], "use: clf retrain run --config r.yaml"),
        (["collect", "--snapshot", "s.jsonl"], "use: clf collect --snapshot_path s.jsonl"),
    ],
)
def test_an_old_spelling_fails_before_parsing_and_names_the_new_one(words, hint, capsys):
    with pytest.raises(SystemExit) as exited:
        main(words)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == f"clf {words[0]}: error: {hint}"


def test_old_config_forms_get_a_hint_and_new_ones_pass(tmp_path):
    fit = REPO / "configs" / "tiny.yaml"
    study = tmp_path / "study.yaml"
    study.write_text(f"fit_config: {fit}\nn_trials: 2\n")
    hint = old_spelling("tune", ["--config", str(fit)])
    assert hint and f"clf tune --fit_config {fit}" in hint
    assert old_spelling("tune", [f"--config={fit}"]) == hint
    for command, options in [
        ("tune", ["--config", str(study)]),
        ("tune", ["--fit_config", str(fit)]),
        ("retrain", ["run", "--config", str(REPO / "configs" / "retraining.yaml")]),
        ("registry", ["promote", "v1", "--reason", "x"]),
        ("deploy", ["canary", "v1", "--deployment.stages", "[10, 100]"]),
        ("fit", ["--config", str(fit)]),
        ("registry", []),
    ]:
        assert old_spelling(command, options) is None, (command, options)
