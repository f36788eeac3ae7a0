"""Throughput, MFU, memory and compile time of the real training step (the one `scaling train` runs).

    python benchmarks/bench_step.py                 # shapes for the current backend (CPU or GPU)
    python benchmarks/bench_step.py --torch         # also time the PyTorch peer (GPU), side by side
    python benchmarks/bench_step.py --shapes 124M --windows 5 --steps 20 --json out.json

Each shape is built through `scaling.planning.resolve` and `scaling.runtime.build`, fed by the project's
data pipeline (the embedded stdlib corpus; the vocabulary is padded to the shape's size), and stepped
the way the training loop steps it: dispatch step s, then read step s-1's metrics. Warm-up steps are
excluded; tokens/s is the median over timed windows, each ending in a device synchronisation.
Model FLOPs are the exact count (`scaling.accounting`); MFU divides by the chip's dense bf16 peak
from `scaling.hardware` and is "n/a" where the chip is not in the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scaling import config, hardware, planning, runtime  # noqa: E402

# name: (n_layer, d_model, batch, seq_len, vocab); the GPU rows are the shapes issue 5 compares.
SHAPES = {
    "cpu-120k": (2, 64, 16, 64, None),
    "cpu-450k": (2, 128, 16, 128, None),
    "cpu-3M": (4, 256, 16, 128, None),
    "7M": (2, 128, 64, 1024, 50304),
    "16M": (4, 256, 32, 1024, 50304),
    "124M": (12, 768, 32, 1024, 50304),
    "354M": (24, 1024, 16, 1024, 50304),
}


def shape_config(name: str, overrides: list[str]) -> config.RunConfig:
    n_layer, d_model, batch, seq_len, vocab = SHAPES[name]
    gpu = jax.default_backend() == "gpu"
    keys = [f"model.n_layer={n_layer}", f"model.d_model={d_model}", f"model.n_head={max(d_model // 64, 1)}",
            f"model.seq_len={seq_len}", f"train.batch_size={batch}", "train.steps=100000", "model.dropout=0",
            f"model.compute_dtype={'bfloat16' if gpu else 'float32'}", "runs_dir=/tmp/scaling-bench"]
    if vocab is not None:
        keys.append(f"model.vocab_size={vocab}")
    return config.load(None, keys + overrides)


def time_project(name: str, windows: int, steps: int, warmup: int, overrides: list[str]) -> dict:
    plan = planning.resolve(shape_config(name, overrides))
    rt = runtime.build(plan)
    state = rt.init_state()
    started = time.perf_counter()
    compiled = rt.train_step.lower(state, rt.batch(0)).compile()
    compile_s = time.perf_counter() - started
    s = 0
    metrics = None

    def run(n: int):
        nonlocal state, metrics, s
        for _ in range(n):
            previous = metrics
            state, metrics = compiled(state, rt.batch(s))
            if previous is not None:
                jax.device_get(previous)  # the loop reads step s-1's metrics after dispatching step s
            s += 1
        jax.block_until_ready((state, metrics))

    run(warmup)
    rates = []
    for _ in range(windows):
        started = time.perf_counter()
        run(steps)
        rates.append(steps * plan.tokens_per_step / (time.perf_counter() - started))
    tokens_per_s = statistics.median(rates)
    device = hardware.describe()
    flops = tokens_per_s * plan.accounting.flops_per_token
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "shape": name, "n_params": plan.accounting.n_params, "tokens_per_step": plan.tokens_per_step,
        "tokens_per_s": tokens_per_s, "model_tflops": flops / 1e12,
        "mfu": hardware.mfu(flops, device["device_kind"], device["n_devices"]),
        "peak_memory_gb": stats["peak_bytes_in_use"] / 2**30 if "peak_bytes_in_use" in stats else None,
        "compile_s": compile_s, "device": device["device_kind"], "n_devices": device["n_devices"],
    }


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> int:
    gpu = jax.default_backend() == "gpu"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="*", default=None, help=f"from {', '.join(SHAPES)}")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20 if gpu else 10, help="steps per timed window")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch peer (benchmarks/torch_gpt.py)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("overrides", nargs="*", help="config overrides applied to every shape, e.g. model.remat=true")
    args = parser.parse_args()
    names = args.shapes or ([n for n in SHAPES if not n.startswith("cpu")] if gpu else
                            [n for n in SHAPES if n.startswith("cpu")])
    results = []
    for name in names:
        row = time_project(name, args.windows, args.steps, args.warmup, args.overrides)
        if args.torch:
            import torch_gpt

            n_layer, d_model, batch, seq_len, vocab = SHAPES[name]
            row["torch"] = torch_gpt.benchmark(n_layer, d_model, batch, seq_len, vocab or 257,
                                               args.windows, args.steps, args.warmup)
            row["ratio"] = row["tokens_per_s"] / row["torch"]["tokens_per_s"]
        results.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{results[0]['device']} x{results[0]['n_devices']}, jax {jax.__version__}")
    print("| shape | params | tokens/s | model TFLOP/s | MFU | peak mem GB | compile s | torch tokens/s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        peer = r.get("torch", {})
        print(f"| {r['shape']} | {r['n_params'] / 1e6:.1f}M | {r['tokens_per_s']:,.0f} | {r['model_tflops']:.2f} | "
              f"{_fmt(r['mfu'], '.1%')} | {_fmt(r['peak_memory_gb'], '.1f')} | {r['compile_s']:.1f} | "
              f"{_fmt(peer.get('tokens_per_s'), ',.0f')} | {_fmt(r.get('ratio'), '.2f')} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
