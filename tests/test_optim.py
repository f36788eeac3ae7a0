import jax
import numpy as np
import pytest

from scaling import config, model, optim, step


def _optim(*overrides):
    return config.load(None, ["optim.lr=1.0", "optim.min_lr_ratio=0.1", *overrides]).optim


SCHEDULES = [("constant", "linear"), ("cosine", "linear"), ("wsd", "linear"), ("wsd", "cosine"), ("wsd", "1-sqrt")]


@pytest.mark.parametrize("name,shape", SCHEDULES)
@pytest.mark.parametrize("total,warmup", [(100, 10), (7, 3), (1, 0), (50, 0)])
def test_first_update_moves_and_the_last_uses_the_floor(name, shape, total, warmup):
    """Update k (0-based, optax's count) uses the schedule's rate for update k: with warmup the first
    is lr/W (never 0) and the (W-1)-th reaches the peak; the last, T-1, is exactly lr * min_lr_ratio
    (constant: lr)."""
    cfg = _optim(f"optim.schedule={name}", f"optim.cooldown_shape={shape}", f"optim.warmup_steps={warmup}",
                 "optim.cooldown_fraction=0.3")
    lr = optim.schedule(cfg, total)
    rates = [float(r) for r in np.asarray(lr(np.arange(total)))]
    assert rates[0] > 0
    if warmup:
        assert rates[0] == pytest.approx(1.0 / warmup) and rates[warmup - 1] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(1.0 if name == "constant" else 0.1, rel=1e-6)
    after_warmup = rates[warmup:]
    assert all(a >= b - 1e-7 for a, b in zip(after_warmup, after_warmup[1:]))  # never rises after warmup
    assert min(rates) >= (1.0 if name == "constant" else 0.1) * (1 - 1e-6) or warmup  # never below the floor


def test_cosine_is_halfway_between_peak_and_floor_halfway_through_its_decay():
    lr = optim.schedule(_optim("optim.schedule=cosine", "optim.warmup_steps=10"), 110)
    # Decay over updates 10..109; the update that ends 50 of its 100 steps is k = 59.
    assert float(lr(59)) == pytest.approx(0.55)
    assert float(lr(9)) == pytest.approx(1.0) and float(lr(10)) < 1.0


@pytest.mark.parametrize("shape,halfway", [("linear", 0.55), ("cosine", 0.55), ("1-sqrt", 1 - 0.9 * 0.5 ** 0.5)])
def test_wsd_is_flat_then_cools_down(shape, halfway):
    lr = optim.schedule(_optim("optim.schedule=wsd", "optim.warmup_steps=10", "optim.cooldown_fraction=0.2",
                               f"optim.cooldown_shape={shape}"), 100)
    assert np.allclose(np.asarray(lr(np.arange(9, 80))), 1.0)  # stable through the 80th update
    assert float(lr(80)) < 1.0  # the cooldown's 20 updates are 80..99
    assert float(lr(89)) == pytest.approx(halfway)
    assert float(lr(99)) == pytest.approx(0.1)


def test_a_wsd_cooldown_is_the_nearest_whole_number_of_updates():
    # 0.27 x 10 = 2.7 updates: the last 3 decay (the nearest), not 2 (truncated).
    cfg = _optim("optim.schedule=wsd", "optim.warmup_steps=2", "optim.cooldown_fraction=0.27")
    assert optim.decay_steps(cfg, 10) == 3
    rates = np.asarray(optim.schedule(cfg, 10)(np.arange(10)))
    assert np.allclose(rates[1:7], 1.0) and rates[7] < 1.0 and rates[9] == pytest.approx(0.1)


def test_warmup_fraction_and_constant():
    lr = optim.schedule(_optim("optim.schedule=constant", "optim.warmup_fraction=0.1"), 200)
    assert float(lr(9)) == pytest.approx(0.5) and float(lr(19)) == 1.0 and float(lr(199)) == 1.0


def test_a_warmup_fraction_always_leaves_an_update_to_decay():
    lr = optim.schedule(_optim("optim.schedule=cosine", "optim.warmup_fraction=0.9"), 2)
    assert float(lr(0)) == pytest.approx(1.0) and float(lr(1)) == pytest.approx(0.1)


def test_the_first_update_moves_every_parameter_by_the_logged_rate():
    """Adam's first update is lr * g / (|g| + eps) = lr * sign(g) for |g| >> eps: so the largest change
    of any parameter equals the rate the optimizer used, which must be the logged one, lr / W."""
    cfg = config.load(None, ["model.vocab_size=61", "model.d_model=32", "model.n_head=2", "model.seq_len=8",
                             "optim.lr=0.01", "optim.warmup_steps=4", "optim.weight_decay=0", "optim.grad_clip=0",
                             "optim.schedule=cosine"])
    schedule = optim.schedule(cfg.optim, 20)
    params = model.init(cfg.model, jax.random.key(0))
    tx = optim.make(cfg.optim, params)
    state = step.init_state(cfg.model, tx, jax.random.key(0))
    before = np.asarray(state["params"]["block_0"]["mlp"]["up"]["kernel"])
    batch = jax.random.randint(jax.random.key(2), (1, 4, 9), 0, 61)
    state, metrics = step.make_train_step(cfg.model, tx, schedule, 0)(state, batch)
    moved = np.abs(np.asarray(state["params"]["block_0"]["mlp"]["up"]["kernel"]) - before).max()
    assert float(metrics["lr"]) == pytest.approx(0.01 / 4)
    assert moved == pytest.approx(float(metrics["lr"]), rel=1e-3)


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
    tx = optim.make(cfg.optim, params)
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


def test_one_compiled_step_serves_every_run_length_and_peak_rate():
    """The schedule's numbers are arguments of the step, not constants in it: runs of one shape at other lengths
    and rates lower to the same program (so JAX's compilation cache shares it), and each still gets its own rate."""
    cfg = config.load(None, ["model.vocab_size=61", "model.d_model=32", "model.n_head=2", "model.seq_len=8",
                             "optim.warmup_steps=2", "optim.schedule=cosine"])
    params = model.init(cfg.model, jax.random.key(0))
    tx = optim.make(cfg.optim, params)
    batch = jax.random.randint(jax.random.key(2), (1, 4, 9), 0, 61)
    texts, rates = [], []
    for total, lr in ((20, 0.01), (500, 0.003)):
        schedule = optim.schedule(config.load(None, [f"optim.lr={lr}", "optim.warmup_steps=2"]).optim, total)
        train_step = step.make_train_step(cfg.model, tx, schedule, 0)
        state = step.init_state(cfg.model, tx, jax.random.key(0))
        texts.append(train_step.lower(state, batch).as_text())
        rates.append(float(train_step(state, batch)[1]["lr"]))
    assert texts[0] == texts[1]
    assert rates == pytest.approx([0.01 / 2, 0.003 / 2])  # the first of two warmup updates
