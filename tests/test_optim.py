import jax
import numpy as np
import pytest

from scaling import config, model, optim, parameterization, step


def _optim(*overrides):
    return config.load(None, ["optim.lr=1.0", "optim.min_lr_ratio=0.1", *overrides]).optim


def test_warmup_then_cosine_to_the_floor():
    lr = optim.schedule(_optim("optim.schedule=cosine", "optim.warmup_steps=10"), 110)
    assert float(lr(0)) == 0.0 and abs(float(lr(5)) - 0.5) < 1e-6 and abs(float(lr(10)) - 1.0) < 1e-6
    assert abs(float(lr(60)) - 0.55) < 1e-6  # halfway through the cosine: (peak + floor) / 2
    assert abs(float(lr(110)) - 0.1) < 1e-6


@pytest.mark.parametrize("shape,halfway", [("linear", 0.55), ("cosine", 0.55), ("1-sqrt", 1 - 0.9 * 0.5 ** 0.5)])
def test_wsd_is_flat_then_cools_down(shape, halfway):
    lr = optim.schedule(_optim("optim.schedule=wsd", "optim.warmup_steps=10", "optim.cooldown_fraction=0.2",
                               f"optim.cooldown_shape={shape}"), 100)
    assert all(abs(float(lr(s)) - 1.0) < 1e-6 for s in range(10, 81))  # stable until 80% of the run
    assert abs(float(lr(90)) - halfway) < 1e-6
    assert abs(float(lr(100)) - 0.1) < 1e-6
    assert float(lr(85)) > float(lr(95))


def test_warmup_fraction_and_constant():
    lr = optim.schedule(_optim("optim.schedule=constant", "optim.warmup_fraction=0.1"), 200)
    assert abs(float(lr(10)) - 0.5) < 1e-6 and float(lr(20)) == 1.0 and float(lr(200)) == 1.0


def test_weight_decay_skips_embeddings_norms_and_biases_by_default():
    cfg = config.load(None, ["model.vocab_size=50", "model.tie_embeddings=false"])
    params = jax.eval_shape(lambda: model.init(cfg.model, jax.random.key(0)))
    mask = optim.decay_mask(params, cfg.optim)
    assert mask["embed"]["embedding"] is False and mask["pos_embed"] is False
    assert mask["block_0"]["attn"]["qkv"]["kernel"] is True and mask["head"]["kernel"] is True
    assert mask["block_0"]["attn"]["qkv"]["bias"] is False
    assert mask["block_0"]["norm_mlp"]["LayerNorm_0"]["scale"] is False
    everything = optim.decay_mask(params, config.load(None, ["optim.decay_embeddings=true",
                                                             "optim.decay_norms_and_biases=true"]).optim)
    assert all(jax.tree.leaves(everything))


def _one_step(overrides, batch):
    cfg = config.load(None, ["model.vocab_size=61", "model.d_model=32", "model.n_head=2", "model.seq_len=8",
                             "optim.warmup_steps=0", "optim.eps=1.0", "optim.weight_decay=0", *overrides])
    schedule = optim.schedule(cfg.optim, 10)
    params = model.init(cfg.model, jax.random.key(0))
    tx = optim.make(cfg.optim, cfg.model, params, schedule)
    state = step.init_state(cfg.model, tx, jax.random.key(0))
    before = jax.tree.map(np.asarray, state["params"])
    state, metrics = step.make_train_step(cfg.model, tx, schedule, 0)(state, batch.reshape(cfg.train.grad_accum, -1, 9))
    return before, jax.tree.map(np.asarray, state["params"]), metrics


def test_gradient_accumulation_equals_one_big_batch():
    batch = jax.random.randint(jax.random.key(2), (8, 9), 0, 61)
    _, whole, m1 = _one_step(["train.batch_size=8"], batch)
    for accum in (2, 4):
        _, split, m2 = _one_step(["train.batch_size=8", f"train.grad_accum={accum}"], batch)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), whole, split)
        assert abs(float(m1["train_loss"]) - float(m2["train_loss"])) < 1e-5
        assert abs(float(m1["grad_norm"]) - float(m2["grad_norm"])) < 1e-5


def test_per_parameter_learning_rate_multipliers(monkeypatch):
    monkeypatch.setattr(parameterization.Parameterization, "lr_multiplier",
                        lambda self, path: 0.0 if path[0] == "embed" else 1.0)
    batch = jax.random.randint(jax.random.key(2), (4, 9), 0, 61)
    before, after, _ = _one_step(["train.batch_size=4"], batch)
    np.testing.assert_array_equal(before["embed"]["embedding"], after["embed"]["embedding"])
    assert not np.array_equal(before["block_0"]["mlp"]["up"]["kernel"], after["block_0"]["mlp"]["up"]["kernel"])
