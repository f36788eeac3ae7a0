"""`scaling quickstart`: the offline first run. Prepares the embedded corpus (cached) and trains a tiny GPT."""

from __future__ import annotations

import time
from importlib import resources

from scaling import config, train


def config_path():
    return resources.files("scaling") / "configs" / "quickstart.yaml"


def main(args) -> int:
    start = time.perf_counter()
    with resources.as_file(config_path()) as path:
        cfg = config.load(path, [f"runs_dir={args.runs_dir}"])
    plan = train.resolve(cfg)
    result = train.execute(plan)
    rows = plan.run_dir.read_metrics()
    evals = [r["eval_loss"] for r in rows if r.get("eval_loss") is not None]
    print(f"quickstart {result['status']} in {time.perf_counter() - start:.0f} s: "
          f"validation loss {evals[0]:.3f} -> {evals[-1]:.3f} nats/token "
          f"({result['n_params']:,} parameters, {result['tokens_target']:,} tokens)")
    print(f"run directory: {plan.run_dir.path}")
    return 0
