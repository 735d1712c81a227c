"""The feature families: one builder per family, and the table each one needs.

Each builder is a pure function ``(engine, as_of, params, fitted) -> (frame, features,
fitted)``: it describes its aggregation in SQL, the `Engine` runs it where the data lives,
and only the per-customer result comes back. Every feature carries its description, unit,
lens (value or needs) and transform, so the profiler knows what it is describing.

Fitted once, applied everywhere: what a family learns from the data (the product features
and usage themes, the channels kept, the attribute categories and transforms, the RFM
quintile edges) is its ``fitted`` state. Training calls a builder with ``fitted=None``: it
learns the state from the batch and returns it. Scoring passes the state back, and the
builder applies it unchanged, so a customer's features never depend on who else is in the
batch. Training applies the state it has just learnt through the same code.

Column names are built from the data's own values (product features, channels) through
`slug`; values that slug alike (``Reports``, ``reports``) are one feature, and a name
never clashes with another feature of the family.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd

from features.customers import attributes, tenure_days
from features.engine import Engine, slug, sql_text, sql_time, window_start
from features.rfm import rfm
from features.table import Feature
from features.usage import spellings, theme_weights, usage, usage_mix

__all__ = ["FAMILIES", "Built", "Builder", "theme_weights"]

#: What a builder returns: the per-customer frame, its features and the fitted state.
Built = tuple[pd.DataFrame, list[Feature], dict]

logger = logging.getLogger(__name__)


#: The engagement columns that are not per channel; a channel never takes one of these names.
_ENGAGEMENT_TOTALS = ("engagement_events", "engagement_recency_days", "engagement_silent")


def _fit_channels(engine: Engine, limit: int) -> dict:
    """Pick the most used channels and name their columns.

    Channels whose names slug alike (``Email``, ``email``) are one channel. Returns, per
    slug in order of use, its column name (``engagement_<slug>``, with ``_channel``
    appended while that would clash with a total such as ``engagement_events`` or with an
    earlier channel) and its label (the most used spelling).
    """
    counts = _channel_counts(engine)
    if counts.empty:
        return {"columns": {}, "labels": {}}
    totals = counts.groupby("slug", as_index=False)["n"].sum()
    top = totals.sort_values(["n", "slug"], ascending=[False, True])["slug"].head(limit)
    taken, columns = set(_ENGAGEMENT_TOTALS), {}
    for s in top:
        name = f"engagement_{s}"
        while name in taken:
            name += "_channel"
        taken.add(name)
        columns[s] = name
    labels = spellings(counts, "channel", "n")
    return {"columns": columns, "labels": {s: labels[s] for s in columns}}


def _channel_counts(engine: Engine) -> pd.DataFrame:
    """Return each channel spelling's events and slug (one query per engine: shared)."""

    def count() -> pd.DataFrame:
        counts = engine.query(
            "SELECT channel, COUNT(*) AS n FROM engagement_events WHERE channel IS NOT NULL "
            "GROUP BY channel"
        )
        return counts.assign(slug=counts["channel"].map(slug))

    return engine.shared(("engagement_events", "channels"), count)


def engagement(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
    """Engagement per channel, recency and silence.

    Channels whose names slug alike are counted together; see `_fit_channels` for which
    channels get a column and how it is named (fitted: the channels kept).
    """
    w, start = params["window_days"], window_start(as_of, params["window_days"])
    fitted = fitted or _fit_channels(engine, int(params["max_categories"]))
    columns, labels = fitted["columns"], fitted["labels"]
    members = _channel_counts(engine).groupby("slug")["channel"].agg(sorted).to_dict()
    per = "".join(
        f",\n SUM(CASE WHEN timestamp > {start} AND channel IN "
        f"({', '.join(sql_text(c) for c in members[s])}) THEN 1 ELSE 0 END) AS {name}"
        if s in members
        else f",\n 0 AS {name}"
        for s, name in columns.items()
    )
    events, recency, silent = _ENGAGEMENT_TOTALS
    # aggregated per customer first, then joined to every customer: the silent ones too
    counted = "".join(f", COALESCE(e.{name}, 0) AS {name}" for name in columns.values())
    frame = engine.query(f"""
        SELECT customer_id, COALESCE(e.{events}, 0) AS {events}, e.{recency},
          CASE WHEN COALESCE(e.{events}, 0) > 0 THEN 0.0 ELSE 1.0 END AS {silent}{counted}
        FROM customers LEFT JOIN (
          SELECT customer_id,
            SUM(CASE WHEN timestamp > {start} THEN 1 ELSE 0 END) AS {events},
            {engine.dialect.days("max(timestamp)", sql_time(as_of))} AS {recency}{per}
          FROM engagement_events GROUP BY customer_id) e USING (customer_id)""")
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
    return frame, feats, fitted


def revenue(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
    """Recency, frequency, monetary value, order size, discounts, refunds, lateness, tenure.

    Tenure (see `tenure`) covers every customer, also those without a transaction.
    """
    year = window_start(as_of, 365)
    days = engine.dialect.days("max(CASE WHEN amount > 0 THEN timestamp END)", sql_time(as_of))
    extra, feats = "", []
    if engine.has("transactions", "discount"):
        extra += """,
          ROUND(SUM(CASE WHEN amount > 0 THEN COALESCE(discount, 0) ELSE 0 END), 6)
            / NULLIF(ROUND(SUM(CASE WHEN amount > 0 THEN amount + COALESCE(discount, 0)
                                ELSE 0 END), 6), 0)
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
    names = ["revenue_monetary", "revenue_12m", "revenue_frequency", "revenue_avg_order"]
    names += ["revenue_recency_days", "revenue_refunds"] + [f.name for f in feats]
    # one scan: the first transaction joins the aggregates, and tenure covers every customer;
    # the sums of amounts rounded: in parallel, a customer's rows split between threads add
    # up in either order, which moved the last bit from run to run (6 places keep cents)
    days_since, feat_tenure = tenure_days(engine, as_of, "revenue", True)
    frame = engine.query(f"""
        SELECT customer_id, {", ".join(f"r.{n}" for n in names)}, {days_since} AS tenure_days
        FROM customers LEFT JOIN (
          SELECT customer_id,
            ROUND(SUM(amount), 6) AS revenue_monetary,
            ROUND(SUM(CASE WHEN timestamp > {year} THEN amount ELSE 0 END), 6) AS revenue_12m,
            SUM(CASE WHEN amount > 0 THEN 1 ELSE 0 END) AS revenue_frequency,
            ROUND(SUM(CASE WHEN amount > 0 THEN amount END), 6)
              / NULLIF(SUM(CASE WHEN amount > 0 THEN 1 ELSE 0 END), 0) AS revenue_avg_order,
            {days} AS revenue_recency_days,
            SUM(CASE WHEN amount < 0 THEN 1 ELSE 0 END) AS revenue_refunds{extra},
            min(timestamp) AS first_transaction
          FROM transactions GROUP BY customer_id) r USING (customer_id)""")
    frame["tenure_days"] = frame["tenure_days"].clip(lower=0.0)
    return (
        frame,
        [
            Feature(
                "revenue_monetary",
                "revenue",
                "value",
                "net revenue to date",
                "money",
                "log",
                "revenue",
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
                "revenue_refunds",
                "revenue",
                "value",
                "refunds to date",
                "refunds",
                "log",
                "refunds",
            ),
            *feats,
            feat_tenure,
        ],
        {},
    )


def feedback(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
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
    return frame, feats, {}


def support(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
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
        took = f"CASE WHEN {closed} THEN {engine.dialect.micros('opened_at', 'closed_at')} END"
        cols += [  # in whole microseconds: fractional days, added in either order by
            # DuckDB's threads, moved the mean's last bit from run to run
            f"SUM({took}) / 8.64e10 / NULLIF(COUNT({took}), 0) AS support_close_days",
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
    return frame, feats, {}


Builder = Callable[[Engine, pd.Timestamp, dict, dict | None], Built]

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
