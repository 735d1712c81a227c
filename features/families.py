"""The feature families: one builder per family, and the table each one needs.

Each builder is a pure function ``(engine, as_of, params) -> (frame, features)``: it
describes its aggregation in SQL, the `Engine` runs it where the data lives, and only the
per-customer result comes back. Every feature carries its description, unit, lens (value
or needs) and transform, so the profiler knows what it is describing.

Column names are built from the data's own values (product features, channels) through
`slug`; values that slug alike (``Reports``, ``reports``) are one feature, and a name
never clashes with another feature of the family.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from features.engine import Engine, slug, sql_text, sql_time, window_start
from features.rfm import rfm
from features.table import Feature

__all__ = ["FAMILIES", "Builder"]

logger = logging.getLogger(__name__)


def usage(engine: Engine, as_of: pd.Timestamp, params: dict) -> tuple[pd.DataFrame, list[Feature]]:
    """Intensity, activity, breadth, recency and trend of product usage."""
    w, t = params["window_days"], params["trend_days"]
    qty = "COALESCE(quantity, 1)" if engine.has("usage_events", "quantity") else "1"
    start, recent, before = (
        window_start(as_of, w),
        window_start(as_of, t),
        window_start(as_of, 2 * t),
    )
    days = engine.dialect.days("max(timestamp)", sql_time(as_of))
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


def _spellings(frame: pd.DataFrame, value: str, weight: str) -> dict[str, str]:
    """Return the most used spelling of each slug of ``frame[value]`` (ties: first sorted)."""
    totals = frame.groupby(value, as_index=False)[weight].sum()  # one row per spelling
    totals = totals.assign(_slug=totals[value].map(slug)).sort_values(
        ["_slug", weight, value], ascending=[True, False, True]
    )
    return totals.drop_duplicates("_slug").set_index("_slug")[value].astype(str).to_dict()


def usage_mix(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Share of each customer's usage that goes to each product feature (or usage theme).

    Product features whose names slug alike (``Reports``, ``reports``) are one feature,
    ``mix_reports``, labelled with the spelling that has the most usage.
    """
    qty = "COALESCE(quantity, 1)" if engine.has("usage_events", "quantity") else "1"
    long = engine.query(f"""
        SELECT customer_id, feature, SUM({qty}) AS q FROM usage_events
        WHERE timestamp > {window_start(as_of, params["window_days"])} AND feature IS NOT NULL
        GROUP BY customer_id, feature""")
    if long.empty:
        return pd.DataFrame({"customer_id": []}), []
    labels = _spellings(long, "feature", "q")
    slugs = {f: slug(f) for f in long["feature"].unique()}  # a few names, millions of rows
    wide = (
        long.assign(feature=long["feature"].map(slugs))
        .groupby(["customer_id", "feature"])["q"]
        .sum()
        .unstack(fill_value=0.0)
        .astype(float)
    )
    wide = wide.reindex(sorted(wide.columns), axis=1)
    shares = wide.div(wide.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    if shares.shape[1] <= params["mix_max_features"]:
        feats = [
            Feature(
                f"mix_{s}",
                "usage_mix",
                "needs",
                f"share of usage that goes to {labels[s]}",
                "share",
                "none",
                labels[s].replace("_", " "),
            )
            for s in shares.columns
        ]
        return shares.rename(columns=lambda s: f"mix_{s}").reset_index(), feats
    from sklearn.decomposition import NMF  # here: importing sklearn costs a second per process

    k = min(params["mix_themes"], shares.shape[1])
    nmf = NMF(n_components=k, init="nndsvda", random_state=params["seed"], max_iter=400)
    weights = nmf.fit_transform(shares.to_numpy())
    weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    feats, cols = [], []
    for i, comp in enumerate(nmf.components_):
        top = [shares.columns[j] for j in np.argsort(comp)[::-1][:2]]
        label = " & ".join(labels[t].replace("_", " ") for t in top)
        cols.append(f"theme_{i + 1}_{top[0]}")
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


#: The engagement columns that are not per channel; a channel never takes one of these names.
_ENGAGEMENT_TOTALS = ("engagement_events", "engagement_recency_days", "engagement_silent")


def _channel_columns(engine: Engine, limit: int) -> tuple[dict[str, str], dict, dict]:
    """Pick the most used channels and name their columns.

    Channels whose names slug alike (``Email``, ``email``) are one channel. Returns, per
    slug in order of use, its column name (``engagement_<slug>``, with ``_channel``
    appended while that would clash with a total such as ``engagement_events`` or with an
    earlier channel), the raw channel values it groups, and its label (the most used
    spelling).
    """
    counts = engine.query(
        "SELECT channel, COUNT(*) AS n FROM engagement_events WHERE channel IS NOT NULL "
        "GROUP BY channel"
    )
    if counts.empty:
        return {}, {}, {}
    counts["slug"] = counts["channel"].map(slug)
    totals = counts.groupby("slug", as_index=False)["n"].sum()
    top = totals.sort_values(["n", "slug"], ascending=[False, True])["slug"].head(limit)
    taken, columns = set(_ENGAGEMENT_TOTALS), {}
    for s in top:
        name = f"engagement_{s}"
        while name in taken:
            name += "_channel"
        taken.add(name)
        columns[s] = name
    members = {s: sorted(g) for s, g in counts.groupby("slug")["channel"] if s in columns}
    return columns, members, _spellings(counts, "channel", "n")


def engagement(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Engagement per channel, recency and silence.

    Channels whose names slug alike are counted together; see `_channel_columns` for how
    their columns are named.
    """
    w, start = params["window_days"], window_start(as_of, params["window_days"])
    columns, members, labels = _channel_columns(engine, int(params["max_categories"]))
    per = "".join(
        f",\n SUM(CASE WHEN timestamp > {start} AND channel IN "
        f"({', '.join(sql_text(c) for c in members[s])}) THEN 1 ELSE 0 END) AS {name}"
        for s, name in columns.items()
    )
    events, recency, silent = _ENGAGEMENT_TOTALS
    frame = engine.query(f"""
        SELECT customer_id,
          SUM(CASE WHEN timestamp > {start} THEN 1 ELSE 0 END) AS {events},
          {engine.dialect.days("max(timestamp)", sql_time(as_of))} AS {recency},
          CASE WHEN SUM(CASE WHEN timestamp > {start} THEN 1 ELSE 0 END) > 0 THEN 0.0 ELSE 1.0
            END AS {silent}{per}
        FROM customers LEFT JOIN engagement_events USING (customer_id) GROUP BY customer_id""")
    feats = [
        Feature(
            events,
            "engagement",
            "needs",
            f"marketing and community touchpoints in the last {w} days",
            "events",
            "log",
            "engagement",
        ),
        Feature(
            recency,
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
            name,
            "engagement",
            "needs",
            f"{labels[s]} in the last {w} days",
            "events",
            "log",
            labels[s].replace("_", " "),
        )
        for s, name in columns.items()
    ]
    feats.append(
        Feature(
            silent,
            "engagement",
            "needs",
            f"no touchpoint at all in the last {w} days",
            "flag",
            "none",
            "silent",
        )
    )
    return frame, feats


def tenure(engine: Engine, as_of: pd.Timestamp, family: str) -> tuple[pd.DataFrame, list[Feature]]:
    """Days each customer has been with us at ``as_of``: ``tenure_days``.

    Counted from ``customers.signup_date`` where the customer has one, else from their
    first transaction (when there is a transactions table). A signup after ``as_of`` gives
    0; a customer with neither gets NaN. Without either source there is no feature.
    """
    starts, words, joined = [], [], ""
    if engine.has("customers", "signup_date"):
        starts.append("signup_date")
        words.append("signup")
    if engine.has("transactions"):
        starts.append("first_transaction")
        words.append("the first transaction")
        joined = (
            " LEFT JOIN (SELECT customer_id, min(timestamp) AS first_transaction"
            " FROM transactions GROUP BY customer_id) USING (customer_id)"
        )
    if not starts:
        return pd.DataFrame({"customer_id": []}), []
    days = engine.dialect.days(f"COALESCE({', '.join(starts)})", sql_time(as_of))
    frame = engine.query(f"SELECT customer_id, {days} AS tenure_days FROM customers{joined}")
    frame["tenure_days"] = frame["tenure_days"].clip(lower=0.0)
    return frame, [
        Feature(
            "tenure_days",
            family,
            "value",
            f"days since {', else '.join(words)}",
            "days",
            "log",
            "tenure",
            fill="nan",
        )
    ]


def revenue(engine: Engine, as_of: pd.Timestamp, params: dict):
    """Recency, frequency, monetary value, order size, discounts, refunds, lateness, tenure.

    Tenure (see `tenure`) covers every customer, also those without a transaction.
    """
    year = window_start(as_of, 365)
    days = engine.dialect.days("max(CASE WHEN amount > 0 THEN timestamp END)", sql_time(as_of))
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
    since, feats_tenure = tenure(engine, as_of, "revenue")
    frame = frame.merge(since, on="customer_id", how="outer")
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
        *feats_tenure,
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
        flag = engine.dialect.double("CASE WHEN comment IS NOT NULL THEN 1.0 ELSE 0.0 END")
        cols.append(f"AVG({flag}) AS feedback_comments")
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
    w, start, stamp = (
        params["window_days"],
        window_start(as_of, params["window_days"]),
        sql_time(as_of),
    )
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
        urgent = engine.dialect.double(
            f"CASE WHEN lower(priority) IN ({levels}) THEN 1.0 ELSE 0.0 END"
        )
        cols.append(
            f"AVG(CASE WHEN opened_at > {start} THEN {urgent} END) AS support_high_priority_share"
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
    """Use the customers' own attribute columns: numeric as they are, categorical by level.

    A column that is the same for every customer (or empty for all) tells the personas
    apart in nothing and is left out, as is one that looks like an identifier or free
    text. Without a transactions table (so no revenue family), tenure from
    ``customers.signup_date`` is an attribute too.
    """
    names = engine.data.attributes
    quoted = "".join(", " + engine.dialect.quote(n) for n in names)
    raw = engine.query(f"SELECT customer_id{quoted} FROM customers")
    frame, feats = raw[["customer_id"]].copy(), []
    for name in names:
        col = raw[name]
        values = pd.to_numeric(col, errors="coerce")
        present = col.notna().sum()
        column = f"attr_{slug(name)}"
        if column in frame:
            logger.warning("Attribute %r is named like another one (%s); not used.", name, column)
        elif col.nunique(dropna=False) <= 1:
            logger.info("Attribute %r is the same for every customer (or empty); not used.", name)
        elif present and values.notna().sum() >= 0.95 * present:
            heavy = values.min() >= 0 and values.quantile(0.99) > 20 * max(values.median(), 1)
            frame[column] = values
            feats.append(
                Feature(
                    column,
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
            frame[column] = col.where(col.isin(top) | col.isna(), "other").astype("string")
            feats.append(
                Feature(
                    column,
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
    if not engine.has("transactions"):
        since, extra = tenure(engine, as_of, "attributes")
        if extra:
            frame, feats = frame.merge(since, on="customer_id", how="left"), feats + extra
    return frame, feats


Builder = Callable[[Engine, pd.Timestamp, dict], tuple[pd.DataFrame, list[Feature]]]

#: Feature families, in order, with the table each one needs.
FAMILIES: dict[str, tuple[str, Builder]] = {
    "usage": ("usage_events", usage),
    "usage_mix": ("usage_events", usage_mix),
    "engagement": ("engagement_events", engagement),
    "revenue": ("transactions", revenue),
    "rfm": ("transactions", rfm),
    "feedback": ("feedback", feedback),
    "support": ("support_tickets", support),
    "attributes": ("customers", attributes),
}
