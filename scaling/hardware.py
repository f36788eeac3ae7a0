"""Device peaks for MFU. Only chips whose dense bf16 peak is published are listed; others are "unknown"."""

from __future__ import annotations

# Dense bf16 FLOP/s per chip, from vendor datasheets (NVIDIA H100/H200, A100; Google Cloud TPU v4, v5e, v5p, v6e).
_PEAKS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 80GB HBM3", 989e12),  # SXM; the PCIe part is slower and deliberately not listed
    ("H100 SXM", 989e12),
    ("A100", 312e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),
    ("TPU v6 lite", 918e12),
    ("TPU v6e", 918e12),
)


def peak_flops(device_kind: str) -> float | None:
    """The chip's dense bf16 peak in FLOP/s, or None when it is not in the table (never a guess).

    ``device_kind`` is JAX's ``Device.device_kind`` string (e.g. "NVIDIA H100 80GB HBM3");
    matching is a case-insensitive substring test, first entry wins.
    """
    for name, peak in _PEAKS:
        if name.lower() in device_kind.lower():
            return peak
    return None


def describe() -> dict:
    """The accelerator this process sees, for ``run.json``: backend, device_kind, n_devices, n_processes,
    and peak_flops_per_device (FLOP/s per chip, None when unknown)."""
    import jax  # here rather than at the top, so that `scaling --help` starts without loading jax

    devices = jax.devices()
    kind = devices[0].device_kind
    return {"backend": jax.default_backend(), "device_kind": kind, "n_devices": len(devices),
            "n_processes": jax.process_count(), "peak_flops_per_device": peak_flops(kind)}


def mfu(flops_per_s: float, device_kind: str, n_devices: int) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the summed bf16 peak of ``n_devices`` chips.

    A fraction in [0, 1] for honest inputs (Chowdhery et al. 2022, PaLM, where
    model FLOPs exclude rematerialisation); None when the chip's peak is unknown.
    """
    peak = peak_flops(device_kind)
    return None if peak is None else flops_per_s / (peak * n_devices)
