import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scaling import accounting, cli, config, model, optim, step


def _cfg(*overrides):
    return config.load(None, list(overrides)).model


def test_gpt3_175b_matches_the_paper():
    acct = accounting.count(_cfg("model.preset=gpt3-175b"))
    assert abs(acct.n_params - 175e9) / 175e9 < 0.01
    # GUIDE section 3: each feed-forward layer is 12,288 x 49,152 x 2, about 1.2 billion weights.
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


@pytest.mark.parametrize("overrides", [
    ["model.vocab_size=257"],  # tiny: attention and the output layer dominate, 6N is far off
    ["model.preset=small-d384", "model.vocab_size=4096", "model.mlp=swiglu", "model.position=rope"],
])
def test_exact_flops_agree_with_xla_cost_analysis(overrides):
    cfg = config.load(None, overrides)
    schedule = optim.schedule(cfg.optim, 100)
    abstract_params = jax.eval_shape(lambda: model.init(cfg.model, jax.random.key(0)))
    tx = optim.make(cfg.optim, cfg.model, abstract_params, schedule)
    state = jax.eval_shape(lambda: step.init_state(cfg.model, tx, jax.random.key(0)))
    batch = 8
    tokens = jax.ShapeDtypeStruct((1, batch, cfg.model.seq_len + 1), jnp.int32)
    cost = step.make_train_step(cfg.model, tx, schedule, 0).lower(state, tokens).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla_per_token = cost["flops"] / (batch * cfg.model.seq_len)
    exact = accounting.count(cfg.model).flops_per_token
    assert abs(xla_per_token - exact) / exact < 0.10
    # And it is a better estimate than 6N, which misses attention and the output layer.
    assert abs(exact - xla_per_token) < abs(accounting.count(cfg.model).flops_per_token_6n - xla_per_token)


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
