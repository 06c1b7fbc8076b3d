"""Fitting per-page Poisson rate classes to a dirty-page curve.

A dirty curve is the number of distinct pages dirtied in a window of length t
from a clean state, for several t (what calc-dirty-rate style measurements over
several windows give). If page i is written as a Poisson process of rate
lambda_i, the expected curve is ``sum_i (1 - exp(-lambda_i t))``. We describe the
guest by classes of pages sharing a rate: n_c pages at lambda_c, so

    D(t) = sum_c n_c (1 - exp(-lambda_c t)),   sum_c n_c <= total pages,

the remaining pages being never written. The candidate rates are a fixed
log-spaced grid (``per_decade`` per decade, from ``0.01 / t_max`` to
``20 / t_min`` per page per second) and the class sizes are the non-negative
least-squares solution on the relative errors, re-weighted a few times towards
the worst point (a cheap minimax). :func:`nnls` uses ``scipy.optimize.nnls``
when scipy is installed and otherwise a Lawson-Hanson active-set solver in
numpy (scipy is not a dependency of dirtylog).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from .errors import ConfigError

__all__ = ["nnls", "nnls_numpy", "ClassFit", "fit_rate_classes", "expected_curve"]


def nnls_numpy(A: np.ndarray, b: np.ndarray, maxiter: Optional[int] = None) -> Tuple[np.ndarray, float]:
    """min ||A x - b||_2 subject to x >= 0 (Lawson & Hanson 1974, active set).

    Returns ``(x, residual norm)``, like ``scipy.optimize.nnls``.
    """
    A = np.asarray(A, dtype=float)
    b = np.asarray(b, dtype=float)
    m, n = A.shape
    if maxiter is None:
        maxiter = 3 * n + 10
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    tol = 10.0 * np.finfo(float).eps * max(m, n) * max(1.0, float(np.abs(A).sum(axis=0).max(initial=0.0)))
    w = A.T @ (b - A @ x)
    it = 0
    while (~passive).any() and it < maxiter:
        cand = np.where(~passive, w, -np.inf)
        j = int(np.argmax(cand))
        if cand[j] <= tol:
            break
        passive[j] = True
        while True:
            it += 1
            s = np.zeros(n)
            idx = np.flatnonzero(passive)
            s[idx] = np.linalg.lstsq(A[:, idx], b, rcond=None)[0]
            if (s[idx] > 0).all():
                x = s
                break
            neg = passive & (s <= 0)
            alpha = np.min(x[neg] / (x[neg] - s[neg]))
            x = x + alpha * (s - x)
            passive &= x > tol
            x[~passive] = 0.0
            if not passive.any() or it >= maxiter:
                break
        w = A.T @ (b - A @ x)
    x = np.maximum(x, 0.0)
    return x, float(np.linalg.norm(A @ x - b))


def nnls(A: np.ndarray, b: np.ndarray) -> Tuple[np.ndarray, float]:
    """Non-negative least squares: scipy's solver if available, else :func:`nnls_numpy`."""
    try:
        from scipy.optimize import nnls as _scipy_nnls  # optional
    except ImportError:  # pragma: no cover - depends on the environment
        return nnls_numpy(A, b)
    try:
        x, r = _scipy_nnls(A, b)
    except RuntimeError:  # scipy's iteration limit: fall back to ours
        return nnls_numpy(A, b)
    return np.asarray(x, dtype=float), float(r)


def expected_curve(windows: np.ndarray, class_pages: np.ndarray, class_rates: np.ndarray) -> np.ndarray:
    """``sum_c n_c (1 - exp(-lambda_c t))`` for each window t."""
    t = np.asarray(windows, dtype=float).reshape(-1, 1)
    return (-np.expm1(-t * np.asarray(class_rates, dtype=float))) @ np.asarray(class_pages, dtype=float)


@dataclass(frozen=True)
class ClassFit:
    """The fitted classes: ``class_pages[c]`` pages written at ``class_rates[c]`` per page per second."""

    class_pages: np.ndarray  # int64
    class_rates: np.ndarray  # float64, writes per page per second
    fit_error: float         # max relative error of the fitted curve at the given points
    solver: str


def _solve(
    A: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    total: float,
    solver: Callable[[np.ndarray, np.ndarray], Tuple[np.ndarray, float]],
) -> np.ndarray:
    x, _ = solver(A * weights[:, None], y * weights)
    if x.sum() > total:
        # Too many pages: ask for exactly `total` with a heavily weighted extra row.
        big = 1e3 * max(1.0, float(weights.max())) * max(1.0, float(np.abs(y * weights).max())) / max(total, 1.0)
        A2 = np.vstack([A * weights[:, None], np.full((1, A.shape[1]), big)])
        b2 = np.concatenate([y * weights, [big * total]])
        x, _ = solver(A2, b2)
        s = x.sum()
        if s > total:
            x *= total / s
    return x


def _round_classes(x: np.ndarray, total: int) -> np.ndarray:
    n = np.floor(x + 0.5).astype(np.int64)
    excess = int(n.sum()) - total
    while excess > 0:  # rounding up went past the memory: take pages from the largest classes
        j = int(np.argmax(n))
        take = min(excess, int(n[j]))
        n[j] -= take
        excess -= take
    return n


def fit_rate_classes(
    periods: np.ndarray,
    dirty: np.ndarray,
    total_pages: int,
    *,
    rates: Optional[np.ndarray] = None,
    per_decade: int = 10,
    iterations: int = 30,
    solver: str = "auto",
    resolution: float = 1.0,
    tolerance: Optional[np.ndarray] = None,
) -> ClassFit:
    """Fit rate classes to the points ``(periods[i], dirty[i])`` (see the module docs).

    ``periods`` are window lengths in seconds (> 0, distinct), ``dirty`` the
    distinct dirty pages in each (already scaled to the whole memory), and
    ``rates`` an optional grid of candidate per-page rates (writes per page per
    second) replacing the default one. ``solver`` is "auto" (scipy if installed),
    "scipy" or "numpy". ``resolution`` is the smallest count a point can tell
    apart, in pages: 1 for exact counts, ``total / sampled`` for a curve counted
    on a sample (a window with no sampled dirty page means "fewer than one sample's
    worth", not zero); errors are relative to ``max(dirty, resolution)``.
    ``tolerance`` (one value per point, in pages) replaces that scale in the solver
    only, e.g. a sampled curve's standard errors; ``fit_error`` stays relative.
    """
    t = np.asarray(periods, dtype=float)
    y = np.asarray(dirty, dtype=float)
    if solver == "auto":
        solve = nnls
        name = "scipy" if _have_scipy() else "numpy"
    elif solver == "numpy":
        solve, name = nnls_numpy, "numpy"
    elif solver == "scipy":
        if not _have_scipy():
            raise ConfigError("solver='scipy' needs scipy installed; use solver='numpy' or 'auto'")
        solve, name = nnls, "scipy"
    else:
        raise ConfigError(f"solver must be 'auto', 'scipy' or 'numpy', got {solver!r}")
    if rates is None:
        lo = np.log10(0.01 / t.max())
        hi = np.log10(20.0 / t.min())
        k = max(2, int(np.ceil((hi - lo) * per_decade)) + 1)
        grid = np.logspace(lo, hi, k)
    else:
        grid = np.asarray(rates, dtype=float)
    A = -np.expm1(-np.outer(t, grid))
    scale = np.maximum(y, max(1.0, float(resolution)))
    tol = scale if tolerance is None else np.maximum(np.asarray(tolerance, dtype=float), 1e-300)
    weights = 1.0 / tol
    best: Optional[Tuple[float, np.ndarray]] = None
    for _ in range(max(1, iterations)):
        x = _solve(A, y, weights, float(total_pages), solve)
        err = np.abs(A @ x - y) / tol
        worst = float(err.max(initial=0.0))
        if best is None or worst < best[0]:
            best = (worst, x)
        if worst < 1e-4:
            break
        # lean towards the points fitted worst
        weights = weights * (1.0 + err / max(worst, 1e-300))
        weights /= weights.max()
    assert best is not None
    n = _round_classes(best[1], int(total_pages))
    keep = n > 0
    pages = n[keep]
    lam = grid[keep]
    fitted = expected_curve(t, pages, lam)
    err = float((np.abs(fitted - y) / scale).max(initial=0.0))
    return ClassFit(pages, lam, err, name)


def _have_scipy() -> bool:
    try:
        import scipy.optimize  # noqa: F401
    except ImportError:  # pragma: no cover
        return False
    return True
