"""Launch a planned sweep and see it through: start runs as slots free up, record how each one ends.

What a (re)launch does with each run, from its run directory:
- ``done``: nothing.
- ``failed`` (its own verdict: a non-finite loss, an exception, a bad config, a crash): nothing,
  unless ``retry_failed``; the error and the log stay where they are.
- still running from an earlier launch (its process or SLURM job is alive): watched, not restarted.
- anything else (never started, stopped by SIGTERM/SIGINT, or killed: see below): started; the
  trainer resumes it from its newest good checkpoint.

Killed is not failed. A process that ends without the run's own verdict in run.json (killed by a
signal it did not handle, such as the OOM killer's SIGKILL, or vanished: a run followed from an
earlier launch whose process is gone) was ended from outside; it is recorded ``killed``
(``state.record_kill``: the signal, its last checkpoint's step, the time) and restarted from that
checkpoint within the same launch, up to ``max_restarts`` times from the same checkpoint. A run
that saves a newer checkpoint before it is killed again starts a fresh count, so a run that keeps
making progress is never given up, and one killed again and again at the same point (the OOM
killer at the same step every time) is given up after ``max_restarts`` restarts with a message
naming the step and the signal. Since the checkpoint step only grows, nothing restarts forever.
A given-up run stays ``killed``: the next plain relaunch tries it again, with a fresh count (a
person decided to relaunch, and whatever killed it may be gone); ``--retry-failed`` is only for
real failures. A run that stops itself cleanly on SIGTERM/SIGINT is not restarted in the same
launch (whoever sent the signal wanted it stopped); the next launch resumes it.

A WSD cooldown waits until its stable run has saved the checkpoint it branches from. One run
failing never stops the others; a run the launcher itself stops (SIGINT/SIGTERM to the launcher)
saves a checkpoint and is resumed by the next launch.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import TextIO

from analysis import run_format
from scaling.rundir import RunDir, now
from scaling.sweeps import report, state, status, sweepdir
from scaling.sweeps.fmt import duration
from scaling.sweeps.planner import PlannedRun, SweepPlan

_PROGRESS_EVERY_S = 30.0  # when the output is not a terminal
_REFRESH_S = 2.0  # the progress line on a terminal, and how often run directories are read for it
DEFAULT_MAX_RESTARTS = 2  # restarts of a killed run from one checkpoint within a launch


def _prepare_data(plan: SweepPlan, out: TextIO) -> None:
    """Prepare each cached dataset once, here, so parallel runs never race to build the same cache."""
    from scaling.data import ensure_prepared

    for source, tokenizer in sorted({(r.cfg.data.source, r.cfg.data.tokenizer) for r in plan.runs
                                     if r.cfg.data.path is None}):
        print(f"data: {source} with the {tokenizer} tokenizer -> {ensure_prepared(source, tokenizer)}", file=out)


def _write_run_dirs(plan: SweepPlan) -> None:
    """config.yaml for every run, and its tags in run.json, so status and analysis see the whole sweep."""
    from scaling import config

    for run in plan.runs:
        rd = RunDir(run.run_dir)
        if not rd.exists():
            run.run_dir.mkdir(parents=True, exist_ok=True)
            rd.config_path.write_text(config.dump_yaml(run.cfg))
        if status.read(run).status != "running":
            rd.update_run(sweep=plan.spec.name, sweep_tags=run.tags, params_count=plan.spec.count,
                          **({} if rd.read_run().get(run_format.STATUS) else {run_format.STATUS: "pending"}))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "vanished without an exit status"
    if code < 0:
        return f"{'crashed with' if state.is_crash(code) else 'was killed by'} {state.exit_signal(code)}"
    return f"exited with code {code}"


class _Launch:
    def __init__(self, plan: SweepPlan, executor, retry_failed: bool, max_restarts: int, out: TextIO):
        self.plan, self.executor, self.out = plan, executor, out
        self.max_restarts = max_restarts
        self.todo: list[PlannedRun] = []
        self.stopping: int | None = None
        self.started = time.monotonic()
        self.last_progress = 0.0
        self.tty = out.isatty()
        self.restarts: dict[str, int] = {}  # automatic restarts in this launch, per run
        self.kills: dict[str, tuple[int | None, list[str]]] = {}  # per run: checkpoint step, signals of kills at it
        states = status.collect(plan.runs)
        adopted, skipped, killed = 0, 0, 0
        for s in states:
            if s.status == "done" or (s.status == "failed" and not retry_failed):
                skipped += s.status == "failed"
            elif s.status == "running" and executor.adopt(s.run, state.read_launch(s.run.run_dir)):
                adopted += 1
            else:
                if s.status == "killed" and s.killed is None:  # died with its launcher: nobody recorded it
                    state.record_kill(s.run.run_dir, None, "vanished without a verdict while no launcher watched it",
                                      at=state.last_sign_of_life(s.run.run_dir))
                killed += s.status == "killed"
                self.todo.append(s.run)
        c = status.counts(states)
        self._say(f"sweep {plan.spec.name}: {len(plan.runs)} runs, {c['done']} done, {len(self.todo)} to run"
                  + (f" ({killed} killed earlier: resumed from their checkpoints)" if killed else "")
                  + (f", {adopted} still running from an earlier launch" if adopted else "")
                  + (f", {skipped} failed (not retried; --retry-failed retries them)" if skipped else ""))

    def _say(self, line: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        print(line, file=self.out, flush=True)

    def _progress(self, force: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        if not force and elapsed - self.last_progress < (_REFRESH_S if self.tty else _PROGRESS_EVERY_S):
            return
        self.last_progress = elapsed
        line = f"[{duration(elapsed)}] {report.summary(status.collect(self.plan.runs))}"
        if self.tty:
            self.out.write("\r\033[K" + line)
            self.out.flush()
        else:
            print(line, file=self.out, flush=True)

    def _ready(self, run: PlannedRun) -> bool:
        if run.after is None:
            return True
        stable, step = run.after
        return (self.plan.sweep_dir / stable / run_format.CHECKPOINTS / str(step)).is_dir()

    def _stable_gone(self, run: PlannedRun) -> bool:
        """The stable run this cooldown needs is neither running nor going to."""
        stable = run.after[0]
        return stable not in {r.name for r in self.todo} and stable not in self.executor.running

    def _start_ready(self) -> None:
        free = len(self.todo) if self.executor.capacity is None else self.executor.capacity - self.executor.active()
        ready = [r for r in self.todo if self._ready(r)][:max(free, 0)]
        for run in [r for r in self.todo if r.after and not self._ready(r) and self._stable_gone(r)]:
            self.todo.remove(run)
            self._say(f"blocked  {run.name}: its stable run {run.after[0]} did not reach step {run.after[1]}")
        if not ready:
            return
        batch = [(run, state.read_launch(run.run_dir).get("attempt", 0) + 1) for run in ready]
        for run, attempt in batch:
            self.todo.remove(run)
            self._say(f"start    {run.name}  {run.shape}  {report.tags(run)}"
                      + (f"  (attempt {attempt})" if attempt > 1 else ""))
            # Whatever run.json says when this attempt's process ends must be this attempt's verdict:
            # one killed before the trainer wrote a word must not inherit the last attempt's.
            RunDir(run.run_dir).update_run(status="running", error=None)
            state.update_launch(run.run_dir, killed=None, gave_up=None, restarts=self.restarts.get(run.name, 0))
        self.executor.start(batch)

    def _finish(self, run: PlannedRun, code: int | None, error: str | None) -> None:
        """Record how a run's process ended: its own verdict if it wrote one, else killed or failed."""
        rd = RunDir(run.run_dir)
        info = rd.read_run()
        tail = state.stderr_tail(run.run_dir)
        launch = state.update_launch(run.run_dir, exit_code=code, finished=now(), stderr_tail=tail)
        verdict = info.get(run_format.STATUS)
        if verdict == run_format.DONE:
            loss = info.get(run_format.FINAL_EVAL_LOSS)
            self._say(f"done     {run.name}  eval loss {loss:.4f}" if loss is not None else f"done     {run.name}")
            return
        # An executor may have recorded the kill itself (it knows more, e.g. what the scheduler said).
        kill = launch.get("killed") if verdict != "failed" else None
        if kill is None and verdict not in ("failed", "interrupted") and (
                (code is None and error is None) or (code is not None and code < 0 and not state.is_crash(code))):
            kill = state.record_kill(run.run_dir, state.exit_signal(code), _describe_exit(code))
        if kill is not None:
            self._killed(run, kill)
            return
        if verdict == "interrupted":
            self._say(f"stopped  {run.name} at step {info.get(run_format.INTERRUPTED_STEP) or '?'} (resumable)")
            return
        if verdict != "failed":  # ended by itself before the trainer could say why: a config error, a crash
            last = tail[-1] if tail else "no output"
            error = error or f"the training process {_describe_exit(code)}: {last}"
            rd.update_run(status="failed", error=error, finished=now())
        self._say(f"FAILED   {run.name}: {rd.read_run().get(run_format.ERROR)} (log: {run.run_dir / state.STDERR})")

    def _killed(self, run: PlannedRun, kill: dict) -> None:
        """Restart a killed run from its checkpoint, unless stopping, disabled, or it keeps dying at one step."""
        step, signal_name = kill.get("checkpoint_step"), kill.get("signal") or "an unknown signal"
        last_step, signals = self.kills.get(run.name, (None, []))
        signals = [*signals, signal_name] if last_step == step and signals else [signal_name]
        self.kills[run.name] = (step, signals)
        said = (f"killed   {run.name}: the training process {kill.get('how')} "
                + (f"(last checkpoint: step {step})" if step is not None else "(no checkpoint yet)"))
        if self.stopping is not None or self.max_restarts == 0:
            why = "stopping" if self.stopping is not None else "--max-restarts 0"
            self._say(f"{said}; not restarted ({why}): a relaunch resumes it")
            return
        if len(signals) > self.max_restarts:
            kinds = f"{signals[0]} each time" if len(set(signals)) == 1 else ", ".join(signals)
            where = f"from checkpoint step {step}" if step is not None else "before its first checkpoint"
            message = (f"gave up on {run.name}: killed {len(signals)} times {where} ({kinds}) without saving a "
                       f"newer checkpoint; not restarted again in this launch (--max-restarts {self.max_restarts}), "
                       "a relaunch tries it again. Something ends it at the same point every time: if it is the "
                       "OOM killer (SIGKILL; see dmesg), give it more memory")
            state.update_launch(run.run_dir, gave_up=message)
            self._say(f"GAVE UP  {message}")
            return
        self.restarts[run.name] = self.restarts.get(run.name, 0) + 1
        self._say(f"{said}; restarting it from " + ("there" if step is not None else "the start")
                  + f" (restart {len(signals)} of {self.max_restarts} from this point)")
        self.todo.insert(0, run)

    def _stop(self, signum, frame) -> None:
        self.stopping = signum

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.todo or self.executor.active():
                for run, code, error in self.executor.finished():
                    self._finish(run, code, error)
                if self.stopping is not None:
                    self._say(f"stopping on {signal.Signals(self.stopping).name}: runs save a checkpoint and stop")
                    self.executor.stop()
                    for run, code, error in self.executor.finished():
                        self._finish(run, code, error)
                    return 128 + self.stopping
                self._start_ready()
                self._progress()
                time.sleep(0.5)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._progress(force=True)
        if self.tty:
            print(file=self.out)
        states = status.collect(self.plan.runs)
        return 0 if all(s.status == "done" for s in states) else 1


def launch(plan: SweepPlan, executor, retry_failed: bool = False, out: TextIO | None = None,
           max_restarts: int = DEFAULT_MAX_RESTARTS) -> int:
    """Run every run of the plan that is not done; 0 when all are done, 1 if some failed or were given
    up, 128+signal if stopped. ``max_restarts``: restarts of a killed run from one checkpoint (0: none)."""
    out = out or sys.stdout
    with sweepdir.SweepLock(plan.sweep_dir):
        _prepare_data(plan, out)
        _write_run_dirs(plan)
        sweepdir.write_record(plan.sweep_dir, name=plan.spec.name, launched=now(), executor=executor.name,
                              runs={r.name: r.tags for r in plan.runs})
        return _Launch(plan, executor, retry_failed, max_restarts, out).run()
