"""The commands README.md and examples/README.md show, run as written: every one that finishes on a CPU in seconds.

Each command line of every ```bash block is either run here (help, params, sweep plan and status,
fit on the shipped example CSV, predict) or named in NOT_RUN with the reason, so a command added to
the README is run or consciously left out. The two opening commands (install + quickstart, install +
test suite) take minutes and are what CI (.ci/run) runs, literally, on the oldest and newest Python.

Commands run through ``bash -c`` in a scratch directory that holds the repository's ``scaling/``,
``sweeps/`` and ``examples/`` (as a fresh clone would) and the files the README's earlier commands
would have made there; ``scaling`` is this interpreter's ``python -m scaling.cli``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import cli as analysis_cli
from analysis.synthetic import write_sweep

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = (README, ROOT / "examples" / "README.md")

# Commands the README shows that are not run here, by how they start, with the reason.
NOT_RUN = {
    "python3 -m venv": "installs and runs for minutes: CI runs these two commands as written",
    "scaling quickstart": "trains 34 models for minutes: run by CI through the README's first command",
    "scaling train": "trains for minutes (tests/test_train.py trains tiny models)",
    "scaling sweep launch": "trains a sweep for minutes or submits to SLURM (tests/test_sweep_launch.py)",
    "scaling data prepare": "tokenizes the user's corpus or the whole standard library (tests/test_data_cli.py)",
    "scaling analyze": "tens of seconds of bootstrap on a finished sweep; its fits.json is made here for predict",
    "srun": "needs a SLURM cluster",
    "SCALING_COORDINATOR=": "needs two hosts",
}
# Commands run here: any `--help`, and these (they read configs, sweep files, a CSV or fits.json).
RUN = ("scaling params", "scaling sweep plan", "scaling sweep status", "scaling fit", "scaling predict")


def readme_commands() -> list[str]:
    """Every command line in the ```bash blocks of README.md and examples/README.md, continuations joined."""
    commands = []
    for doc in DOCS:
        inside = False
        for line in doc.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
            if line.startswith("```"):
                inside = line == "```bash"
                continue
            if inside and line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def _runnable(command: str) -> bool:
    return "--help" in shlex.split(command, comments=True) or command.startswith(RUN)


COMMANDS = [c for c in readme_commands() if _runnable(c)]


def test_every_command_is_run_or_left_out_for_a_stated_reason():
    left_out = [c for c in readme_commands() if not _runnable(c)]
    unexplained = [c for c in left_out if not any(c.startswith(prefix) for prefix in NOT_RUN)]
    assert not unexplained, f"README commands neither run by this file nor in NOT_RUN: {unexplained}"
    shown = {prefix for c in COMMANDS for prefix in ("--help", *RUN) if prefix in c}
    assert shown == {"--help", *RUN}, f"the README no longer shows {({'--help', *RUN}) - shown}"


def test_the_readme_opens_with_the_two_commands_ci_runs():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    install_quickstart, install_test = first_block.strip().splitlines()
    assert install_quickstart.startswith("python3 -m venv .venv") and install_quickstart.endswith("scaling quickstart")
    assert install_test.startswith("python3 -m venv .venv") and install_test.endswith("pytest")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch directory holding what a fresh clone has, and ``scaling`` on PATH."""
    work = tmp_path_factory.mktemp("readme")
    for name in ("scaling", "sweeps", "examples"):
        (work / name).symlink_to(ROOT / name)
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "scaling").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m scaling.cli "$@"\n')
    (bin_dir / "scaling").chmod(0o755)
    return work


@pytest.fixture(scope="module")
def quickstart_fits(workdir) -> Path:
    """runs/quickstart/analysis/fits.json, as the README's quickstart and `scaling analyze` write it.

    The runs are a synthetic IsoFLOP sweep of a known law (the real quickstart trains for minutes),
    analysed by the real `analyze` command with a small bootstrap.
    """
    runs = workdir / "runs" / "quickstart"
    write_sweep(workdir / "runs", sweep="quickstart", budgets=(1e17, 1e18, 1e19), sizes_per_budget=5, seed=3)
    assert analysis_cli.main(["analyze", str(runs), "--out", str(runs / "analysis"), "--bootstrap", "20"]) == 0
    return runs / "analysis" / "fits.json"


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=[c.split("#")[0].strip() for c in COMMANDS])
def test_readme_command_runs_as_written(command, workdir, request):
    if "runs/quickstart/analysis/fits.json" in command:
        request.getfixturevalue("quickstart_fits")
    env = {**os.environ, "PATH": f"{workdir / 'bin'}{os.pathsep}{os.environ['PATH']}", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT), "SCALING_CACHE": str(workdir / "cache")}
    proc = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{command}\nexited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{command} printed nothing"
    if "--help" in command:
        assert proc.stdout.startswith("usage: scaling") and "example" in proc.stdout
