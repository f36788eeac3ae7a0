"""The training loop: resume from the newest good checkpoint, log, evaluate, save.

What a config comes to before any compute (budget in steps, run directory) is ``scaling.planning``.

The host never waits on the device for the step it just dispatched: metrics of step s are fetched
after step s+1 is queued (one step late), and only checkpoint and evaluation steps synchronise.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import signal
import time

import jax
import numpy as np

from analysis import run_format
from scaling import config, distributed, hardware, lockfile, planning, runtime, step, tensorboard_log
from scaling.checkpoint import Checkpointer
from scaling.config import ConfigError, RunConfig
from scaling.errors import Interrupted, UserError, describe_os_error
from scaling.metrics_log import MetricsLog
from scaling.planning import Plan, resolve
from scaling.rundir import RunDir, RunFailed, now

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EvalSteps:
    """Which steps evaluate: every ``every``-th, ``log_points`` log-spaced ones (early curve shape
    matters for fits), and the last. A membership test (``step in evals``, steps 1..``total``), so
    memory does not grow with the run length."""

    total: int
    every: int
    log_points: int

    @property
    def log_spaced(self) -> frozenset[int]:
        """The ``log_points`` steps spaced evenly in log step from 1 to ``total`` (fewer where they round together)."""
        if self.log_points <= 0:
            return frozenset()
        return frozenset(int(round(s)) for s in np.geomspace(1, self.total, self.log_points))

    def __contains__(self, s: int) -> bool:
        return 1 <= s <= self.total and (s % self.every == 0 or s == self.total or s in self._log)

    def __post_init__(self):
        object.__setattr__(self, "_log", self.log_spaced)


def _versions() -> dict:
    import flax
    import optax
    import orbax.checkpoint as ocp

    return {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "orbax": ocp.__version__}


def _process_age() -> float | None:
    """Seconds since this process started (Linux's /proc), or None where that cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - started_ticks / os.sysconf("SC_CLK_TCK")


class _Clock:
    """Where this process's time went, for run.json's ``time_s``: start-up (imports, data, building the
    steps: everything before the loop), the first step (its compilation, or loading it from the cache),
    evaluation, checkpoints, and the other steps. Tiny runs spend much of their time outside the steps,
    which is what ``benchmarks/bench_sweep.py`` reports."""

    def __init__(self):
        self.loop_started = time.perf_counter()
        self.startup = _process_age()
        self.spent = {"first_step": 0.0, "eval": 0.0, "checkpoint": 0.0}

    def first_step(self, metrics) -> None:
        jax.block_until_ready(metrics)
        self.spent["first_step"] = time.perf_counter() - self.loop_started

    def add(self, part: str, since: float) -> None:
        self.spent[part] += time.perf_counter() - since

    def parts(self) -> dict[str, float | None]:
        """Seconds per part; ``steps`` is the loop's time less the others, ``total`` the process's age."""
        loop = time.perf_counter() - self.loop_started
        age = _process_age()
        return {"startup": self.startup, **self.spent, "steps": loop - sum(self.spent.values()), "total": age}


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


def _check_stored_config(plan: Plan) -> None:
    rd, cfg = plan.run_dir, plan.cfg
    if rd.exists():
        try:
            stored = config.from_dict(config.load_yaml(rd.config_path))
        except ConfigError as e:
            raise ConfigError(f"{rd.config_path} (the config of the run already there) is damaged: {e}") from None
        # Both hashed with this dataset's content: a run whose data moved is still this run.
        content = planning.data_content(cfg)
        if config.run_id(stored, content) != config.run_id(cfg, content):
            raise ConfigError(f"{rd.path} already holds a run with a different config; "
                              "pick another name= or runs_dir=, or remove the directory")


def _lock_run_dir(plan: Plan) -> lockfile.DirLock | None:
    """Create the run directory and hold its lock: a second process on the same run is refused."""
    rd = plan.run_dir
    if not rd.writes:
        return None
    try:
        rd.path.mkdir(parents=True, exist_ok=True)
        lock = lockfile.DirLock(rd.lock_path, f"run {rd.path}",
                                "wait for it to finish, or stop it and run the same command to resume")
        lock.acquire()
    except OSError as e:
        raise RunFailed(f"cannot write the run directory: {describe_os_error(e)}") from None
    return lock


def run(cfg: RunConfig) -> dict:
    """Train (or resume, or notice it is already done) and return the final run.json contents.

    Raises ConfigError for bad input, lockfile.Locked when another process trains this run,
    RunFailed when the run fails (recorded in run.json where it can be written) and Interrupted
    when SIGINT/SIGTERM stopped it after a checkpoint (status ``interrupted``, resumable).
    """
    distributed.initialize(cfg.distributed)
    plan = resolve(cfg)
    cfg, rd = plan.cfg, plan.run_dir
    rd.writes = distributed.is_main()
    _check_stored_config(plan)
    rd.read_run()  # a damaged run.json is refused before anything is written
    rt = runtime.build(plan)  # refuses a model that cannot fit in memory, also before any write
    lock = _lock_run_dir(plan)
    try:
        return _run_locked(plan, rt)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(plan: Plan, rt: runtime.Runtime) -> dict:
    cfg, rd = plan.cfg, plan.run_dir
    try:
        if rd.writes:
            rd.config_path.write_text(config.dump_yaml(cfg))
        previous = rd.read_run()
        if previous.get(run_format.STATUS) == run_format.DONE:
            log.info("run %s is already done", rd.path)
            return previous
        device = hardware.describe()
        train_tokens = plan.dataset.num_tokens("train")
        epochs = plan.dataset.epochs(plan.tokens_target, cfg.model.seq_len)
        rd.update_run(
            run_id=planning.run_id(cfg), sweep=cfg.sweep, seed=cfg.seed, name=cfg.name,
            **{k: v for k, v in plan.accounting.as_dict().items()},
            tokens_per_step=plan.tokens_per_step, total_steps=plan.total_steps,
            tokens_target=plan.tokens_target, compute_target=plan.tokens_target * plan.accounting.flops_per_token,
            compute_target_6n=plan.tokens_target * plan.accounting.flops_per_token_6n,
            dataset={"path": str(plan.dataset.path), "content": planning.data_content(cfg),
                     "source": plan.dataset.metadata.get("source"),
                     run_format.TOKENIZER: plan.dataset.metadata.get("tokenizer"), "train_tokens": train_tokens},
            epochs=epochs,
            status="running", error=None, failed_step=None, interrupted_step=None,
            started=previous.get(run_format.STARTED, now()), finished=None, device=device, versions=_versions(),
        )
    except OSError as e:
        raise RunFailed(f"cannot write the run directory: {describe_os_error(e)}") from None
    if epochs > 1:
        log.warning("the budget of %d tokens is %.2f epochs of the %d-token training split; it will repeat",
                    plan.tokens_target, epochs, train_tokens)
    try:
        with _StopSignal() as stop:
            return _train(plan, rt, device, stop)
    except Interrupted as e:
        _record_end(rd, status="interrupted", interrupted_step=e.step, finished=now())
        raise
    except RunFailed as e:
        _record_end(rd, status="failed", error=str(e), failed_step=e.step, finished=now())
        raise
    except UserError as e:
        _record_end(rd, status="failed", error=str(e), finished=now())
        raise
    except OSError as e:
        message = f"{describe_os_error(e)}; the last complete checkpoint is kept"
        _record_end(rd, status="failed", error=message, finished=now())
        raise RunFailed(message) from None
    except BaseException as e:
        _record_end(rd, status="failed", error=f"{type(e).__name__}: {e}", finished=now())
        raise


def _record_end(rd: RunDir, **fields) -> None:
    """Record how the run ended, where run.json can still be written (not on a full or read-only disk)."""
    try:
        rd.update_run(**fields)
    except OSError as e:
        log.warning("could not record the run's end in %s: %s", rd.run_json_path, describe_os_error(e))


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
    for row in source.iter_metrics():
        if row[run_format.STEP] <= branch_step:
            rd.append_metrics(row)
    _rebuild_tensorboard(rd)
    rd.update_run(initialized_from={"run": str(source.path), "step": branch_step})
    log.info("starting %s from %s at step %d", rd.path, source.path, branch_step)
    return branch_step, state


def _rebuild_tensorboard(rd: RunDir) -> None:
    """TensorBoard, like metrics.jsonl, holds each step once after a resume: rebuilt from the kept rows."""
    if rd.writes and rd.tb_path.is_dir():
        tensorboard_log.rebuild(rd.tb_path, rd.iter_metrics())


def _allocate(plan: Plan, rt: runtime.Runtime):
    """Fresh state, turning the device's out-of-memory error (which the estimate in runtime.build
    can miss: other processes, fragmentation) into a ConfigError saying how many bytes it needs."""
    try:
        return rt.init_state()
    except Exception as e:
        if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower():
            raise
        raise runtime.memory_error(plan, runtime.state_bytes_per_device(rt.abstract_state), None) from None


def _train(plan: Plan, rt: runtime.Runtime, device: dict, stop: _StopSignal) -> dict:
    cfg, rd, acct = plan.cfg, plan.run_dir, plan.accounting
    ckpt = Checkpointer(rd.checkpoint_path, cfg.train.keep_checkpoints, cfg.train.keep_steps)
    restored = ckpt.restore_latest(rt.abstract_state)
    if restored is None and cfg.train.init_from:
        start, state = _branch(plan, rt.abstract_state)
    elif restored is None:
        start, state = 0, _allocate(plan, rt)
        rd.truncate_metrics(0)
        _rebuild_tensorboard(rd)
    else:
        start, state = restored
        rd.truncate_metrics(start)
        _rebuild_tensorboard(rd)
        log.info("resuming %s from step %d", rd.path, start)
    rd.update_run(resumed_from=start if start else None, mesh=dict(rt.mesh.shape))

    evals = EvalSteps(plan.total_steps, cfg.train.eval_every, cfg.train.eval_log_points)
    val = rt.val_batches()
    keep_steps = set(cfg.train.keep_steps)
    metrics_log = MetricsLog(rd, acct.flops_per_token, plan.tokens_per_step, plan.total_steps, start, device,
                             progress=cfg.train.progress, log_every=cfg.train.log_every)
    last_eval = last_eval_se = last_eval_batches = None
    clock = _Clock()
    try:
        pending = None  # (step, device metrics) dispatched but not yet read
        for s in range(start, plan.total_steps):
            state, metrics = rt.train_step(state, rt.batch(s))
            if s == start:
                clock.first_step(metrics)
            if pending is not None:
                metrics_log.record(*pending)
            pending = (s + 1, metrics)
            done = s + 1
            at_eval = done in evals
            at_ckpt = done % cfg.train.checkpoint_every == 0 or done == plan.total_steps or done in keep_steps
            if at_eval or at_ckpt or stop.signum is not None:
                eval_started = time.perf_counter()
                if at_eval:
                    last_eval, last_eval_se, last_eval_batches = rt.evaluate(state["params"], val)
                # Synchronises, and raises on a non-finite loss: nothing below saves a bad state.
                metrics_log.record(*pending, eval_loss=last_eval if at_eval else None,
                                   paused_s=time.perf_counter() - eval_started if at_eval else 0.0)
                clock.add("eval", eval_started)
                pending = None
            if at_ckpt or stop.signum is not None:
                saving = time.perf_counter()
                ckpt.save(done, state)
                clock.add("checkpoint", saving)
            if stop.signum is not None:
                log.info("stopped by %s at step %d; checkpoint saved", signal.Signals(stop.signum).name, done)
                raise Interrupted(done, stop.signum)
    except BaseException:
        metrics_log.close()
        ckpt.close(quiet=True)  # still finishes a pending good save (e.g. the one before an interruption)
        raise
    metrics_log.close()
    closing = time.perf_counter()
    ckpt.close()
    clock.add("checkpoint", closing)
    return rd.update_run(status="done", finished=now(), final_eval_loss=last_eval,
                         final_eval_loss_se=last_eval_se, final_eval_batch_losses=last_eval_batches,
                         final_step=plan.total_steps,
                         tokens_per_s=metrics_log.mean_tokens_per_s(), time_s=clock.parts())
