"""The value lens: customer lifetime value and P(alive) as features of every customer.

Two kinds of business need two models (``clv.model``, default ``auto``):

- customers who buy when they like (retail, marketplaces: non-contractual): BG/NBD
  (purchases and dropout) and Gamma-Gamma (spend), fitted on the purchase history up to
  ``as_of`` (`features.rfm.clv_summary`, in weeks);
- customers billed on a cycle (subscriptions: contractual, churn is seen when the invoices
  stop): the shifted-beta-geometric retention model (`models.retention`) over billing
  cycles.

``auto`` tells them apart by the regularity of the gaps between purchase days
(`models.retention.billing_cycle`: the median customer's gap CV below 0.25 is billing).
Either way four features join the table: expected purchases (or renewals) over the
horizon, P(alive), expected order value (or revenue per cycle) and the discounted CLV.
They belong to the ``clv`` family: they describe and rank personas, and shape them
only if ``model.families`` lists ``clv``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from features import FeatureTable, LoadedData
from features.engine import Engine
from features.rfm import billing_history, billing_history_sql, clv_histories_sql, clv_summary
from features.table import Feature
from models import BetaGeoModel, GammaGammaModel, customer_value
from models.retention import regular_cycle, subscription_value
from pipelines.billing import Billing, SparkBilling, cycle_of, fit_subscription, paid_cycles

__all__ = ["CLV_FEATURES", "add_customer_value", "revenue_at_risk"]

logger = logging.getLogger(__name__)
_progress = logging.getLogger("personas.progress")  # shown by pipelines.run.stage

CLV_FEATURES = [
    Feature("clv_expected_purchases", "clv", "value",
            "expected purchases (renewals) in the CLV horizon", "purchases", "log",
            "expected purchases", fill="nan"),
    Feature("clv_p_alive", "clv", "value",
            "probability the customer is still active (next renewal)", "share", "none",
            "still active", fill="nan"),
    Feature("clv_order_value", "clv", "value",
            "expected value of a future purchase (or billing cycle)", "money", "log",
            "expected order value", fill="nan"),
    Feature("clv_value", "clv", "value", "discounted expected revenue over the CLV horizon",
            "money", "log", "customer value", fill="nan"),
]  # fmt: skip


def add_customer_value(
    loaded: LoadedData,
    table: FeatureTable,
    cfg: dict,
    *,
    engine: Engine | None = None,
    fitted: dict | None = None,
) -> tuple[dict | None, dict | None]:
    """Fit the CLV models (or apply fitted ones) and add their features to ``table``.

    Parameters
    ----------
    loaded : LoadedData
        The checked tables (a transactions table is needed).
    table : FeatureTable
        The feature table; gains the columns of `CLV_FEATURES` (NaN for customers who
        never bought), in place.
    cfg : dict
        The run configuration (``clv`` section).
    engine : Engine, optional
        Where the purchase history (`features.rfm.clv_summary`) is computed; default
        DuckDB on ``loaded``.
    fitted : dict, optional
        The models of an earlier fit (the second value this function returned), applied
        unchanged to these customers: the billing cycle and the parameters are not
        re-estimated, so a customer's value does not depend on the batch.

    Returns
    -------
    params : dict or None
        The fitted parameters (``clv_model.json``), or None when CLV is off or cannot be
        fitted. ``kind`` says which: ``bgnbd`` (``r``, ``alpha``, ``a``, ``b``,
        ``log_likelihood``, ``time_unit`` weeks, Gamma-Gamma ``p``, ``q``, ``v``) or
        ``subscription`` (sBG ``a``, ``b``, ``log_likelihood``, ``time_unit`` cycles,
        ``cycle_days``).
    fitted : dict or None
        The fitted models themselves (parameters only), to apply to a later batch.
    """
    c = cfg["clv"]
    if fitted is None and (not c["enabled"] or "transactions" not in loaded.tables):
        return None, None
    engine = engine or Engine(loaded)
    if fitted is not None:
        _step(1, 1, "each customer's value")
        value = _apply(engine, loaded.as_of, fitted, c)
        params = fitted["params"]
    else:
        fitted = _fit(engine, loaded.as_of, cfg)
        if fitted is None:
            return None, None
        value, params = fitted.pop("value"), fitted["params"]
    value.columns = [f.name for f in CLV_FEATURES]
    value.index = value.index.astype("string")
    table.frame = table.frame.join(value, how="left")
    table.features = [*table.features, *CLV_FEATURES]
    return params, fitted


def _fit(engine: Engine, as_of, cfg: dict) -> dict | None:
    """Fit the value model the data calls for; None (with a warning) when it cannot be."""
    c = cfg["clv"]
    cycle = billing = None
    _step(1, 3, "purchase histories")
    if c["model"] != "bgnbd":
        billing = _billing(engine, as_of)
        cycle = regular_cycle(*billing.regular())
        if c["model"] == "subscription" and cycle is None:
            cycle = billing.median_gap()  # NaN when nobody paid three times
            if not cycle > 0:
                logger.warning(
                    "Customer lifetime value is off for this run: clv.model is subscription, "
                    "but no customer has two gaps between purchases to tell the billing cycle."
                )
                return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if cycle:
                _step(2, 3, "model fit")
                fitted = fit_subscription(billing, cycle, c)
            else:
                summary = clv_summary(engine, as_of).set_index("customer_id")
                histories = _histories(engine, as_of, cfg)
                _step(2, 3, "model fit")
                fitted = _fit_buying(summary, c, histories)
            history = getattr(billing, "history", None) if cycle else None
            _step(3, 3, "each customer's value")
            fitted["value"] = _apply(engine, as_of, fitted, c, history)
    except ValueError as error:  # e.g. fewer than two repeat buyers
        logger.warning("Customer lifetime value is off for this run: %s", error)
        return None
    for w in caught:
        logger.warning("CLV: %s", w.message)
    fitted["params"] = {
        **fitted["params"], "horizon_weeks": c["horizon_weeks"], "n_periods": c["n_periods"],
        "discount_rate": c["discount_rate"], "customers_fitted": fitted.pop("customers", None)
        or int(len(fitted["value"])),
    }  # fmt: skip
    return fitted


def _step(done: int, total: int, what: str) -> None:
    """Report the step under way to the stage's bar (``2/3 steps: model fit``)."""
    _progress.info("", extra={"progress": (done, total, f"steps: {what}")})


def _billing(engine: Engine, as_of):
    """Every customer's billing rows: on a Spark engine, on the cluster (whole tables)."""
    if hasattr(engine, "whole"):
        return SparkBilling(engine.whole(billing_history_sql(engine, as_of), "billing"))
    return Billing(billing_history(engine, as_of).set_index("customer_id"))


def _histories(engine: Engine, as_of, cfg: dict) -> tuple | None:
    """Every customer's distinct purchase histories with their counts, on a Spark engine.

    On the cluster path the table is built on a sample, but the value model is fitted on
    every customer: the cluster groups the customers by history and the driver fits on
    the distinct histories weighted by their counts, which is the fit on every customer
    (`features.spark.SparkEngine.histories`). A model whose distinct histories number
    more than ``spark.max_histories`` (continuous ``monetary_value`` grows with the repeat
    buyers) is fitted on the sample's summary instead. None on DuckDB, whose summary is
    every customer's.
    """
    if not hasattr(engine, "histories"):
        return None
    limit = cfg["spark"]["max_histories"]
    found = engine.histories(clv_histories_sql(engine, as_of), limit)
    for name, rows in zip(("BG/NBD", "Gamma-Gamma"), found, strict=True):
        if rows is None:
            logger.warning(
                "CLV: more than spark.max_histories (%s) distinct purchase histories for "
                "the %s model; it is fitted on the sample's customers.", f"{limit:,}", name,
            )  # fmt: skip
    return found


def _apply(engine: Engine, as_of, fitted: dict, c: dict, history=None) -> pd.DataFrame:
    """Each buyer's expected purchases, P(alive), order value and CLV under fitted models."""
    if fitted["kind"] == "bgnbd":
        summary = clv_summary(engine, as_of).set_index("customer_id")
        return customer_value(
            fitted["purchases"], fitted["spend"], summary, horizon=c["horizon_weeks"],
            n_periods=c["n_periods"], discount_rate=c["discount_rate"],
        )  # fmt: skip
    if history is None:
        history = billing_history(engine, as_of).set_index("customer_id")
    cycles = fitted["cycles"]
    group = cycle_of(history, cycles)
    horizon = 7.0 * c["horizon_weeks"]
    parts = []
    for i, cycle in enumerate(cycles):
        frame = paid_cycles(history[group == i], cycle["days"], c)
        parts.append(subscription_value(
            cycle["model"], frame, cycle_days=cycle["days"], horizon_days=horizon,
            period_days=horizon / c["n_periods"], discount_rate=c["discount_rate"],
        ))  # fmt: skip
    return pd.concat(parts).reindex(history.index)


def _fit_buying(summary: pd.DataFrame, c: dict, histories: tuple | None = None) -> dict:
    """BG/NBD + Gamma-Gamma: customers who buy when they like (non-contractual).

    Each model is fitted on ``summary`` (one row per customer), or where ``histories``
    (`_histories`) has its distinct histories, on those weighted by their ``customers``.
    """
    bought, spent = histories or (None, None)
    purchases = BetaGeoModel(horizon=c["horizon_weeks"], penalizer=c["penalizer"])
    spend = GammaGammaModel(penalizer=c["penalizer"])
    for model, rows in ((purchases, bought), (spend, spent)):
        if rows is None:
            model.fit(summary)
        else:
            model.fit(rows, sample_weight=rows["customers"])
    return {"kind": "bgnbd", "purchases": purchases, "spend": spend,
            "customers": purchases.n_customers_, "params": {
        "kind": "bgnbd", "r": purchases.r_, "alpha": purchases.alpha_, "a": purchases.a_,
        "b": purchases.b_, "log_likelihood": purchases.log_likelihood_, "time_unit": "weeks",
        "p": spend.p_, "q": spend.q_, "v": spend.v_,
        "gamma_gamma_log_likelihood": spend.log_likelihood_,
    }}  # fmt: skip


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
