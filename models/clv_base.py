"""What the CLV models share: checked customer summaries and a maximum-likelihood fit.

`models.bgnbd.BetaGeoModel` and `models.gamma_gamma.GammaGammaModel` read the same
per-customer summary (see `features.rfm.clv_summary`) and are fitted the same way; this
module holds that common part, and nothing in it is public.

- Input checks: `_purchase_history` returns checked ``frequency``, ``recency`` and ``T``
  arrays, `_spend_history` checked ``frequency`` and ``monetary_value``, from a DataFrame
  or an array; errors quote a few offending values and their rows.
- `_unique_rows`: identical rows are fitted (and predicted) once, weighted by how many
  customers share them: a million customers have far fewer distinct
  ``(frequency, recency, T)`` rows, so a fit takes seconds.
- `_sample_weight`: the checked ``sample_weight`` of a fit. A row of weight ``k`` counts
  as ``k`` customers with that history: the likelihood is a sum over customers, so a fit
  on distinct histories weighted by their counts is the fit on every customer
  (`pipelines.cluster_value` fits so on a cluster's aggregated histories).
- `_MaximumLikelihood`, the base estimator: maximum likelihood with
  `scipy.optimize.minimize` (L-BFGS-B) on log parameters, with the analytic gradients each
  model's log-likelihood returns. ``penalizer`` adds ``penalizer * sum(params ** 2)`` to
  the mean negative log-likelihood, as in ``lifetimes``. A fit that does not converge, or
  a parameter the data cannot pin down, raises a ``ConvergenceWarning``.
"""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval

__all__: list[str] = []  # private to the CLV models (models.bgnbd, models.gamma_gamma)

logger = logging.getLogger(__name__)

#: Log parameters are kept in this box: wide enough for any real data set, narrow enough
#: that a parameter the data cannot pin down stops at a finite value (and is warned about).
_LOG_BOUND = 18.0

_N_EXAMPLES = 5

# ---------------------------------------------------------------- input checks


def _columns(X, names: tuple[str, ...]) -> tuple[list[np.ndarray], pd.Index]:
    """Return the named columns of ``X`` as float arrays, and the row labels.

    ``X`` is a DataFrame with (at least) the named columns, or an array-like of shape
    (n_customers, len(names)) with the columns in that order.
    """
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(
                f"The customer summary lacks the column(s) {', '.join(missing)}; it needs "
                f"{', '.join(names)} and has {', '.join(map(str, X.columns)) or '(none)'}."
            )
        cols = [pd.to_numeric(X[c], errors="coerce").to_numpy(dtype=float) for c in names]
        return cols, X.index
    arr = np.asarray(X, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(
            f"Expected a DataFrame or an array of shape (n_customers, {len(names)}) with the "
            f"columns {', '.join(names)}; got an array of shape {arr.shape}."
        )
    return [arr[:, j] for j in range(arr.shape[1])], pd.RangeIndex(arr.shape[0])


def _reject(name: str, rule: str, bad: np.ndarray, values: np.ndarray, index: pd.Index) -> None:
    """Raise a ValueError quoting a few offending values and their rows, if any are bad."""
    if not bad.any():
        return
    where = np.flatnonzero(bad)[:_N_EXAMPLES]
    shown = ", ".join(f"{index[i]!r}: {values[i]:g}" for i in where)
    raise ValueError(
        f"{name} {rule}; {int(bad.sum())} of {bad.size} customers break this (row: value {shown})."
    )


def _check_finite(names, cols, index) -> None:
    for name, col in zip(names, cols, strict=True):
        _reject(name, "must be a finite number", ~np.isfinite(col), col, index)


def _check_frequency(x: np.ndarray, index: pd.Index) -> None:
    _reject("frequency", "must be a whole number >= 0", (x < 0) | (x != np.round(x)), x, index)


def _purchase_history(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return checked ``frequency``, ``recency`` and ``T`` arrays from a customer summary."""
    names = ("frequency", "recency", "T")
    (x, tx, T), index = _columns(X, names)
    _check_finite(names, (x, tx, T), index)
    _check_frequency(x, index)
    _reject("recency", "must be >= 0", tx < 0, tx, index)
    over = tx > T * (1 + 1e-9) + 1e-12
    if over.any():
        i = np.flatnonzero(over)[:_N_EXAMPLES]
        shown = ", ".join(f"{index[k]!r}: recency={tx[k]:g}, T={T[k]:g}" for k in i)
        raise ValueError(
            "recency (first to last purchase) must be <= T (first purchase to the end of "
            f"observation); {int(over.sum())} of {x.size} customers break this ({shown})."
        )
    rule = "must be 0 for a customer without repeat purchases (frequency 0)"
    _reject("recency", rule, (x == 0) & (tx != 0), tx, index)
    return x, np.minimum(tx, T), T


def _spend_history(X) -> tuple[np.ndarray, np.ndarray]:
    """Return checked ``frequency`` and ``monetary_value`` arrays from a customer summary."""
    names = ("frequency", "monetary_value")
    (x, m), index = _columns(X, names)
    _check_finite(names[:1], (x,), index)
    _check_frequency(x, index)
    repeat, rule = x > 0, "must be a finite number >= 0 for a customer with repeat purchases"
    _reject("monetary_value", rule, repeat & ~(np.isfinite(m) & (m >= 0)), m, index)
    return x, np.where(repeat, m, 0.0)


def _sample_weight(sample_weight, n: int) -> np.ndarray | None:
    """Return ``sample_weight`` as checked floats (None stays None: every row counts once)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=float)
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight should hold one weight per customer row ({n}); got shape {w.shape}."
        )
    index = pd.RangeIndex(n)
    _reject("sample_weight", "must be a finite number >= 0", ~(np.isfinite(w) & (w >= 0)), w, index)
    if not w.sum() > 0:
        raise ValueError("sample_weight sums to 0: no customer to fit on.")
    return w


def _unique_rows(
    *cols: np.ndarray, weights: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Return the distinct rows (as columns), their weight, and the map back.

    A distinct row's weight is how many rows share it, or with ``weights`` the sum of
    theirs.
    """
    keys = list(range(len(cols)))
    group = pd.DataFrame(dict(zip(keys, cols, strict=True))).groupby(keys, sort=True, dropna=False)
    back = group.ngroup().to_numpy()
    first = np.empty(back.max() + 1 if back.size else 0, dtype=np.intp)
    first[back] = np.arange(back.size)  # any row of a group will do: they are identical
    counts = np.bincount(back).astype(float) if weights is None else np.bincount(back, weights)
    return [c[first] for c in cols], counts, back


# ---------------------------------------------------------------- maximum likelihood


class _MaximumLikelihood(BaseEstimator):
    """What the CLV models share: a weighted maximum-likelihood fit over log parameters."""

    _names: tuple[str, ...] = ()
    _parameter_constraints: dict = {
        "penalizer": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
    }

    def _fit_params(self, loglik, *cols: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Maximise ``loglik`` over the distinct rows of ``cols``; set the fitted attributes.

        ``weights`` (checked by `_sample_weight`) count each row as that many customers.
        """
        rows, w, _ = _unique_rows(*cols, weights=weights)
        total, name = w.sum(), type(self).__name__

        def nll(log_params):
            params = np.exp(log_params)
            ll, grad = loglik(params, *rows, gradient=True)
            value = -(w @ ll) / total + self.penalizer * np.sum(params**2)
            return value, -(grad @ w) / total + 2.0 * self.penalizer * params**2

        k = len(self._names)
        res = minimize(
            nll,
            np.zeros(k),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * k,
            options={"maxiter": self.max_iter, "ftol": self.tol, "gtol": self.tol},
        )
        if not res.success:
            warnings.warn(
                f"{name}: the likelihood maximisation stopped after {res.nit} iterations "
                f"without converging ({res.message.strip()}); the likelihood may be flat along "
                "some direction (e.g. a, b growing together), or max_iter is too low.",
                ConvergenceWarning,
                stacklevel=4,
            )
        stuck = [n for n, v in zip(self._names, res.x, strict=True) if abs(v) >= _LOG_BOUND - 1e-6]
        if stuck:
            warnings.warn(
                f"{name}: {', '.join(stuck)} reached exp(+-{_LOG_BOUND:g}); the data do not pin "
                "them down (too few customers or repeat buyers?).",
                ConvergenceWarning,
                stacklevel=4,
            )
        params = np.exp(res.x)
        self.params_ = {n: float(v) for n, v in zip(self._names, params, strict=True)}
        for n, v in self.params_.items():
            setattr(self, f"{n}_", v)
        self.log_likelihood_ = float(w @ loglik(params, *rows))
        self.n_customers_ = int(round(total))
        self.n_iter_ = int(res.nit)
        shown = " ".join(f"{n}={v:.4g}" for n, v in self.params_.items())
        logger.info(
            "%s on %d customers: %s, log-likelihood %.2f", name, total, shown, self.log_likelihood_
        )
