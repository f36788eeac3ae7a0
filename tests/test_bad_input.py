"""Every command, fed what users get wrong: one `error:` line, a non-zero exit, no traceback, nothing
written or lost.

Rows run in-process through `scaling.cli.main` (the console command's own entry point) in a scratch
working directory whose whole tree is compared before and after; a few run as real subprocesses.
Most rows fail at validation, before any model is built. A new bug of this kind gets a row here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import scaling_cmd
from scaling import cli, config

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "scaling" / "configs" / "tiny.yaml"
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
TRAIN = ("train", "tiny-d64", "data.path={data}", "runs_dir=runs", "train.steps=5", "train.progress=false")
PARAMS = ("params", "gpt2-small")
PREPARE = ("data", "prepare", "--source", "{corpus}", "--out", "out")
SWEEP_BASE = {"model": {"vocab_size": 257, "seq_len": 32}, "optim": {"lr": 1e-3}, "train": {"batch_size": 8}}


def _sweep(**change) -> str:
    return json.dumps({"name": "t", "count": "total", "base": SWEEP_BASE, "axes": [{"tokens": [1e5]}], **change})


def _chinchilla(law: str = "chinchilla", **change) -> dict:
    """A fits.json entry as `scaling analyze` writes it, from Hoffmann et al. 2022's printed fit
    (E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28) and its compute-optimal allocation."""
    p = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    a, b = p["beta"] / (p["alpha"] + p["beta"]), p["alpha"] / (p["alpha"] + p["beta"])
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    derived = {"a": a, "b": b, "G": g, "N_coef": g / 6 ** a, "D_coef": 1 / (g * 6 ** b)}
    return {"law": law, "n_kind": "total", "status": "ok", "diagnostics": [],
            "params": {**p, **derived, **change}}


def _fits(**entries) -> str:
    return json.dumps({"fits": entries})


# (id, argv, files to create first {relative path: text or bytes}, a piece of the expected message)
ROWS = [
    # --- train: types, ranges and non-finite numbers of config values ---
    ("beta1-above-1", (*TRAIN, "optim.beta1=2"), {}, "optim.beta1=2.0 is out of range; valid: [0, 1)"),
    ("beta2-equal-1", (*TRAIN, "optim.beta2=1"), {}, "optim.beta2"),
    ("beta1-negative", (*TRAIN, "optim.beta1=-0.1"), {}, "optim.beta1"),
    ("min-lr-ratio-negative", (*TRAIN, "optim.min_lr_ratio=-5"), {}, "optim.min_lr_ratio=-5.0 is out of range"),
    ("min-lr-ratio-above-1", (*TRAIN, "optim.min_lr_ratio=1.5"), {}, "valid: [0, 1]"),
    ("lr-nan", (*TRAIN, "optim.lr=nan"), {}, "optim.lr=nan is not a finite number"),
    ("lr-inf", (*TRAIN, "optim.lr=inf"), {}, "optim.lr=inf is not a finite number"),
    ("lr-zero", (*TRAIN, "optim.lr=0"), {}, "optim.lr=0.0 is out of range; valid: > 0"),
    ("lr-negative", (*TRAIN, "optim.lr=-1e-3"), {}, "optim.lr"),
    ("lr-not-a-number", (*TRAIN, "optim.lr=fast"), {}, "optim.lr: expected a number"),
    ("eps-zero", (*TRAIN, "optim.eps=0"), {}, "optim.eps"),
    ("weight-decay-negative", (*TRAIN, "optim.weight_decay=-0.1"), {}, "optim.weight_decay"),
    ("grad-clip-negative", (*TRAIN, "optim.grad_clip=-1"), {}, "optim.grad_clip"),
    ("warmup-fraction-1", (*TRAIN, "optim.warmup_fraction=1"), {}, "optim.warmup_fraction"),
    ("warmup-steps-negative", (*TRAIN, "optim.warmup_steps=-3"), {}, "optim.warmup_steps"),
    ("warmup-longer-than-run", (*TRAIN, "optim.warmup_steps=5"), {}, "leaves no step"),
    ("cooldown-fraction-2", (*TRAIN, "optim.cooldown_fraction=2"), {}, "optim.cooldown_fraction"),
    ("schedule-unknown", (*TRAIN, "optim.schedule=linear"), {}, "optim.schedule: 'linear' is not one of"),
    ("cooldown-shape-unknown", (*TRAIN, "optim.cooldown_shape=sqrt"), {}, "optim.cooldown_shape"),
    ("tokens-nan", (*TRAIN, "train.steps=null", "train.tokens=nan"), {}, "train.tokens=nan is not a finite"),
    ("tokens-inf", (*TRAIN, "train.steps=null", "train.tokens=inf"), {}, "train.tokens=inf"),
    ("tokens-negative", (*TRAIN, "train.steps=null", "train.tokens=-5"), {}, "train.tokens"),
    ("tokens-absurd", (*TRAIN, "train.steps=null", "train.tokens=1e30"), {}, "typing mistake"),
    ("steps-absurd", (*TRAIN, "train.steps=1e30"), {}, "train.steps=1e+30 is out of range"),
    ("steps-zero", (*TRAIN, "train.steps=0"), {}, "train.steps"),
    ("steps-fractional", (*TRAIN, "train.steps=2.5"), {}, "train.steps: expected an integer"),
    ("steps-string", (*TRAIN, "train.steps=many"), {}, "train.steps: expected an integer"),
    ("flops-absurd", (*TRAIN, "train.steps=null", "train.flops=1e40"), {}, "train.flops"),
    ("tokens-too-many-steps", (*TRAIN, "train.steps=null", "train.tokens=1e15"), {}, "optimizer steps"),
    ("two-budgets", (*TRAIN, "train.tokens=1e6"), {}, "train.tokens=null"),
    ("no-budget", (*TRAIN, "train.steps=null"), {}, "set a budget"),
    ("batch-size-zero", (*TRAIN, "train.batch_size=0"), {}, "train.batch_size"),
    ("batch-size-string", (*TRAIN, "train.batch_size=abc"), {}, "train.batch_size: expected an integer"),
    ("batch-size-list", (*TRAIN, "train.batch_size=[8]"), {}, "train.batch_size: expected an integer"),
    ("grad-accum-not-dividing", (*TRAIN, "train.grad_accum=3"), {}, "not divisible by train.grad_accum"),
    ("eval-every-zero", (*TRAIN, "train.eval_every=0"), {}, "train.eval_every"),
    ("log-every-negative", (*TRAIN, "train.log_every=-1"), {}, "train.log_every"),
    ("checkpoint-every-zero", (*TRAIN, "train.checkpoint_every=0"), {}, "train.checkpoint_every"),
    ("keep-checkpoints-zero", (*TRAIN, "train.keep_checkpoints=0"), {}, "train.keep_checkpoints"),
    ("keep-steps-zero", (*TRAIN, "train.keep_steps=[0]"), {}, "train.keep_steps"),
    ("keep-steps-not-a-list", (*TRAIN, "train.keep_steps=5"), {}, "expected a list"),
    ("eval-log-points-absurd", (*TRAIN, "train.eval_log_points=1e9"), {}, "train.eval_log_points"),
    ("init-step-without-init-from", (*TRAIN, "train.init_step=5"), {}, "needs train.init_from"),
    ("init-from-missing", (*TRAIN, "train.init_from=nowhere"), {}, "not a run directory"),
    ("eval-batches-zero", (*TRAIN, "data.eval_batches=0"), {}, "data.eval_batches=0 is out of range"),
    ("eval-batches-negative", (*TRAIN, "data.eval_batches=-1"), {}, "data.eval_batches"),
    ("n-layer-zero", (*TRAIN, "model.n_layer=0"), {}, "model.n_layer"),
    ("d-model-word", (*TRAIN, "model.d_model=two"), {}, "model.d_model: expected an integer"),
    ("heads-not-dividing", (*TRAIN, "model.n_head=3"), {}, "not divisible by model.n_head"),
    ("seq-len-zero", (*TRAIN, "model.seq_len=0"), {}, "model.seq_len"),
    ("rope-theta-zero", (*TRAIN, "model.position=rope", "model.rope_theta=0"), {}, "model.rope_theta"),
    ("norm-eps-negative", (*TRAIN, "model.norm_eps=-1"), {}, "model.norm_eps"),
    ("dropout-one", (*TRAIN, "model.dropout=1"), {}, "model.dropout"),
    ("init-std-zero", (*TRAIN, "model.init_std=0"), {}, "model.init_std"),
    ("vocab-one", (*TRAIN, "model.vocab_size=1"), {}, "model.vocab_size"),
    ("vocab-beyond-int32", (*TRAIN, "model.vocab_size=3e9"), {}, "token ids are int32"),
    ("vocab-too-large-to-allocate", (*TRAIN, "model.vocab_size=2e9"), {}, "does not fit in memory"),
    ("vocab-smaller-than-data", (*TRAIN, "model.vocab_size=100"), {}, "smaller than the dataset's vocabulary"),
    ("position-unknown", (*TRAIN, "model.position=alibi"), {}, "model.position"),
    ("bool-garbage", (*TRAIN, "model.tie_embeddings=maybe"), {}, "expected true/false"),
    ("preset-unknown", (*TRAIN, "model.preset=gpt5"), {}, "unknown model preset"),
    ("seed-negative", (*TRAIN, "seed=-1"), {}, "seed=-1 is out of range"),
    ("mesh-zero", (*TRAIN, "mesh.data=0"), {}, "mesh.data=0"),
    ("mesh-both-all", (*TRAIN, "mesh.fsdp=-1"), {}, "only one of mesh.data and mesh.fsdp"),
    ("name-escapes", (*TRAIN, "name=../escape"), {}, "plain directory name"),
    ("sweep-has-slash", (*TRAIN, "sweep=a/b"), {}, "plain directory name"),
    ("unknown-key", (*TRAIN, "train.stpes=5"), {}, "did you mean 'steps'"),
    ("unknown-section", (*TRAIN, "optimizer.lr=1"), {}, "unknown key 'optimizer'"),
    ("section-as-value", (*TRAIN, "model=3"), {}, "model: expected a mapping"),
    # --- train: malformed overrides and hostile YAML ---
    ("override-without-equals", (*TRAIN, "model.d_model"), {}, "not of the form key=value"),
    ("override-unclosed-list", (*TRAIN, "model.d_model=[1, 2"), {}, "not valid YAML"),
    ("override-unclosed-map", (*TRAIN, "model.d_model={a: 1"), {}, "not valid YAML"),
    ("override-python-tag", (*TRAIN, "seed=!!python/object/apply:os.system ['touch pwned']"), {}, "tags are not allowed"),
    ("yaml-scanner-error", ("train", "c.yaml"), {"c.yaml": "model:\n  d_model: 64\n\tn_head: 4\n"}, "not valid YAML"),
    ("yaml-bad-indent", ("train", "c.yaml"), {"c.yaml": "model:\n  d_model: 64\n n_head: 4\n"}, "not valid YAML"),
    ("yaml-unclosed-flow", ("train", "c.yaml"), {"c.yaml": "train: {steps: 5\n"}, "not valid YAML"),
    ("yaml-python-tag", ("train", "c.yaml"), {"c.yaml": "seed: !!python/object/apply:os.system ['touch pwned']\n"},
     "tags are not allowed"),
    ("yaml-duplicate-key", ("train", "c.yaml"), {"c.yaml": "model:\n  d_model: 64\n  d_model: 128\n"},
     "key 'd_model' appears twice at line 3"),
    ("yaml-top-level-list", ("train", "c.yaml"), {"c.yaml": "- 1\n- 2\n"}, "must be a mapping"),
    ("yaml-scalar", ("train", "c.yaml"), {"c.yaml": "just words\n"}, "must be a mapping"),
    ("yaml-binary", ("train", "c.yaml"), {"c.yaml": b"\xff\xfe\x00\x01garbage"}, "c.yaml"),
    ("config-missing", ("train", "missing.yaml"), {}, "does not exist"),
    ("config-is-directory", ("train", "adir"), {"adir/x": "1"}, "is a directory"),
    # --- train: paths and damaged run directories ---
    ("data-path-missing", ("train", "tiny-d64", "data.path=nowhere", "train.steps=5"), {}, "not a prepared dataset"),
    ("data-path-is-a-file", ("train", "tiny-d64", "data.path=f.txt", "train.steps=5"), {"f.txt": "x"}, "f.txt"),
    ("data-metadata-not-json", ("train", "tiny-d64", "data.path=ds", "train.steps=5"),
     {"ds/metadata.json": "{oops"}, "not valid JSON"),
    ("tokenizer-unknown", (*TRAIN[:2], "train.steps=5", "data.tokenizer=sentencepiece"), {}, "unknown tokenizer"),
    ("runs-dir-is-a-file", (*TRAIN, "runs_dir=f.txt"), {"f.txt": "x"}, "Not a directory"),
    ("run-json-damaged", TRAIN, {"@run/run.json": "{half"}, "run.json is damaged"),
    ("run-config-damaged", TRAIN, {"@run/config.yaml": "model: [\n"}, "is damaged"),
    ("run-dir-holds-another-config", TRAIN, {"@run/config.yaml": "seed: 7\n"}, "different config"),
    # --- params ---
    ("params-beta1", (*PARAMS, "optim.beta1=2"), {}, "optim.beta1"),
    ("params-vocab-smaller-than-data", ("params", "tiny-d64", "data.path={data}", "model.vocab_size=100"), {},
     "smaller than the dataset's vocabulary"),
    ("params-vocab-smaller-than-bytes", ("params", "tiny-d64", "model.vocab_size=100"), {}, "smaller than the"),
    ("params-heads-not-dividing", (*PARAMS, "model.n_head=7"), {}, "not divisible"),
    ("params-vocab-nan", (*PARAMS, "model.vocab_size=nan"), {}, "expected an integer"),
    ("params-tokens-inf", (*PARAMS, "train.tokens=inf"), {}, "not a finite number"),
    ("params-missing-file", ("params", "missing.yaml"), {}, "does not exist"),
    ("params-yaml-tag", ("params", "c.yaml"), {"c.yaml": "model: !!python/name:os.system\n"}, "tags are not allowed"),
    # --- data prepare ---
    ("prepare-source-missing", ("data", "prepare", "--source", "nowhere", "--out", "out"), {}, "source not found"),
    ("prepare-source-empty", ("data", "prepare", "--source", "empty", "--out", "out"), {"empty/.keep": ""},
     "holds no text"),
    ("prepare-tokenizer-unknown", (*PREPARE, "--tokenizer", "sentencepiece"), {}, "unknown tokenizer"),
    ("prepare-bpe-too-small", (*PREPARE, "--tokenizer", "bpe:100"), {}, "bad BPE vocabulary"),
    ("prepare-bpe-not-a-number", (*PREPARE, "--tokenizer", "bpe:lots"), {}, "bad BPE vocabulary"),
    ("prepare-val-fraction-above-1", (*PREPARE, "--val-fraction", "1.5"), {}, "validation fraction"),
    ("prepare-val-fraction-nan", (*PREPARE, "--val-fraction", "nan"), {}, "validation fraction"),
    ("prepare-val-fraction-word", (*PREPARE, "--val-fraction", "some"), {}, "invalid float value"),
    ("prepare-seed-negative", (*PREPARE, "--seed", "-1"), {}, "seed must be non-negative"),
    ("prepare-out-not-empty", ("data", "prepare", "--source", "{corpus}", "--out", "full"), {"full/x": "1"},
     "already exists"),
    ("prepare-out-under-a-file", ("data", "prepare", "--source", "{corpus}", "--out", "f.txt/out"), {"f.txt": "x"},
     "f.txt"),
    ("prepare-jsonl-broken", ("data", "prepare", "--source", "d.jsonl", "--out", "out"),
     {"d.jsonl": '{"text": "a"}\n{broken\n'}, "not valid JSON"),
    ("prepare-jsonl-no-field", ("data", "prepare", "--source", "d.jsonl", "--out", "out"),
     {"d.jsonl": '{"txt": "a"}\n{"txt": "b"}\n'}, "no 'text' field"),
    ("prepare-parquet-garbage", ("data", "prepare", "--source", "d.parquet", "--out", "out"),
     {"d.parquet": b"not parquet at all"}, "not a readable parquet file"),
    # --- sweep plan | launch | status ---
    ("sweep-file-missing", ("sweep", "plan", "missing.yaml"), {}, "does not exist"),
    ("sweep-scanner-error", ("sweep", "plan", "s.yaml"), {"s.yaml": "name: t\n\tcount: total\n"}, "not valid YAML"),
    ("sweep-unclosed-flow", ("sweep", "plan", "s.yaml"), {"s.yaml": "name: t\naxes: [{tokens: [1e5]}\n"},
     "not valid YAML"),
    ("sweep-python-tag", ("sweep", "plan", "s.yaml"),
     {"s.yaml": "name: !!python/object/apply:os.system ['touch pwned']\n"}, "tags are not allowed"),
    ("sweep-duplicate-axes", ("sweep", "plan", "s.yaml"), {"s.yaml": "name: t\naxes: []\naxes: [{tokens: [1]}]\n"},
     "key 'axes' appears twice"),
    ("sweep-top-level-list", ("sweep", "plan", "s.yaml"), {"s.yaml": "- a\n"}, "must be a mapping"),
    ("sweep-base-beta1", ("sweep", "plan", "s.yaml"),
     {"s.yaml": _sweep(base={**SWEEP_BASE, "optim": {"beta1": 2}})}, "optim.beta1=2.0 is out of range"),
    ("sweep-base-min-lr-ratio", ("sweep", "plan", "s.yaml"),
     {"s.yaml": _sweep(base={**SWEEP_BASE, "optim": {"min_lr_ratio": -5}})}, "optim.min_lr_ratio"),
    ("sweep-override-lr-nan", ("sweep", "plan", "s.yaml", "optim.lr=nan"), {"s.yaml": _sweep()}, "optim.lr=nan"),
    ("sweep-grid-eval-batches-zero", ("sweep", "plan", "s.yaml"),
     {"s.yaml": _sweep(axes=[{"tokens": [1e5]}, {"grid": {"data.eval_batches": [0]}}])}, "data.eval_batches"),
    ("sweep-budget-nan", ("sweep", "plan", "s.yaml"), {"s.yaml": _sweep(axes=[{"tokens": ["nan"]}])},
     "s.yaml: axes[0].tokens[0]=nan is not a finite number"),
    ("sweep-count-unknown", ("sweep", "plan", "s.yaml"), {"s.yaml": _sweep(count="all")}, "count"),
    ("sweep-name-escapes", ("sweep", "plan", "s.yaml"), {"s.yaml": _sweep(name="../x")}, "plain directory name"),
    ("sweep-parallel-zero", ("sweep", "plan", "s.yaml", "--parallel", "0"), {"s.yaml": _sweep()},
     "expected a positive integer"),
    ("sweep-launch-scanner-error", ("sweep", "launch", "s.yaml"), {"s.yaml": "name: [t\n"}, "not valid YAML"),
    ("sweep-launch-bad-base", ("sweep", "launch", "s.yaml"),
     {"s.yaml": _sweep(base={**SWEEP_BASE, "optim": {"eps": 0}})}, "optim.eps"),
    ("sweep-launch-runs-dir-is-a-file", ("sweep", "launch", "s.yaml", "--runs-dir", "f.txt"),
     {"s.yaml": _sweep(), "f.txt": "x"}, "Not a directory"),
    ("sweep-status-python-tag", ("sweep", "status", "s.yaml"), {"s.yaml": "name: !!python/name:os.getcwd\n"},
     "tags are not allowed"),
    ("sweep-status-bad-base", ("sweep", "status", "s.yaml"),
     {"s.yaml": _sweep(base={**SWEEP_BASE, "train": {"batch_size": 0}})}, "train.batch_size"),
    # --- analyze | fit | predict ---
    ("analyze-missing-dir", ("analyze", "nowhere"), {}, "nowhere"),
    ("analyze-no-runs", ("analyze", "empty"), {"empty/.keep": ""}, "no finished runs"),
    ("analyze-bootstrap-negative", ("analyze", "empty", "--bootstrap", "-1"), {"empty/.keep": ""}, "bootstrap"),
    ("fit-missing-csv", ("fit", "missing.csv", "--law", "kaplan_n"), {}, "missing.csv"),
    ("fit-empty-csv", ("fit", "e.csv", "--law", "kaplan_n"), {"e.csv": "N,D,loss\n"}, "no rows"),
    ("fit-binary-csv", ("fit", "b.csv", "--law", "kaplan_n"), {"b.csv": b"\xff\xfe\x00garbage"}, "cannot read CSV"),
    ("fit-missing-column", ("fit", "c.csv", "--law", "kaplan_n"), {"c.csv": "N,loss\n1e6,3\n"}, "missing column"),
    ("fit-nan-loss", ("fit", "c.csv", "--law", "kaplan_n"),
     {"c.csv": "N,D,loss\n1e6,1e8,3\n2e6,2e8,nan\n4e6,4e8,2.8\n8e6,8e8,2.7\n"}, "not a number"),
    ("fit-negative-n", ("fit", "c.csv", "--law", "kaplan_n"),
     {"c.csv": "N,D,loss\n1e6,1e8,3\n-2e6,2e8,2.9\n4e6,4e8,2.8\n8e6,8e8,2.7\n"}, "zero or negative"),
    ("fit-law-unknown", ("fit", "c.csv", "--law", "kaplan"), {"c.csv": "N,D,loss\n"}, "invalid choice"),
    ("predict-missing-file", ("predict", "--fit", "missing.json", "--compute", "1e20"), {}, "missing.json"),
    ("predict-malformed-json", ("predict", "--fit", "f.json", "--compute", "1e20"), {"f.json": "{nope"},
     "not valid JSON"),
    ("predict-json-list", ("predict", "--fit", "f.json", "--compute", "1e20"), {"f.json": "[1, 2]"}, "fits"),
    ("predict-no-query", ("predict", "--fit", "f.json"), {"f.json": "{}"}, "give --compute"),
    ("predict-nan-parameters", ("predict", "--fit", "f.json", "--compute", "1e20"),
     {"f.json": _fits(chinchilla=_chinchilla(E=None))}, "E are not finite"),
    ("predict-negative-exponent", ("predict", "--fit", "f.json", "--compute", "1e20"),
     {"f.json": _fits(chinchilla=_chinchilla(alpha=-0.34))}, "alpha"),
    ("predict-entries-disagree", ("predict", "--fit", "f.json", "--compute", "1e20"),
     {"f.json": _fits(isoflop=_chinchilla(law="isoflop"), kaplan_compute={"law": "kaplan_compute",
                                                                          "params": {"alpha_N": 0.07}})}, ""),
    # --- quickstart and the command line itself ---
    ("quickstart-runs-dir-is-a-file", ("quickstart", "--runs-dir", "f.txt"), {"f.txt": "x"}, "Not a directory"),
    ("quickstart-extra-argument", ("quickstart", "now"), {}, "unrecognized arguments"),
    ("command-unknown", ("trian", "x.yaml"), {}, "invalid choice"),
    ("command-missing", (), {}, "required"),
]

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        (root / f"{i}.txt").write_text(f"document number {i}\n" * (i + 1))
    return root


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its size and modification time: 'nothing written or lost'."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def _run_dir_of(args: list[str]) -> str:
    """Where `scaling train` with these overrides puts its run (for rows that damage one)."""
    from scaling import planning

    return str(planning.resolve(config.load(None, ["model.preset=tiny-d64", *args[2:]])).run_dir.path)


def run_in_process(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_error_line_and_changes_nothing(row, tmp_path, monkeypatch, capsys, tiny_data, corpus):
    name, argv, files, expected = row
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCALING_DEBUG", raising=False)
    argv = [a.replace("{data}", str(tiny_data)).replace("{corpus}", str(corpus)) for a in argv]
    for rel, content in files.items():
        rel = rel.replace("@run", _run_dir_of(argv)) if rel.startswith("@run") else rel
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    before = _tree(tmp_path)
    code, err = run_in_process(argv, capsys)
    assert code not in (0, None), f"exit code {code}; stderr:\n{err}"
    assert "Traceback" not in err, err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    assert expected.lower() in error_lines[0].lower(), error_lines[0]
    assert _tree(tmp_path) == before, "a rejected command wrote, moved or deleted files"
    assert not (tmp_path / "pwned").exists()


def test_the_suite_covers_every_command_with_enough_rows():
    commands = {r[1][0] if r[1][0] not in ("data", "sweep") else " ".join(r[1][:2]) for r in ROWS if r[1]}
    assert {"train", "params", "data prepare", "sweep plan", "sweep launch", "sweep status", "analyze", "fit",
            "predict", "quickstart"} <= commands
    assert len(ROWS) >= 80 and len({r[0] for r in ROWS}) == len(ROWS)


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(config.ConfigError, match="optim.beta1"):
        cli.main(["--debug", "params", "gpt2-small", "optim.beta1=2"])
    monkeypatch.setenv("SCALING_DEBUG", "1")
    with pytest.raises(config.ConfigError, match="optim.beta1"):
        cli.main(["params", "gpt2-small", "optim.beta1=2"])


@pytest.mark.slow
@pytest.mark.parametrize("argv, files, expected", [
    (["train", "c.yaml"], {"c.yaml": "model:\n  d_model: 64\n\tn_head: 4\n"}, "not valid YAML"),
    (["sweep", "plan", "s.yaml"], {"s.yaml": "name: !!python/object/apply:os.system ['touch pwned']\n"},
     "tags are not allowed"),
    (["data", "prepare", "--source", "nowhere", "--out", "out"], {}, "source not found"),
])
def test_the_console_command_itself(argv, files, expected, tmp_path):
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    before = _tree(tmp_path)
    proc = subprocess.run(scaling_cmd(*argv), capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert _tree(tmp_path) == before
