"""Per-customer features: run every feature family whose table is present.

Each family is a builder ``(engine, as_of, params) -> (frame, features)`` (see
`features.families`): it describes its aggregation in SQL, the engine runs it where the
data lives (DuckDB here, Spark at scale), and only the per-customer result comes back. We
chose plain SQL over an expression layer such as Ibis: the queries read like what a data
scientist would write, the engines differ in a handful of date functions (the `Dialect`),
and the project does not take on another fast-moving dependency. Every feature carries its
description, unit, lens (value or needs) and transform, so the profiler knows what it is
describing.
"""

from __future__ import annotations

import logging

import pandas as pd

from features.engine import Dialect, Engine
from features.families import FAMILIES
from features.loading import LoadedData
from features.table import Feature, FeatureTable

__all__ = ["FAMILIES", "Dialect", "Engine", "build_features"]

logger = logging.getLogger(__name__)


def _fill(frame: pd.DataFrame, feats: list[Feature], span_days: float) -> pd.DataFrame:
    """Give customers without events their true value (see `Feature.fill`)."""
    for f in feats:
        if f.fill == "zero":
            frame[f.name] = frame[f.name].fillna(0.0)
        elif f.fill == "span":
            frame[f.name] = frame[f.name].fillna(span_days)
    return frame


def build_features(data: LoadedData, params: dict, *, engine: Engine | None = None) -> FeatureTable:
    """Build every feature family whose table is present.

    Parameters
    ----------
    data : LoadedData
        The checked tables (see `features.load_data`).
    params : dict
        The ``features`` section of the config, plus ``seed``.
    engine : Engine, optional
        Where the SQL runs; default DuckDB on ``data``.

    Returns
    -------
    FeatureTable
        One row per customer, sorted by customer_id (so runs are reproducible whatever
        order the engine reads rows in); customers without events get zero counts, a
        recency equal to the data's span (from the first valid row of a known customer to
        ``as_of``), and NaN where a value is undefined (no purchase, so no average order).
    """
    engine = engine or Engine(data)
    as_of = data.as_of
    ids = engine.query("SELECT customer_id FROM customers ORDER BY customer_id")["customer_id"]
    frame = pd.DataFrame(index=pd.Index(ids.astype("string"), name="customer_id"))
    first = min(
        (pd.Timestamp(t["first"]) for t in data.quality["tables"].values() if t.get("first")),
        default=as_of,
    )
    span_days = max((as_of - first).total_seconds() / 86400.0, 1.0)
    features: list[Feature] = []
    for family, (table, builder) in FAMILIES.items():
        if not engine.has(table):
            logger.info("Feature family %s is off: no %s table.", family, table)
            continue
        part, feats = builder(engine, as_of, params)
        if not feats:
            continue
        part = part.assign(customer_id=part["customer_id"].astype("string")).set_index(
            "customer_id"
        )
        frame = frame.join(part, how="left")
        features += feats
        logger.info("Features: %s (%d columns)", family, len(feats))
    names = pd.Index([f.name for f in features])
    if names.has_duplicates:  # a builder bug, never the user's data
        raise RuntimeError(f"Feature names built twice: {sorted(set(names[names.duplicated()]))}")
    frame = _fill(frame, features, span_days)
    frame = frame[[f.name for f in features]]
    return FeatureTable(frame=frame, features=features, as_of=as_of)
