"""Data drawn from a known law: for recovery tests, the benchmark and the documentation figures.

A fitter is only trustworthy once it has given back parameters it was handed
(the lesson of Besiroglu et al. 2024).  ``write_sweep`` writes run directories
in the format of ``analysis.run_format``, so ``scaling analyze`` can be shown end to
end without training anything; ``python -m analysis.synthetic OUT`` does that
from the command line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from analysis import run_format as rf

# Hoffmann et al. (2022), Approach 3 as printed.
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(N, D, p=CHINCHILLA):
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, Section 3.3): the loss in nats of a
    model of N parameters trained on D tokens, for arrays or scalars N, D (broadcast) and a law ``p``
    with keys E, A, B, alpha, beta."""
    return p["E"] + p["A"] / np.power(N, p["alpha"]) + p["B"] / np.power(D, p["beta"])


def isoflop_design(budgets, sizes_per_budget: int, span: float = 8.0, p=CHINCHILLA) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) pairs with D = C / 6N, ``sizes_per_budget`` model sizes per budget around its optimum.

    Returns two float arrays of length ``len(budgets) x sizes_per_budget``, budget by budget; C in
    FLOPs. The optimum is N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta))
    (Hoffmann et al. 2022, Section 3.3).

    Sizes come from one geometric ladder shared by all budgets (as a real sweep
    reuses its model shapes), ``span`` being the ratio between the largest and
    smallest size at a budget; each budget takes the ladder rungs centred on its
    compute-optimal N.
    """
    s = p["alpha"] + p["beta"]
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s)
    step = np.log(span) / (sizes_per_budget - 1)
    N, D = [], []
    for C in budgets:
        centre = np.round(np.log(G * (C / 6) ** (p["beta"] / s)) / step)
        n = np.exp(step * (centre + np.arange(sizes_per_budget) - (sizes_per_budget - 1) // 2))
        N.append(n)
        D.append(C / (6 * n))
    return np.concatenate(N), np.concatenate(D)


def sample_points(n: int, noise: float, seed: int, p=CHINCHILLA, n_range=(1e7, 1e10), d_range=(1e8, 1e11)):
    """``n`` random (N, D, loss) with multiplicative log-normal noise of sd ``noise``.

    N and D are log-uniform in ``n_range`` (parameters) and ``d_range`` (tokens); returns three float
    arrays of length ``n``, the loss from ``chinchilla_loss`` with ``p``; ``seed`` makes it repeatable.
    """
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(*np.log(n_range), n))
    D = np.exp(rng.uniform(*np.log(d_range), n))
    return N, D, chinchilla_loss(N, D, p) * np.exp(rng.normal(0.0, noise, n))


def write_sweep(root, *, budgets=(1e17, 3e17, 1e18, 3e18, 1e19), sizes_per_budget: int = 7, noise: float = 0.005,
                seed: int = 0, p=CHINCHILLA, log_points: int = 24, eval_every: int = 2, embedding_fraction=0.1,
                tokens_per_step: int = 65536, sweep: str = "synthetic", tokenizer: str = "byte") -> Path:
    """Write an IsoFLOP sweep of run directories whose losses follow the law ``p``.

    Each run's loss after t tokens is L(N, t) (as if every prefix of the run
    were annealed), so the lower envelope of the curves is the law's
    compute-optimal frontier.  FLOPs are counted as exactly 6 N D; the
    embedding share is ``embedding_fraction`` of N.  As in a real sweep, each
    run's tokens are whole steps, so its ``compute_target`` is near, not at,
    its nominal budget.  ``tokenizer`` is recorded as the training library
    does (``dataset.tokenizer.kind``), which sets the loss unit of the figures.

    Each run has ``log_points`` metrics rows, an evaluation every ``eval_every``-th and at the last;
    train losses carry twice the ``noise``. Returns the sweep's directory, ``root/sweep``, holding one
    directory per run (``r000``, ``r001``, ...).
    """
    rng = np.random.default_rng(seed)
    root = Path(root) / sweep
    N, D = isoflop_design(budgets, sizes_per_budget, p=p)
    for i, (n, d) in enumerate(zip(N, D)):
        run_id = f"r{i:03d}"
        run = root / run_id
        run.mkdir(parents=True, exist_ok=True)
        n_int = round(n)
        emb = round(n * embedding_fraction)
        d = tokens_per_step * max(1, round(d / tokens_per_step))  # whole steps, as a trainer would
        meta = {rf.RUN_ID: run_id, rf.SWEEP: sweep, rf.SEED: seed, rf.N_PARAMS: n_int,
                rf.N_PARAMS_NON_EMBEDDING: n_int - emb, rf.N_PARAMS_EMBEDDING: emb,
                rf.FLOPS_PER_TOKEN: 6.0 * n_int, rf.FLOPS_PER_TOKEN_6N: 6.0 * n_int,
                rf.TOKENS_TARGET: float(d), rf.COMPUTE_TARGET: 6.0 * n_int * d, rf.STATUS: rf.DONE, rf.ERROR: None,
                rf.STARTED: "2026-01-01T00:00:00Z", rf.FINISHED: "2026-01-01T01:00:00Z", rf.VERSIONS: {},
                rf.DATASET: {rf.TOKENIZER: {rf.TOKENIZER_KIND: tokenizer}}}
        (run / rf.RUN_JSON).write_text(json.dumps(meta, indent=1))
        tokens = d * np.geomspace(1e-2, 1.0, log_points)
        lines = []
        for step, t in enumerate(tokens, start=1):
            rec = {rf.STEP: step * 10, rf.TOKENS: float(t), rf.FLOPS: float(6.0 * n_int * t),
                   rf.TRAIN_LOSS: float(chinchilla_loss(n, t, p) * np.exp(rng.normal(0, 2 * noise))),
                   rf.LR: 1e-3, rf.GRAD_NORM: 1.0, rf.TOKENS_PER_S: 1e5, rf.MFU: 0.1, rf.WALL_S: float(step)}
            if step % eval_every == 0 or step == log_points:
                rec[rf.EVAL_LOSS] = float(chinchilla_loss(n, t, p) * np.exp(rng.normal(0, noise)))
            lines.append(json.dumps(rec))
        (run / rf.METRICS).write_text("\n".join(lines) + "\n")
    return root


def main(argv=None) -> int:
    """``python -m analysis.synthetic OUT [--seed S] [--noise SD]``: write a sweep, print its path, return 0."""
    parser = argparse.ArgumentParser(prog="python -m analysis.synthetic",
                                     description="Write a synthetic IsoFLOP sweep drawn from Chinchilla's law.")
    parser.add_argument("out", help="directory to create the sweep in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.005)
    args = parser.parse_args(argv)
    print(write_sweep(args.out, seed=args.seed, noise=args.noise))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
