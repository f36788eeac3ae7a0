"""Every `scaling` command explains itself: an example, a help text for every option, no markup, optional overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from scaling import config
from scaling.cli import build_parser, main

# Their help texts are written in analysis/cli.py; drop a name here once its --help shows an example.
def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) for the top level and every subcommand, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(build_parser()))


@pytest.mark.parametrize("path", [pytest.param(" ".join(p), id=" ".join(p) or "scaling") for p in COMMANDS])
def test_help_has_an_example_and_every_option_says_what_it_does(path):
    parser = COMMANDS[tuple(path.split())]
    text = parser.format_help()
    assert "example" in text.split("options:")[-1], text
    for action in parser._actions:
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            assert action.help, f"scaling {path}: {action.option_strings or action.dest} has no help"
    assert "``" not in text and ":func:" not in text and ":class:" not in text  # no reStructuredText


@pytest.mark.parametrize("path", ["train", "params", "sweep plan", "sweep launch", "sweep status"])
def test_key_value_overrides_are_shown_as_optional(path):
    usage = COMMANDS[tuple(path.split())].format_usage()
    assert "[key=value ...]" in usage, usage


@pytest.mark.parametrize("argv", [["train"], ["sweep", "status"], ["params"]])
def test_a_missing_config_is_usage_and_one_error_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert err.startswith("usage: scaling") and len(errors) == 1, err
    assert "overrides" not in errors[0] and "key=value" not in errors[0], errors[0]


def test_defaults_are_shown():
    text = " ".join(COMMANDS[("sweep", "plan")].format_help().split())
    assert "(default: runs)" in text and "(default: 0.35)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_two_budgets_is_one_error_line_that_says_how_to_unset_one(capsys):
    tiny = str(Path(__file__).resolve().parent.parent / "scaling" / "configs" / "tiny.yaml")  # sets train.tokens
    assert main(["params", tiny, "train.steps=100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: set only one of") and "\n" not in err and "`train.tokens=null`" in err
    cfg = config.load(tiny, ["train.steps=100", "train.tokens=null"])  # the advice works
    assert cfg.train.steps == 100 and cfg.train.tokens is None
