"""Named model shapes: the published GPT family plus tiny sizes that train on a laptop CPU.

The published shapes follow the papers' tables (Radford et al. 2018/2019, Brown et al. 2020
Table 2.1) so that the parameter counter can be checked against the sizes they print.
"""

from __future__ import annotations

from typing import Any

from scaling.errors import ConfigError

_GPT2 = {"vocab_size": 50257, "seq_len": 1024, "position": "learned", "norm": "layernorm",
         "mlp": "gelu", "tie_embeddings": True, "bias": True}

PRESETS: dict[str, dict[str, Any]] = {
    # GPT-1: 12 layers, 768 wide, 40,478 BPE tokens, 512 context; printed as 117M.
    "gpt1": {**_GPT2, "vocab_size": 40478, "seq_len": 512, "n_layer": 12, "d_model": 768, "n_head": 12},
    "gpt2-small": {**_GPT2, "n_layer": 12, "d_model": 768, "n_head": 12},
    "gpt2-medium": {**_GPT2, "n_layer": 24, "d_model": 1024, "n_head": 16},
    "gpt2-large": {**_GPT2, "n_layer": 36, "d_model": 1280, "n_head": 20},
    "gpt2-xl": {**_GPT2, "n_layer": 48, "d_model": 1600, "n_head": 25},
    # GPT-3 175B: 96 layers of 12,288 with 96 heads of 128 and a 2,048 context.
    "gpt3-175b": {**_GPT2, "seq_len": 2048, "n_layer": 96, "d_model": 12288, "n_head": 96},
    # CPU sizes (vocabulary comes from the dataset, e.g. 257 for byte-level).
    "tiny-d64": {"n_layer": 2, "d_model": 64, "n_head": 4, "seq_len": 64},
    "tiny-d128": {"n_layer": 2, "d_model": 128, "n_head": 4, "seq_len": 128},
    "tiny-d256": {"n_layer": 4, "d_model": 256, "n_head": 4, "seq_len": 128},
    "small-d384": {"n_layer": 6, "d_model": 384, "n_head": 6, "seq_len": 256},
}


def get(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s ModelConfig keys; raises ConfigError naming the known presets if unknown."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
