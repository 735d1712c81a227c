"""The usage families: how much customers use the product, and on what.

`usage` (intensity, active days, breadth, recency, trend) and `usage_mix` (each
customer's share of usage per product feature, or per usage theme beyond
``mix_max_features``) share one scan of ``usage_events`` (`_usage_scan`). Fitted by the
mix: the product features, their labels and the themes' NMF basis (`theme_weights`
applies it row by row, so a customer's weights never depend on the batch).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features.engine import Engine, slug, sql_time, window_start
from features.table import Feature

__all__ = ["spellings", "theme_weights", "usage", "usage_mix"]

logger = logging.getLogger(__name__)

Built = tuple[pd.DataFrame, list[Feature], dict]


def _usage_scan(engine: Engine, as_of: pd.Timestamp, params: dict) -> dict:
    """Scan usage_events once for the usage and usage mix families (shared on the engine).

    The scan aggregates every customer's usage: the usage family's counts and, pivoted in
    SQL (one conditional sum per product feature), their usage of each product feature
    in the window. The product features are the spellings the batch holds (`Engine.values`,
    read from the column's distinct values rather than its rows); those with no usage in
    the window are dropped afterwards, asking the rows only when the list may hold
    spellings used nowhere in the window (`_used_in_window`). Returns ``totals`` (spelling
    -> usage in the window, sorted by spelling) and ``frame`` (one row per customer with
    usage; ``_q<i>`` is the usage of the i-th spelling of ``totals``).
    """
    w, t = params["window_days"], params["trend_days"]

    def scan() -> dict:
        qty = "COALESCE(quantity, 1)" if engine.has("usage_events", "quantity") else "1"
        start, recent, before = (
            window_start(as_of, w),
            window_start(as_of, t),
            window_start(as_of, 2 * t),
        )
        in_window = f"timestamp > {start}"
        spellings, exact = engine.values("usage_events", "feature", in_window)
        dialect = engine.dialect
        days = dialect.days("max(timestamp)", sql_time(as_of))
        # each row's window flags, once: the aggregates then add up plain columns
        distinct_days = dialect.distinct_days("_seen", as_of - pd.Timedelta(days=w), w)
        window_feature = f"CASE WHEN {in_window} THEN feature END"
        # the position of the column itself, then the window: DuckDB looks up a Parquet
        # column's dictionary of spellings, but each event of a CASE's result (over 81M
        # events, 0.6 against 1.0 s)
        position = (
            f"CASE WHEN {in_window} THEN {dialect.position(spellings, 'feature')} END"
            if spellings
            else "NULL"
        )
        per = "".join(
            f",\n {_total(f'CASE WHEN _i = {i + 1} THEN _used ELSE 0 END')} AS _q{i}"
            for i in range(len(spellings))
        )
        prev = f"CASE WHEN timestamp > {before} AND timestamp <= {recent} THEN _q ELSE 0 END"
        frame = engine.query(f"""
            SELECT customer_id,
              {_total("_used")} AS usage_events,
              {distinct_days} AS usage_active_days,
              {dialect.distinct_positions("_i", "_feature", len(spellings))} AS usage_breadth,
              {days} AS usage_recency_days,
              {_total(f"CASE WHEN timestamp > {recent} THEN _q ELSE 0 END")} AS _last,
              {_total(prev)} AS _prev{per}
            FROM (
              SELECT customer_id, timestamp, {qty} AS _q,
                CASE WHEN {in_window} THEN {qty} ELSE 0 END AS _used,
                CASE WHEN {in_window} THEN timestamp END AS _seen,
                {window_feature} AS _feature,
                {position} AS _i
              FROM usage_events)
            GROUP BY customer_id""")
        sums = [frame[f"_q{i}"].sum() for i in range(len(spellings))]
        used = [exact or s > 0 for s in sums]
        if not all(used):  # used with quantity 0 only, or outside the window only?
            used = _used_in_window(engine, spellings, in_window)
        kept = [i for i in range(len(spellings)) if used[i]]
        if len(kept) < len(spellings):  # renumber the kept spellings' columns
            frame = frame.drop(columns=[f"_q{i}" for i in range(len(spellings)) if not used[i]])
            frame = frame.rename(columns={f"_q{i}": f"_q{j}" for j, i in enumerate(kept)})
        return {"totals": {spellings[i]: sums[i] for i in kept}, "frame": frame}

    return engine.shared(("usage_events", as_of, w, t), scan)


def _total(quantity: str) -> str:
    """Aggregate: the sum of a quantity, rounded to 6 places.

    A customer's rows split between DuckDB's threads add up in either order: quantities
    with decimals would move the last bit from run to run (whole ones sum exactly).
    """
    return f"ROUND(SUM({quantity}), 6)"


def _used_in_window(engine: Engine, spellings: list[str], in_window: str) -> list[bool]:
    """Return whether each spelling has rows in the window (used, if only with quantity 0)."""
    found = engine.query(
        f"SELECT DISTINCT feature FROM usage_events WHERE {in_window} AND feature IS NOT NULL"
    )["feature"]
    present = {str(f) for f in found}
    return [s in present for s in spellings]


def usage(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
    """Intensity, activity, breadth, recency and trend of product usage (nothing fitted)."""
    w, t = params["window_days"], params["trend_days"]
    scanned = _usage_scan(engine, as_of, params)["frame"]
    columns = ["usage_events", "usage_active_days", "usage_breadth", "usage_recency_days"]
    frame = scanned[["customer_id", *columns]].copy()
    total = scanned["_last"] + scanned["_prev"]
    frame["usage_trend"] = np.where(total > 0, (scanned["_last"] - scanned["_prev"]) / total, 0.0)
    return (
        frame,
        [
            Feature(
                "usage_events",
                "usage",
                "needs",
                f"product usage in the last {w} days",
                "events",
                "log",
                "usage",
            ),
            Feature(
                "usage_active_days",
                "usage",
                "needs",
                f"days with any usage in the last {w}",
                "days",
                "none",
                "active days",
            ),
            Feature(
                "usage_breadth",
                "usage",
                "needs",
                f"distinct product features used in {w} days",
                "features",
                "none",
                "breadth",
            ),
            Feature(
                "usage_recency_days",
                "usage",
                "needs",
                "days since the last product use",
                "days",
                "log",
                "usage recency",
                fill="span",
            ),
            Feature(
                "usage_trend",
                "usage",
                "needs",
                f"usage in the last {t} days vs the {t} before (-1 fading, +1 growing)",
                "ratio",
                "none",
                "usage trend",
            ),
        ],
        {},
    )


def spellings(frame: pd.DataFrame, value: str, weight: str) -> dict[str, str]:
    """Return the most used spelling of each slug of ``frame[value]`` (ties: first sorted)."""
    totals = frame.groupby(value, as_index=False)[weight].sum()  # one row per spelling
    totals = totals.assign(_slug=totals[value].map(slug)).sort_values(
        ["_slug", weight, value], ascending=[True, False, True]
    )
    return totals.drop_duplicates("_slug").set_index("_slug")[value].astype(str).to_dict()


def usage_mix(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
    """Share of each customer's usage that goes to each product feature (or usage theme).

    Product features whose names slug alike (``Reports``, ``reports``) are one feature,
    ``mix_reports``, labelled with the spelling that has the most usage. Fitted: the
    product features (and, beyond ``mix_max_features`` of them, the NMF basis of the usage
    themes). A product feature the fit never saw still counts in a customer's total usage.
    The usage per product feature comes pivoted from the usage scan (`_usage_scan`).
    """
    scanned = _usage_scan(engine, as_of, params)
    totals, frame = scanned["totals"], scanned["frame"]
    if fitted is None:
        if not totals:
            return pd.DataFrame({"customer_id": []}), [], {}
        labels = spellings(pd.DataFrame({"feature": list(totals), "q": list(totals.values())}),
                            "feature", "q")  # fmt: skip
        fitted = {"slugs": sorted(labels), "labels": labels}
    if not totals:  # nobody used the product in the window: every share is 0
        return pd.DataFrame({"customer_id": []}), _mix_features(fitted), fitted
    # each product feature's usage: the sum of its spellings' columns, in the batch's order
    spelled = [slug(f) for f in totals]
    # column by column, in place: a million customers' shares are never copied (the frame
    # takes the column-major array as its block)
    shares = np.zeros((len(frame), len(fitted["slugs"])), order="F")
    for j, s in enumerate(fitted["slugs"]):
        for i, spelled_as in enumerate(spelled):
            if spelled_as == s:
                shares[:, j] += frame[f"_q{i}"].to_numpy(dtype=float)
    total = frame[[f"_q{i}" for i in range(len(spelled))]].to_numpy(dtype=float).sum(axis=1)
    used = total > 0
    np.divide(shares, total[:, None], out=shares, where=used[:, None])
    shares[~used] = 0.0
    if "themes" not in fitted and len(fitted["slugs"]) > params["mix_max_features"]:
        shares = np.ascontiguousarray(shares)  # the themes' NMF as it was always fitted
        fitted = _fit_themes(frame, shares, fitted, params)
    if "themes" in fitted:
        values = theme_weights(np.ascontiguousarray(shares), fitted["basis"])
    else:
        values = shares
    out = pd.DataFrame(values, columns=[f.name for f in _mix_features(fitted)], copy=False)
    out.insert(0, "customer_id", frame["customer_id"].to_numpy())
    return out, _mix_features(fitted), fitted


def _mix_features(fitted: dict) -> list[Feature]:
    """Return the columns of the usage mix: one per product feature, or per usage theme."""
    labels = fitted["labels"]
    if "themes" in fitted:
        return [
            Feature(column, "usage_mix", "needs", f"weight of the usage theme led by {label}",
                    "share", "none", label)
            for column, label in fitted["themes"]
        ]  # fmt: skip
    return [
        Feature(f"mix_{s}", "usage_mix", "needs", f"share of usage that goes to {labels[s]}",
                "share", "none", labels[s].replace("_", " "))
        for s in fitted["slugs"]
    ]  # fmt: skip


def _fit_themes(frame: pd.DataFrame, shares: np.ndarray, fitted: dict, params: dict) -> dict:
    """Learn the usage themes (NMF) from the customers with usage in the window.

    The rows are those customers' shares, sorted by customer id, as the fit always saw them.
    """
    from sklearn.decomposition import NMF  # here: importing sklearn costs a second per process

    active = frame["usage_breadth"].to_numpy() > 0
    ids = frame["customer_id"].astype(str).to_numpy()[active]
    rows = shares[active][np.argsort(ids, kind="stable")]
    labels = fitted["labels"]
    k = min(params["mix_themes"], rows.shape[1])
    nmf = NMF(n_components=k, init="nndsvda", random_state=params["seed"], max_iter=400)
    nmf.fit(rows)
    themes = []
    for i, comp in enumerate(nmf.components_):
        top = [fitted["slugs"][j] for j in np.argsort(comp)[::-1][:2]]
        label = " & ".join(labels[t].replace("_", " ") for t in top)
        themes.append((f"theme_{i + 1}_{top[0]}", label))
    return {**fitted, "basis": nmf.components_.copy(), "themes": themes}


def theme_weights(shares: np.ndarray, basis: np.ndarray, sweeps: int = 100) -> np.ndarray:
    """Return each customer's usage-theme weights (rows summing to 1) for a fitted basis.

    The non-negative least squares fit of ``shares ~ weights @ basis``, row by row, by a
    fixed number of coordinate sweeps (hierarchical ALS) from zero: each customer's weights
    depend on their own shares only, never on the batch (scikit-learn's ``NMF.transform``
    stops on a tolerance summed over the whole batch).
    """
    gram, target = basis @ basis.T, shares @ basis.T
    weights = np.zeros_like(target)
    for _ in range(sweeps):
        for j in range(len(basis)):
            step = (target[:, j] - (weights * gram[j]).sum(axis=1)) / max(gram[j, j], 1e-12)
            weights[:, j] = np.maximum(weights[:, j] + step, 0.0)
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
