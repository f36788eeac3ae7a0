"""Decoder-only GPT as Flax linen modules, used functionally: ``params = init(cfg, key)``,
``logits = apply(cfg, params, tokens)``.

Shape suffixes: B batch, T sequence, D model width, N heads, H head dim, F MLP width, V vocabulary.
Parameters are float32; activations and matmuls run in ``cfg.compute_dtype``; norms, softmax and
logits are float32. Every parameter carries logical axis names (``vocab``, ``embed``, ``heads``,
``head_dim``, ``mlp``) so a device mesh can shard it through rules without touching this file.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from scaling import parameterization
from scaling.config import ModelConfig


def _dtype(name: str) -> jnp.dtype:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def _logical(init, axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(init, axes)


def attention_implementation(cfg: ModelConfig) -> str | None:
    """The ``implementation`` argument for ``jax.nn.dot_product_attention``: "cudnn" or None (XLA).

    ``model.attention=auto`` picks cuDNN flash attention where it can run (GPU backend, bfloat16
    compute, head dim a multiple of 8 up to 256) and XLA elsewhere; ``xla`` always returns None.
    Raises ValueError when ``cudnn`` is asked for where it cannot run.
    """
    if cfg.attention == "xla":
        return None
    usable = (jax.default_backend() == "gpu" and cfg.compute_dtype == "bfloat16"
              and cfg.head_dim % 8 == 0 and cfg.head_dim <= 256)
    if cfg.attention == "cudnn":
        if not usable:
            raise ValueError("model.attention=cudnn needs a GPU, compute_dtype=bfloat16 and a head dim "
                             f"that is a multiple of 8 up to 256 (head dim {cfg.head_dim}, "
                             f"backend {jax.default_backend()})")
        return "cudnn"
    return "cudnn" if usable else None


def rotary(x_BTNH: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding (RoPE, Su et al. 2021): rotate channel pairs by position.

    ``x_BTNH`` is queries or keys; channel i of the first half pairs with channel i of the second
    half and both turn by angle t·theta^(-2i/H) at position t. Computed in float32 and returned
    in the input dtype, same shape [B, T, N, H]. H must be even.
    """
    T, H = x_BTNH.shape[1], x_BTNH.shape[3]
    # The angles depend on shapes only: tables computed once at trace time (in float64, then rounded)
    # enter the program as constants; computing cos and sin inside the step made RoPE cost a 2x24 CPU step
    # 38% more than a learned position table, against 26% now (benchmarks/RESULTS.md).
    angles_TH = np.arange(T)[:, None] * theta ** (-np.arange(0, H, 2) / H)[None, :]
    cos, sin = (jnp.asarray(f(angles_TH), jnp.float32)[None, :, None, :] for f in (np.cos, np.sin))
    x = x_BTNH.astype(jnp.float32)
    x1, x2 = x[..., : H // 2], x[..., H // 2:]
    rotated = jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return rotated.astype(x_BTNH.dtype)


def causal_attention(q_BTNH: jax.Array, k_BTNH: jax.Array, v_BTNH: jax.Array, scale: float) -> jax.Array:
    """softmax(scale · q kᵀ + causal mask) v per head (Vaswani et al. 2017 §3.2.1): [B, T, N, H] -> [B, T, N, H].

    Scores and softmax in float32, the output in v's dtype: the numbers of ``jax.nn.dot_product_attention``'s
    XLA path (the tests check they agree), written as two 4-D einsums. Why not call it: that path reshapes
    every head into a group for grouped-query attention, and the 5-D einsums' transposes made the backward
    pass twice as slow on CPU (1.1 ms against 0.55 ms at B=16, T=64, N=2, H=16, measured).
    """
    T = q_BTNH.shape[1]
    scores_BNTS = jnp.einsum("BTNH,BSNH->BNTS", q_BTNH, k_BTNH, preferred_element_type=jnp.float32) * scale
    causal_TS = jnp.tril(jnp.ones((T, T), bool))
    # The most negative float32 rather than -inf, so that a fully masked row (none here) would not give NaN.
    scores_BNTS = jnp.where(causal_TS, scores_BNTS, jnp.finfo(jnp.float32).min)
    probs_BNTS = jax.nn.softmax(scores_BNTS, axis=-1).astype(v_BTNH.dtype)
    return jnp.einsum("BNTS,BSNH->BTNH", probs_BNTS, v_BTNH)


class Norm(nn.Module):
    """Pre-norm in float32 whatever the compute dtype, so small activations keep their precision."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        cfg = self.cfg
        ones = _logical(nn.initializers.ones, ("embed",))
        if cfg.norm == "layernorm":
            norm = nn.LayerNorm(epsilon=cfg.norm_eps, use_bias=cfg.bias, dtype=jnp.float32,
                                scale_init=ones, bias_init=_logical(nn.initializers.zeros, ("embed",)))
        else:
            norm = nn.RMSNorm(epsilon=cfg.norm_eps, dtype=jnp.float32, scale_init=ones)
        return norm(x_BTD.astype(jnp.float32)).astype(_dtype(cfg.compute_dtype))


def _dense(cfg: ModelConfig, name: str, features, kernel_axes: tuple, init, axis=-1) -> nn.DenseGeneral:
    """A projection in the compute dtype whose kernel and bias carry logical axis names."""
    n_out = len(features) if isinstance(features, tuple) else 1
    return nn.DenseGeneral(
        features=features, axis=axis, use_bias=cfg.bias, dtype=_dtype(cfg.compute_dtype), name=name,
        kernel_init=_logical(init, kernel_axes), bias_init=_logical(nn.initializers.zeros, kernel_axes[-n_out:]),
    )


class Attention(nn.Module):
    """Causal multi-head self-attention: x_BTD -> y_BTD.

    One fused qkv projection D -> 3 x N x H, optional RoPE on q and k, scaled dot-product
    attention with scale 1/sqrt(H) (Vaswani et al. 2017 §3.2.1) (``causal_attention``, or cuDNN's
    fused kernel where ``attention_implementation`` picks it), and an output projection N x H -> D
    initialised for the residual stream.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        cfg = self.cfg
        p = parameterization.make(cfg)
        N, H = cfg.n_head, cfg.head_dim
        qkv_BT3NH = _dense(cfg, "qkv", (3, N, H), ("embed", None, "heads", "head_dim"), p.hidden_init())(x_BTD)
        q_BTNH, k_BTNH, v_BTNH = (qkv_BT3NH[:, :, i] for i in range(3))
        if cfg.position == "rope":
            q_BTNH, k_BTNH = rotary(q_BTNH, cfg.rope_theta), rotary(k_BTNH, cfg.rope_theta)
        implementation = attention_implementation(cfg)
        if implementation is None:
            out_BTNH = causal_attention(q_BTNH, k_BTNH, v_BTNH, p.attention_scale)
        else:
            out_BTNH = jax.nn.dot_product_attention(q_BTNH, k_BTNH, v_BTNH, scale=p.attention_scale,
                                                    is_causal=True, implementation=implementation)
        return _dense(cfg, "out", cfg.d_model, ("heads", "head_dim", "embed"), p.residual_out_init(),
                      axis=(-2, -1))(out_BTNH)


class MLP(nn.Module):
    """Position-wise feed-forward layer: x_BTD -> y_BTD through width F = ``cfg.ff_dim``.

    GELU (tanh approximation, as GPT-2) with two matrices, or SwiGLU (Shazeer 2020) with a fused
    gate/up projection D -> 2 x F and a down projection F -> D.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        cfg = self.cfg
        p = parameterization.make(cfg)
        F = cfg.ff_dim
        if cfg.mlp == "swiglu":
            gate_up_BT2F = _dense(cfg, "gate_up", (2, F), ("embed", None, "mlp"), p.hidden_init())(x_BTD)
            h_BTF = nn.silu(gate_up_BT2F[:, :, 0]) * gate_up_BT2F[:, :, 1]
        else:
            h_BTF = nn.gelu(_dense(cfg, "up", F, ("embed", "mlp"), p.hidden_init())(x_BTD), approximate=True)
        return _dense(cfg, "down", cfg.d_model, ("mlp", "embed"), p.residual_out_init())(h_BTF)


class Block(nn.Module):
    """One pre-norm transformer layer: x + Attention(Norm(x)), then x + MLP(Norm(x)); [B, T, D] -> [B, T, D].

    Dropout (rate ``cfg.dropout``) applies to each branch's output unless ``deterministic``.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, deterministic: bool) -> jax.Array:
        drop = nn.Dropout(self.cfg.dropout, deterministic=deterministic)
        x_BTD = x_BTD + drop(Attention(self.cfg, name="attn")(Norm(self.cfg, name="norm_attn")(x_BTD)))
        return x_BTD + drop(MLP(self.cfg, name="mlp")(Norm(self.cfg, name="norm_mlp")(x_BTD)))


class GPT(nn.Module):
    """The whole decoder: int token ids tokens_BT -> float32 next-token logits_BTV.

    Token embedding (plus a learned position table when ``position=learned``), ``n_layer``
    blocks (rematerialised in the backward pass when ``remat``), a final norm, and an output
    layer that is the embedding transposed when ``tie_embeddings``. T may be shorter than
    ``seq_len``. Raises ValueError when ``vocab_size`` is unset.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens_BT: jax.Array, deterministic: bool = True) -> jax.Array:
        cfg = self.cfg
        if cfg.vocab_size is None:
            raise ValueError("model.vocab_size is unset: resolve it from the dataset before building the model")
        p = parameterization.make(cfg)
        dtype = _dtype(cfg.compute_dtype)
        embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=dtype, name="embed",
                         embedding_init=_logical(p.embedding_init(), ("vocab", "embed")))
        x_BTD = embed(tokens_BT)
        if cfg.position == "learned":
            pos_TD = self.param("pos_embed", _logical(p.embedding_init(), (None, "embed")), (cfg.seq_len, cfg.d_model))
            x_BTD = x_BTD + pos_TD[: tokens_BT.shape[1]].astype(dtype)
        x_BTD = nn.Dropout(cfg.dropout, deterministic=deterministic)(x_BTD)
        block = nn.remat(Block, static_argnums=(2,)) if cfg.remat else Block
        for i in range(cfg.n_layer):
            x_BTD = block(cfg, name=f"block_{i}")(x_BTD, deterministic)
        x_BTD = Norm(cfg, name="norm_final")(x_BTD)
        if cfg.tie_embeddings:
            logits_BTV = embed.attend(x_BTD)
        else:
            logits_BTV = nn.Dense(cfg.vocab_size, use_bias=False, dtype=dtype, name="head",
                                  kernel_init=_logical(p.head_init(), ("embed", "vocab")))(x_BTD)
        return logits_BTV.astype(jnp.float32)


def _dummy_tokens(cfg: ModelConfig) -> jax.Array:
    return jnp.zeros((1, cfg.seq_len), jnp.int32)


def init_boxed(cfg: ModelConfig, key: jax.Array):
    """Parameters still wrapped in their logical-axis metadata (for sharding rules).

    ``key`` is a JAX PRNG key; the result is the ``params`` collection as nn.Partitioned boxes.
    """
    return GPT(cfg).init(key, _dummy_tokens(cfg))["params"]


def init(cfg: ModelConfig, key: jax.Array):
    """A plain pytree of float32 parameters drawn from PRNG ``key``; raises ValueError if vocab_size is unset."""
    return nn.unbox(init_boxed(cfg, key))


def logical_axes(cfg: ModelConfig):
    """The logical axis names of every parameter (a pytree of PartitionSpecs), without allocating any."""
    boxed = jax.eval_shape(functools.partial(init_boxed, cfg), jax.random.key(0))
    return nn.get_partition_spec(boxed)


def apply(cfg: ModelConfig, params, tokens_BT: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    """Float32 next-token logits_BTV for int tokens_BT; dropout is active only when a key is given.

    ``params`` is the pytree from ``init``; logits at position t predict token t+1.
    """
    rngs = {"dropout": dropout_key} if dropout_key is not None else {}
    return GPT(cfg).apply({"params": params}, tokens_BT, deterministic=dropout_key is None, rngs=rngs)
