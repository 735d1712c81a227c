"""The BG/NBD model of repeat purchasing and dropout, fitted by maximum likelihood.

`BetaGeoModel` is the BG/NBD model of Fader, Hardie and Lee (2005, "Counting your
customers the easy way"). While alive a customer buys at Poisson rate ``lambda``,
``lambda ~ Gamma(r, alpha)`` across customers; after each repeat purchase the customer
drops out for good with probability ``p``, ``p ~ Beta(a, b)``. It predicts the purchases
of the next ``t`` weeks and the probability that a customer is still alive. A customer
with no repeat purchase is alive for sure (``P(alive) = 1``): in BG/NBD dropout can only
happen right after a repeat purchase.

The log-likelihood (`_bgnbd_loglik`) is written in ``gammaln``/``betaln``/``logaddexp``
terms with an analytic gradient, so it stays finite for heavy buyers; the fit itself is
`models.clv_base._MaximumLikelihood`'s. The expected purchases of an alive customer
(`_alive_purchases`) use the closed form with the Gauss hypergeometric function, and
Gauss-Jacobi quadrature where that breaks down.
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.special import betaln, expit, gammaln, hyp2f1, psi
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from models.clv_base import _MaximumLikelihood, _purchase_history, _sample_weight, _unique_rows

__all__ = ["BetaGeoModel"]

#: Gauss-Jacobi nodes where the closed form of the expected purchases breaks down.
_QUADRATURE_NODES = 128


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
        Number of customers seen in `fit` (the sum of ``sample_weight``, rounded).
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
    def fit(self, X, y=None, sample_weight=None):
        """Fit the four BG/NBD parameters by maximum likelihood.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_customers, 3)
            One row per customer with ``frequency``, ``recency`` and ``T`` (weeks).
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_customers,), optional
            How many customers each row stands for (finite, >= 0): a row of weight ``k``
            counts as ``k`` customers with that history, so distinct histories weighted
            by their counts fit exactly as every customer would. Default: each row once
            (the same fit, bit for bit, as all weights 1).

        Returns
        -------
        self : BetaGeoModel
            The fitted model.
        """
        x, tx, T = _purchase_history(X)
        weights = _sample_weight(sample_weight, x.size)
        if x.size == 0:
            raise ValueError("The customer summary has no rows; BG/NBD needs customers.")
        if not (x > 0).any():
            warnings.warn(
                f"BetaGeoModel: none of the {x.size} customers made a repeat purchase, so the "
                "purchase rate fits to about 0 and the dropout parameters a, b are arbitrary.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self._fit_params(_bgnbd_loglik, x, tx, T, weights=weights)
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
