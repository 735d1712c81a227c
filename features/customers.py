"""The customers' own attributes, and their tenure.

`attributes` turns each attribute column of ``customers`` into a feature: numeric as it
is (log-transformed when heavy-tailed) or categorical with the most frequent levels
kept (fitted once: the columns, transforms and levels). `tenure` counts the days since
signup, else since the first transaction.
"""

from __future__ import annotations

import logging

import pandas as pd

from features.engine import Engine, slug, sql_time
from features.table import Feature

__all__ = ["attributes", "tenure", "tenure_days"]

logger = logging.getLogger(__name__)

Built = tuple[pd.DataFrame, list[Feature], dict]


def tenure_days(
    engine: Engine, as_of: pd.Timestamp, family: str, first_transaction: bool
) -> tuple[str, Feature] | None:
    """Return SQL of the tenure in days (reading ``signup_date`` and ``first_transaction``).

    None without either source; see `tenure`.
    """
    starts, words = [], []
    if engine.has("customers", "signup_date"):
        starts.append("signup_date")
        words.append("signup")
    if first_transaction:
        starts.append("first_transaction")
        words.append("the first transaction")
    if not starts:
        return None
    days = engine.dialect.days(f"COALESCE({', '.join(starts)})", sql_time(as_of))
    return days, Feature(
        "tenure_days",
        family,
        "value",
        f"days since {', else '.join(words)}",
        "days",
        "log",
        "tenure",
        fill="nan",
    )


def tenure(engine: Engine, as_of: pd.Timestamp, family: str) -> tuple[pd.DataFrame, list[Feature]]:
    """Days each customer has been with us at ``as_of``: ``tenure_days``.

    Counted from ``customers.signup_date`` where the customer has one, else from their
    first transaction (when there is a transactions table). A signup after ``as_of`` gives
    0; a customer with neither gets NaN. Without either source there is no feature.
    """
    found = tenure_days(engine, as_of, family, engine.has("transactions"))
    if found is None:
        return pd.DataFrame({"customer_id": []}), []
    days, feature = found
    joined = (
        " LEFT JOIN (SELECT customer_id, min(timestamp) AS first_transaction"
        " FROM transactions GROUP BY customer_id) USING (customer_id)"
        if engine.has("transactions")
        else ""
    )
    frame = engine.query(f"SELECT customer_id, {days} AS tenure_days FROM customers{joined}")
    frame["tenure_days"] = frame["tenure_days"].clip(lower=0.0)
    return frame, [feature]


def attributes(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
    """Use the customers' own attribute columns: numeric as they are, categorical by level.

    A column that is the same for every customer (or empty for all) tells the personas
    apart in nothing and is left out, as is one that looks like an identifier or free
    text. Without a transactions table (so no revenue family), tenure from
    ``customers.signup_date`` is an attribute too. Fitted: which columns, numeric (with
    a log transform when heavy-tailed) or categorical (with the levels kept; others are
    ``other``). A fitted column missing from the data is empty (imputed by the model).
    """
    names = engine.data.attributes
    quoted = "".join(", " + engine.dialect.quote(n) for n in names)
    raw = engine.query(f"SELECT customer_id{quoted} FROM customers")
    if fitted is None:
        fitted = {"columns": _fit_attributes(raw, names, params), "tenure": None}
        if not engine.has("transactions"):  # tenure from signup_date joins the attributes
            fitted["tenure"] = engine.has("customers", "signup_date")
    frame, feats = raw[["customer_id"]].copy(), []
    for a in fitted["columns"]:
        col = raw[a["name"]] if a["name"] in raw else pd.Series(pd.NA, index=raw.index)
        if a["levels"] is None:
            frame[a["column"]] = pd.to_numeric(col, errors="coerce")
        else:
            kept = col.isin(a["levels"]) | col.isna()
            frame[a["column"]] = col.where(kept, "other").astype("string")
        unit, transform = (a["name"], a["transform"]) if a["levels"] is None else ("category",) * 2
        feats.append(
            Feature(a["column"], "attributes", "needs", f"{a['name']} (customer attribute)",
                    unit, transform, a["name"].replace("_", " "), fill="nan")
        )  # fmt: skip
    if fitted["tenure"]:
        since, extra = tenure(engine, as_of, "attributes")
        frame, feats = frame.merge(since, on="customer_id", how="left"), feats + extra
    return frame, feats, fitted


def _fit_attributes(raw: pd.DataFrame, names: list[str], params: dict) -> list[dict]:
    """Decide how each attribute column becomes a feature (see `attributes`)."""
    fitted: list[dict] = []
    for name in names:
        col = raw[name]
        counts = col.value_counts()  # each value once: parsing a million strings is slow
        numbers = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce")
        present, numeric = counts.sum(), counts[numbers.notna().to_numpy()].sum()
        column = f"attr_{slug(name)}"
        if any(a["column"] == column for a in fitted):
            logger.warning("Attribute %r is named like another one (%s); not used.", name, column)
        elif len(counts) + bool(col.isna().any()) <= 1:
            logger.info("Attribute %r is the same for every customer (or empty); not used.", name)
        elif present and numeric >= 0.95 * present:
            values = pd.to_numeric(col, errors="coerce")
            heavy = values.min() >= 0 and values.quantile(0.99) > 20 * max(values.median(), 1)
            transform = "log" if heavy else "none"
            fitted.append({"name": name, "column": column, "transform": transform, "levels": None})
        elif present and len(counts) <= max(0.5 * present, params["max_categories"]):
            levels = list(counts.index[: params["max_categories"]])
            fitted.append({"name": name, "column": column, "transform": "category",
                           "levels": levels})  # fmt: skip
        else:
            logger.info("Attribute %r looks like an identifier or free text; not used.", name)
    return fitted
