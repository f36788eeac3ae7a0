"""The project's one error model: what a user can get wrong, and how the command line reports it.

Every expected failure (a bad config value, a missing file, a full disk, a run already in use)
raises a ``UserError`` subclass, or an ``OSError`` from the operating system. ``guarded`` runs a
command and turns those into exactly one ``error: ...`` line on stderr and a non-zero exit code;
anything else is a bug and keeps its traceback. ``--debug`` (or ``SCALING_DEBUG=1``) shows the
traceback of expected failures too.

Exit codes: 2 for bad input (``UserError``), 1 for a run that failed or a refusal of the operating
system (``OSError``: disk full, read-only, permission denied), 128 + signal for an interrupted run.

This module imports nothing from the project, so any module may raise these errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterator

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UserError(Exception):
    """A mistake the user can fix, or a failure they must know about; printed as one line."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(UserError, ValueError):
    """A config problem the user can fix; the CLI prints it without a traceback.

    Defined here, not in ``scaling.config``, so that ``scaling.presets`` (which config imports)
    can raise it without importing config back.
    """


class Interrupted(Exception):
    """A run stopped by SIGINT/SIGTERM after saving a checkpoint: not an error, and resumable."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"interrupted at step {step}; run the same command to resume")
        self.step = step
        self.exit_code = 128 + signum


def debug_requested() -> bool:
    """``SCALING_DEBUG`` set to something other than 0 or empty (``scaling --debug`` is the flag form)."""
    return os.environ.get("SCALING_DEBUG", "") not in ("", "0")


def describe_os_error(e: OSError) -> str:
    """``path: cause`` from an OSError, the way a user reads it (``runs/x: No space left on device``)."""
    cause = e.strerror or str(e) or type(e).__name__
    paths = [p for p in (e.filename, e.filename2) if p is not None]
    return f"{' -> '.join(map(str, paths))}: {cause}" if paths else cause


@contextlib.contextmanager
def naming(path) -> Iterator[None]:
    """Give an OSError raised inside the block the path it concerns: a failed write() (a full
    disk) carries no file name, unlike a failed open()."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def _expected(e: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for a failure the user should see as one line, else None (a bug)."""
    if isinstance(e, UserError):
        return str(e), e.exit_code
    if isinstance(e, OSError):
        return describe_os_error(e), EXIT_FAILED
    # The analysis package reports bad input with its own FitError (it imports nothing from here).
    fit_error = getattr(sys.modules.get("analysis.errors"), "FitError", None)
    if fit_error is not None and isinstance(e, fit_error):
        return str(e), EXIT_BAD_INPUT
    return None


def guarded(command: Callable[[], int], debug: bool = False) -> int:
    """Run ``command`` and return its exit code, reporting expected failures as one stderr line."""
    try:
        return command()
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        expected = _expected(e)
        if expected is None or debug:
            raise
        message, code = expected
        # One line: a multi-line message (a YAML excerpt, an XLA dump) is folded.
        print("error: " + " ".join(message.split()), file=sys.stderr)
        return code
