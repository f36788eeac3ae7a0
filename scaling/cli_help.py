"""How every ``scaling`` command's ``--help`` is laid out: defaults shown, examples kept as written."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: X)`` to an option's help where there is a default worth showing.

    Unlike ``argparse.ArgumentDefaultsHelpFormatter`` it leaves out defaults of None, False and
    empty lists (an unset option, an off switch, no overrides), and it keeps descriptions and
    epilogs (the examples) line for line.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if ("%(default)" in text or unset
                or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        return f"{text} (default: %(default)s)"


def examples(*commands: str) -> str:
    """An epilog listing example command lines, each of which runs as written from the repository root."""
    return "example" + ("s" if len(commands) > 1 else "") + ":\n" + "\n".join(f"  {c}" for c in commands)


def command(subparsers: argparse._SubParsersAction, name: str, summary: str, *example_lines: str,
            description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand with the shared formatter: ``summary`` in the parent's list, examples at the end."""
    return subparsers.add_parser(name, help=summary, description=description or summary[0].upper() + summary[1:] + ".",
                                 epilog=examples(*example_lines) if example_lines else None,
                                 formatter_class=HelpFormatter)
