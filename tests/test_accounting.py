import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import accounting, cli, config, model, optim, step

import hand_count
import xla_flops


def _cfg(*overrides):
    return config.load(None, list(overrides)).model


def test_gpt3_175b_matches_the_paper():
    acct = accounting.count(_cfg("model.preset=gpt3-175b"))
    assert abs(acct.n_params - 175e9) / 175e9 < 0.01
    # Brown et al. 2020 (GPT-3), Table 2.1 shapes: each feed-forward layer is 12,288 x 49,152 x 2, about 1.2 billion weights.
    m = _cfg("model.preset=gpt3-175b")
    ffn_weights = m.d_model * m.ff_dim * 2
    assert ffn_weights == 12288 * 49152 * 2 and abs(ffn_weights - 1.2e9) / 1.2e9 < 0.01
    assert abs(96 * ffn_weights - 116e9) / 116e9 < 0.01


@pytest.mark.parametrize("preset,published", [
    ("gpt1", 117e6),  # Radford et al. 2018
    ("gpt2-xl", 1542e6),  # Radford et al. 2019, Table 2, the size behind the rounded "1.5B"
])
def test_published_gpt_sizes_within_two_percent(preset, published):
    n = accounting.count(_cfg(f"model.preset={preset}")).n_params
    assert abs(n - published) / published < 0.02


def test_gpt2_xl_is_1_5b():
    acct = accounting.count(_cfg("model.preset=gpt2-xl"))
    # 1,557,611,200 is the exact count of the released checkpoint (48 x 1600, 50,257 tokens, tied).
    assert acct.n_params == 1_557_611_200
    assert abs(acct.n_params_non_embedding - 1.5e9) / 1.5e9 < 0.02


@pytest.mark.parametrize("overrides", [
    [],
    ["model.mlp=swiglu", "model.norm=rmsnorm", "model.position=rope", "model.bias=false", "model.tie_embeddings=false"],
    ["model.d_head=24", "model.d_ff=100", "model.n_head=3", "model.d_model=48"],
    ["model.bias=false", "model.position=none"],  # LayerNorm without its bias
])
def test_closed_form_count_equals_the_built_parameter_tree(overrides):
    m = _cfg("model.vocab_size=300", *overrides)
    params = jax.eval_shape(lambda: model.init(m, jax.random.key(0)))
    built = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    acct = accounting.count(m)
    assert acct.n_params == built
    embedding = params["embed"]["embedding"].size + (params["pos_embed"].size if "pos_embed" in params else 0)
    assert acct.n_params_embedding == embedding
    assert acct.n_params_non_embedding == built - embedding


# Three shapes the train step is compiled at: a quickstart-like one (2 layers, width 64, 2 heads of 32,
# byte vocabulary, rotary positions), SwiGLU + RoPE + RMSNorm without biases, and an untied output layer with a head
# width and MLP width that are not the defaults.
XLA_SHAPES = {
    "quickstart": ("model.vocab_size=257", "model.n_layer=2", "model.d_model=64", "model.n_head=2", "model.seq_len=64",
                   "model.position=rope"),
    "swiglu-rope": ("model.vocab_size=512", "model.n_layer=3", "model.d_model=96", "model.n_head=3",
                    "model.seq_len=128", "model.mlp=swiglu", "model.position=rope", "model.norm=rmsnorm",
                    "model.bias=false"),
    "untied": ("model.vocab_size=1000", "model.n_layer=2", "model.d_model=80", "model.n_head=4", "model.d_head=24",
               "model.d_ff=200", "model.seq_len=32", "model.tie_embeddings=false"),
}


@functools.lru_cache(maxsize=None)
def _compiled_train_step(shape: str, batch: int):
    """(model config, XLA's total FLOPs, {(term, direction): matmul FLOPs}) of one real train step."""
    cfg = config.load(None, list(XLA_SHAPES[shape]))
    schedule = optim.schedule(cfg.optim, 100)
    abstract_params = jax.eval_shape(lambda: model.init(cfg.model, jax.random.key(0)))
    tx = optim.make(cfg.optim, abstract_params)
    state = jax.eval_shape(lambda: step.init_state(cfg.model, tx, jax.random.key(0)))
    tokens = jax.ShapeDtypeStruct((1, batch, cfg.model.seq_len + 1), jnp.int32)
    compiled = step.make_train_step(cfg.model, tx, schedule, 0).lower(state, tokens).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cfg.model, cost["flops"], xla_flops.dot_flops(compiled.as_text())


@pytest.mark.parametrize("shape", XLA_SHAPES)
def test_matmul_flops_equal_xla_dots_term_by_term(shape):
    batch = 2
    m, _, dots = _compiled_train_step(shape, batch)
    tokens = batch * m.seq_len
    ours = accounting.forward_matmul_terms(m)
    assert set(term for term, _ in dots) == set(ours), "a dot XLA runs that no term accounts for, or the reverse"
    for term, per_token in ours.items():
        # Exact up to float rounding: 1e-9, far inside the 1% the count promises.
        assert dots[(term, "forward")] / tokens == pytest.approx(per_token, rel=1e-9), term
        assert dots[(term, "backward")] / tokens == pytest.approx(2 * per_token, rel=1e-9), term
    assert accounting.count(m).flops_per_token == pytest.approx(sum(dots.values()) / tokens, rel=1e-9)
    assert hand_count.training_flops_per_token(m) == pytest.approx(sum(dots.values()) / tokens, rel=1e-9)


@pytest.mark.parametrize("shape", XLA_SHAPES)
def test_the_rest_of_xla_count_is_elementwise_per_token_and_optimizer_per_step(shape):
    # XLA's total minus its matmuls, at two batch sizes, splits into a part that grows with the tokens
    # (elementwise work: norms, activations, softmax, residuals, cross-entropy) and a part paid once per
    # step (the AdamW update over every parameter). Both must be what the docstring says they are.
    m, total_small, dots_small = _compiled_train_step(shape, 2)
    _, total_large, dots_large = _compiled_train_step(shape, 6)
    rest_small, rest_large = total_small - sum(dots_small.values()), total_large - sum(dots_large.values())
    per_token = (rest_large - rest_small) / ((6 - 2) * m.seq_len)
    per_step = rest_small - per_token * 2 * m.seq_len
    acct = accounting.count(m)
    # AdamW moments, bias correction, decoupled decay, clipping and the gradient-norm metric: ~24 per parameter.
    assert 20 < per_step / acct.n_params < 30
    # Appendix F's softmax (3 per score, forward, twice that backward) is inside the elementwise rest, which
    # stays a few percent of the matmul count at these shapes.
    softmax = 3 * 3 * m.n_head * m.seq_len * m.n_layer
    assert softmax < per_token < 0.05 * acct.flops_per_token
    # And the matmul count is a better estimate of XLA's whole step than 6N, which misses attention and
    # charges the embedding table as if it were a matmul.
    xla_per_token = total_large / (6 * m.seq_len)
    assert abs(acct.flops_per_token - xla_per_token) < abs(acct.flops_per_token_6n - xla_per_token)


def test_params_command_prints_json(capsys):
    assert cli.main(["params", "gpt3-175b", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("n_params", "n_params_embedding", "n_params_non_embedding", "flops_per_token", "flops_per_token_6n"):
        assert key in out
    assert out["n_params"] == out["n_params_embedding"] + out["n_params_non_embedding"]
    assert out["flops_per_token_6n"] == 6 * out["n_params"]


def test_params_command_reads_a_yaml_with_overrides(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  preset: gpt2-small\n")
    assert cli.main(["params", str(path), "model.n_layer=6", "--json"]) == 0
    six = json.loads(capsys.readouterr().out)
    assert cli.main(["params", str(path), "--json"]) == 0
    twelve = json.loads(capsys.readouterr().out)
    assert twelve["n_params_non_embedding"] - six["n_params_non_embedding"] == 6 * 12 * 768 * 768 + 6 * 13 * 768
