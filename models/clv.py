"""Customer lifetime value: BG/NBD for repeat purchases and dropout, Gamma-Gamma for spend.

The value lens asks what a customer is worth from here on. Two classic probability models
answer it from a per-customer summary of the purchase history (see
`features.rfm.clv_summary`): ``frequency`` (repeat purchase days), ``recency`` (time from
the first to the last purchase), ``T`` (time from the first purchase to the end of
observation) and ``monetary_value`` (the mean of the repeat purchases). Time is in weeks.

- `BetaGeoModel` (`models.bgnbd`), the BG/NBD model (Fader, Hardie and Lee 2005,
  "Counting your customers the easy way"). While alive a customer buys at Poisson rate
  ``lambda``, ``lambda ~ Gamma(r, alpha)`` across customers; after each repeat purchase the
  customer drops out for good with probability ``p``, ``p ~ Beta(a, b)``. It predicts the
  purchases of the next ``t`` weeks and the probability that a customer is still alive.
- `GammaGammaModel` (`models.gamma_gamma`), the Gamma-Gamma spend model (Fader, Hardie and
  Lee 2005, "RFM and CLV: using iso-value curves for customer base analysis"). It predicts
  the expected value of a customer's future purchases, shrinking their observed mean
  towards the population mean the fewer purchases they have made, and is fitted on the
  repeat buyers.
- `customer_value`, here, combines them: expected purchases, probability alive, expected
  order value and the discounted CLV of each customer.

Both models are fitted by maximum likelihood with `scipy.optimize.minimize` (L-BFGS-B) on
log parameters, with analytic gradients, each distinct customer row once
(`models.clv_base`). This module re-exports both, so ``from models.clv import
BetaGeoModel, GammaGammaModel, customer_value`` is the CLV lens in one import.

Why our own small implementation: ``lifetimes``, the reference whose formulas we follow,
is unmaintained (last release 0.11.3 in 2020, importing ``pkg_resources``, untested on
current numpy, pandas and scipy); its successor, ``pymc-marketing``'s ``clv`` module, is
Bayesian and brings PyMC, PyTensor and ArviZ, a heavy compiled stack for two
maximum-likelihood fits of seven parameters. The formulas are short, and the tests check
them against the published CDNOW estimates.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from models.bgnbd import BetaGeoModel
from models.clv_base import _purchase_history, _spend_history, _unique_rows
from models.gamma_gamma import GammaGammaModel

__all__ = ["BetaGeoModel", "GammaGammaModel", "customer_value"]


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
