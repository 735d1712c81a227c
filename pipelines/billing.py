"""The subscription value model's fit, from order statistics and counts of billing rows.

`pipelines.value` fits the shifted-beta-geometric retention model (`models.retention`)
for customers billed on a cycle. Of the customers' billing histories
(`features.rfm.billing_history`: one row per customer), the fit needs only medians and
counts:

1. the base's cycle: the median regular payer's gap and gap CV
   (`models.retention.regular_cycle`);
2. the cycles: each customer's own gap snapped to the base's cycle or a standard longer
   one (`snap`), and per snapped group the median gap and the median payment
   (`cycles_of`);
3. each customer's cycle, paid cycles and churn (`assign`), counted per cycle: an sBG
   likelihood is a sum over the distinct ``(periods, churned)`` rows weighted by their
   counts (`fit_cycles`).

The per-customer steps are pandas functions of a batch of customers. `Billing` runs
them and the aggregations on a pandas frame (the DuckDB engine); `SparkBilling` runs them
on the executors (``mapInPandas``) and aggregates on the cluster, so the Spark engine
fits on every customer while the driver receives one or two rows per median and one row
per distinct count. Both give the same fit: the medians are exact order statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.retention import ShiftedBetaGeometric

__all__ = ["Billing", "SparkBilling", "assign", "cycle_of", "fit_subscription", "paid_cycles"]

#: A billing cycle needs this many customers for a retention model of its own.
_MIN_CYCLE_CUSTOMERS = 30

#: The longer billing cycles a customer's own gaps are matched to (days): quarterly to
#: annual, where at least `_LONGER` times the base's cycle.
_CYCLES = (91.31, 182.62, 365.25)
_LONGER = 2.5


def _own_gap(history: pd.DataFrame) -> pd.Series:
    """Return each customer's mean gap between purchase days (NaN with one purchase day)."""
    return history["span_days"] / (history["purchase_days"] - 1).where(history["purchase_days"] > 1)


def _paid(history: pd.DataFrame) -> pd.Series:
    """Return the log of each customer's mean payment per purchase day."""
    return np.log(np.maximum(history["spend"] / history["purchase_days"], 1e-9))


def snap(history: pd.DataFrame, cycle: float) -> pd.DataFrame:
    """Return each customer's snapped group, own gap, log payment and regular gap.

    The group is the index of the candidate cycle nearest the customer's own mean gap on a
    log scale: the base's ``cycle`` (0), then the standard longer ones at least `_LONGER`
    times it; -1 for a customer who paid once.
    """
    gap = _own_gap(history)
    longer = [d for d in _CYCLES if d >= _LONGER * cycle]  # quarterly, annual, ... plans
    candidates = np.log([cycle, *longer])
    with np.errstate(invalid="ignore"):
        nearest = np.abs(np.log(gap.to_numpy(float))[:, None] - candidates[None, :]).argmin(1)
    return pd.DataFrame(
        {
            "group": np.where(gap.notna(), nearest, -1),
            "gap": gap.to_numpy(float),
            "paid": _paid(history).to_numpy(float),
            "gap_mean": history["gap_mean"].to_numpy(float),
        }
    )


def cycles_of(medians: pd.DataFrame, cycle: float) -> list[dict]:
    """Return the cycles: the base's, and each longer one some customers snapped to.

    ``medians`` holds, per snapped group (index), ``regular`` (how many of its customers
    have a regular gap), the medians ``gap_mean``, ``gap`` and ``paid``. A longer cycle's
    length is its regular payers' median gap (else its customers'); its ``log_spend`` is
    the median payment.
    """
    cycles = []
    for group in sorted(set(medians.index[medians.index >= 0]) | {0}):
        row = medians.loc[group] if group in medians.index else None
        if group == 0:
            days = cycle
        else:
            days = float(row["gap_mean"] if row["regular"] else row["gap"])
        cycles.append({"days": days, "log_spend": np.nan if row is None else float(row["paid"])})
    return cycles


def cycle_of(history: pd.DataFrame, cycles: list[dict]) -> np.ndarray:
    """Return the index in ``cycles`` of each customer's billing cycle.

    A customer who paid twice or more is on the cycle nearest their own mean gap (on a log
    scale); one who paid once, on the cycle whose customers pay the most similar amount
    (an annual invoice is about twelve monthly ones).
    """
    days = np.log([cycle["days"] for cycle in cycles])
    spend = np.array([cycle["log_spend"] for cycle in cycles])
    gap = np.log(_own_gap(history).to_numpy(float))
    paid = _paid(history).to_numpy(float)
    by_gap = np.abs(gap[:, None] - days[None, :]).argmin(axis=1)
    by_spend = np.abs(paid[:, None] - spend[None, :]).argmin(axis=1)
    return np.where(np.isfinite(gap), by_gap, by_spend)


def paid_cycles(history: pd.DataFrame, cycle: float, c: dict) -> pd.DataFrame:
    """Return paid cycles, churn and revenue per cycle of customers billed every ``cycle`` days.

    A customer has paid ``round(span / cycle) + 1`` cycles, and has churned when the last
    purchase is more than ``grace_cycles`` cycles before ``as_of`` (the next invoice is
    overdue). Revenue per cycle is the customer's spend over the cycles paid.
    """
    periods = np.maximum(np.round(history["span_days"] / cycle) + 1, 1)
    return pd.DataFrame(
        {
            "periods": periods,
            "churned": history["days_since"] > c["grace_cycles"] * cycle,
            "cycle_revenue": history["spend"] / periods,
        },
        index=history.index,
    )


def assign(history: pd.DataFrame, cycles: list[dict], c: dict) -> pd.DataFrame:
    """Return each customer's ``cycle`` (index in ``cycles``), ``periods`` and ``churned``."""
    group = cycle_of(history, cycles)
    parts = [
        paid_cycles(history[group == i], cyc["days"], c).assign(cycle=i)
        for i, cyc in enumerate(cycles)
    ]
    return pd.concat(parts)[["cycle", "periods", "churned"]]


def fit_subscription(billing, cycle: float, c: dict) -> dict:
    """SBG retention per billing cycle: customers billed on a cycle (contractual).

    ``cycle`` is the base's cycle (`models.retention.billing_cycle`, the median regular
    payer's gap). A customer who paid twice or more is on the cycle nearest their own mean
    gap (log scale) among the base's and the standard longer ones (quarterly, half-yearly,
    annual) at least `_LONGER` times it, so an annual subscriber in a monthly base is
    judged by annual invoices, while an extra payment never makes anyone's cycle shorter;
    a longer cycle's length is its customers' median gap. A customer who paid once is on
    the cycle whose customers pay the most similar amount (`cycle_of`). Each cycle with
    at least `_MIN_CYCLE_CUSTOMERS` customers and a churn gets its own retention model;
    the others share one fitted on every customer.

    Parameters
    ----------
    billing : Billing or SparkBilling
        The customers' billing rows.
    cycle : float
        The base's cycle (days).
    c : dict
        The ``clv`` settings (``grace_cycles``).

    Returns
    -------
    dict
        ``kind`` (``subscription``), ``cycles`` (with their fitted models), ``customers``
        and ``params`` (``clv_model.json``'s).
    """
    cycles = cycles_of(billing.medians(cycle), cycle)
    counts = billing.counts(cycles, c)
    pooled = None
    for i, cyc in enumerate(cycles):
        rows = counts[counts["cycle"] == i]
        cyc["customers"] = int(rows["customers"].sum())
        if cyc["customers"] >= _MIN_CYCLE_CUSTOMERS and rows["churned"].any():
            cyc["model"] = _sbg(rows)
        else:
            if pooled is None:
                pooled = _sbg(counts)
            cyc["model"] = pooled
    main = max(cycles, key=lambda cyc: cyc["customers"])
    total = int(counts["customers"].sum())
    churned = int(counts.loc[counts["churned"], "customers"].sum())
    models = {id(cyc["model"]): cyc["model"] for cyc in cycles}  # the pooled one once
    return {"kind": "subscription", "cycles": cycles, "customers": total, "params": {
        "kind": "subscription", "a": main["model"].a_, "b": main["model"].b_,
        "log_likelihood": sum(m.log_likelihood_ for m in models.values()),
        "time_unit": "cycles", "cycle_days": round(main["days"], 3),
        "cycles": [{"cycle_days": round(cyc["days"], 3), "customers": cyc["customers"],
                    "a": cyc["model"].a_, "b": cyc["model"].b_} for cyc in cycles],
        "grace_cycles": c["grace_cycles"],
        "churned_share": round(churned / total, 4),
    }}  # fmt: skip


def _sbg(counts: pd.DataFrame) -> ShiftedBetaGeometric:
    """Fit sBG on distinct ``(periods, churned)`` rows weighted by their ``customers``."""
    return ShiftedBetaGeometric().fit(
        counts["periods"], counts["churned"], sample_weight=counts["customers"]
    )


def _count(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.groupby(["cycle", "periods", "churned"]).size().rename("customers").reset_index()


class Billing:
    """Every customer's billing row, in a pandas frame (`features.rfm.billing_history`)."""

    def __init__(self, history: pd.DataFrame):
        self.history = history

    def regular(self) -> tuple[int, float, float]:
        """Return how many customers pay regularly, their median gap CV and mean gap."""
        regular = self.history.dropna(subset=["gap_cv"])
        return len(regular), regular["gap_cv"].median(), regular["gap_mean"].median()

    def median_gap(self) -> float:
        """Return the median mean gap of the customers with two gaps or more."""
        return float(self.history["gap_mean"].median())

    def medians(self, cycle: float) -> pd.DataFrame:
        """Return `cycles_of`'s medians per snapped group."""
        snapped = snap(self.history, cycle)
        grouped = snapped[snapped["group"] >= 0].groupby("group")
        out = grouped[["gap_mean", "gap", "paid"]].median()
        return out.assign(regular=grouped["gap_mean"].count())

    def counts(self, cycles: list[dict], c: dict) -> pd.DataFrame:
        """Return the customers per ``cycle``, ``periods`` and ``churned``."""
        return _count(assign(self.history, cycles, c))


class _OnBatches:
    """An executor task: a per-customer step on each batch of billing rows."""

    def __init__(self, step, *args):
        self.step, self.args = step, args

    def __call__(self, batches):
        for batch in batches:
            yield self.step(batch, *self.args)


class SparkBilling:
    """Every customer's billing row on the cluster; the steps run on the executors.

    Parameters
    ----------
    frame : pyspark.sql.DataFrame
        `features.rfm.billing_history`'s columns, one row per customer.
    """

    def __init__(self, frame):
        from pyspark.sql import functions as sf

        self.frame = frame.select(
            *[sf.col(c).cast("double").alias(c) for c in frame.columns if c != "customer_id"]
        )

    def regular(self) -> tuple[int, float, float]:
        """Return how many customers pay regularly, their median gap CV and mean gap."""
        regular = self.frame.where("gap_cv IS NOT NULL")
        found = _medians(regular, ["gap_cv", "gap_mean"])
        cv, n = found.get((0, "gap_cv"), (np.nan, 0))
        return n, cv, found.get((0, "gap_mean"), (np.nan, 0))[0]

    def median_gap(self) -> float:
        """Return the median mean gap of the customers with two gaps or more."""
        return float(_medians(self.frame, ["gap_mean"]).get((0, "gap_mean"), (np.nan, 0))[0])

    def medians(self, cycle: float) -> pd.DataFrame:
        """Return `cycles_of`'s medians per snapped group."""
        from features.spark import pandas_warnings_silenced

        schema = "group long, gap double, paid double, gap_mean double"
        with pandas_warnings_silenced():
            snapped = self.frame.mapInPandas(_OnBatches(snap, cycle), schema)
        columns = ["gap_mean", "gap", "paid"]
        found = _medians(snapped.where("group >= 0"), columns, "group")
        groups = sorted({g for g, _ in found})
        value = {c: [found.get((g, c), (np.nan, 0)) for g in groups] for c in columns}
        return pd.DataFrame(
            {
                **{c: [m for m, _ in value[c]] for c in columns},
                "regular": [n for _, n in value["gap_mean"]],
            },
            index=pd.Index(groups, name="group"),
        )

    def counts(self, cycles: list[dict], c: dict) -> pd.DataFrame:
        """Return the customers per ``cycle``, ``periods`` and ``churned``."""
        from features.spark import pandas_warnings_silenced

        schema = "cycle long, periods double, churned boolean"
        with pandas_warnings_silenced():
            rows = self.frame.mapInPandas(_OnBatches(assign, cycles, c), schema)
            counted = rows.groupBy("cycle", "periods", "churned").count().toPandas()
        counted = counted.rename(columns={"count": "customers"})
        return counted.sort_values(["cycle", "periods", "churned"], ignore_index=True)


def _medians(frame, columns: list[str], by: str | None = None) -> dict:
    """Return each group's exact median of each column, and its count of values.

    One Spark job: the columns' values are stacked, ranked within (group, column), and
    the one or two middle values of each come to the driver, which averages them as
    pandas does. NaN and missing values are left out.

    Returns
    -------
    dict
        ``(group, column) -> (median, count)``; the group is 0 without ``by``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    key = sf.col(by) if by else sf.lit(0)
    pairs = [
        sf.struct(sf.lit(c).alias("c"), sf.nanvl(sf.col(c), sf.lit(None).cast("double")).alias("x"))
        for c in columns
    ]
    rows = frame.select(key.alias("_g"), sf.explode(sf.array(*pairs)).alias("_v"))
    rows = rows.select("_g", "_v.c", "_v.x").where("x IS NOT NULL")
    within = Window.partitionBy("_g", "c")
    rank = sf.row_number().over(within.orderBy("x"))
    ranked = rows.select(
        "_g", "c", "x", rank.alias("_r"), sf.count(sf.lit(1)).over(within).alias("_n")
    )
    middle = (sf.col("_r") == sf.floor((sf.col("_n") - 1) / 2) + 1) | (
        sf.col("_r") == sf.floor(sf.col("_n") / 2) + 1
    )
    found: dict = {}
    for row in ranked.where(middle).collect():  # at most two rows per group and column
        key = (int(row["_g"]), row["c"])
        found.setdefault(key, ([], int(row["_n"])))[0].append(float(row["x"]))
    return {key: (float(np.median(values)), n) for key, (values, n) in found.items()}
