"""Per-customer features, one builder per feature family.

Each builder is a pure function ``(engine, as_of, params) -> (frame, features)``: it
describes its aggregation in SQL, the engine runs it where the data lives (DuckDB here,
Spark at scale), and only the per-customer result comes back. We chose plain SQL over an
expression layer such as Ibis: the queries read like what a data scientist would write,
the engines differ in a handful of date functions (the `Dialect`), and the project does
not take on another fast-moving dependency. Every feature carries its description, unit,
lens (value or needs) and transform, so the profiler knows what it is describing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.decomposition import NMF

from features.loading import LoadedData
from features.table import Feature, FeatureTable

__all__ = ["FAMILIES", "Dialect", "Engine", "build_features"]

logger = logging.getLogger(__name__)


class Dialect:
    """The few SQL expressions that differ between engines (DuckDB by default)."""

    def days(self, start: str, end: str) -> str:
        """Fractional days from ``start`` to ``end`` (two timestamp expressions)."""
        return f"((epoch({end}) - epoch({start})) / 86400.0)"


class Engine:
    """Runs builder SQL on the loaded DuckDB tables and hands back pandas frames."""

    dialect = Dialect()

    def __init__(self, data: LoadedData):
        self.data = data

    def has(self, table: str, column: str | None = None) -> bool:
        """Whether a table (and optionally one of its columns) is present."""
        if table not in self.data.columns:
            return False
        return column is None or column in self.data.columns[table]

    def query(self, sql: str) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame."""
        return self.data.con.execute(sql).df()


def _ts(value: pd.Timestamp) -> str:
    return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S}'"


def _literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _slug(text: str) -> str:
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", str(text).strip().lower()).strip("_")
    return slug or "blank"


def _window(as_of: pd.Timestamp, days: int) -> str:
    return _ts(as_of - pd.Timedelta(days=days))


def usage(engine: Engine, as_of: pd.Timestamp, params: dict) -> tuple[pd.DataFrame, list[Feature]]:
    """Intensity, activity, breadth, recency and trend of product usage."""
    w, t = params["window_days"], params["trend_days"]
    qty = "COALESCE(quantity, 1)" if engine.has("usage_events", "quantity") else "1"
    start, recent, before = _window(as_of, w), _window(as_of, t), _window(as_of, 2 * t)
    days = engine.dialect.days("max(timestamp)", _ts(as_of))
    frame = engine.query(f"""
        SELECT customer_id,
          SUM(CASE WHEN timestamp > {start} THEN {qty} ELSE 0 END) AS usage_events,
          COUNT(DISTINCT CASE WHEN timestamp > {start} THEN CAST(timestamp AS DATE) END)
            AS usage_active_days,
          COUNT(DISTINCT CASE WHEN timestamp > {start} THEN feature END) AS usage_breadth,
          {days} AS usage_recency_days,
          SUM(CASE WHEN timestamp > {recent} THEN {qty} ELSE 0 END) AS _last,
          SUM(CASE WHEN timestamp > {before} AND timestamp <= {recent} THEN {qty} ELSE 0 END)
            AS _prev
        FROM usage_events GROUP BY customer_id""")
    total = frame["_last"] + frame["_prev"]
    frame["usage_trend"] = np.where(total > 0, (frame["_last"] - frame["_prev"]) / total, 0.0)
    frame = frame.drop(columns=["_last", "_prev"])
    return frame, [
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
    ]


def usage_mix(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Share of each customer's usage that goes to each product feature (or usage theme)."""
    qty = "COALESCE(quantity, 1)" if engine.has("usage_events", "quantity") else "1"
    long = engine.query(f"""
        SELECT customer_id, feature, SUM({qty}) AS q FROM usage_events
        WHERE timestamp > {_window(as_of, params["window_days"])} AND feature IS NOT NULL
        GROUP BY customer_id, feature""")
    if long.empty:
        return pd.DataFrame({"customer_id": []}), []
    wide = long.pivot_table(index="customer_id", columns="feature", values="q", fill_value=0.0)
    wide = wide.reindex(sorted(wide.columns, key=str), axis=1)
    shares = wide.div(wide.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    if shares.shape[1] <= params["mix_max_features"]:
        names = {c: f"mix_{_slug(c)}" for c in shares.columns}
        feats = [
            Feature(
                n, "usage_mix", "needs", f"share of usage that goes to {c}", "share", "none", str(c)
            )
            for c, n in names.items()
        ]
        return shares.rename(columns=names).reset_index(), feats
    k = min(params["mix_themes"], shares.shape[1])
    nmf = NMF(n_components=k, init="nndsvda", random_state=params["seed"], max_iter=400)
    weights = nmf.fit_transform(shares.to_numpy())
    weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    feats, cols = [], []
    for i, comp in enumerate(nmf.components_):
        top = [str(shares.columns[j]) for j in np.argsort(comp)[::-1][:2]]
        label = " & ".join(top)
        cols.append(f"theme_{i + 1}_{_slug(top[0])}")
        feats.append(
            Feature(
                cols[-1],
                "usage_mix",
                "needs",
                f"weight of the usage theme led by {label}",
                "share",
                "none",
                label,
            )
        )
    frame = pd.DataFrame(weights, columns=cols, index=shares.index).reset_index()
    return frame, feats


def engagement(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Engagement per channel, recency and silence."""
    w, start = params["window_days"], _window(as_of, params["window_days"])
    channels = engine.query(f"""
        SELECT channel, COUNT(*) AS n FROM engagement_events
        WHERE channel IS NOT NULL GROUP BY channel ORDER BY n DESC, channel
        LIMIT {int(params["max_categories"])}""")["channel"].tolist()
    per = "".join(
        f",\n SUM(CASE WHEN timestamp > {start} AND channel = {_literal(c)} THEN 1 ELSE 0 END)"
        f" AS engagement_{_slug(c)}"
        for c in channels
    )
    frame = engine.query(f"""
        SELECT customer_id,
          SUM(CASE WHEN timestamp > {start} THEN 1 ELSE 0 END) AS engagement_events,
          {engine.dialect.days("max(timestamp)", _ts(as_of))} AS engagement_recency_days,
          CASE WHEN SUM(CASE WHEN timestamp > {start} THEN 1 ELSE 0 END) > 0 THEN 0.0 ELSE 1.0
            END AS engagement_silent{per}
        FROM customers LEFT JOIN engagement_events USING (customer_id) GROUP BY customer_id""")
    feats = [
        Feature(
            "engagement_events",
            "engagement",
            "needs",
            f"marketing and community touchpoints in the last {w} days",
            "events",
            "log",
            "engagement",
        ),
        Feature(
            "engagement_recency_days",
            "engagement",
            "needs",
            "days since the last touchpoint",
            "days",
            "log",
            "engagement recency",
            fill="span",
        ),
    ]
    feats += [
        Feature(
            f"engagement_{_slug(c)}",
            "engagement",
            "needs",
            f"{c} in the last {w} days",
            "events",
            "log",
            str(c).replace("_", " "),
        )
        for c in channels
    ]
    feats.append(
        Feature(
            "engagement_silent",
            "engagement",
            "needs",
            f"no touchpoint at all in the last {w} days",
            "flag",
            "none",
            "silent",
        )
    )
    return frame, feats


def revenue(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Recency, frequency, monetary value, order size, discounts, refunds and lateness."""
    year = _window(as_of, 365)
    days = engine.dialect.days("max(CASE WHEN amount > 0 THEN timestamp END)", _ts(as_of))
    extra, feats = "", []
    if engine.has("transactions", "discount"):
        extra += """,
          SUM(CASE WHEN amount > 0 THEN COALESCE(discount, 0) ELSE 0 END)
            / NULLIF(SUM(CASE WHEN amount > 0 THEN amount + COALESCE(discount, 0) ELSE 0 END), 0)
            AS revenue_discount_share"""
        feats.append(
            Feature(
                "revenue_discount_share",
                "revenue",
                "value",
                "share of list price given as discount",
                "share",
                "none",
                "discount",
                fill="nan",
            )
        )
    if engine.has("transactions", "days_late"):
        extra += ",\n AVG(days_late) AS revenue_days_late"
        feats.append(
            Feature(
                "revenue_days_late",
                "revenue",
                "value",
                "average days a payment was late",
                "days",
                "log",
                "late payment",
                fill="nan",
            )
        )
    frame = engine.query(f"""
        SELECT customer_id,
          SUM(amount) AS revenue_monetary,
          SUM(CASE WHEN timestamp > {year} THEN amount ELSE 0 END) AS revenue_12m,
          SUM(CASE WHEN amount > 0 THEN 1 ELSE 0 END) AS revenue_frequency,
          AVG(CASE WHEN amount > 0 THEN amount END) AS revenue_avg_order,
          {days} AS revenue_recency_days,
          SUM(CASE WHEN amount < 0 THEN 1 ELSE 0 END) AS revenue_refunds{extra}
        FROM transactions GROUP BY customer_id""")
    return frame, [
        Feature(
            "revenue_monetary", "revenue", "value", "net revenue to date", "money", "log", "revenue"
        ),
        Feature(
            "revenue_12m",
            "revenue",
            "value",
            "net revenue in the last 12 months",
            "money",
            "log",
            "recent revenue",
        ),
        Feature(
            "revenue_frequency",
            "revenue",
            "value",
            "purchases and invoices to date",
            "purchases",
            "log",
            "purchases",
        ),
        Feature(
            "revenue_avg_order",
            "revenue",
            "value",
            "average purchase or invoice",
            "money",
            "log",
            "order size",
            fill="nan",
        ),
        Feature(
            "revenue_recency_days",
            "revenue",
            "value",
            "days since the last purchase",
            "days",
            "log",
            "purchase recency",
            fill="span",
        ),
        Feature(
            "revenue_refunds", "revenue", "value", "refunds to date", "refunds", "log", "refunds"
        ),
        *feats,
    ]


def feedback(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Latest NPS and its category, responses, CSAT and comments."""
    cols, feats = (
        ["COUNT(*) AS feedback_responses"],
        [
            Feature(
                "feedback_responses",
                "feedback",
                "needs",
                "survey responses to date",
                "responses",
                "log",
                "responses",
            ),
        ],
    )
    latest = ""
    if engine.has("feedback", "nps"):
        latest = """LEFT JOIN (
          SELECT customer_id, nps AS nps_latest FROM (
            SELECT customer_id, nps, ROW_NUMBER() OVER (
              PARTITION BY customer_id ORDER BY timestamp DESC, nps ASC) AS rn
            FROM feedback WHERE nps IS NOT NULL) WHERE rn = 1) l USING (customer_id)"""
        cols.append("MAX(nps_latest) AS nps_latest")
        feats += [
            Feature(
                "nps_latest",
                "feedback",
                "needs",
                "latest likelihood to recommend (0-10)",
                "score",
                "none",
                "NPS",
                fill="nan",
            ),
            Feature(
                "nps_category",
                "feedback",
                "needs",
                "promoter, passive or detractor",
                "category",
                "category",
                "NPS category",
                fill="nan",
            ),
        ]
    if engine.has("feedback", "csat"):
        cols.append("AVG(csat) AS csat_mean")
        feats.append(
            Feature(
                "csat_mean",
                "feedback",
                "needs",
                "average satisfaction (1-5)",
                "score",
                "none",
                "CSAT",
                fill="nan",
            )
        )
    if engine.has("feedback", "comment"):
        cols.append("AVG(CASE WHEN comment IS NOT NULL THEN 1.0 ELSE 0.0 END) AS feedback_comments")
        feats.append(
            Feature(
                "feedback_comments",
                "feedback",
                "needs",
                "share of responses with a comment",
                "share",
                "none",
                "comments",
                fill="nan",
            )
        )
    frame = engine.query(
        f"SELECT customer_id, {', '.join(cols)} FROM feedback {latest} GROUP BY customer_id"
    )
    if "nps_latest" in frame:
        frame["nps_category"] = pd.cut(
            frame["nps_latest"], [-1, 6, 8, 10], labels=["detractor", "passive", "promoter"]
        ).astype("string")
    return frame, feats


def support(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Ticket load, time to close, open tickets and the share of urgent tickets."""
    w, start, stamp = params["window_days"], _window(as_of, params["window_days"]), _ts(as_of)
    cols = [f"SUM(CASE WHEN opened_at > {start} THEN 1 ELSE 0 END) AS support_tickets"]
    feats = [
        Feature(
            "support_tickets",
            "support",
            "needs",
            f"tickets opened in the last {w} days",
            "tickets",
            "log",
            "tickets",
        )
    ]
    if engine.has("support_tickets", "closed_at"):
        closed = f"closed_at IS NOT NULL AND closed_at <= {stamp}"
        cols += [
            f"AVG(CASE WHEN {closed} THEN {engine.dialect.days('opened_at', 'closed_at')} END)"
            " AS support_close_days",
            f"SUM(CASE WHEN {closed} THEN 0 ELSE 1 END) AS support_open",
        ]
        feats += [
            Feature(
                "support_close_days",
                "support",
                "needs",
                "average days to close a ticket",
                "days",
                "log",
                "slow tickets",
                fill="nan",
            ),
            Feature(
                "support_open",
                "support",
                "needs",
                "tickets still open",
                "tickets",
                "log",
                "open tickets",
            ),
        ]
    if engine.has("support_tickets", "priority"):
        levels = ", ".join(f"'{p.lower()}'" for p in params["high_priority"])
        cols.append(
            f"AVG(CASE WHEN opened_at > {start} THEN CASE WHEN lower(priority) IN ({levels}) "
            "THEN 1.0 ELSE 0.0 END END) AS support_high_priority_share"
        )
        feats.append(
            Feature(
                "support_high_priority_share",
                "support",
                "needs",
                f"share of tickets in the last {w} days that were "
                f"{' or '.join(params['high_priority'])}",
                "share",
                "none",
                "urgent tickets",
                fill="nan",
            )
        )
    frame = engine.query(
        f"SELECT customer_id, {', '.join(cols)} FROM support_tickets GROUP BY customer_id"
    )
    return frame, feats


def attributes(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Use the customers' own attribute columns: numeric as they are, categorical by level."""
    names = engine.data.attributes
    if not names:
        return pd.DataFrame({"customer_id": []}), []
    quoted = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
    raw = engine.query(f"SELECT customer_id, {quoted} FROM customers")
    frame, feats = raw[["customer_id"]].copy(), []
    for name in names:
        col = raw[name]
        values = pd.to_numeric(col, errors="coerce")
        present = col.notna().sum()
        slug = f"attr_{_slug(name)}"
        if present and values.notna().sum() >= 0.95 * present:
            heavy = values.min() >= 0 and values.quantile(0.99) > 20 * max(values.median(), 1)
            frame[slug] = values
            feats.append(
                Feature(
                    slug,
                    "attributes",
                    "value",
                    f"{name} (customer attribute)",
                    name,
                    "log" if heavy else "none",
                    name.replace("_", " "),
                    fill="nan",
                )
            )
        elif present and col.nunique() <= max(0.5 * present, params["max_categories"]):
            top = col.value_counts().index[: params["max_categories"]]
            frame[slug] = col.where(col.isin(top) | col.isna(), "other").astype("string")
            feats.append(
                Feature(
                    slug,
                    "attributes",
                    "value",
                    f"{name} (customer attribute)",
                    "category",
                    "category",
                    name.replace("_", " "),
                    fill="nan",
                )
            )
        else:
            logger.info("Attribute %r looks like an identifier or free text; not used.", name)
    return frame, feats


Builder = Callable[[Engine, pd.Timestamp, dict], tuple[pd.DataFrame, list[Feature]]]

#: Feature families, in order, with the table each one needs.
FAMILIES: dict[str, tuple[str, Builder]] = {
    "usage": ("usage_events", usage),
    "usage_mix": ("usage_events", usage_mix),
    "engagement": ("engagement_events", engagement),
    "revenue": ("transactions", revenue),
    "feedback": ("feedback", feedback),
    "support": ("support_tickets", support),
    "attributes": ("customers", attributes),
}


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
        One row per customer, in the order of the customers table; customers without
        events get zero counts, a recency equal to the data's span, and NaN where a value
        is undefined (no purchase, so no average order).
    """
    engine = engine or Engine(data)
    as_of = data.as_of
    ids = engine.query("SELECT customer_id FROM customers")["customer_id"]
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
    frame = _fill(frame, features, span_days)
    frame = frame[[f.name for f in features]]
    return FeatureTable(frame=frame, features=features, as_of=as_of)
