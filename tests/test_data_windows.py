"""Batches are pure functions of (seed, step) that read every window once per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.data.errors import DataError
from scaling.data.windows import epoch_permutation, epochs, num_windows, train_batch, val_batches

SEQ_LEN = 8
N_TOKENS = 37 * SEQ_LEN + 1  # exactly 37 windows
TOKENS = np.arange(N_TOKENS, dtype=np.uint16)  # token value == position, so a row names its window


def window_ids(batch: np.ndarray) -> list[int]:
    return [int(row[0]) // SEQ_LEN for row in batch]


def test_window_layout_uses_stride_seq_len():
    assert num_windows(N_TOKENS, SEQ_LEN) == 37
    assert num_windows(N_TOKENS - 1, SEQ_LEN) == 36
    batch = train_batch(TOKENS, seed=0, step=0, batch_size=4, seq_len=SEQ_LEN)
    assert batch.dtype == np.int32 and batch.shape == (4, SEQ_LEN + 1)
    for row in batch:
        start = int(row[0])
        assert start % SEQ_LEN == 0
        np.testing.assert_array_equal(row, np.arange(start, start + SEQ_LEN + 1))


def test_batches_are_pure_in_seed_and_step():
    steps = [5, 0, 17, 3, 5]
    first = {s: train_batch(TOKENS, 7, s, 6, SEQ_LEN) for s in steps}
    epoch_permutation.cache_clear()
    for s in reversed(steps):
        np.testing.assert_array_equal(train_batch(TOKENS, 7, s, 6, SEQ_LEN), first[s])
    assert not np.array_equal(train_batch(TOKENS, 8, 5, 6, SEQ_LEN), first[5])


def test_every_window_is_seen_once_per_epoch_in_a_fresh_order():
    batch_size = 5  # does not divide 37, so batches straddle epoch boundaries
    seen = [w for step in range(3 * 37 // batch_size + 1) for w in window_ids(train_batch(TOKENS, 1, step, batch_size, SEQ_LEN))]
    epoch0, epoch1, epoch2 = seen[:37], seen[37:74], seen[74:111]
    for epoch in (epoch0, epoch1, epoch2):
        assert sorted(epoch) == list(range(37))
    assert epoch0 != epoch1 != epoch2


@pytest.mark.parametrize("rows", [slice(0, 3), slice(3, 8), slice(1, 8, 2), np.array([7, 0, 4]), [2]])
@pytest.mark.parametrize("step", [0, 4])  # step 4 straddles the end of the first epoch
def test_host_rows_equal_the_same_rows_of_the_full_batch(rows, step):
    full = train_batch(TOKENS, 2, step, 8, SEQ_LEN)
    part = train_batch(TOKENS, 2, step, 8, SEQ_LEN, rows=rows)
    np.testing.assert_array_equal(part, full[rows])


def test_epochs_counts_target_tokens_over_the_split():
    tokens_per_epoch = 37 * SEQ_LEN
    assert epochs(tokens_per_epoch, N_TOKENS, SEQ_LEN) == 1.0
    assert epochs(5 * tokens_per_epoch // 2, N_TOKENS, SEQ_LEN) == 2.5


def test_too_short_a_split_is_a_clear_error():
    with pytest.raises(DataError, match="fewer than one window of 9"):
        train_batch(TOKENS[:SEQ_LEN], 0, 0, 2, SEQ_LEN)
    with pytest.raises(DataError, match="fewer than one window"):
        epochs(100, SEQ_LEN, SEQ_LEN)


def test_val_batches_spread_evenly_over_the_split_and_repeat_every_call():
    batches = val_batches(TOKENS, batch_size=4, seq_len=SEQ_LEN, max_batches=3)  # 12 of the 37 windows
    assert len(batches) == 3
    assert [window_ids(b) for b in batches] == [[0, 3, 6, 9], [12, 15, 18, 21], [24, 27, 30, 33]]
    again = val_batches(TOKENS, batch_size=4, seq_len=SEQ_LEN, max_batches=3)
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a, b)
    every = val_batches(TOKENS, 4, SEQ_LEN)  # only full batches, then every window in order
    assert [window_ids(b) for b in every] == [list(range(4 * i, 4 * i + 4)) for i in range(37 // 4)]
    halves = val_batches(TOKENS, 4, SEQ_LEN, max_batches=3, rows=slice(2, 4))
    for half, full in zip(halves, batches):
        np.testing.assert_array_equal(half, full[2:4])


def test_val_split_smaller_than_a_batch_is_a_clear_error():
    with pytest.raises(DataError, match="fewer than batch_size=64 windows"):
        val_batches(TOKENS, batch_size=64, seq_len=SEQ_LEN)
