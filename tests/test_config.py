import pytest

from scaling import config
from scaling.config import ConfigError


def test_unknown_key_names_it_and_the_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  d_modle: 128\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert "model.d_modle" in message and "d_model" in message and "n_layer" in message
    assert "did you mean 'd_model'" in message


def test_unknown_top_level_section_and_override():
    with pytest.raises(ConfigError, match="'optimizer'.*valid keys: seed"):
        config.load(None, ["optimizer.lr=1"])
    with pytest.raises(ConfigError, match="train.stepz"):
        config.load(None, ["train.stepz=3"])


def test_mistyped_values_are_errors_naming_the_key():
    with pytest.raises(ConfigError, match="model.n_layer: expected an integer"):
        config.load(None, ["model.n_layer=two"])
    with pytest.raises(ConfigError, match="model.n_layer: expected an integer"):
        config.load(None, ["model.n_layer=2.5"])
    with pytest.raises(ConfigError, match="optim.schedule: 'linear' is not one of"):
        config.load(None, ["optim.schedule=linear"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        config.load(None, ["model.n_layer"])


def test_overrides_are_typed_and_beat_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  d_model: 32\n  n_head: 2\noptim:\n  lr: 1e-3\n")
    cfg = config.load(path, ["model.d_model=96", "train.tokens=1e6", "model.tie_embeddings=false"])
    assert cfg.model.d_model == 96 and cfg.model.n_head == 2
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # YAML 1.1 reads 1e-3 as a string
    assert cfg.train.tokens == 1e6 and cfg.model.tie_embeddings is False


def test_preset_expands_under_explicit_keys():
    cfg = config.load(None, ["model.preset=gpt2-medium", "model.n_layer=3"])
    assert (cfg.model.n_layer, cfg.model.d_model, cfg.model.n_head, cfg.model.vocab_size) == (3, 1024, 16, 50257)
    with pytest.raises(ConfigError, match="unknown model preset 'gpt5'.*gpt2-small"):
        config.load(None, ["model.preset=gpt5"])


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="only one of"):
        config.load(None, ["train.tokens=100", "train.steps=3"])
    with pytest.raises(ConfigError, match="not divisible by model.n_head"):
        config.load(None, ["model.d_model=65"])
    with pytest.raises(ConfigError, match="grad_accum"):
        config.load(None, ["train.batch_size=6", "train.grad_accum=4"])
    with pytest.raises(ConfigError, match="plain directory name"):
        config.load(None, ["name=../escape"])


def test_run_id_is_a_hash_of_what_the_run_computes():
    base = config.load(None, ["train.steps=10"])
    assert config.run_id(base) == config.run_id(config.load(None, ["train.steps=10", "runs_dir=/elsewhere"]))
    assert config.run_id(base) != config.run_id(config.load(None, ["train.steps=11"]))
    assert config.run_id(base) != config.run_id(config.load(None, ["train.steps=10", "seed=1"]))


def test_dumped_config_loads_back_identically(tmp_path):
    cfg = config.load(None, ["model.preset=tiny-d128", "optim.schedule=wsd", "train.flops=1e12"])
    path = tmp_path / "config.yaml"
    path.write_text(config.dump_yaml(cfg))
    assert config.load(path) == cfg


def test_every_documented_key_is_valid():
    keys = config.valid_keys()
    assert "model.d_model" in keys and "optim.cooldown_shape" in keys and "train.flops" in keys
    assert len(keys) == len(set(keys))


def _numeric_keys() -> list[str]:
    """Every config key whose type holds a number (int, float, optional or in a list)."""
    import dataclasses
    import typing

    def numeric(hint) -> bool:
        return hint in (int, float) or any(numeric(a) for a in typing.get_args(hint))

    keys = []
    for key in config.valid_keys():
        section, _, field = key.rpartition(".")
        cls = type(config.get(config.RunConfig(), section)) if section else config.RunConfig
        hint = typing.get_type_hints(cls)[field]
        if numeric(hint) and not dataclasses.is_dataclass(hint):
            keys.append(key)
    return keys


def test_every_numeric_key_has_a_range():
    assert set(_numeric_keys()) == set(config.RANGES)


@pytest.mark.parametrize("override,message", [
    ("optim.beta1=2", "optim.beta1=2.0 is out of range; valid: [0, 1)"),
    ("optim.min_lr_ratio=-5", "optim.min_lr_ratio=-5.0 is out of range; valid: [0, 1]"),
    ("optim.lr=nan", "optim.lr=nan is not a finite number; valid: > 0"),
    ("optim.eps=0", "optim.eps=0.0 is out of range; valid: > 0"),
    ("train.tokens=inf", "train.tokens=inf is not a finite number"),
    ("train.steps=1e30", "train.steps=1e+30 is out of range; valid: [1, 1,000,000,000]"),
    ("data.eval_batches=0", "data.eval_batches=0 is out of range; valid: >= 1"),
    ("model.rope_theta=-1", "model.rope_theta=-1.0 is out of range; valid: > 0"),
    ("train.keep_steps=[5, 0]", "train.keep_steps[1]=0 is out of range"),  # names the item
])
def test_range_errors_name_the_key_the_value_and_the_valid_range(override, message):
    with pytest.raises(ConfigError) as err:
        config.load(None, [override])
    assert message in str(err.value)


def test_null_unsets_a_budget_the_file_sets(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  tokens: 2.0e6\n")
    with pytest.raises(ConfigError, match="unset the others, e.g. `train.tokens=null`"):
        config.load(path, ["train.steps=5"])
    cfg = config.load(path, ["train.steps=5", "train.tokens=null"])
    assert cfg.train.tokens is None and cfg.train.steps == 5
    assert config.load(path, ["train.steps=5", "train.tokens="]).train.tokens is None


@pytest.mark.parametrize("text,message", [
    ("model:\n  d_model: 64\n\tn_head: 4\n", "not valid YAML: found character '\\t' that cannot start any token "
                                             "at line 3, column 1"),
    ("seed: !!python/object/apply:os.system ['true']\n", "tags are not allowed"),
    ("train: {steps: 5\n", "not valid YAML"),
])
def test_malformed_and_hostile_yaml_is_a_config_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_no_import_cycle_between_config_and_presets():
    """presets and errors are leaves: config imports them, never the other way round."""
    import ast
    from pathlib import Path

    import scaling

    for leaf in ("presets.py", "errors.py"):
        tree = ast.parse((Path(scaling.__file__).parent / leaf).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m and m.startswith("scaling.config")}, leaf


def test_planning_imports_no_jax():
    """A sweep is planned (budgets, ids, vocabulary) without starting JAX."""
    import subprocess
    import sys

    code = "import sys, scaling.planning, scaling.sweeps.planner; print('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
