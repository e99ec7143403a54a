"""What clf.training.session relies on in LightningCLI beyond its documented API, checked so that an upgrade of
lightning that changes it fails here (lightning is capped in pyproject.toml below the next minor release)."""

from __future__ import annotations

import inspect

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from clf.training import ConfigRequest, Stage, TrainingSession
from tests.training.conftest import TINY


def test_each_stage_keeps_its_parser_in_the_private_member_the_session_reads():
    session = TrainingSession(ConfigRequest(Stage.TEST, TINY, instantiate=False))
    parsers = session._subcommand_parsers
    assert set(parsers) == set(LightningCLI.subcommands()) == {stage.value for stage in Stage}
    assert all(isinstance(parser, LightningArgumentParser) for parser in parsers.values())
    assert parsers["test"] is not session.parser and "ckpt_path" in parsers["test"].get_defaults()


def test_the_hooks_the_session_overrides_keep_their_signatures():
    expected = {
        "parse_arguments": ["self", "parser", "args"],
        "add_arguments_to_parser": ["self", "parser"],
        "before_instantiate_classes": ["self"],
        "instantiate_classes": ["self"],
        "instantiate_trainer": ["self", "kwargs"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(LightningCLI, name)).parameters) == parameters, name


def test_a_parse_only_request_runs_no_stage_because_init_reads_subcommand_after_instantiate_classes():
    # The session clears `subcommand` in instantiate_classes for a parse-only request; LightningCLI.__init__ must read
    # it only afterwards, or it would run a stage on a trainer that was never built.
    source = inspect.getsource(LightningCLI.__init__)
    assert source.index("self.instantiate_classes()") < source.index("if self.subcommand is not None:")
    session = TrainingSession(ConfigRequest(Stage.FIT, TINY, instantiate=False))
    assert session.subcommand is None and session.result is None and not hasattr(session, "trainer")
