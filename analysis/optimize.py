"""Batched L-BFGS in JAX: thousands of starts or resamples in one compiled loop.

The Chinchilla fit needs a grid of thousands of starting points and a thousand
bootstrap refits.  SciPy's L-BFGS-B runs one start at a time from Python, which
is far too slow for that, so the optimiser here is a pure ``lax.while_loop``
vmapped over lanes (start points and per-lane point weights).

Every lane stops for a reason we report, mirroring SciPy's two success tests:
the gradient's largest component fell below ``gtol`` (absolute, so it depends
on how the objective is scaled: the detail behind the Chinchilla
"mean instead of sum" bug), or the relative decrease of the objective fell
below ``ftol`` (also when a failed search along the gradient could not have
decreased it by more than that: float64 has no digits left).  A lane that
exhausts ``maxiter`` or cannot find a descent step is reported as not converged
rather than silently accepted.

Runs in float64 (inside ``jax.enable_x64``) because the Huber threshold of 1e-3
on log-loss residuals leaves float32 too little headroom for a gradient test.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

STATUS_RUNNING = 0
STATUS_GTOL = 1
STATUS_FTOL = 2
STATUS_MAXITER = 3
STATUS_NO_DESCENT = 4
STATUS_NAMES = {
    STATUS_GTOL: "gradient below gtol",
    STATUS_FTOL: "relative decrease below ftol",
    STATUS_MAXITER: "hit maxiter",
    STATUS_NO_DESCENT: "line search found no decrease",
}

_ARMIJO = 1e-4
_MAX_BACKTRACKS = 6  # each shrinks the step 2-10x, so a failing search has tried steps down to ~1e-6
TILES = (32, 512)


@dataclass(frozen=True)
class BatchResult:
    """Per-lane outcome; arrays have one row per lane."""

    x: np.ndarray
    f: np.ndarray
    grad_norm: np.ndarray
    iterations: np.ndarray
    status: np.ndarray

    @property
    def converged(self) -> np.ndarray:
        """Bool [lanes]: the lane stopped on the gradient or relative-decrease tolerance, not on maxiter or a
        failed line search."""
        return (self.status == STATUS_GTOL) | (self.status == STATUS_FTOL)


def _direction(g, S, Y, rho):
    """Two-loop recursion; rows of S/Y with rho == 0 are empty and act as no-ops."""
    m = S.shape[0]

    def backward(i, carry):
        q, alphas = carry
        j = m - 1 - i
        a = rho[j] * jnp.dot(S[j], q)
        return q - a * Y[j], alphas.at[j].set(a)

    q, alphas = jax.lax.fori_loop(0, m, backward, (g, jnp.zeros(m, g.dtype)))
    yy = jnp.dot(Y[-1], Y[-1])
    gamma = jnp.where(rho[-1] > 0, 1.0 / (rho[-1] * jnp.where(yy > 0, yy, 1.0)), 1.0)
    gamma = jnp.where(rho[-1] > 0, gamma, 1.0 / jnp.maximum(1.0, jnp.linalg.norm(g)))
    r = gamma * q

    def forward(j, r):
        b = rho[j] * jnp.dot(Y[j], r)
        return r + S[j] * (alphas[j] - b)

    return -jax.lax.fori_loop(0, m, forward, r)


def _lane_init(objective, x0, weights, data, gtol, memory):
    f0, g0 = jax.value_and_grad(objective)(x0, weights, *data)
    zeros = jnp.zeros((memory, x0.shape[0]), x0.dtype)
    status = jnp.where(jnp.max(jnp.abs(g0)) <= gtol, STATUS_GTOL, STATUS_RUNNING)
    return (jnp.zeros((), jnp.int32), x0, f0, g0, zeros, zeros, jnp.zeros(memory, x0.dtype), status)


def _lane_advance(objective, state, weights, data, gtol, ftol, maxiter, steps):
    """Up to ``steps`` L-BFGS iterations of one lane (Armijo backtracking line search)."""
    value_and_grad = jax.value_and_grad(objective)
    start = state[0]

    def cond(state):
        return (state[-1] == STATUS_RUNNING) & (state[0] - start < steps)

    def body(state):
        k, x, f, g, S, Y, rho, _ = state
        d = _direction(g, S, Y, rho)
        d = jnp.where(jnp.dot(g, d) < 0, d, -g / jnp.maximum(1.0, jnp.linalg.norm(g)))
        gd = jnp.dot(g, d)

        def ls_cond(ls):
            t, ft, _, n = ls
            return (~(ft <= f + _ARMIJO * t * gd)) & (n < _MAX_BACKTRACKS)

        def ls_body(ls):
            t, ft, _, n = ls
            # Minimiser of the quadratic through f, f'(0) and f(t), kept within [t/10, t/2];
            # a NaN or infinite trial value just shrinks the step tenfold.
            quad = -gd * t * t / (2.0 * (ft - f - gd * t))
            t = jnp.where(jnp.isfinite(quad), jnp.clip(quad, 0.1 * t, 0.5 * t), 0.1 * t)
            ft, gt = value_and_grad(x + t * d, weights, *data)
            return t, ft, gt, n + 1

        f1, g1 = value_and_grad(x + d, weights, *data)
        t, ft, gt, _ = jax.lax.while_loop(ls_cond, ls_body, (jnp.ones((), x.dtype), f1, g1, 0))
        accepted = ft <= f + _ARMIJO * t * gd
        x_new = jnp.where(accepted, x + t * d, x)
        f_new = jnp.where(accepted, ft, f)
        g_new = jnp.where(accepted, gt, g)

        s, y = x_new - x, g_new - g
        sy = jnp.dot(s, y)
        keep = accepted & (sy > 1e-12 * jnp.dot(y, y))
        S = jnp.where(keep, jnp.concatenate([S[1:], s[None]]), S)
        Y = jnp.where(keep, jnp.concatenate([Y[1:], y[None]]), Y)
        rho = jnp.where(keep, jnp.concatenate([rho[1:], (1.0 / jnp.where(keep, sy, 1.0))[None]]), rho)
        # A failed search along a quasi-Newton direction forgets the curvature pairs and retries
        # along the gradient; only a failed search along the gradient itself ends the lane.
        had_memory = state[6][-1] > 0
        forget = ~accepted & had_memory
        S, Y, rho = (jnp.where(forget, jnp.zeros_like(a), a) for a in (S, Y, rho))

        scale = jnp.maximum(jnp.maximum(jnp.abs(f), jnp.abs(f_new)), 1.0)
        # A failed search along the gradient where even a unit step promises (to first order) less than
        # the ftol decrease is float64 running out of digits at the optimum, not a failure: the same test
        # as ftol, made before the step rather than after it. How close to the optimum a lane gets before
        # that happens differs between XLA versions, so without this the verdict would too.
        exhausted = ~accepted & ~had_memory & (-gd <= ftol * scale)
        status = jnp.select(
            [exhausted, ~accepted & ~had_memory, accepted & (jnp.max(jnp.abs(g_new)) <= gtol),
             accepted & ((f - f_new) <= ftol * scale), k + 1 >= maxiter],
            [STATUS_FTOL, STATUS_NO_DESCENT, STATUS_GTOL, STATUS_FTOL, STATUS_MAXITER],
            STATUS_RUNNING)
        return k + 1, x_new, f_new, g_new, S, Y, rho, status

    return jax.lax.while_loop(cond, body, state)


@functools.partial(jax.jit, static_argnames=("objective", "memory"))
def _init_batch(objective, x0, weights, data, gtol, memory):
    return jax.vmap(lambda x, w: _lane_init(objective, x, w, data, gtol, memory))(x0, weights)


@functools.partial(jax.jit, static_argnames=("objective", "steps"))
def _advance_batch(objective, state, weights, data, gtol, ftol, maxiter, steps):
    return jax.vmap(lambda s, w: _lane_advance(objective, s, w, data, gtol, ftol, maxiter, steps))(state, weights)


def _bucket(n: int, floor: int) -> int:
    """Round a point count up to a power of two so that fits of similar size share compiled code."""
    size = floor
    while size < n:
        size *= 2
    return size


def _tiles(lanes: np.ndarray):
    """Lane indices in fixed-size tiles (the last padded by repetition), so that only two
    batch shapes are ever compiled however many lanes are still running."""
    size = TILES[0] if lanes.size <= 2 * TILES[0] else TILES[1]
    for start in range(0, lanes.size, size):
        part = lanes[start:start + size]
        yield part, np.concatenate([part, np.full(size - part.size, part[0])])


def minimize(objective, x0, weights, data, *, gtol=1e-9, ftol=1e-15, maxiter=2000, memory=10,
             chunk=25) -> BatchResult:
    """Minimise ``objective(x, w, *data)`` from each row of ``x0`` with the matching row of ``weights``.

    Batched L-BFGS (Nocedal & Wright 2006, Algorithm 7.4/7.5) with a backtracking Armijo line
    search, in float64. ``x0`` is [lanes, P] or [P]; ``weights`` [lanes, n] or [n] (the two
    broadcast over lanes); ``data`` a tuple of per-point arrays [n], shared by every lane.
    A lane stops when its largest gradient component falls below ``gtol``, the relative decrease below
    ``ftol``, the line search finds no decrease, or after ``maxiter`` iterations (``memory`` is
    the number of stored curvature pairs). Returns a BatchResult with one row per lane.

    ``objective`` must be a module-level function (it is a static jit argument).
    A vmapped while-loop costs as much as its slowest lane times the batch, so
    lanes advance ``chunk`` iterations at a time and finished lanes are dropped
    between chunks; the survivors are regrouped into tiles of a fixed size.
    Point counts are padded to powers of two (padded points weigh 0).
    """
    x0 = np.atleast_2d(np.asarray(x0, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    lanes = max(x0.shape[0], weights.shape[0])
    x0 = np.broadcast_to(x0, (lanes, x0.shape[1]))
    weights = np.broadcast_to(weights, (lanes, weights.shape[1]))
    n = weights.shape[1]
    n_p = _bucket(n, 16)
    w_all = np.zeros((lanes, n_p))
    w_all[:, :n] = weights
    with jax.enable_x64(True):
        data_p = tuple(jnp.asarray(np.concatenate([np.asarray(d, dtype=np.float64), np.ones(n_p - n)]))
                       for d in data)
        args = (float(gtol), float(ftol), int(maxiter))
        state = None
        for part, idx in _tiles(np.arange(lanes)):
            sub = jax.tree.map(np.array, _init_batch(objective, jnp.asarray(x0[idx]), jnp.asarray(w_all[idx]),
                                                     data_p, args[0], memory))
            if state is None:
                state = [np.empty((lanes,) + a.shape[1:], a.dtype) for a in sub]
            for full, a in zip(state, sub):
                full[part] = a[:part.size]
        running = np.flatnonzero(state[-1] == STATUS_RUNNING)
        while running.size:
            for part, idx in _tiles(running):
                sub = _advance_batch(objective, tuple(a[idx] for a in state), jnp.asarray(w_all[idx]), data_p,
                                     *args, chunk)
                for full, a in zip(state, jax.tree.map(np.array, sub)):
                    full[part] = a[:part.size]
            running = running[state[-1][running] == STATUS_RUNNING]
    k, x, f, g = state[0], state[1], state[2], state[3]
    return BatchResult(x=x, f=f, grad_norm=np.max(np.abs(g), axis=1), iterations=k, status=state[-1])
