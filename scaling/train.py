"""The training loop: budget -> steps, resume from the newest good checkpoint, log, evaluate, save.

The host never waits on the device for the step it just dispatched: metrics of step s are fetched
after step s+1 is queued (one step late), and only checkpoint and evaluation steps synchronise.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
import signal
import time
from pathlib import Path

import jax
import numpy as np

from scaling import accounting, config, distributed, hardware, runtime, step
from scaling.checkpoint import Checkpointer
from scaling.config import ConfigError, RunConfig
from scaling.data import TokenDataset, ensure_prepared
from scaling.metrics_log import MetricsLog
from scaling.rundir import RunDir, RunFailed, now

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a config resolves to before any compute is spent."""

    cfg: RunConfig
    dataset: TokenDataset
    accounting: accounting.Accounting
    total_steps: int
    tokens_per_step: int
    run_dir: RunDir

    @property
    def tokens_target(self) -> int:
        return self.total_steps * self.tokens_per_step


def open_dataset(cfg: RunConfig) -> TokenDataset:
    path = Path(cfg.data.path) if cfg.data.path else ensure_prepared(cfg.data.source, cfg.data.tokenizer)
    return TokenDataset(path)


def resolve_vocab(cfg: RunConfig) -> tuple[RunConfig, TokenDataset]:
    """The model's vocabulary is the dataset's unless set (larger, e.g. padded to a multiple of 64)."""
    dataset = open_dataset(cfg)
    if cfg.model.vocab_size is None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=dataset.vocab_size))
    elif cfg.model.vocab_size < dataset.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the dataset's "
                          f"vocabulary ({dataset.vocab_size})")
    return cfg, dataset


def resolve(cfg: RunConfig) -> Plan:
    """Fill in what the data decides and turn the budget into a step count."""
    cfg, dataset = resolve_vocab(cfg)
    acct = accounting.count(cfg.model)
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
    t = cfg.train
    if t.steps is not None:
        total = t.steps
    elif t.tokens is not None:
        total = math.ceil(t.tokens / tokens_per_step)
    elif t.flops is not None:
        total = math.ceil(t.flops / (acct.flops_per_token * tokens_per_step))
    else:
        raise ConfigError("set a budget: one of train.tokens, train.flops or train.steps")
    run_dir = RunDir(Path(cfg.runs_dir) / cfg.sweep / (cfg.name or config.run_id(cfg)))
    return Plan(cfg, dataset, acct, max(total, 1), tokens_per_step, run_dir)


def eval_steps(total: int, every: int, log_points: int) -> set[int]:
    """Regular evaluations, log-spaced ones (early curve shape matters for fits), and the last step."""
    steps = set(range(every, total + 1, every))
    if log_points > 0:
        steps.update(int(round(s)) for s in np.geomspace(1, total, log_points))
    steps.add(total)
    return steps


def _versions() -> dict:
    import flax
    import optax
    import orbax.checkpoint as ocp

    return {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax": ocp.__version__}


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag the loop checks, so it can save before exiting."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _prepare_run_dir(plan: Plan) -> None:
    rd, cfg = plan.run_dir, plan.cfg
    if rd.exists():
        stored = config.from_dict(config.load_yaml(rd.config_path))
        if config.run_id(stored) != config.run_id(cfg):
            raise ConfigError(f"{rd.path} already holds a run with a different config; "
                              "pick another name= or runs_dir=, or remove the directory")
    if rd.writes:
        rd.path.mkdir(parents=True, exist_ok=True)
        rd.config_path.write_text(config.dump_yaml(cfg))


def run(cfg: RunConfig) -> dict:
    """Train (or resume, or notice it is already done) and return the final run.json contents."""
    distributed.initialize(cfg.distributed)
    plan = resolve(cfg)
    cfg, rd = plan.cfg, plan.run_dir
    rd.writes = distributed.is_main()
    _prepare_run_dir(plan)
    previous = rd.read_run()
    if previous.get("status") == "done":
        log.info("run %s is already done", rd.path)
        return previous

    device = hardware.describe()
    train_tokens = plan.dataset.num_tokens("train")
    epochs = plan.dataset.epochs(plan.tokens_target, cfg.model.seq_len)
    rd.update_run(
        run_id=config.run_id(cfg), sweep=cfg.sweep, seed=cfg.seed, name=cfg.name,
        **{k: v for k, v in plan.accounting.as_dict().items()},
        tokens_per_step=plan.tokens_per_step, total_steps=plan.total_steps,
        tokens_target=plan.tokens_target, compute_target=plan.tokens_target * plan.accounting.flops_per_token,
        compute_target_6n=plan.tokens_target * plan.accounting.flops_per_token_6n,
        dataset={"path": str(plan.dataset.path), "source": plan.dataset.metadata.get("source"),
                 "tokenizer": plan.dataset.metadata.get("tokenizer"), "train_tokens": train_tokens},
        epochs=epochs,
        status="running", error=None, started=previous.get("started", now()), finished=None,
        device=device, versions=_versions(),
    )
    if epochs > 1:
        log.warning("the budget of %d tokens is %.2f epochs of the %d-token training split; it will repeat",
                    plan.tokens_target, epochs, train_tokens)
    try:
        with _StopSignal() as stop:
            return _train(plan, device, stop)
    except RunFailed as e:
        rd.update_run(status="interrupted" if e.exit_code >= 128 else "failed", error=str(e),
                      failed_step=e.step, finished=now())
        raise
    except BaseException as e:
        rd.update_run(status="failed", error=f"{type(e).__name__}: {e}", finished=now())
        raise


def _branch(plan: Plan, abstract_state) -> tuple[int, step.TrainState]:
    """Start from another run's checkpoint (a WSD cooldown branched from its stable run).

    The source run's metrics up to the branch step are copied, so this run's curve is complete
    and identical to the source's before the branch.
    """
    cfg, rd = plan.cfg, plan.run_dir
    source = RunDir(cfg.train.init_from)
    source_ckpt = Checkpointer(source.checkpoint_path, read_only=True)
    available = source_ckpt.steps() if source.checkpoint_path.is_dir() else []
    branch_step = cfg.train.init_step if cfg.train.init_step is not None else (available[-1] if available else None)
    if branch_step not in available:
        raise ConfigError(f"train.init_from: {source.path} has no checkpoint at step {branch_step} "
                          f"(it has {available or 'none'})")
    if branch_step >= plan.total_steps:
        raise ConfigError(f"train.init_step={branch_step} is not before this run's last step ({plan.total_steps})")
    state = source_ckpt.restore(branch_step, abstract_state)
    source_ckpt.close()
    rd.truncate_metrics(0)
    for row in source.read_metrics():
        if row["step"] <= branch_step:
            rd.append_metrics(row)
    rd.update_run(initialized_from={"run": str(source.path), "step": branch_step})
    log.info("starting %s from %s at step %d", rd.path, source.path, branch_step)
    return branch_step, state


def _train(plan: Plan, device: dict, stop: _StopSignal) -> dict:
    cfg, rd, acct = plan.cfg, plan.run_dir, plan.accounting
    rt = runtime.build(plan)
    ckpt = Checkpointer(rd.checkpoint_path, cfg.train.keep_checkpoints, cfg.train.keep_steps)
    restored = ckpt.restore_latest(rt.abstract_state)
    if restored is None and cfg.train.init_from:
        start, state = _branch(plan, rt.abstract_state)
    elif restored is None:
        start, state = 0, rt.init_state()
        rd.truncate_metrics(0)
    else:
        start, state = restored
        rd.truncate_metrics(start)
        log.info("resuming %s from step %d", rd.path, start)
    rd.update_run(resumed_from=start if start else None, mesh=dict(rt.mesh.shape))

    evals = eval_steps(plan.total_steps, cfg.train.eval_every, cfg.train.eval_log_points)
    val = rt.val_batches()
    keep_steps = set(cfg.train.keep_steps)
    metrics_log = MetricsLog(rd, acct.flops_per_token, plan.tokens_per_step, plan.total_steps, start, device,
                             progress=cfg.train.progress, log_every=cfg.train.log_every)
    last_eval = None
    try:
        pending = None  # (step, device metrics) dispatched but not yet read
        for s in range(start, plan.total_steps):
            state, metrics = rt.train_step(state, rt.batch(s))
            if pending is not None:
                metrics_log.record(*pending)
            pending = (s + 1, metrics)
            done = s + 1
            at_eval = done in evals
            at_ckpt = done % cfg.train.checkpoint_every == 0 or done == plan.total_steps or done in keep_steps
            if at_eval or at_ckpt or stop.signum is not None:
                eval_started = time.perf_counter()
                if at_eval:
                    last_eval = rt.evaluate(state["params"], val)
                # Synchronises, and raises on a non-finite loss: nothing below saves a bad state.
                metrics_log.record(*pending, eval_loss=last_eval if at_eval else None,
                                   paused_s=time.perf_counter() - eval_started if at_eval else 0.0)
                pending = None
            if at_ckpt or stop.signum is not None:
                ckpt.save(done, state)
            if stop.signum is not None:
                name = signal.Signals(stop.signum).name
                raise RunFailed(f"stopped by {name} at step {done}; checkpoint saved, run the same command to resume",
                                step=done, exit_code=128 + stop.signum)
    finally:
        metrics_log.close()
        ckpt.close()
    return rd.update_run(status="done", finished=now(), final_eval_loss=last_eval, final_step=plan.total_steps,
                         tokens_per_s=metrics_log.mean_tokens_per_s())
