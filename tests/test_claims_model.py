"""The model is the GPT the README describes, checked against a forward pass written out in NumPy.

Pre-norm blocks (LayerNorm with bias), learned positions, causal attention scaled by 1/sqrt(d_head),
the tanh approximation of the GELU (GPT-2), and an output layer tied to the token embedding. The
reference below is written from those words, in float64, and reads only the parameter tree.
"""

from __future__ import annotations

import jax
import numpy as np

from scaling import config, model


def _layernorm(x, p, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _reference_logits(cfg, params, tokens):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    T, H = tokens.shape[1], cfg.head_dim
    x = p["embed"]["embedding"][tokens] + p["pos_embed"][:T]
    causal = np.tril(np.ones((T, T), bool))
    for i in range(cfg.n_layer):
        block = p[f"block_{i}"]
        h = _layernorm(x, block["norm_attn"]["LayerNorm_0"], cfg.norm_eps)
        qkv = np.einsum("btd,dknh->btknh", h, block["attn"]["qkv"]["kernel"]) + block["attn"]["qkv"]["bias"]
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scores = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(H)
        scores = np.where(causal, scores, -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        attended = np.einsum("bnts,bsnh->btnh", weights, v)
        x = x + np.einsum("btnh,nhd->btd", attended, block["attn"]["out"]["kernel"]) + block["attn"]["out"]["bias"]
        h = _layernorm(x, block["norm_mlp"]["LayerNorm_0"], cfg.norm_eps)
        up = _gelu_tanh(h @ block["mlp"]["up"]["kernel"] + block["mlp"]["up"]["bias"])
        x = x + up @ block["mlp"]["down"]["kernel"] + block["mlp"]["down"]["bias"]
    x = _layernorm(x, p["norm_final"]["LayerNorm_0"], cfg.norm_eps)
    return x @ p["embed"]["embedding"].T  # tied: the output layer is the embedding


def test_the_default_gpt_matches_a_forward_pass_written_from_its_description():
    cfg = config.load(None, ["model.vocab_size=61", "model.n_layer=2", "model.d_model=32", "model.n_head=4",
                             "model.seq_len=16"]).model
    assert cfg.position == "learned" and cfg.norm == "layernorm" and cfg.mlp == "gelu" and cfg.tie_embeddings
    # Weights and biases of order 0.3 (norm scales near 1), so pre-activations reach the GELU's curved part,
    # where the tanh approximation and the exact GELU move these logits by ~1e-3 (at N(0, 0.02) they would
    # agree to 1e-7); float32 against float64 agrees to ~1e-5 here.
    rng = np.random.default_rng(1)
    shapes = jax.eval_shape(lambda: model.init(cfg, jax.random.key(0)))
    params = jax.tree_util.tree_map_with_path(
        lambda path, a: float(path[-1].key == "scale") + 0.3 * rng.standard_normal(a.shape, np.float32), shapes)
    tokens = rng.integers(0, 61, (2, 16))
    ours = np.asarray(jax.jit(lambda p, t: model.apply(cfg, p, t))(params, tokens))
    assert ours.shape == (2, 16, 61)
    np.testing.assert_allclose(ours, _reference_logits(cfg, params, tokens), rtol=0, atol=1e-4)


def test_default_mlp_widths_are_four_d_or_eight_thirds_d_rounded_up_to_64():
    def width(*overrides):
        return config.load(None, ["model.vocab_size=61", *overrides]).model.ff_dim

    assert width("model.d_model=128") == 512
    # SwiGLU: 8/3 x 128 = 341.3, rounded up to a multiple of 64 (to 32 it would be 352); 8/3 x 768 = 2048 exactly.
    assert width("model.d_model=128", "model.mlp=swiglu") == 384
    assert width("model.d_model=768", "model.n_head=12", "model.mlp=swiglu") == 2048
    assert width("model.d_model=128", "model.d_ff=100") == 100
