"""What a run will cost in wall time, from FLOPs and steps, before anything is spent.

time = startup + steps * per-step overhead + exact FLOPs / sustained FLOP/s

On a CPU the constants are calibrated (measured with the shipped quickstart sweep on a 2-core
x86 CPU, float32, compilation cache on; ``benchmarks/bench_sweep.py`` refits them on another
machine); other CPUs differ, which the plan says. On an
accelerator the sustained rate is the chip's dense bf16 peak (``scaling.hardware``) times an
assumed MFU, and the plan prints the assumption; a chip without a published peak gets no estimate
rather than a guess. The device is found without initialising JAX (``nvidia-smi``), so planning
never takes an accelerator away from running jobs.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

from scaling import hardware

DEFAULT_MFU = 0.35
# From the quickstart's 28 runs (7k-95k non-embedding parameters, two layers, two heads, batches of 16 x 64
# tokens) on a 2-core x86 VM, two at a time, each on its own core (benchmarks/RESULTS.md): 739 s of steps for
# 1.59e13 FLOPs and about 55k steps, 4.8 s per run to start and compile or load the step.
_CPU = {"flops_per_s": 2.5e10, "step_overhead_s": 2e-3, "startup_s": 4.5}
# On accelerators: host-side step dispatch and a compile of a mid-sized model.
_ACCELERATOR = {"step_overhead_s": 5e-3, "startup_s": 30.0}


@dataclasses.dataclass(frozen=True)
class Throughput:
    """The cost model of one device: seconds = startup_s + steps x step_overhead_s + FLOPs / flops_per_s.

    ``flops_per_s`` is sustained training FLOP/s (None: unknown device, no estimate); the overhead
    is seconds per optimizer step, ``startup_s`` seconds per run (process start, data, compile).
    """

    device: str
    flops_per_s: float | None  # None: unknown device, no estimate
    step_overhead_s: float
    startup_s: float
    basis: str  # where the numbers come from, printed under the plan
    shared_note: str | None = None  # set where parallel runs share one device instead of one device each

    def seconds(self, steps: int, flops: float) -> float | None:
        """Estimated wall seconds of a run of ``steps`` optimizer steps and ``flops`` exact training FLOPs;
        None when the device's rate is unknown."""
        if self.flops_per_s is None:
            return None
        return self.startup_s + steps * self.step_overhead_s + flops / self.flops_per_s


def current_device() -> str:
    """The first GPU's name as nvidia-smi reports it (the same as jax's device_kind), else "cpu"."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out.strip():
            return out.splitlines()[0].strip()
    return "cpu"


def for_device(device: str, mfu: float = DEFAULT_MFU) -> Throughput:
    """The cost model of ``device``: "cpu" (calibrated constants), a chip with a published peak
    (peak FLOP/s x ``mfu``, a fraction in (0, 1]), or an unknown chip (no estimate, and the basis says so)."""
    if device.lower() == "cpu":
        return Throughput("cpu", basis="calibrated on a 2-core x86 CPU, float32, compilation cache on: "
                          f"{_CPU['flops_per_s']:.2g} FLOP/s, {_CPU['step_overhead_s'] * 1e3:.0f} ms per step, "
                          f"{_CPU['startup_s']:.0f} s to start a run",
                          shared_note="runs at once share the CPU's cores: on the 2-core calibration machine "
                          "--parallel 2 finished the quickstart sweep about 1.25x sooner than one at a time", **_CPU)
    peak = hardware.peak_flops(device)
    if peak is None:
        return Throughput(device, None, 0.0, 0.0, basis=f"{device!r} has no published peak in scaling.hardware: "
                          "no estimate (pass --device with a known chip, e.g. 'H100 SXM')")
    return Throughput(device, peak * mfu, basis=f"{device}: {peak:.3g} FLOP/s dense bf16 peak x assumed MFU {mfu:.0%}, "
                      f"{_ACCELERATOR['step_overhead_s'] * 1e3:.0f} ms per step, {_ACCELERATOR['startup_s']:.0f} s "
                      "to start a run (assumed)", **_ACCELERATOR)
