"""Customer lifetime value: BG/NBD for repeat purchases and dropout, Gamma-Gamma for spend.

The value lens asks what a customer is worth from here on. Two classic probability models
answer it from a per-customer summary of the purchase history (see
`features.rfm.clv_summary`): ``frequency`` (repeat purchase days), ``recency`` (time from
the first to the last purchase), ``T`` (time from the first purchase to the end of
observation) and ``monetary_value`` (the mean of the repeat purchases). Time is in weeks.

- `BetaGeoModel`, the BG/NBD model (Fader, Hardie and Lee 2005, "Counting your customers
  the easy way"). While alive a customer buys at Poisson rate ``lambda``,
  ``lambda ~ Gamma(r, alpha)`` across customers; after each repeat purchase the customer
  drops out for good with probability ``p``, ``p ~ Beta(a, b)``. It predicts the purchases
  of the next ``t`` weeks and the probability that a customer is still alive. A customer
  with no repeat purchase is alive for sure (``P(alive) = 1``): in BG/NBD dropout can only
  happen right after a repeat purchase.
- `GammaGammaModel`, the Gamma-Gamma spend model (Fader, Hardie and Lee 2005, "RFM and
  CLV: using iso-value curves for customer base analysis"). A customer's purchase values
  are ``Gamma(p, nu)`` with ``nu ~ Gamma(q, v)`` across customers; it predicts the expected
  value of a customer's future purchases, shrinking their observed mean towards the
  population mean ``p v / (q - 1)`` the fewer purchases they have made. It assumes spend
  is independent of purchase frequency, and is fitted on the repeat buyers.
- `customer_value` combines them: expected purchases, probability alive, expected order
  value and the discounted CLV of each customer.

Both are fitted by maximum likelihood with `scipy.optimize.minimize` (L-BFGS-B) on log
parameters, with analytic gradients and the likelihoods in ``gammaln``/``betaln``/
``logaddexp`` terms, so they stay finite for heavy buyers. Identical rows are fitted once,
weighted by how many customers share them: a million customers have far fewer distinct
``(frequency, recency, T)`` rows, so a fit takes seconds. ``penalizer`` adds
``penalizer * sum(params ** 2)`` to the mean negative log-likelihood, as in ``lifetimes``.

Why our own small implementation: ``lifetimes``, the reference whose formulas we follow,
is unmaintained (last release 0.11.3 in 2020, importing ``pkg_resources``, untested on
current numpy, pandas and scipy); its successor, ``pymc-marketing``'s ``clv`` module, is
Bayesian and brings PyMC, PyTensor and ArviZ, a heavy compiled stack for two
maximum-likelihood fits of seven parameters. The formulas are short, and the tests check
them against the published CDNOW estimates.
"""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy.linalg import eigh_tridiagonal
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1, psi
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

__all__ = ["BetaGeoModel", "GammaGammaModel", "customer_value"]

logger = logging.getLogger(__name__)

#: Log parameters are kept in this box: wide enough for any real data set, narrow enough
#: that a parameter the data cannot pin down stops at a finite value (and is warned about).
_LOG_BOUND = 18.0

_N_EXAMPLES = 5

#: Gauss-Jacobi nodes where the closed form of the expected purchases breaks down.
_QUADRATURE_NODES = 128


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


def _unique_rows(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Return the distinct rows (as columns), how many customers share each, and the map back."""
    keys = list(range(len(cols)))
    group = pd.DataFrame(dict(zip(keys, cols, strict=True))).groupby(keys, sort=True, dropna=False)
    back = group.ngroup().to_numpy()
    first = np.empty(back.max() + 1 if back.size else 0, dtype=np.intp)
    first[back] = np.arange(back.size)  # any row of a group will do: they are identical
    return [c[first] for c in cols], np.bincount(back).astype(float), back


class _MaximumLikelihood(BaseEstimator):
    """What the CLV models share: a weighted maximum-likelihood fit over log parameters."""

    _names: tuple[str, ...] = ()
    _parameter_constraints: dict = {
        "penalizer": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither")],
    }

    def _fit_params(self, loglik, *cols: np.ndarray) -> None:
        """Maximise ``loglik`` over the distinct rows of ``cols``; set the fitted attributes."""
        rows, w, _ = _unique_rows(*cols)
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
        self.n_customers_ = int(total)
        self.n_iter_ = int(res.nit)
        shown = " ".join(f"{n}={v:.4g}" for n, v in self.params_.items())
        logger.info(
            "%s on %d customers: %s, log-likelihood %.2f", name, total, shown, self.log_likelihood_
        )


# ---------------------------------------------------------------- BG/NBD


def _bgnbd_loglik(params, x, tx, T, *, gradient: bool = False):
    """Per-row BG/NBD log-likelihood and, optionally, its gradient in log parameters.

    ``LL = A1 + A2 + log(exp(A3) + [x > 0] exp(A4))`` with
    ``A1 = lnG(r + x) - lnG(r) + r ln(alpha)``, ``A2 = lnB(a, b + x) - lnB(a, b)``,
    ``A3 = -(r + x) ln(alpha + T)`` and
    ``A4 = ln(a) - ln(b + x - 1) - (r + x) ln(alpha + recency)``.
    """
    r, alpha, a, b = params
    repeat = x > 0
    bx1 = b + np.maximum(x, 1.0) - 1.0
    lT, ltx = np.log(alpha + T), np.log(alpha + tx)
    A1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    A2 = betaln(a, b + x) - betaln(a, b)
    A3 = -(r + x) * lT
    A4 = np.log(a) - np.log(bx1) - (r + x) * ltx
    d = np.where(repeat, A4 - A3, 0.0)
    ll = A1 + A2 + A3 + np.where(repeat, np.logaddexp(0.0, d), 0.0)
    if not gradient:
        return ll
    w4 = np.where(repeat, expit(d), 0.0)
    w3 = 1.0 - w4
    d_r = psi(r + x) - psi(r) + np.log(alpha) - w3 * lT - w4 * ltx
    d_alpha = r / alpha - (r + x) * (w3 / (alpha + T) + w4 / (alpha + tx))
    d_a = psi(a + b) - psi(a + b + x) + w4 / a
    d_b = psi(a + b) + psi(b + x) - psi(b) - psi(a + b + x) - w4 / bx1
    # d LL / d log(theta) = theta * d LL / d theta
    return ll, np.stack([r * d_r, alpha * d_alpha, a * d_a, b * d_b])


def _hyp2f1_scaled(r, alpha, a, b, x, T, t) -> np.ndarray:
    """Return ``((alpha+T)/(alpha+T+t))^(r+x) * 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))``.

    Computed in logs; where the series overflows, through Euler's transformation
    ``2F1(A, B; C; z) = (1 - z)^(C - A - B) 2F1(C - A, C - B; C; z)``, as ``lifetimes`` does.
    """
    A, B, C = r + x, b + x, a + b + x - 1.0
    z = t / (alpha + T + t)
    log_h = np.log(hyp2f1(A, B, C, z))
    retry = ~np.isfinite(log_h)
    if retry.any():
        A2, B2, C2, z2 = (v[retry] for v in (A, B, C, z))
        log_h[retry] = np.log(hyp2f1(C2 - A2, C2 - B2, C2, z2)) + (C2 - A2 - B2) * np.log1p(-z2)
    return np.exp(log_h + A * (np.log(alpha + T) - np.log(alpha + T + t)))


def _jacobi_rule(n: int, al: float, be: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Jacobi nodes in (0, 1) and weights (summing to 1) for the density ``p^be (1-p)^al``.

    Golub-Welsch: the eigenvalues of the Jacobi matrix, weights from its eigenvectors, so
    large exponents cannot overflow.
    """
    k = np.arange(n, dtype=float)
    s = 2 * k + al + be
    diag = np.empty(n)
    diag[0] = (be - al) / (al + be + 2)
    diag[1:] = (be**2 - al**2) / (s[1:] * (s[1:] + 2))
    k, s = k[1:], s[1:]
    off = np.sqrt(4 * k * (k + al) * (k + be) * (k + al + be) / (s**2 * (s + 1) * (s - 1)))
    nodes, vectors = eigh_tridiagonal(diag, off)
    return (1 + nodes) / 2, vectors[0] ** 2 / np.sum(vectors[0] ** 2)


def _alive_purchases_quadrature(a, b, A, k, x) -> np.ndarray:
    """Return ``E_p[(1 - (1 + p k)^-A) / p]`` for ``p ~ Beta(a, b + x)``, by quadrature.

    This is the expected purchases of an alive customer in ``t = k (alpha + T)`` weeks
    (``A = r + x``). Written as ``A k + a / (a + b + x) E_{Beta(a+1, b+x)}[h(p)]`` with
    ``h(p) = ((1 - (1 + p k)^-A) / p - A k) / p``, smooth on [0, 1], so Gauss-Jacobi
    converges fast for any ``a > 0``.
    """
    out = np.empty(A.shape)
    for xv in np.unique(x):
        p, w = _jacobi_rule(_QUADRATURE_NODES, b + xv - 1.0, a)
        where = np.flatnonzero(x == xv)
        for chunk in np.array_split(where, max(1, where.size // 4096)):
            Ak = A[chunk] * k[chunk]
            g = -np.expm1(-A[chunk, None] * np.log1p(k[chunk, None] * p)) / p
            out[chunk] = Ak + a / (a + b + xv) * (((g - Ak[:, None]) / p) @ w)
    return out


def _alive_purchases(r, alpha, a, b, x, T, t) -> np.ndarray:
    """Return the expected purchases in the next ``t`` weeks of a customer who is alive.

    The closed form ``(a + b + x - 1) / (a - 1) * (1 - _hyp2f1_scaled(...))``; where it
    breaks down (``a + b + x < 1``, ``a = 1``, ``r`` in the tens of thousands after a fit
    on near-homogeneous buyers), `_alive_purchases_quadrature`. The value must lie in
    ``[0, (r + x) t / (alpha + T)]``, the expectation without dropout.
    """
    x, T, t = np.broadcast_arrays(x, T, t)
    shape = x.shape
    x, T, t = (np.ravel(v).astype(float) for v in (x, T, t))
    A, k = r + x, t / (alpha + T)
    with np.errstate(all="ignore"):
        value = (a + b + x - 1.0) / (a - 1.0) * (1.0 - _hyp2f1_scaled(r, alpha, a, b, x, T, t))
    bad = ~(np.isfinite(value) & (value >= 0) & (value <= A * k * (1 + 1e-9)))
    if bad.any():
        value[bad] = _alive_purchases_quadrature(a, b, A[bad], k[bad], x[bad])
    return value.reshape(shape)


class BetaGeoModel(_MaximumLikelihood):
    """The BG/NBD model of repeat purchasing and dropout, fitted by maximum likelihood.

    Parameters
    ----------
    horizon : float, default=52.0
        Weeks ahead over which `predict` counts the expected purchases.
    penalizer : float, default=0.0
        L2 penalty on the parameters (``penalizer * sum(params ** 2)`` added to the mean
        negative log-likelihood); 0 is plain maximum likelihood.
    max_iter : int, default=1000
        Most iterations of the optimiser.
    tol : float, default=1e-10
        Tolerance of the optimiser (on the change of the mean log-likelihood and on its
        projected gradient).

    Attributes
    ----------
    r_ : float
        Shape of the gamma distribution of purchase rates.
    alpha_ : float
        Rate (in weeks) of the gamma distribution of purchase rates.
    a_ : float
        First shape of the beta distribution of dropout probabilities.
    b_ : float
        Second shape of the beta distribution of dropout probabilities.
    params_ : dict of str to float
        The four parameters by name (``r``, ``alpha``, ``a``, ``b``).
    log_likelihood_ : float
        Log-likelihood of the fitted parameters, summed over the customers.
    n_customers_ : int
        Number of customers seen in `fit`.
    n_iter_ : int
        Iterations of the optimiser.

    See Also
    --------
    GammaGammaModel : Expected spend per purchase.
    customer_value : Expected purchases, P(alive), order value and CLV in one table.

    Notes
    -----
    The expected purchases of a customer in the next ``t`` weeks (Fader, Hardie and Lee
    2005, eq. 10) are::

        (a + b + x - 1) / (a - 1)
          * [1 - ((alpha + T) / (alpha + T + t)) ** (r + x)
                 * 2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t))]
          * P(alive)

    with ``P(alive) = 1 / (1 + [x > 0] a / (b + x - 1) * ((alpha + T) / (alpha + recency))
    ** (r + x))``. Customers are given by ``frequency`` (``x``), ``recency`` and ``T``, in
    weeks.

    Examples
    --------
    >>> import pandas as pd
    >>> summary = pd.DataFrame({"frequency": [0, 2, 5, 1, 0, 3],
    ...                         "recency": [0.0, 20.0, 30.0, 2.0, 0.0, 10.0],
    ...                         "T": [38.0, 38.0, 35.0, 30.0, 20.0, 36.0]})
    >>> model = BetaGeoModel(penalizer=0.01).fit(summary)  # a little shrinkage: 6 customers
    >>> float(model.probability_alive(summary)[0])
    1.0
    """

    _names = ("r", "alpha", "a", "b")
    _parameter_constraints: dict = {
        **_MaximumLikelihood._parameter_constraints,
        "horizon": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, *, horizon=52.0, penalizer=0.0, max_iter=1000, tol=1e-10):
        self.horizon = horizon
        self.penalizer = penalizer
        self.max_iter = max_iter
        self.tol = tol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the four BG/NBD parameters by maximum likelihood.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_customers, 3)
            One row per customer with ``frequency``, ``recency`` and ``T`` (weeks).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : BetaGeoModel
            The fitted model.
        """
        x, tx, T = _purchase_history(X)
        if x.size == 0:
            raise ValueError("The customer summary has no rows; BG/NBD needs customers.")
        if not (x > 0).any():
            warnings.warn(
                f"BetaGeoModel: none of the {x.size} customers made a repeat purchase, so the "
                "purchase rate fits to about 0 and the dropout parameters a, b are arbitrary.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._fit_params(_bgnbd_loglik, x, tx, T)
        return self

    def _params(self) -> tuple[float, float, float, float]:
        return self.r_, self.alpha_, self.a_, self.b_

    def _p_alive(self, x, tx, T) -> np.ndarray:
        r, alpha, a, b = self._params()
        log_odds = np.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0)
        log_odds = log_odds + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
        return np.where(x > 0, expit(-log_odds), 1.0)

    def _expected(self, x, tx, T, t) -> np.ndarray:
        """Return the expected purchases in ``(T, T + t]``; ``t`` broadcasts."""
        return _alive_purchases(*self._params(), x, T, t) * self._p_alive(x, tx, T)

    def probability_alive(self, X) -> np.ndarray:
        """Probability that each customer is still alive (has not dropped out).

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_customers, 3)
            One row per customer with ``frequency``, ``recency`` and ``T`` (weeks).

        Returns
        -------
        ndarray of shape (n_customers,)
            P(alive); 1 for customers without a repeat purchase.
        """
        check_is_fitted(self)
        x, tx, T = _purchase_history(X)
        (ux, utx, uT), _, back = _unique_rows(x, tx, T)
        return self._p_alive(ux, utx, uT)[back]

    def expected_purchases(self, X, t=None) -> np.ndarray:
        """Return the expected purchases of each customer in the next ``t`` weeks.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_customers, 3)
            One row per customer with ``frequency``, ``recency`` and ``T`` (weeks).
        t : float, optional
            Weeks ahead; default ``horizon``.

        Returns
        -------
        ndarray of shape (n_customers,)
            The conditional expected number of purchases.
        """
        check_is_fitted(self)
        t = self._weeks(self.horizon if t is None else t)
        x, tx, T = _purchase_history(X)
        (ux, utx, uT), _, back = _unique_rows(x, tx, T)
        return self._expected(ux, utx, uT, t)[back]

    def expected_purchases_new(self, t=None) -> float:
        """Return the expected repeat purchases in a new customer's first ``t`` weeks."""
        check_is_fitted(self)
        t = self._weeks(self.horizon if t is None else t)
        return float(self._expected(0.0, 0.0, 0.0, t))

    def predict(self, X) -> np.ndarray:
        """Return the expected purchases of each customer in the next ``horizon`` weeks."""
        return self.expected_purchases(X)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per customer of ``X`` (higher is better)."""
        check_is_fitted(self)
        x, tx, T = _purchase_history(X)
        return float(np.mean(_bgnbd_loglik(self._params(), x, tx, T)))

    @staticmethod
    def _weeks(t) -> float:
        t = float(t)
        if not np.isfinite(t) or t < 0:
            raise ValueError(f"t (weeks ahead) must be a finite number >= 0, got {t!r}.")
        return t


# ---------------------------------------------------------------- Gamma-Gamma


def _gg_loglik(params, x, m, *, gradient: bool = False):
    """Per-row Gamma-Gamma log-likelihood of a mean spend ``m`` over ``x`` purchases.

    ``LL = lnG(px + q) - lnG(px) - lnG(q) + q ln v + (px - 1) ln m + px ln x
    - (px + q) ln(v + x m)``, and optionally its gradient in log parameters.
    """
    p, q, v = params
    px = p * x
    lm, lx, lvm = np.log(m), np.log(x), np.log(v + x * m)
    ll = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v)
    ll += (px - 1.0) * lm + px * lx - (px + q) * lvm
    if not gradient:
        return ll
    d_p = x * (psi(px + q) - psi(px) + lm + lx - lvm)
    d_q = psi(px + q) - psi(q) + np.log(v) - lvm
    d_v = q / v - (px + q) / (v + x * m)
    return ll, np.stack([p * d_p, q * d_q, v * d_v])


class GammaGammaModel(_MaximumLikelihood):
    """The Gamma-Gamma model of spend per purchase, fitted by maximum likelihood.

    It is fitted on the repeat buyers (``frequency > 0``) whose mean repeat spend is
    positive; everyone gets a prediction.

    Parameters
    ----------
    penalizer : float, default=0.0
        L2 penalty on the parameters, as in `BetaGeoModel`.
    max_iter : int, default=1000
        Most iterations of the optimiser.
    tol : float, default=1e-10
        Tolerance of the optimiser.

    Attributes
    ----------
    p_ : float
        Shape of the gamma distribution of one purchase's value.
    q_ : float
        Shape of the gamma distribution of its rate across customers.
    v_ : float
        Scale of the gamma distribution of its rate across customers.
    params_ : dict of str to float
        The three parameters by name (``p``, ``q``, ``v``).
    log_likelihood_ : float
        Log-likelihood of the fitted parameters, summed over the customers fitted.
    n_customers_ : int
        Number of repeat buyers with a positive spend used in `fit`.
    n_iter_ : int
        Iterations of the optimiser.

    See Also
    --------
    BetaGeoModel : Expected purchases and P(alive).
    customer_value : Expected purchases, P(alive), order value and CLV in one table.

    Notes
    -----
    The expected value of a customer's future purchases, given ``x`` repeat purchases of
    mean value ``m``, is ``p (v + x m) / (p x + q - 1)``: a weighted mean of their own
    ``m`` and the population mean ``p v / (q - 1)`` (defined when ``q > 1``).

    Examples
    --------
    >>> import pandas as pd
    >>> summary = pd.DataFrame({"frequency": [0, 2, 5, 1, 3, 4],
    ...                         "monetary_value": [0.0, 20.0, 35.0, 12.0, 18.0, 60.0]})
    >>> model = GammaGammaModel().fit(summary)
    >>> model.n_customers_
    5
    """

    _names = ("p", "q", "v")

    def __init__(self, *, penalizer=0.0, max_iter=1000, tol=1e-10):
        self.penalizer = penalizer
        self.max_iter = max_iter
        self.tol = tol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the three Gamma-Gamma parameters on the repeat buyers.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_customers, 2)
            One row per customer with ``frequency`` and ``monetary_value`` (the mean value
            of the repeat purchases; ignored where ``frequency`` is 0).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : GammaGammaModel
            The fitted model.
        """
        x, m = _spend_history(X)
        used = (x > 0) & (m > 0)
        if used.sum() < 2:
            raise ValueError(
                f"Gamma-Gamma needs at least 2 repeat buyers with a positive spend; the "
                f"summary has {int(used.sum())} of {x.size} customers."
            )
        self._fit_params(_gg_loglik, x[used], m[used])
        if self.q_ <= 1:
            warnings.warn(
                f"GammaGammaModel: q = {self.q_:.3g} <= 1, so the population mean spend is "
                "undefined and predictions for customers with few purchases are unreliable.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def expected_order_value(self, X) -> np.ndarray:
        """Return the expected value of each customer's future purchases.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_customers, 2)
            One row per customer with ``frequency`` and ``monetary_value``.

        Returns
        -------
        ndarray of shape (n_customers,)
            ``p (v + x m) / (p x + q - 1)``; the population mean for customers without a
            repeat purchase, NaN where it is undefined (``p x + q <= 1``: the fit warned).
        """
        check_is_fitted(self)
        x, m = _spend_history(X)
        den = self.p_ * x + self.q_ - 1.0
        return np.where(den > 0, self.p_ * (self.v_ + x * m) / np.where(den > 0, den, 1.0), np.nan)

    def predict(self, X) -> np.ndarray:
        """Return the expected order value of each customer (see `expected_order_value`)."""
        return self.expected_order_value(X)


# ---------------------------------------------------------------- CLV


def customer_value(
    purchases: BetaGeoModel,
    spend: GammaGammaModel,
    X: pd.DataFrame,
    *,
    horizon: float = 52.0,
    n_periods: int = 12,
    discount_rate: float = 0.01,
) -> pd.DataFrame:
    """Return expected purchases, P(alive), expected order value and discounted CLV.

    The horizon is cut into ``n_periods`` equal periods of ``tau = horizon / n_periods``
    weeks (12 months of a year by default); the purchases expected in period ``k`` are
    valued at the expected order value and discounted at ``discount_rate`` per period::

        CLV = sum_{k=1..K} E[Z] * (E[Y(k tau)] - E[Y((k - 1) tau)]) / (1 + d) ** k

    where ``E[Y(t)]`` is the BG/NBD expected number of purchases in the next ``t`` weeks
    and ``E[Z]`` the Gamma-Gamma expected order value. This is ``lifetimes``'
    ``customer_lifetime_value`` (which uses months of 4.345 weeks); with ``d = 0`` it is
    ``E[Z] * E[Y(horizon)]``. It is revenue: multiply by a margin for profit.

    Parameters
    ----------
    purchases : BetaGeoModel
        Fitted purchase model.
    spend : GammaGammaModel
        Fitted spend model.
    X : pandas.DataFrame
        One row per customer with ``frequency``, ``recency``, ``T`` (weeks) and
        ``monetary_value``, as `features.rfm.clv_summary` returns.
    horizon : float, default=52.0
        Weeks ahead.
    n_periods : int, default=12
        Number of discounting periods in the horizon.
    discount_rate : float, default=0.01
        Discount rate per period (0.01 a month is about 12.7% a year).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``X``, with ``expected_purchases`` (over the horizon), ``p_alive``,
        ``expected_order_value`` and ``clv``.
    """
    check_is_fitted(purchases)
    check_is_fitted(spend)
    if not (np.isfinite(horizon) and horizon > 0):
        raise ValueError(f"horizon must be a number of weeks > 0, got {horizon!r}.")
    if isinstance(n_periods, bool) or not isinstance(n_periods, Integral) or n_periods < 1:
        raise ValueError(f"n_periods must be a whole number >= 1, got {n_periods!r}.")
    if not (np.isfinite(discount_rate) and discount_rate > -1):
        raise ValueError(f"discount_rate must be a number > -1, got {discount_rate!r}.")
    x, tx, T = _purchase_history(X)
    _, m = _spend_history(X)
    (ux, utx, uT), _, back = _unique_rows(x, tx, T)
    steps = horizon / n_periods * np.arange(n_periods + 1)
    cumulative = purchases._expected(ux[:, None], utx[:, None], uT[:, None], steps[None, :])
    per_period = np.diff(cumulative, axis=1)
    discount = (1.0 + discount_rate) ** -np.arange(1, n_periods + 1)
    order_value = spend.expected_order_value(np.column_stack([x, m]))
    return pd.DataFrame(
        {
            "expected_purchases": cumulative[:, -1][back],
            "p_alive": purchases._p_alive(ux, utx, uT)[back],
            "expected_order_value": order_value,
            "clv": order_value * (per_period @ discount)[back],
        },
        index=X.index,
    )
