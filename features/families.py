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

import numpy as np
import pandas as pd

from features.engine import Engine, slug, sql_text, sql_time, window_start
from features.rfm import rfm
from features.table import Feature

__all__ = ["FAMILIES", "Built", "Builder", "theme_weights"]

#: What a builder returns: the per-customer frame, its features and the fitted state.
Built = tuple[pd.DataFrame, list[Feature], dict]

logger = logging.getLogger(__name__)


def _usage_scan(engine: Engine, as_of: pd.Timestamp, params: dict) -> dict:
    """Scan usage_events once for the usage and usage mix families (shared on the engine).

    A first, cheap query totals each product feature's usage in the window (the spellings
    the batch holds and how much each is used). The scan then aggregates every customer's
    usage: the usage family's counts and, pivoted in SQL (one conditional sum per product
    feature of the batch), their usage of each product feature in the window. Returns
    ``totals`` (spelling -> usage in the window) and ``frame`` (one row per customer with
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
        totals = engine.query(f"""
            SELECT feature, SUM({qty}) AS q FROM usage_events
            WHERE timestamp > {start} AND feature IS NOT NULL GROUP BY feature""")
        totals = totals.sort_values("feature", ignore_index=True)
        spellings = totals["feature"].astype(str).tolist()
        days = engine.dialect.days("max(timestamp)", sql_time(as_of))
        in_window = f"timestamp > {start}"
        distinct_days = engine.dialect.distinct_days(
            f"CASE WHEN {in_window} THEN timestamp END", as_of - pd.Timedelta(days=w), w
        )
        breadth = engine.dialect.distinct_values(
            f"CASE WHEN {in_window} THEN feature END", spellings
        )
        per = "".join(
            f",\n SUM(CASE WHEN {in_window} AND feature = {sql_text(f)} THEN {qty} ELSE 0 END)"
            f" AS _q{i}"
            for i, f in enumerate(spellings)
        )
        frame = engine.query(f"""
            SELECT customer_id,
              SUM(CASE WHEN {in_window} THEN {qty} ELSE 0 END) AS usage_events,
              {distinct_days} AS usage_active_days,
              {breadth} AS usage_breadth,
              {days} AS usage_recency_days,
              SUM(CASE WHEN timestamp > {recent} THEN {qty} ELSE 0 END) AS _last,
              SUM(CASE WHEN timestamp > {before} AND timestamp <= {recent} THEN {qty} ELSE 0 END)
                AS _prev{per}
            FROM usage_events GROUP BY customer_id""")
        return {"totals": dict(zip(spellings, totals["q"], strict=True)), "frame": frame}

    return engine.shared(("usage_events", as_of, w, t), scan)


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


def _spellings(frame: pd.DataFrame, value: str, weight: str) -> dict[str, str]:
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
        labels = _spellings(pd.DataFrame({"feature": list(totals), "q": list(totals.values())}),
                            "feature", "q")  # fmt: skip
        fitted = {"slugs": sorted(labels), "labels": labels}
    if not totals:  # nobody used the product in the window: every share is 0
        return pd.DataFrame({"customer_id": []}), _mix_features(fitted), fitted
    # each product feature's usage: the sum of its spellings' columns, in the batch's order
    spelled = [slug(f) for f in totals]
    used = np.zeros((len(frame), len(fitted["slugs"])))
    for j, s in enumerate(fitted["slugs"]):
        for i, spelled_as in enumerate(spelled):
            if spelled_as == s:
                used[:, j] += frame[f"_q{i}"].to_numpy(dtype=float)
    total = frame[[f"_q{i}" for i in range(len(spelled))]].to_numpy(dtype=float).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(total[:, None] > 0, used / total[:, None], 0.0)
    if "themes" not in fitted and len(fitted["slugs"]) > params["mix_max_features"]:
        fitted = _fit_themes(frame, shares, fitted, params)
    values = theme_weights(shares, fitted["basis"]) if "themes" in fitted else shares
    out = pd.DataFrame(values, columns=[f.name for f in _mix_features(fitted)])
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
    labels = _spellings(counts, "channel", "n")
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


def _tenure_days(
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
    found = _tenure_days(engine, as_of, family, engine.has("transactions"))
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


def revenue(engine: Engine, as_of: pd.Timestamp, params: dict, fitted=None) -> Built:
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
    names = ["revenue_monetary", "revenue_12m", "revenue_frequency", "revenue_avg_order"]
    names += ["revenue_recency_days", "revenue_refunds"] + [f.name for f in feats]
    # one scan: the first transaction joins the aggregates, and tenure covers every customer
    days_since, feat_tenure = _tenure_days(engine, as_of, "revenue", True)
    frame = engine.query(f"""
        SELECT customer_id, {", ".join(f"r.{n}" for n in names)}, {days_since} AS tenure_days
        FROM customers LEFT JOIN (
          SELECT customer_id,
            SUM(amount) AS revenue_monetary,
            SUM(CASE WHEN timestamp > {year} THEN amount ELSE 0 END) AS revenue_12m,
            SUM(CASE WHEN amount > 0 THEN 1 ELSE 0 END) AS revenue_frequency,
            AVG(CASE WHEN amount > 0 THEN amount END) AS revenue_avg_order,
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
    return frame, feats, {}


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
            Feature(a["column"], "attributes", "value", f"{a['name']} (customer attribute)",
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
