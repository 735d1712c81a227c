"""Subscription customers: the shifted-beta-geometric (sBG) retention model.

BG/NBD (`models.bgnbd`) is a model of *non-contractual* buying: nobody tells the firm they
left, so dropout is inferred from silence. A subscription business bills on a cycle and
sees a churn when the invoices stop. Fitting BG/NBD on such data is a misfit (the gaps are
far more regular than Poisson, so it explains every silence as chance and finds no
dropout at all). The contractual model of the same school is the sBG of Fader & Hardie
("How to project customer retention", Journal of Interactive Marketing 21(1), 2007): each
customer renews at the end of every period with a probability ``1 - theta``, and
``theta ~ Beta(a, b)`` across customers, so that

    P(T = t) = B(a + 1, b + t - 1) / B(a, b)      (churn at the end of period t)
    S(t)     = B(a, b + t) / B(a, b)              (still a customer after t periods)

The fit is by maximum likelihood over customers who churned (``P(T = t)``) and customers
still billed (censored: ``S(t - 1)`` after ``t`` paid periods). `billing_cycle` tells the
two kinds of data apart from the regularity of the gaps between purchases.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, digamma
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

__all__ = ["ShiftedBetaGeometric", "billing_cycle", "regular_cycle", "subscription_value"]

logger = logging.getLogger(__name__)

#: The median customer's coefficient of variation of the gaps between purchase days under
#: which purchases are billing (invoices every cycle) rather than free buying (CV ~ 1).
REGULAR_CV = 0.25
_LOG_BOUND = 30.0


def billing_cycle(gaps: pd.DataFrame, *, max_cv: float = REGULAR_CV) -> float | None:
    """Return the billing cycle in days when purchases recur on one, else None.

    Parameters
    ----------
    gaps : pandas.DataFrame
        One row per customer with at least two gaps between purchase days: ``gap_mean``
        and ``gap_cv`` (standard deviation / mean of the gaps, days).
    max_cv : float, default=REGULAR_CV
        Purchases are billing when the median customer's gap CV is below this.

    Returns
    -------
    float or None
        The median customer's mean gap (days), or None for non-contractual buying (or too
        few repeat buyers to tell: fewer than 20).
    """
    return regular_cycle(
        len(gaps), gaps["gap_cv"].median(), gaps["gap_mean"].median(), max_cv=max_cv
    )


def regular_cycle(
    n: int, median_cv: float, median_gap: float, *, max_cv: float = REGULAR_CV
) -> float | None:
    """Return the billing cycle from the regular payers' medians (see `billing_cycle`).

    Parameters
    ----------
    n : int
        Customers with at least two gaps between purchase days.
    median_cv, median_gap : float
        Their median gap CV and median mean gap (days).
    max_cv : float, default=REGULAR_CV
        Purchases are billing when the median CV is below this.

    Returns
    -------
    float or None
        ``median_gap``, or None for non-contractual buying (or fewer than 20 customers).
    """
    if n < 20:
        return None
    cv, cycle = float(median_cv), float(median_gap)
    logger.info("Purchase gaps: median CV %.2f, median mean gap %.1f days.", cv, cycle)
    return cycle if cv < max_cv and cycle > 0 else None


def _sbg_loglik(params, t, churned, *, gradient: bool = False):
    """Per-row sBG log-likelihood (and gradient in log parameters).

    ``t`` is the number of paid periods; churned rows contribute ``log P(T = t)``, the
    others ``log S(t - 1)``.
    """
    a, b = params
    lb = betaln(a, b)
    ll = np.where(churned, betaln(a + 1, b + t - 1), betaln(a, b + t - 1)) - lb
    if not gradient:
        return ll
    ab = digamma(a + b)
    # d betaln(x, y)/dx = psi(x) - psi(x + y)
    d_a = np.where(
        churned, digamma(a + 1) - digamma(a + b + t), digamma(a) - digamma(a + b + t - 1)
    ) - (digamma(a) - ab)
    d_b = np.where(
        churned,
        digamma(b + t - 1) - digamma(a + b + t),
        digamma(b + t - 1) - digamma(a + b + t - 1),
    ) - (digamma(b) - ab)
    return ll, np.stack([a * d_a, b * d_b])


class ShiftedBetaGeometric(BaseEstimator):
    """Shifted-beta-geometric retention model (Fader & Hardie 2007), fitted by ML.

    Parameters
    ----------
    max_iter : int, default=1000
        Iterations of L-BFGS-B.

    Attributes
    ----------
    a_, b_ : float
        Beta parameters of the churn probability (mean churn per period ``a / (a + b)``).
    log_likelihood_ : float
        Log-likelihood at the fit.
    n_customers_ : int
        Customers fitted.
    """

    def __init__(self, *, max_iter: int = 1000):
        self.max_iter = max_iter

    def fit(self, periods, churned, sample_weight=None):
        """Fit ``a`` and ``b``.

        Parameters
        ----------
        periods : array-like of int
            Paid periods per customer (>= 1).
        churned : array-like of bool
            Whether the customer has stopped paying (else still billed, censored).
        sample_weight : array-like of float, optional
            How many customers each row stands for (distinct rows with their counts give
            the fit on the customers themselves); default one each.

        Returns
        -------
        self : ShiftedBetaGeometric
            The fitted model.
        """
        t = np.asarray(periods, dtype=float)
        c = np.asarray(churned, dtype=bool)
        if t.size == 0 or t.shape != c.shape or not np.all(np.isfinite(t) & (t >= 1)):
            raise ValueError(
                "periods must be a non-empty array of paid periods >= 1, one per churned flag; "
                f"got {t.size} periods (min {np.nanmin(t) if t.size else 'n/a'}) and "
                f"{c.size} flags."
            )
        weight = np.ones(t.size) if sample_weight is None else np.asarray(sample_weight, float)
        if not c.any():
            raise ValueError(
                f"None of the {weight.sum():.0f} customers churned: retention cannot be fitted."
            )
        rows = pd.DataFrame({"t": t, "c": c, "w": weight}).groupby(["t", "c"])["w"].sum()
        ut = rows.index.get_level_values("t").to_numpy(float)
        uc = rows.index.get_level_values("c").to_numpy(bool)
        w = rows.to_numpy(float)

        def nll(log_params):
            ll, grad = _sbg_loglik(np.exp(log_params), ut, uc, gradient=True)
            return -(w @ ll) / w.sum(), -(grad @ w) / w.sum()

        res = minimize(
            nll, np.zeros(2), jac=True, method="L-BFGS-B",
            bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 2, options={"maxiter": self.max_iter},
        )  # fmt: skip
        if not res.success:
            warnings.warn(
                f"ShiftedBetaGeometric did not converge ({res.message}).",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.a_, self.b_ = (float(v) for v in np.exp(res.x))
        self.log_likelihood_ = float(w @ _sbg_loglik((self.a_, self.b_), ut, uc))
        self.n_customers_ = int(w.sum())
        logger.info(
            "sBG retention on %d customers: a=%.4g b=%.4g (mean churn %.1f%% a period)",
            self.n_customers_, self.a_, self.b_, 100 * self.a_ / (self.a_ + self.b_),
        )  # fmt: skip
        return self

    def survival(self, t) -> np.ndarray:
        """Return ``S(t)``, the share of a new cohort still billed after ``t`` periods."""
        check_is_fitted(self)
        t = np.asarray(t, dtype=float)
        return np.exp(betaln(self.a_, self.b_ + t) - betaln(self.a_, self.b_))

    def retention(self, periods, ahead) -> np.ndarray:
        """Return P(still billed ``ahead`` periods from now | paid ``periods`` so far)."""
        t = np.asarray(periods, dtype=float)
        return self.survival(t - 1 + ahead) / self.survival(t - 1)


def subscription_value(
    model: ShiftedBetaGeometric,
    history: pd.DataFrame,
    *,
    cycle_days: float,
    horizon_days: float,
    period_days: float,
    discount_rate: float,
) -> pd.DataFrame:
    """Return expected renewals, P(alive), revenue per cycle and discounted CLV per customer.

    A customer still billed with ``t`` paid cycles renews ``k`` cycles ahead with
    probability ``S(t - 1 + k) / S(t - 1)``; a churned customer never. Over the horizon
    (``K = round(horizon_days / cycle_days)`` cycles)::

        CLV = revenue per cycle * sum_{k=1..K} S(t - 1 + k) / S(t - 1) / (1 + d) ** (k c / p)

    with ``d`` the discount rate per period of ``p`` days and ``c`` the cycle. P(alive)
    is the probability of being billed at the next renewal (0 once churned).

    Parameters
    ----------
    model : ShiftedBetaGeometric
        Fitted retention model.
    history : pandas.DataFrame
        One row per customer: ``periods`` (paid cycles), ``churned`` (bool) and
        ``cycle_revenue`` (revenue per paid cycle).
    cycle_days, horizon_days, period_days : float
        Billing cycle, horizon and discounting period, in days.
    discount_rate : float
        Discount rate per period.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``history``: ``expected_purchases`` (renewals in the horizon),
        ``p_alive``, ``expected_order_value`` (revenue per cycle) and ``clv``.
    """
    t = history["periods"].to_numpy(float)
    alive = ~history["churned"].to_numpy(bool)
    k = np.arange(1, max(int(round(horizon_days / cycle_days)), 1) + 1)
    # customers share a few paid-cycle counts: the retention curve once per count
    periods, each = np.unique(t, return_inverse=True)
    keep = model.retention(periods[:, None], k[None, :])[each] * alive[:, None]
    discount = (1.0 + discount_rate) ** -(k * cycle_days / period_days)
    revenue = history["cycle_revenue"].to_numpy(float)
    return pd.DataFrame(
        {
            "expected_purchases": keep.sum(axis=1),
            "p_alive": keep[:, 0],
            "expected_order_value": revenue,
            "clv": revenue * (keep @ discount),
        },
        index=history.index,
    )
