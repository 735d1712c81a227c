"""The value lens from transactions: the CLV summary and RFM scores, computed in SQL.

`clv_summary` is the per-customer purchase history that the CLV models
(`models.clv.BetaGeoModel`, `models.clv.GammaGammaModel`) are fitted on. It follows the
conventions of ``lifetimes``' ``summary_data_from_transaction_data`` (pymc-marketing's
``rfm_summary``) with daily periods:

- a *purchase day* is a calendar day with at least one transaction of amount >= 0
  (several that day count once, their amounts summed); refunds (amount < 0) are left
  out, and a free order (amount 0) still counts as a purchase;
- ``frequency`` is the number of purchase days after the first (repeat purchases);
- ``recency`` is the time from the first to the last purchase day, ``T`` the time from
  the first purchase day to the day of ``as_of``, both in weeks (days / 7);
- ``monetary_value`` is the mean amount of the repeat purchase days, 0 without one.

Customers who never bought are not in the summary: the models describe customers from
their first purchase on.

`rfm` is a feature family builder (``(engine, as_of, params, fitted) -> (frame, features,
fitted)``, see `features.families`): recency, frequency and monetary quintile scores and a
value tier.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import rankdata

from features.contract import DataError
from features.engine import Engine, sql_time
from features.table import Feature

Built = tuple[pd.DataFrame, list[Feature], dict]

__all__ = [
    "CLV_COLUMNS",
    "VALUE_TIERS",
    "billing_history",
    "billing_history_sql",
    "clv_histories_sql",
    "clv_summary",
    "rfm",
]

logger = logging.getLogger(__name__)

#: The columns of `clv_summary`, in order.
CLV_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")

#: Default ``value_tiers``: the lowest RFM total score (3-15) of a high and a mid value
#: customer; lower totals are low value.
VALUE_TIERS = {"high": 12, "mid": 8}

_SCORES = 5  # quintiles
_TIERS = pa.array(["none", "high", "mid", "low"])  # `rfm`'s value tiers, by code


def _require_transactions(engine: Engine) -> None:
    """Stop with a clear message when the data has no transactions table."""
    if not engine.has("transactions"):
        raise DataError(
            "The value lens (CLV summary, RFM scores) needs a transactions table "
            f"(customer_id, timestamp, amount); the data has {', '.join(engine.data.tables)}."
        )


def _purchase_days_sql(as_of: pd.Timestamp, where: str = "") -> str:
    """Return the SQL of the purchase days: one row per customer and day with a purchase.

    A purchase is a transaction of amount >= 0 up to ``as_of``; ``spend`` sums the day's.
    ``where`` narrows the transactions (SQL ``AND ...``).
    """
    return f"""
          SELECT customer_id, date_trunc('day', timestamp) AS day, ROUND(SUM(amount), 6) AS spend
          FROM transactions
          WHERE amount >= 0 AND timestamp <= {sql_time(as_of)}{where}
          GROUP BY customer_id, date_trunc('day', timestamp)"""


def _purchases_sql(engine: Engine, as_of: pd.Timestamp) -> str:
    """Return the SQL of one row per customer: CLV summary and RFM inputs.

    Columns: ``customer_id``, ``frequency``, ``recency``, ``T``, ``monetary_value``,
    ``days_since`` (days from the last purchase day to the day of ``as_of``) and
    ``day_spend`` (mean amount per purchase day, the first included); all NULL for a
    customer who never bought. The mean of the repeat purchase days is the days' total
    less the first day's spend, over their number (one aggregation, no window function
    to number the days).

    Summing each customer's transactions per day first would group by customer and day:
    as many groups as transactions, the costliest aggregation of a run. Most customers
    buy at most once a day, so one aggregation per customer counts their transactions
    and their distinct days (`Dialect.distinct_days`); where the two agree, each
    transaction is a purchase day. Only the customers with two purchases on a day get
    their days summed first, as the CLV conventions say (module docstring).
    """
    _require_transactions(engine)
    today = f"date_trunc('day', {sql_time(as_of)})"
    days, arg_min = engine.dialect.days, engine.dialect.arg_min
    bought = f"amount >= 0 AND timestamp <= {sql_time(as_of)}"
    first = engine.data.quality["tables"].get("transactions", {}).get("first")
    if first:  # the load's check scan saw the earliest transaction: the bits' range
        start = min(pd.Timestamp(first), as_of).normalize()
        distinct = engine.dialect.distinct_days(
            "timestamp", start, (as_of.normalize() - start).days
        )
    else:  # a batch loaded without it (a bucket on a Spark executor): count the days
        distinct = "COUNT(DISTINCT CAST(timestamp AS DATE))"
    twice = " AND customer_id IN (SELECT customer_id FROM purchases WHERE n > n_days)"
    return f"""
        WITH purchases AS (
          SELECT customer_id, COUNT(*) AS n, {distinct} AS n_days,
            date_trunc('day', min(timestamp)) AS first_day,
            date_trunc('day', max(timestamp)) AS last_day,
            SUM(ROUND(amount, 6)) AS total,
            {arg_min("ROUND(amount, 6)", "timestamp")} AS first_spend
          FROM transactions WHERE {bought} GROUP BY customer_id),
        purchase_days AS ({_purchase_days_sql(as_of, twice)}),
        per_customer AS (
          SELECT customer_id, n, first_day, last_day, total, first_spend
          FROM purchases WHERE n = n_days
          UNION ALL
          SELECT customer_id, COUNT(*), min(day), max(day), SUM(spend), {arg_min("spend", "day")}
          FROM purchase_days GROUP BY customer_id)
        SELECT customer_id, p.frequency, p.recency, p.T, p.monetary_value, p.days_since,
          p.day_spend
        FROM customers LEFT JOIN (
          SELECT customer_id,
            n - 1 AS frequency,
            {days("first_day", "last_day")} / 7.0 AS recency,
            {days("first_day", today)} / 7.0 AS T,
            -- rounded: parallel sums differ in the last bits, and the CLV fit would amplify that
            ROUND(CASE WHEN n > 1 THEN (total - first_spend) / (n - 1) ELSE 0.0 END, 9)
              AS monetary_value,
            {days("last_day", today)} AS days_since,
            ROUND(total / n, 9) AS day_spend
          FROM per_customer) p USING (customer_id)"""


def _purchases(engine: Engine, as_of: pd.Timestamp) -> pd.DataFrame:
    """Return `_purchases_sql`'s rows, computed once per engine (RFM and CLV both read them)."""
    return engine.shared(
        ("transactions", "purchases", as_of),
        lambda: engine.query(_purchases_sql(engine, as_of)),
    )


def clv_summary(engine: Engine, as_of: pd.Timestamp, params: dict | None = None) -> pd.DataFrame:
    """Per-customer purchase history for the CLV models, computed where the data lives.

    Parameters
    ----------
    engine : Engine
        Where the SQL runs; needs the ``transactions`` table.
    as_of : pandas.Timestamp
        Reference time: later transactions are ignored, and ``T`` runs to its day.
    params : dict, optional
        The ``features`` section of the config (unused; the builder signature).

    Returns
    -------
    pandas.DataFrame
        One row per customer with a purchase (amount >= 0) up to ``as_of``, sorted by
        ``customer_id``, with the columns `CLV_COLUMNS`: ``frequency`` (repeat purchase
        days), ``recency`` and ``T`` (weeks) and ``monetary_value`` (mean of the repeat
        purchase days, 0 without one); see the module docstring.

    Raises
    ------
    DataError
        When the data has no transactions table.
    """
    frame = _purchases(engine, as_of)
    frame = frame.loc[frame["frequency"].notna(), list(CLV_COLUMNS)]  # those who bought
    frame = frame.sort_values("customer_id", ignore_index=True)  # as ORDER BY: code points
    frame["customer_id"] = frame["customer_id"].astype("string")
    frame["frequency"] = frame["frequency"].astype("int64")
    for c in CLV_COLUMNS[2:]:
        frame[c] = frame[c].astype(float)
    return frame


def clv_histories_sql(engine: Engine, as_of: pd.Timestamp) -> str:
    """Return the SQL of the distinct purchase histories and how many customers share each.

    Columns: ``frequency``, ``recency``, ``T``, ``monetary_value`` (as `clv_summary`
    computes them) and ``customers``; one row per distinct history of a customer who
    bought. The CLV models fitted on these rows weighted by ``customers`` are those fitted
    on `clv_summary` (see `features.spark.SparkEngine.histories`).
    """
    keys = "frequency, recency, T, monetary_value"
    return f"""
        SELECT {keys}, COUNT(*) AS customers FROM ({_purchases_sql(engine, as_of)})
        WHERE frequency IS NOT NULL GROUP BY {keys}"""


def billing_history(engine: Engine, as_of: pd.Timestamp) -> pd.DataFrame:
    """Return the gaps between each customer's purchase days: is it billing, who still pays.

    Parameters
    ----------
    engine : Engine
        Where the SQL runs; needs the ``transactions`` table.
    as_of : pandas.Timestamp
        Reference time: later transactions are ignored.

    Returns
    -------
    pandas.DataFrame
        One row per customer with a purchase up to ``as_of``, sorted by ``customer_id``:
        ``purchase_days``, ``span_days`` (first to last purchase day), ``days_since``
        (last purchase day to the day of ``as_of``), ``spend`` (total, refunds left out),
        ``gap_mean`` and ``gap_cv`` (mean and coefficient of variation of the gaps between
        purchase days; NaN with fewer than two gaps). The purchase days are those of
        `clv_summary`.
    """
    return engine.shared(
        ("transactions", "billing", as_of), lambda: _billing_history(engine, as_of)
    ).copy()


def billing_history_sql(engine: Engine, as_of: pd.Timestamp) -> str:
    """Return the SQL of `billing_history` (its rows in no order), for ``engine``'s dialect.

    The gaps between purchase days come from `Dialect.purchase_gaps` (DuckDB sorts each
    customer's days in a list; Spark numbers them with a window function).
    """
    days = engine.dialect.days
    today = f"date_trunc('day', {sql_time(as_of)})"
    _require_transactions(engine)
    bought = (
        "SELECT customer_id, date_trunc('day', timestamp) AS day, amount FROM transactions "
        f"WHERE amount >= 0 AND timestamp <= {sql_time(as_of)}"
    )
    return f"""
        SELECT customer_id, purchase_days, {days("first_day", "last_day")} AS span_days,
          {days("last_day", today)} AS days_since, spend, gap_mean, gap_cv
        FROM ({engine.dialect.purchase_gaps(bought)})"""


def _billing_history(engine: Engine, as_of: pd.Timestamp) -> pd.DataFrame:
    frame = engine.query(billing_history_sql(engine, as_of) + " ORDER BY customer_id")
    frame["customer_id"] = frame["customer_id"].astype("string")
    for c in frame.columns[1:]:
        frame[c] = frame[c].astype(float)
    return frame


def _edges(values: np.ndarray) -> list[float]:
    """Return the worst value that earned each score from 2 to 5 (inf when none did).

    ``values`` are oriented so that higher is better; the scores are those of `rfm`: a
    value's score grows with its rank (``rankdata(values, method="min")``), so the worst
    value scoring ``s`` is the smallest one ranked at least the first rank that scores
    ``s``. It is found by selection (`numpy.partition`), in linear time, where ranking a
    million values sorted them.
    """
    n = len(values)
    if np.isnan(values).any():  # ranked as the largest by rankdata: as it does
        return _edges_ranked(values)
    firsts = [_first_rank(n, s) for s in range(2, _SCORES + 1)]
    kth = sorted({j for r in firsts if r for j in (r - 2, r - 1) if j >= 0})
    ordered = np.partition(values, kth) if kth else values  # those order statistics, in place
    edges = []
    for rank in firsts:
        if rank is None:
            edges.append(np.inf)
            continue
        i = rank - 1  # the rank-th smallest value, unless it ties with the one before
        edge = ordered[i]
        if i and ordered[i - 1] == edge:  # ranked below: the next larger value, if any
            edge = np.min(values, where=values > edge, initial=np.inf)
        if edge == 0.0:  # of 0.0 and -0.0, the one the minimum of those scoring s gives
            edge = np.min(values, where=values >= edge, initial=np.inf)
        edges.append(float(edge))
    return edges


def _score(rank, n: int):
    """Return the score of a value ranked ``rank`` (1 = lowest) among ``n``: 1 to 5."""
    return np.minimum(_SCORES, 1 + np.floor(_SCORES * (rank - 1.0) / max(n - 1, 1)))


def _first_rank(n: int, s: int) -> int | None:
    """Return the lowest rank among ``n`` values that scores ``s`` or more (None: none)."""
    if not n or _score(n, n) < s:
        return None
    lo, hi = 1, n  # _score grows with the rank: the first that reaches s, by bisection
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _score(mid, n) >= s else (mid + 1, hi)
    return lo


def _edges_ranked(values: np.ndarray) -> list[float]:
    """`_edges` by ranking every value (what it computes, for values with NaN)."""
    score = _score(rankdata(values, method="min"), len(values))
    return [float(values[score >= s].min()) if (score >= s).any() else np.inf
            for s in range(2, _SCORES + 1)]  # fmt: skip


def _check_tiers(tiers: dict) -> tuple[int, int]:
    high, mid = tiers.get("high"), tiers.get("mid")
    lowest, highest = 3, 3 * _SCORES
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (high, mid))
    if not ok or not lowest <= mid <= high <= highest:
        raise ValueError(
            f"features.value_tiers should give RFM total scores with {lowest} <= mid <= high "
            f"<= {highest}, got {tiers!r}."
        )
    return high, mid


def rfm(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
    """RFM quintile scores and a value tier, for every customer.

    Each score ranks the customers who bought: recency by the days since their last
    purchase day (fewer is better), frequency by their purchase days, monetary by their
    mean spend per purchase day. A score is ``1 + floor(5 * (rank - 1) / (n - 1))``, capped
    at 5, with ``rank`` the lowest rank of the customer's ties from the worst (1) up to the
    best: 5 is the best fifth, ties share a score, and row order never matters. What is
    fitted are the quintile edges (the worst value that earned each score); a customer
    scored later gets the score of the edges they reach, so the training customers keep
    their scores exactly and nobody's score depends on the batch. The value tier compares
    the total ``rfm_r + rfm_f + rfm_m`` with ``params["value_tiers"]`` (default
    `VALUE_TIERS`). Customers who never bought get scores of 0 and the tier ``none``.

    Parameters
    ----------
    engine : Engine
        Where the SQL runs; needs the ``transactions`` table.
    as_of : pandas.Timestamp
        Reference time; later transactions are ignored.
    params : dict
        The ``features`` section of the config; reads ``value_tiers`` (``{high: 12,
        mid: 8}``).
    fitted : dict, optional
        The edges of an earlier fit (``{"r": [...], "f": [...], "m": [...]}``); default:
        learn them from these customers.

    Returns
    -------
    frame : pandas.DataFrame
        ``customer_id``, ``rfm_r``, ``rfm_f``, ``rfm_m`` and ``value_tier``.
    features : list of Feature
        Their metadata (lens ``value``, family ``rfm``).
    fitted : dict
        The quintile edges.

    Raises
    ------
    ValueError
        When ``value_tiers`` is not two totals with ``3 <= mid <= high <= 15``.
    """
    high, mid = _check_tiers(params.get("value_tiers", VALUE_TIERS))
    customers = _purchases(engine, as_of)  # every customer; NULL for those who never bought
    bought = customers["frequency"].notna().to_numpy()
    values = {
        "r": -customers["days_since"].to_numpy(float)[bought],
        "f": customers["frequency"].to_numpy(float)[bought],
        "m": customers["day_spend"].to_numpy(float)[bought],
    }
    if fitted is None:
        fitted = {c: _edges(v) for c, v in values.items()}
    frame = pd.DataFrame({"customer_id": customers["customer_id"]})
    for c, v in values.items():
        score = np.zeros(len(customers))
        score[bought] = 1.0 + (v[:, None] >= np.asarray(fitted[c])[None, :]).sum(axis=1)
        frame[f"rfm_{c}"] = score
    total = frame["rfm_r"] + frame["rfm_f"] + frame["rfm_m"]
    tier = np.select([total == 0, total >= high, total >= mid], [0, 1, 2], 3)  # _TIERS
    frame["value_tier"] = pd.Series(
        pd.array(_TIERS.take(pa.array(tier)), dtype="string"), index=frame.index
    )  # the four names taken by Arrow: no Python string per customer
    tiers = f"high: total >= {high}, mid: >= {mid}, else low; none: never bought"
    return (
        frame,
        [
            Feature(
                "rfm_r",
                "rfm",
                "value",
                "recency score: quintile of days since the last purchase (5 = most recent, "
                "0 = never bought)",
                "score",
                "none",
                "recency score",
            ),
            Feature(
                "rfm_f",
                "rfm",
                "value",
                "frequency score: quintile of purchase days (5 = most frequent, 0 = never bought)",
                "score",
                "none",
                "frequency score",
            ),
            Feature(
                "rfm_m",
                "rfm",
                "value",
                "monetary score: quintile of the mean spend per purchase day (5 = highest, "
                "0 = never bought)",
                "score",
                "none",
                "monetary score",
            ),
            Feature(
                "value_tier",
                "rfm",
                "value",
                f"value tier from the RFM total score ({tiers})",
                "category",
                "category",
                "value tier",
                fill="nan",
            ),
        ],
        fitted,
    )
