"""Per-customer features: run every feature family whose table is present.

Each family is a builder ``(engine, as_of, params, fitted) -> (frame, features, fitted)``
(see `features.families`): it describes its aggregation in SQL, the engine runs it where the
data lives (DuckDB here, Spark at scale), and only the per-customer result comes back. We
chose plain SQL over an expression layer such as Ibis: the queries read like what a data
scientist would write, the engines differ in a handful of date functions (the `Dialect`),
and the project does not take on another fast-moving dependency. Every feature carries its
description, unit, lens (value or needs) and transform, so the profiler knows what it is
describing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import DataError
from features.engine import Dialect, Engine
from features.families import FAMILIES
from features.loading import LoadedData
from features.table import Feature, FeatureTable

__all__ = ["FAMILIES", "Dialect", "Engine", "FeatureSpec", "build_features"]

logger = logging.getLogger(__name__)
_progress = logging.getLogger("personas.progress")  # shown by pipelines.run.stage


def _filled(column, feature: Feature, span_days: float, n: int):
    """Return a column with customers without events given their true value (`Feature.fill`).

    ``column`` is None when the batch cannot make the feature (an absent optional column):
    it is empty (NaN), then filled as any other.
    """
    values = pd.Series(np.full(n, np.nan) if column is None else column, copy=False)
    if feature.fill == "zero":
        values = values.fillna(0.0)
    elif feature.fill == "span":
        values = values.fillna(span_days)
    # a NumPy column as a NumPy array: `_assemble` writes floats into the table's block
    return values.to_numpy() if isinstance(values.dtype, np.dtype) else values.array


def _assemble(
    columns: dict, features: list[Feature], span_days: float, index: pd.Index
) -> pd.DataFrame:
    """Return the feature table, built once in its final order.

    The float columns (most of the table) are filled one at a time into one column-major
    array that the frame takes as its block: no column is held twice and no wide frame is
    copied. The other columns (text attributes, the value tier) are inserted in their
    places. The frame equals pandas' own assembly from a dict of the columns. ``columns``
    is emptied on the way: each family's column is let go once it is in place.
    """
    n = len(index)
    if not features:
        return pd.DataFrame({}, index=index)
    block = np.empty((n, len(features)), order="F")
    floats: list[str] = []
    others: list[tuple[int, str, object]] = []
    for position, f in enumerate(features):
        values = _filled(columns.pop(f.name, None), f, span_days, n)
        if getattr(values, "dtype", None) == np.float64:
            block[:, len(floats)] = values
            floats.append(f.name)
        else:
            others.append((position, f.name, values))
    frame = pd.DataFrame(block[:, : len(floats)], index=index, columns=floats, copy=False)
    for position, name, values in others:  # in order: every earlier place is filled
        frame.insert(position, name, values)
    return frame


@dataclass
class FeatureSpec:
    """What the feature table learnt from the training data, to apply to any later batch.

    Attributes
    ----------
    params : dict
        The ``features`` settings (window, trend, limits) plus ``seed``.
    first : pandas.Timestamp
        The first timestamp of the training data: a customer without events gets a
        recency of ``as_of - first`` ("longer ago than we can see").
    families : dict of str to dict
        Each built family's fitted state (see `features.families`).
    features : list of Feature
        The table's columns, in order.
    """

    params: dict
    first: pd.Timestamp
    families: dict[str, dict]
    features: list[Feature]


def build_features(
    data: LoadedData,
    params: dict,
    *,
    engine: Engine | None = None,
    spec: FeatureSpec | None = None,
) -> FeatureTable:
    """Build every feature family whose table is present (or that ``spec`` was fitted with).

    Parameters
    ----------
    data : LoadedData
        The checked tables (see `features.load_data`).
    params : dict
        The ``features`` section of the config, plus ``seed`` (unused with ``spec``,
        which carries its own).
    engine : Engine, optional
        Where the SQL runs; default DuckDB on ``data``.
    spec : FeatureSpec, optional
        A fitted definition to apply unchanged (scoring); default: fit one on ``data``.

    Returns
    -------
    FeatureTable
        One row per customer, sorted by customer_id (so runs are reproducible whatever
        order the engine reads rows in); customers without events get zero counts, a
        recency equal to the data's span (from the first valid row of a known customer to
        ``as_of``), and NaN where a value is undefined (no purchase, so no average order).
        Its ``spec`` is the fitted definition (``spec`` itself when one was given).

    Raises
    ------
    DataError
        With ``spec``, when a table the definition was fitted with is missing.
    """
    engine = engine or Engine(data)
    as_of = data.as_of
    ids = engine.query("SELECT customer_id FROM customers ORDER BY customer_id")["customer_id"]
    index = pd.Index(ids.astype("string"), name="customer_id")
    if spec is None:
        first = min(
            (pd.Timestamp(t["first"]) for t in data.quality["tables"].values() if t.get("first")),
            default=as_of,
        )
        params, families = {**params}, None
    else:
        first, params, families = spec.first, spec.params, spec.families
        _require_tables(engine, spec)
    span_days = max((as_of - first).total_seconds() / 86400.0, 1.0)
    features: list[Feature] = []
    fitted: dict[str, dict] = {}
    columns: dict[str, object] = {}
    with _Aligner(data.con, ids) as align:
        for i, (family, (table, builder)) in enumerate(FAMILIES.items()):
            _progress.info("", extra={"progress": (i + 1, len(FAMILIES), "feature families")})
            if families is not None and family not in families:
                continue
            if not engine.has(table):
                logger.info("Feature family %s is off: no %s table.", family, table)
                continue
            part, feats, state = builder(
                engine, as_of, params, None if families is None else families[family]
            )
            if not feats:
                continue
            columns.update(align(part))
            features += feats
            fitted[family] = state
            logger.info("Features: %s (%d columns)", family, len(feats))
    engine.release("usage_events", "engagement_events")  # what only the families read
    names = pd.Index([f.name for f in features])
    if names.has_duplicates:  # a builder bug, never the user's data
        raise RuntimeError(f"Feature names built twice: {sorted(set(names[names.duplicated()]))}")
    if spec is not None:  # a column the batch cannot make (an absent optional column) is empty
        features = spec.features
    frame = _assemble(columns, features, span_days, index)
    spec = spec or FeatureSpec(params=params, first=first, families=fitted, features=features)
    return FeatureTable(frame=frame, features=features, as_of=as_of, spec=spec)


class _Aligner:
    """Place each family's rows in the order of the customer ids (a left join of each).

    A family's frame comes back from the engine in any order, holding the customers it
    has rows for. Joining a million string ids in pandas costs most of a second per
    family; DuckDB finds each row's customer in a hash join instead, and pandas only
    takes the rows into place. Customers without a row get the missing value of the
    column's type (NaN, with integer columns becoming floats), as a left join gives.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A DuckDB connection (the loaded data's; the frames are registered on it).
    ids : pandas.Series
        The customer ids, in the order of the table.
    """

    def __init__(self, con, ids: pd.Series):
        self.con, self.n = con, len(ids)
        self.name = f"__ids_{uuid.uuid4().hex[:8]}"
        self.con.register(
            self.name,
            pa.table({"customer_id": pa.array(ids.astype(str), type=pa.string()),
                      "pos": pa.array(np.arange(self.n, dtype=np.int64))}),
        )  # fmt: skip

    def __call__(self, part: pd.DataFrame) -> dict[str, object]:
        """Return ``part``'s columns (but ``customer_id``) in the order of the ids."""
        rows = f"{self.name}_rows"
        self.con.register(
            rows,
            pa.table({"customer_id": pa.array(part["customer_id"].astype(str), type=pa.string()),
                      "row": pa.array(np.arange(len(part), dtype=np.int64))}),
        )  # fmt: skip
        try:
            found = self.con.execute(
                f"SELECT r.row, i.pos FROM {rows} r JOIN {self.name} i USING (customer_id)"
            ).fetchnumpy()
        finally:
            self.con.unregister(rows)
        take = np.full(self.n, -1, dtype=np.int64)
        take[np.asarray(found["pos"], dtype=np.int64)] = np.asarray(found["row"], dtype=np.int64)
        fill = bool((take < 0).any())
        return {
            c: part[c].array.take(take, allow_fill=fill) for c in part.columns if c != "customer_id"
        }

    def __enter__(self) -> _Aligner:
        return self

    def __exit__(self, *exc) -> None:
        self.con.unregister(self.name)


def _require_tables(engine: Engine, spec: FeatureSpec) -> None:
    """Stop when the data lacks a table the definition was fitted with."""
    missing = {}
    for family in spec.families:
        table = FAMILIES[family][0]
        if not engine.has(table):
            missing.setdefault(table, []).append(family)
    if missing:
        found = ", ".join(engine.data.tables)
        lacking = "; ".join(f"{t} (feature families {', '.join(f)})" for t, f in missing.items())
        raise DataError(
            f"The model was trained with tables this data lacks: {lacking}. The data has "
            f"{found}; score data with the same tables as training."
        )
