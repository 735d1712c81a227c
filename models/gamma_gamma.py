"""The Gamma-Gamma model of spend per purchase, fitted by maximum likelihood.

`GammaGammaModel` is the spend model of Fader, Hardie and Lee (2005, "RFM and CLV: using
iso-value curves for customer base analysis"). A customer's purchase values are
``Gamma(p, nu)`` with ``nu ~ Gamma(q, v)`` across customers; it predicts the expected value
of a customer's future purchases, shrinking their observed mean towards the population
mean ``p v / (q - 1)`` the fewer purchases they have made. It assumes spend is independent
of purchase frequency, and is fitted on the repeat buyers.

The log-likelihood (`_gg_loglik`) is written in ``gammaln`` terms with an analytic
gradient; the fit itself is `models.clv_base._MaximumLikelihood`'s.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import gammaln, psi
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from models.clv_base import _MaximumLikelihood, _sample_weight, _spend_history

__all__ = ["GammaGammaModel"]


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
        Number of repeat buyers with a positive spend used in `fit` (with
        ``sample_weight``, the sum of their weights, rounded).
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
    def fit(self, X, y=None, sample_weight=None):
        """Fit the three Gamma-Gamma parameters on the repeat buyers.

        Parameters
        ----------
        X : pandas.DataFrame or array-like of shape (n_customers, 2)
            One row per customer with ``frequency`` and ``monetary_value`` (the mean value
            of the repeat purchases; ignored where ``frequency`` is 0).
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_customers,), optional
            How many customers each row stands for (finite, >= 0), as in
            `BetaGeoModel.fit`. Default: each row once.

        Returns
        -------
        self : GammaGammaModel
            The fitted model.
        """
        x, m = _spend_history(X)
        weights = _sample_weight(sample_weight, x.size)
        used = (x > 0) & (m > 0)
        if weights is not None:
            used &= weights > 0
        if used.sum() < 2:
            raise ValueError(
                f"Gamma-Gamma needs at least 2 repeat buyers with a positive spend; the "
                f"summary has {int(used.sum())} of {x.size} customers."
            )
        w = None if weights is None else weights[used]
        self._fit_params(_gg_loglik, x[used], m[used], weights=w)
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
