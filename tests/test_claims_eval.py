"""Which steps a run evaluates: every ``train.eval_every``-th, ``train.eval_log_points`` log-spaced ones, and
always the last, so ``final_eval_loss`` is the loss of the finished model whatever the other two settings."""

from __future__ import annotations

from scaling.train import EvalSteps


def test_the_last_step_is_evaluated_even_off_the_grid_and_without_log_points():
    assert [s for s in range(0, 30) if s in EvalSteps(25, 10, 0)] == [10, 20, 25]


def test_log_spaced_evaluations_run_from_the_first_step_to_the_last():
    assert [s for s in range(0, 1200) if s in EvalSteps(1000, 5000, 4)] == [1, 10, 100, 1000]
