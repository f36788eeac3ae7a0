"""Every scale choice of the model in one place: initialisation and attention scale.

Keeping them together is what lets a muP-style parameterization become one config switch later:
it changes these numbers as functions of width, and nothing in the model code.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from flax import linen as nn

from scaling.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Parameterization:
    """Standard (GPT-2) parameterization: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2L).

    The 1/sqrt(2L) factor (two residual writes per layer) follows Radford et al. 2019 §2.3.
    ``init_std`` is the weight standard deviation, ``head_dim`` the per-head width H.
    """

    init_std: float
    n_layer: int
    head_dim: int

    def embedding_init(self) -> jax.nn.initializers.Initializer:
        """Token and learned-position tables: N(0, init_std)."""
        return nn.initializers.normal(self.init_std)

    def hidden_init(self) -> jax.nn.initializers.Initializer:
        """Matrices that read the residual stream (q, k, v, MLP input)."""
        return nn.initializers.normal(self.init_std)

    def residual_out_init(self) -> jax.nn.initializers.Initializer:
        """Matrices that write into the residual stream: GPT-2 shrinks them so depth does not grow its variance."""
        return nn.initializers.normal(self.init_std / math.sqrt(2 * self.n_layer))

    def head_init(self) -> jax.nn.initializers.Initializer:
        """The untied output matrix D -> V: N(0, init_std)."""
        return nn.initializers.normal(self.init_std)

    @property
    def attention_scale(self) -> float:
        """The logit scale 1/sqrt(H) of scaled dot-product attention (Vaswani et al. 2017 §3.2.1)."""
        return 1.0 / math.sqrt(self.head_dim)


def make(cfg: ModelConfig) -> Parameterization:
    """The parameterization ``cfg.parameterization`` names, sized from ``cfg`` (only "standard" exists)."""
    return Parameterization(init_std=cfg.init_std, n_layer=cfg.n_layer, head_dim=cfg.head_dim)
