"""The value lens: customer lifetime value and P(alive) as features of every customer.

BG/NBD (purchases and dropout) and Gamma-Gamma (spend) are fitted on the purchase history
up to ``as_of`` (`features.rfm.clv_summary`, in weeks), and four features join the table:
expected purchases over the horizon, P(alive), expected order value and the discounted
CLV. They belong to the ``clv`` family: they describe and rank personas, and shape them
only if ``model.families`` lists ``clv``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from features import FeatureTable, LoadedData
from features.engine import Engine
from features.rfm import clv_summary
from features.table import Feature
from models import BetaGeoModel, GammaGammaModel, customer_value

__all__ = ["CLV_FEATURES", "add_customer_value", "revenue_at_risk"]

logger = logging.getLogger(__name__)

CLV_FEATURES = [
    Feature("clv_expected_purchases", "clv", "value",
            "expected purchases in the CLV horizon (BG/NBD)", "purchases", "log",
            "expected purchases", fill="nan"),
    Feature("clv_p_alive", "clv", "value", "probability the customer is still active (BG/NBD)",
            "share", "none", "still active", fill="nan"),
    Feature("clv_order_value", "clv", "value",
            "expected value of a future purchase (Gamma-Gamma)", "money", "log",
            "expected order value", fill="nan"),
    Feature("clv_value", "clv", "value", "discounted expected revenue over the CLV horizon",
            "money", "log", "customer value", fill="nan"),
]  # fmt: skip


def add_customer_value(
    loaded: LoadedData, table: FeatureTable, cfg: dict, *, engine: Engine | None = None
) -> dict | None:
    """Fit the CLV models and add their features to ``table`` (in place).

    Parameters
    ----------
    loaded : LoadedData
        The checked tables (a transactions table is needed).
    table : FeatureTable
        The feature table; gains the columns of `CLV_FEATURES` (NaN for customers who
        never bought).
    cfg : dict
        The run configuration (``clv`` section).
    engine : Engine, optional
        Where the purchase history (`features.rfm.clv_summary`) is computed; default
        DuckDB on ``loaded``.

    Returns
    -------
    dict or None
        The fitted parameters (``r``, ``alpha``, ``a``, ``b``, ``log_likelihood``,
        ``time_unit``, ``p``, ``q``, ``v``, ...), or None when CLV is off or cannot be fitted.
    """
    c = cfg["clv"]
    if not c["enabled"] or "transactions" not in loaded.tables:
        return None
    engine = engine or Engine(loaded)
    summary = clv_summary(engine, loaded.as_of, cfg["features"]).set_index("customer_id")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            purchases = BetaGeoModel(horizon=c["horizon_weeks"], penalizer=c["penalizer"]).fit(
                summary
            )
            spend = GammaGammaModel(penalizer=c["penalizer"]).fit(summary)
            value = customer_value(
                purchases,
                spend,
                summary,
                horizon=c["horizon_weeks"],
                n_periods=c["n_periods"],
                discount_rate=c["discount_rate"],
            )
    except ValueError as error:  # e.g. fewer than two repeat buyers
        logger.warning("Customer lifetime value is off for this run: %s", error)
        return None
    for w in caught:
        logger.warning("CLV: %s", w.message)
    value.columns = [f.name for f in CLV_FEATURES]
    value.index = value.index.astype("string")
    table.frame = table.frame.join(value, how="left")
    table.features = [*table.features, *CLV_FEATURES]
    return {
        "r": purchases.r_, "alpha": purchases.alpha_, "a": purchases.a_, "b": purchases.b_,
        "log_likelihood": purchases.log_likelihood_, "time_unit": "weeks",
        "p": spend.p_, "q": spend.q_, "v": spend.v_,
        "gamma_gamma_log_likelihood": spend.log_likelihood_,
        "horizon_weeks": c["horizon_weeks"], "n_periods": c["n_periods"],
        "discount_rate": c["discount_rate"], "customers_fitted": int(len(summary)),
    }  # fmt: skip


def revenue_at_risk(frame: pd.DataFrame, labels: np.ndarray, revenue_column: str) -> dict:
    """Revenue at risk per persona: last 12 months' revenue x (1 - P(alive)).

    The revenue a persona brought in the last year from customers who have probably
    lapsed. We weight trailing revenue rather than predicted CLV because CLV already
    discounts by P(alive); multiplying it by ``1 - P(alive)`` again would count the
    dropout twice and shrink the risk exactly where it is largest.

    Parameters
    ----------
    frame : pandas.DataFrame
        The feature table with ``clv_p_alive`` and ``revenue_column``.
    labels : ndarray of shape (n_customers,)
        Persona id per customer.
    revenue_column : str
        Trailing revenue column (``revenue_12m``).

    Returns
    -------
    dict of int to float
        Persona id -> revenue at risk (money); empty without the columns.
    """
    if "clv_p_alive" not in frame or revenue_column not in frame:
        return {}
    revenue = pd.to_numeric(frame[revenue_column], errors="coerce").clip(lower=0).fillna(0)
    risk = revenue * (1 - frame["clv_p_alive"].fillna(1.0))
    return {int(k): round(float(v), 2) for k, v in risk.groupby(np.asarray(labels)).sum().items()}
