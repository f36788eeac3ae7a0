"""Which tokens a training step or an evaluation reads: pure functions of their arguments.

A split of ``n`` tokens is cut into ``(n - 1) // seq_len`` windows of ``seq_len + 1``
tokens at stride ``seq_len``: window ``w`` is ``tokens[w*seq_len : w*seq_len + seq_len + 1]``.
Neighbouring windows share one token (the last target of one is the first input of
the next), so every token after the first is predicted exactly once per epoch and
none is read only as an input. One epoch is therefore ``n_windows * seq_len``
target tokens, the unit ``epochs`` counts in.

Training sample ``i = step * batch_size + row`` belongs to epoch ``i // n_windows``
and reads window ``permutation(seed, epoch)[i % n_windows]``. A batch depends on
nothing but ``(seed, step)``: resuming at any step, in any process, on any host,
reads exactly the tokens an uninterrupted run would have, every window is read
once per epoch, and a budget beyond one epoch repeats the data in a fresh order.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from scaling.data.errors import DataError

Rows = slice | np.ndarray | list[int] | None


def num_windows(n_tokens: int, seq_len: int) -> int:
    """Training windows in a split of ``n_tokens`` tokens: ``(n_tokens - 1) // seq_len``, at least 0.

    Raises ValueError when ``seq_len`` < 1.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    return max(0, (n_tokens - 1) // seq_len)


def epochs(tokens_trained: int, n_tokens: int, seq_len: int) -> float:
    """Passes over the split that ``tokens_trained`` target tokens (steps * batch * seq_len) amount to."""
    return tokens_trained / (_require_windows(n_tokens, seq_len, "train") * seq_len)


@lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, n_windows: int) -> np.ndarray:
    """Cached because every step of an epoch needs the same one; four entries cover a batch spanning epochs."""
    order = np.random.Generator(np.random.PCG64([seed, epoch])).permutation(n_windows)
    order.flags.writeable = False
    return order


def train_batch(
    tokens: np.ndarray, seed: int, step: int, batch_size: int, seq_len: int, rows: Rows = None
) -> np.ndarray:
    """Rows ``rows`` (default all) of global batch ``step``: int32 ``[len(rows), seq_len + 1]``.

    A host of a multi-host run passes its own slice of rows and gets exactly
    those rows of the global batch, without reading the others.
    """
    if seed < 0 or step < 0 or batch_size < 1:
        raise ValueError(f"need seed >= 0, step >= 0, batch_size >= 1; got {seed}, {step}, {batch_size}")
    n_windows = _require_windows(len(tokens), seq_len, "train")
    sample = step * batch_size + _row_indices(batch_size, rows)
    epoch, position = np.divmod(sample, n_windows)
    window = np.empty_like(sample)
    for e in np.unique(epoch):
        in_epoch = epoch == e
        window[in_epoch] = epoch_permutation(seed, int(e), n_windows)[position[in_epoch]]
    return _gather(tokens, window, seq_len)


def val_batches(
    tokens: np.ndarray, batch_size: int, seq_len: int, max_batches: int | None = None, rows: Rows = None
) -> list[np.ndarray]:
    """Full batches of windows spread evenly over the whole split: the same every call, so eval losses
    compare across runs. Without ``max_batches``, every window in order.

    Evenly spaced rather than the first ones: the first few hundred windows of a split are a handful of
    documents, which would make the validation loss describe those documents instead of the split (and
    neighbouring windows of one document make its error larger than its token count suggests).
    Raises DataError when the split holds fewer than ``batch_size`` windows.
    """
    available = _require_windows(len(tokens), seq_len, "val")
    n_batches = available // batch_size
    if n_batches == 0:
        raise DataError(
            f"the val split has fewer than batch_size={batch_size} windows of {seq_len + 1} tokens; "
            "use a smaller batch or sequence, or a larger validation fraction"
        )
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    chosen = (np.arange(n_batches * batch_size, dtype=np.int64) * available) // (n_batches * batch_size)
    row_ids = _row_indices(batch_size, rows)
    return [_gather(tokens, chosen[b * batch_size + row_ids], seq_len) for b in range(n_batches)]


def _require_windows(n_tokens: int, seq_len: int, split: str) -> int:
    n = num_windows(n_tokens, seq_len)
    if n == 0:
        raise DataError(f"the {split} split has {n_tokens} tokens, fewer than one window of {seq_len + 1}")
    return n


def _row_indices(batch_size: int, rows: Rows) -> np.ndarray:
    indices = np.arange(batch_size, dtype=np.int64)
    return indices if rows is None else indices[rows]


def _gather(tokens: np.ndarray, windows: np.ndarray, seq_len: int) -> np.ndarray:
    """One contiguous slice per window: from a memmap, that reads only the pages a batch needs."""
    batch = np.empty((len(windows), seq_len + 1), dtype=np.int32)
    for row, w in enumerate(windows):
        start = int(w) * seq_len
        batch[row] = tokens[start : start + seq_len + 1]
    return batch
