"""Launch a planned sweep and see it through: start runs as slots free up, record how each one ends.

What a (re)launch does with each run, from its run directory:
- ``done``: nothing.
- ``failed``: nothing, unless ``retry_failed``; the error and the log stay where they are.
- still running from an earlier launch (its process or SLURM job is alive): watched, not restarted.
- anything else (never started, interrupted, or "running" with no live process because the
  launch was killed): started; the trainer resumes it from its newest good checkpoint.

A WSD cooldown waits until its stable run has saved the checkpoint it branches from. One run
failing never stops the others; a run the launcher itself stops (SIGINT/SIGTERM to the launcher)
saves a checkpoint and is resumed by the next launch.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import TextIO

from scaling.rundir import RunDir, now
from scaling.sweeps import report, state, status, sweepdir
from scaling.sweeps.fmt import duration
from scaling.sweeps.planner import PlannedRun, SweepPlan

_PROGRESS_EVERY_S = 30.0  # when the output is not a terminal
_REFRESH_S = 2.0  # the progress line on a terminal, and how often run directories are read for it


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
                          **({} if rd.read_run().get("status") else {"status": "pending"}))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "ended"
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class _Launch:
    def __init__(self, plan: SweepPlan, executor, retry_failed: bool, out: TextIO):
        self.plan, self.executor, self.out = plan, executor, out
        self.todo: list[PlannedRun] = []
        self.stopping: int | None = None
        self.started = time.monotonic()
        self.last_progress = 0.0
        self.tty = out.isatty()
        states = status.collect(plan.runs)
        adopted, skipped = 0, 0
        for s in states:
            if s.status == "done" or (s.status == "failed" and not retry_failed):
                skipped += s.status == "failed"
            elif s.status == "running" and executor.adopt(s.run, state.read_launch(s.run.run_dir)):
                adopted += 1
            else:
                self.todo.append(s.run)
        c = status.counts(states)
        self._say(f"sweep {plan.spec.name}: {len(plan.runs)} runs, {c['done']} done, {len(self.todo)} to run"
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
        return (self.plan.sweep_dir / stable / "checkpoints" / str(step)).is_dir()

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
        self.executor.start(batch)

    def _finish(self, run: PlannedRun, code: int | None, error: str | None) -> None:
        rd = RunDir(run.run_dir)
        info = rd.read_run()
        tail = state.stderr_tail(run.run_dir)
        state.update_launch(run.run_dir, exit_code=code, finished=now(), stderr_tail=tail)
        if info.get("status") == "done":
            loss = info.get("final_eval_loss")
            self._say(f"done     {run.name}  eval loss {loss:.4f}" if loss is not None else f"done     {run.name}")
            return
        if info.get("status") != "failed" and (self.stopping is not None or info.get("status") == "interrupted"):
            self._say(f"stopped  {run.name} at step {info.get('interrupted_step') or '?'} (resumable)")
            return
        if info.get("status") != "failed":  # died before the trainer could say why: killed, or a config error
            last = tail[-1] if tail else "no output"
            error = error or f"the training process {_describe_exit(code)}: {last}"
            rd.update_run(status="failed", error=error, finished=now())
        self._say(f"FAILED   {run.name}: {rd.read_run().get('error')} (log: {run.run_dir / state.STDERR})")

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


def launch(plan: SweepPlan, executor, retry_failed: bool = False, out: TextIO | None = None) -> int:
    """Run every run of the plan that is not done; 0 when all are done, 1 if some failed, 128+signal if stopped."""
    out = out or sys.stdout
    with sweepdir.SweepLock(plan.sweep_dir):
        _prepare_data(plan, out)
        _write_run_dirs(plan)
        sweepdir.write_record(plan.sweep_dir, name=plan.spec.name, launched=now(), executor=executor.name,
                              runs={r.name: r.tags for r in plan.runs})
        return _Launch(plan, executor, retry_failed, out).run()
