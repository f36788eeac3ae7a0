import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import config, model, optim, step

VARIANTS = {
    "gpt2": [],
    "llama-like": ["model.position=rope", "model.norm=rmsnorm", "model.mlp=swiglu", "model.bias=false",
                   "model.tie_embeddings=false"],
    "no-position": ["model.position=none"],
}


def _cfg(*overrides):
    return config.load(None, ["model.vocab_size=97", "model.d_model=32", "model.n_head=4", "model.seq_len=16",
                              *overrides]).model


@pytest.mark.parametrize("variant", VARIANTS)
def test_causality(variant):
    cfg = _cfg(*VARIANTS[variant])
    params = model.init(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, 97)
    t = 7
    changed = tokens.at[:, t + 1].set((tokens[:, t + 1] + 1) % 97)
    before, after = model.apply(cfg, params, tokens), model.apply(cfg, params, changed)
    np.testing.assert_array_equal(np.asarray(before[:, : t + 1]), np.asarray(after[:, : t + 1]))
    assert not np.allclose(before[:, t + 1], after[:, t + 1])


def test_rotary_turns_each_channel_pair_by_position_times_its_frequency():
    # Independent reference: channel i and i + H/2 as one complex number, multiplied by exp(i t theta^(-2i/H))
    # (Su et al. 2021, eq. 34), in float64 numpy.
    B, T, N, H, theta = 2, 9, 3, 8, 100.0
    x = np.asarray(jax.random.normal(jax.random.key(0), (B, T, N, H)), np.float64)
    z = x[..., : H // 2] + 1j * x[..., H // 2:]
    angle = np.arange(T)[:, None] * theta ** (-np.arange(0, H, 2) / H)[None, :]
    turned = z * np.exp(1j * angle)[None, :, None, :]
    expected = np.concatenate([turned.real, turned.imag], axis=-1)
    np.testing.assert_allclose(np.asarray(model.rotary(jnp.asarray(x, jnp.float32), theta)), expected, atol=1e-5)
    # Relative positions only: the score between a query at t and a key at s depends on t - s.
    q, k = (model.rotary(jnp.broadcast_to(jnp.asarray(v, jnp.float32), (1, T, 1, H)), theta) for v in x[0, 0, :2])
    scores = np.einsum("tnh,snh->ts", np.asarray(q[0]), np.asarray(k[0]))
    np.testing.assert_allclose(np.diagonal(scores, 2)[1:], np.diagonal(scores, 2)[:-1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_causal_attention_equals_jax_dot_product_attention_and_its_gradient(dtype):
    # The model's own attention (model.causal_attention) replaces jax.nn.dot_product_attention's XLA path
    # for speed on CPU; the library is the independent reference for values and gradients.
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 16, 4, 8)).astype(dtype) for i in range(3))
    ours = model.causal_attention(q, k, v, 0.3)
    ref = jax.nn.dot_product_attention(q, k, v, scale=0.3, is_causal=True)
    assert ours.dtype == ref.dtype == dtype
    tol = 1e-6 if dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(ref, np.float32), atol=tol)

    def grads(f):
        return jax.grad(lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v).astype(jnp.float32))), argnums=(0, 1, 2))(q, k, v)

    for g_ours, g_ref in zip(grads(lambda *a: model.causal_attention(*a, 0.3)),
                             grads(lambda *a: jax.nn.dot_product_attention(*a, scale=0.3, is_causal=True))):
        np.testing.assert_allclose(np.asarray(g_ours, np.float32), np.asarray(g_ref, np.float32), atol=5 * tol)


def test_logits_shape_and_float32_params_under_bf16_compute():
    cfg = _cfg("model.compute_dtype=bfloat16")
    params = model.init(cfg, jax.random.key(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    logits = model.apply(cfg, params, jnp.zeros((3, 16), jnp.int32))
    assert logits.shape == (3, 16, 97) and logits.dtype == jnp.float32
    full = model.apply(_cfg(), params, jnp.zeros((3, 16), jnp.int32))
    assert np.allclose(logits, full, atol=0.05) and not np.array_equal(logits, full)


def test_dropout_only_with_a_key():
    cfg = _cfg("model.dropout=0.5")
    params = model.init(cfg, jax.random.key(0))
    tokens = jnp.arange(32).reshape(2, 16)
    plain = model.apply(cfg, params, tokens)
    np.testing.assert_array_equal(plain, model.apply(cfg, params, tokens))
    noisy = model.apply(cfg, params, tokens, dropout_key=jax.random.key(3))
    assert not np.allclose(plain, noisy)


def test_tied_output_reuses_the_embedding():
    cfg = _cfg()
    params = model.init(cfg, jax.random.key(0))
    x = jnp.zeros((1, 16), jnp.int32)
    assert "head" not in params
    zeroed = jax.tree.map(lambda p: p, params)
    zeroed["embed"]["embedding"] = jnp.zeros_like(params["embed"]["embedding"])
    np.testing.assert_allclose(model.apply(cfg, zeroed, x), 0.0)  # logits = h @ E^T vanish with E


def test_residual_projections_are_scaled_down_with_depth():
    cfg = _cfg("model.n_layer=8", "model.d_model=256", "model.n_head=4")
    params = model.init(cfg, jax.random.key(0))
    up = float(np.std(params["block_0"]["mlp"]["up"]["kernel"]))
    down = float(np.std(params["block_0"]["mlp"]["down"]["kernel"]))
    assert abs(up - 0.02) < 0.002 and abs(down - 0.02 / 4) < 0.001  # 1/sqrt(2 * 8) = 1/4


def test_logical_axes_name_every_parameter():
    cfg = _cfg(*VARIANTS["llama-like"])
    axes = model.logical_axes(cfg)
    params = jax.eval_shape(lambda: model.init(cfg, jax.random.key(0)))
    for spec, leaf in zip(jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)),
                          jax.tree.leaves(params)):
        assert len(spec) == leaf.ndim
    assert axes["embed"]["embedding"] == jax.sharding.PartitionSpec("vocab", "embed")


def test_overfits_a_fixed_batch():
    cfg = config.load(None, ["model.vocab_size=64", "model.d_model=64", "model.n_head=4", "model.seq_len=32",
                             "optim.schedule=constant", "optim.lr=3e-3", "optim.weight_decay=0"])
    schedule = optim.schedule(cfg.optim, 400)
    params = model.init(cfg.model, jax.random.key(0))
    tx = optim.make(cfg.optim, params)
    state = step.init_state(cfg.model, tx, jax.random.key(0))
    train_step = step.make_train_step(cfg.model, tx, schedule, seed=0)
    batch = jax.random.randint(jax.random.key(1), (1, 4, 33), 0, 64)
    first = None
    for _ in range(300):
        state, metrics = train_step(state, batch)
        first = first if first is not None else float(metrics["train_loss"])
    assert first > 3.5  # about log(64) at initialisation
    assert float(metrics["train_loss"]) < 0.05
