"""Roll the people's features up to their accounts, for personas of accounts (B2B).

Every feature family is first built per person (`features.build_features`); `roll_up`
then aggregates each feature over the people of an account by a rule read from its
metadata (see `rollup_rule`): counts and money are summed, rates and scores averaged,
recency is the most recent person's, tenure the longest-standing person's, the usage mix
is the account's whole usage, and categorical attributes take the most common level (an
attribute the same for all of an account's people, such as its region or industry, is an
account attribute). Four kinds of features only an account has are added: its number of
people, the share of them who used the product in the window, how unevenly usage is
spread across them (normalized Gini), and the share of people at each influence level.

The account's NPS score (`account_scores`) is counted per account, by a configured rule:
the mean of its respondents' latest scores, or its decision makers' latest score.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd

from features.contract import DataError
from features.engine import Engine, slug
from features.table import Feature, FeatureTable

__all__ = [
    "ACCOUNT_NPS",
    "account_scores",
    "check_people",
    "gini",
    "latest_scores",
    "people",
    "roll_up",
    "rollup_rule",
]

logger = logging.getLogger(__name__)

#: How an account's score is counted (config ``b2b.account_nps``).
ACCOUNT_NPS = ("mean", "decision_makers")

#: Units of the features that are summed over an account's people.
_SUMMED = frozenset({"events", "purchases", "refunds", "tickets", "responses", "money"})
#: Features whose rule is not the one their unit implies: averages are not summed, and
#: the RFM scores and tier (quintiles of buyers; invoices go to one person) are the best
#: of the account's people.
_RULES = {
    "tenure_days": "max", "usage_breadth": "max", "revenue_avg_order": "mean",
    "clv_order_value": "mean", "rfm_r": "max", "rfm_f": "max", "rfm_m": "max",
    "value_tier": "max",
}  # fmt: skip
#: Ordered levels of the categorical features rolled up by "max", lowest first.
_ORDERED = {"value_tier": ("none", "low", "mid", "high")}
_WORDING = {
    "sum": "{d} (all its people together)",
    "mean": "{d} (per person, on average)",
    "max": "{d} (highest of its people)",
    "min": "{d} (lowest of its people)",
    "weighted": "{d} (the account's usage together)",
    "mode": "{d} (most common among its people)",
}
_SCORE = "nps_latest"


def rollup_rule(feature: Feature) -> str:
    """Return how a person-level feature is aggregated over an account's people.

    Parameters
    ----------
    feature : Feature
        The feature's metadata.

    Returns
    -------
    {"sum", "mean", "max", "min", "weighted", "mode"}
        ``weighted`` for the usage mix (each person's shares weighted by their usage, so
        the account's shares are those of its whole usage), ``mode`` for categories,
        ``min`` for recency (filled with the data's span: the most recent person counts),
        ``sum`` for counts and money, ``max`` for tenure, breadth and the RFM scores and
        tier, ``mean`` for averages (order value) and everything else.

    Examples
    --------
    >>> rollup_rule(Feature("usage_events", "usage", "needs", "usage", "events", "log"))
    'sum'
    """
    if feature.name in _RULES:
        return _RULES[feature.name]
    if feature.family == "usage_mix":
        return "weighted"
    if feature.transform == "category":
        return "mode"
    if feature.fill == "span":
        return "min"
    return "sum" if feature.unit in _SUMMED else "mean"


def people(engine: Engine, role_column: str | None) -> pd.DataFrame:
    """Return each person's account and role, checked.

    Parameters
    ----------
    engine : Engine
        The loaded tables.
    role_column : str or None
        The customers' attribute column holding a person's role; None or absent: no role.

    Returns
    -------
    pandas.DataFrame
        Index ``customer_id`` (sorted), columns ``account_id`` and ``role`` (NA without one).

    Raises
    ------
    DataError
        When customers has no ``account_id`` column or some people have none.
    """
    check_people(engine)
    has_role = bool(role_column) and engine.has("customers", role_column)
    role = '"' + role_column.replace('"', '""') + '"' if has_role else "NULL"
    frame = engine.query(
        f"SELECT customer_id, account_id, {role} AS role FROM customers ORDER BY customer_id"
    )
    if role_column and not has_role:
        logger.warning(
            "b2b.role_column %r is not a column of %s: no influence levels.",
            role_column,
            engine.data.quality["tables"]["customers"]["file"],
        )
    frame["customer_id"] = frame["customer_id"].astype("string")
    frame["account_id"] = frame["account_id"].astype("string")
    frame["role"] = frame["role"].astype("string")
    return frame.set_index("customer_id")


def check_people(engine: Engine) -> None:
    """Stop unless every person has an account (customers' ``account_id``).

    Parameters
    ----------
    engine : Engine
        The loaded tables.

    Raises
    ------
    DataError
        When customers has no ``account_id`` column or some people have none.
    """
    data = engine.data
    file = data.quality["tables"]["customers"]["file"]
    if not engine.has("customers", "account_id"):
        raise DataError(
            f"level: account needs an account_id column in {file} (the account each person "
            f"belongs to); its columns are: {', '.join(data.columns['customers'])}. Add it, "
            "map it (columns: {customers: {account_id: <your column>}}) or set level: customer."
        )
    counts = engine.query(
        "SELECT count(*) AS people, count(*) - count(account_id) AS missing FROM customers"
    )
    total, missing = int(counts["people"].iloc[0]), int(counts["missing"].iloc[0])
    if missing:
        examples = engine.query(
            "SELECT customer_id FROM customers WHERE account_id IS NULL ORDER BY customer_id "
            "LIMIT 5"
        )["customer_id"]
        raise DataError(
            f"{file}: {missing:,} of {total:,} people have no account_id "
            f"(e.g. {', '.join(repr(c) for c in examples)}); at level: account every person "
            "must belong to an account. Fill it in (a person on their own can be an account "
            "of one) or set level: customer."
        )


def latest_scores(engine: Engine) -> pd.DataFrame:
    """Return each respondent's latest NPS score and when they gave it.

    Ties on the timestamp go to the lower score, as in the feedback family.

    Parameters
    ----------
    engine : Engine
        The loaded tables.

    Returns
    -------
    pandas.DataFrame
        Index ``customer_id``, columns ``nps`` and ``timestamp``; empty without NPS.
    """
    if not engine.has("feedback", "nps"):
        return pd.DataFrame({"nps": [], "timestamp": []}, index=pd.Index([], name="customer_id"))
    frame = engine.query("""
        SELECT customer_id, nps, timestamp FROM (
          SELECT customer_id, nps, timestamp, ROW_NUMBER() OVER (
            PARTITION BY customer_id ORDER BY timestamp DESC, nps ASC) AS rn
          FROM feedback WHERE nps IS NOT NULL) WHERE rn = 1""")
    frame["customer_id"] = frame["customer_id"].astype("string")
    return frame.set_index("customer_id").sort_index()


def account_scores(
    latest: pd.DataFrame,
    members: pd.DataFrame,
    *,
    how: str = "mean",
    decision_levels: list[str] | tuple[str, ...] = ("c_level", "decision_maker"),
) -> pd.Series:
    """Count each account's NPS score from its people's latest scores.

    Parameters
    ----------
    latest : pandas.DataFrame
        Each respondent's latest ``nps`` and its ``timestamp`` (see `latest_scores`).
    members : pandas.DataFrame
        Index ``customer_id``; ``account_id`` and, for ``how="decision_makers"``,
        ``influence``.
    how : {"mean", "decision_makers"}, default="mean"
        ``mean``: the mean of the latest scores of the account's respondents, rounded to
        a whole score with halves up (8.5 counts as 9, a promoter; 6.5 as 7, a passive),
        so that it falls in one NPS category. ``decision_makers``: the latest score any of
        its decision makers gave (ties: the lower score); an account whose decision makers
        never answered is not a respondent.
    decision_levels : sequence of str, default=("c_level", "decision_maker")
        The influence levels that count as decision makers.

    Returns
    -------
    pandas.Series
        The score of each responding account (index ``account_id``, 0-10).

    Examples
    --------
    >>> latest = pd.DataFrame({"nps": [10, 7, 3], "timestamp": pd.to_datetime(
    ...     ["2026-01-01", "2026-02-01", "2026-03-01"])}, index=["a", "b", "c"])
    >>> members = pd.DataFrame({"account_id": ["X", "X", "Y"]}, index=["a", "b", "c"])
    >>> account_scores(latest, members).to_dict()
    {'X': 9.0, 'Y': 3.0}
    """
    if how not in ACCOUNT_NPS:
        raise ValueError(f"how should be one of {', '.join(ACCOUNT_NPS)}, got {how!r}")
    scored = latest.join(members, how="inner")
    if how == "mean":
        mean = scored.groupby("account_id")["nps"].mean()
        return np.floor(mean + 0.5).rename("nps")
    deciders = scored[scored["influence"].isin(list(decision_levels))]
    ordered = deciders.sort_values(
        ["account_id", "timestamp", "nps"], ascending=[True, False, True]
    )
    return ordered.drop_duplicates("account_id").set_index("account_id")["nps"].astype(float)


def gini(values: pd.Series, groups: pd.Series) -> pd.Series:
    """Return the normalized Gini coefficient of non-negative values within each group.

    0 when every member has the same value, 1 when one member has it all, whatever the
    group's size (the plain Gini of ``n`` members is at most ``(n - 1) / n``; it is divided
    by that). Groups of one member, or whose values are all zero, get 0.

    Parameters
    ----------
    values : pandas.Series
        Non-negative values (NaN counts as 0).
    groups : pandas.Series
        The group of each value, same index.

    Returns
    -------
    pandas.Series
        One coefficient per group, indexed by group.

    Examples
    --------
    >>> gini(pd.Series([5.0, 5.0, 0.0, 9.0]), pd.Series(["a", "a", "b", "b"])).to_dict()
    {'a': 0.0, 'b': 1.0}
    """
    x = values.fillna(0.0).clip(lower=0).to_numpy()
    frame = pd.DataFrame({"g": groups.to_numpy(), "x": x})
    frame = frame.sort_values(["g", "x"], kind="stable")
    frame["i"] = frame.groupby("g").cumcount() + 1.0
    frame["ix"] = frame["i"] * frame["x"]
    agg = frame.groupby("g").agg(n=("x", "size"), total=("x", "sum"), ix=("ix", "sum"))
    n, total = agg["n"].astype(float), agg["total"]
    plain = 2 * agg["ix"] / (n * total.where(total > 0)) - (n + 1) / n
    normalized = plain * n / (n - 1).where(n > 1)
    return normalized.fillna(0.0).clip(0.0, 1.0).rename(None)


def _mode(values: pd.Series, accounts: pd.Series) -> pd.Series:
    """Most common non-missing level per account (ties: the first in sorted order)."""
    frame = pd.DataFrame({"a": accounts.to_numpy(), "v": values.astype("string").to_numpy()})
    counts = frame.dropna().groupby(["a", "v"]).size().rename("n").reset_index()
    counts = counts.sort_values(["a", "n", "v"], ascending=[True, False, True])
    return counts.drop_duplicates("a").set_index("a")["v"].astype("string")


def _aggregate(frame: pd.DataFrame, f: Feature, accounts: pd.Series, weight) -> pd.Series:
    rule = rollup_rule(f)
    col = frame[f.name]
    if rule == "mode":
        return _mode(col, accounts)
    if f.name in _ORDERED:  # an ordered category: the highest level of its people
        levels = _ORDERED[f.name]
        rank = col.map({v: i for i, v in enumerate(levels)}).astype(float)
        best = rank.groupby(accounts.to_numpy()).max()
        return best.map(lambda i: levels[int(i)] if i == i else pd.NA).astype("string")
    values = pd.to_numeric(col, errors="coerce")
    grouped = values.groupby(accounts.to_numpy())
    if rule == "sum":
        return grouped.sum(min_count=1)
    if rule == "weighted":
        w = weight if weight is not None else pd.Series(1.0, index=values.index)
        num = (values.fillna(0.0) * w).groupby(accounts.to_numpy()).sum()
        den = w.groupby(accounts.to_numpy()).sum()
        return (num / den.where(den > 0)).fillna(0.0)
    return getattr(grouped, rule)()


def _constant(col: pd.Series, accounts: pd.Series) -> bool:
    """Whether every account's people share one value of a column (missing aside)."""
    return bool((col.groupby(accounts.to_numpy()).nunique(dropna=True) <= 1).all())


def roll_up(
    table: FeatureTable,
    members: pd.DataFrame,
    *,
    window_days: int,
    score: pd.Series | None = None,
    score_description: str = "",
    drop: list[str] | tuple[str, ...] = (),
) -> FeatureTable:
    """Aggregate a person x feature table into an account x feature table.

    Parameters
    ----------
    table : FeatureTable
        One row per person (index ``customer_id``).
    members : pandas.DataFrame
        Index ``customer_id`` covering every row of ``table``; ``account_id`` and,
        optionally, ``influence`` (the person's influence level).
    window_days : int
        The activity window of the usage family, for the description of the share of
        active people.
    score : pandas.Series, optional
        Each responding account's NPS score (`account_scores`); it replaces
        ``nps_latest`` (and ``nps_category`` follows it).
    score_description : str, default=""
        How ``score`` was counted, for the feature's description.
    drop : sequence of str, default=()
        Person-level features left out (the role attribute, replaced by influence shares).

    Returns
    -------
    FeatureTable
        One row per account (index ``account_id``, sorted). Each rolled-up feature keeps
        its name, family, lens, unit, transform and label; its description says how it
        was aggregated (an attribute every account's people share becomes an account
        attribute). Added: ``account_people`` and ``influence_<level>`` (family
        ``accounts``), ``usage_active_share`` and ``usage_spread`` (family ``usage``,
        when there is usage).
    """
    frame = table.frame
    missing = frame.index.difference(members.index)
    if len(missing):
        raise ValueError(f"{len(missing)} people have no account (e.g. {list(missing[:3])})")
    accounts = members.loc[frame.index, "account_id"].astype("string")
    index = pd.Index(sorted(accounts.unique()), name="account_id", dtype="string")
    by = accounts.to_numpy()
    weight = frame["usage_events"].fillna(0.0) if "usage_events" in frame else None
    columns: dict[str, pd.Series] = {"account_people": accounts.groupby(by).size().astype(float)}
    feats = [Feature("account_people", "accounts", "value", "people in the account", "people",
                     "log", "people")]  # fmt: skip
    for f in table.features:
        if f.name in drop or f.name == "nps_category" or (f.name == _SCORE and score is not None):
            continue
        columns[f.name] = _aggregate(frame, f, accounts, weight)
        if f.family == "attributes" and _constant(frame[f.name], accounts):
            description = f.description.replace("(customer attribute)", "(account attribute)")
        else:
            description = _WORDING[rollup_rule(f)].format(d=f.description)
        feats.append(replace(f, description=description))
    if score is not None:
        columns[_SCORE] = score.astype(float)
        feats.append(Feature(_SCORE, "feedback", "needs", score_description or "account's score",
                             "score", "none", "NPS", fill="nan"))  # fmt: skip
        if any(f.name == "nps_category" for f in table.features):
            feats.append(next(f for f in table.features if f.name == "nps_category"))
    if weight is not None:
        columns["usage_active_share"] = (weight > 0).astype(float).groupby(by).mean()
        columns["usage_spread"] = gini(weight, accounts)
        feats += [
            Feature("usage_active_share", "usage", "needs",
                    f"share of its people who used the product in the last {window_days} days",
                    "share", "none", "active people"),
            Feature("usage_spread", "usage", "needs",
                    "how unevenly usage is spread across its people (0 even, 1 one person "
                    "does it all; normalized Gini)", "index", "none", "concentrated usage"),
        ]  # fmt: skip
    if "influence" in members:
        shares = pd.crosstab(
            by, members.loc[frame.index, "influence"].to_numpy(), normalize="index"
        )
        for level in sorted(shares.columns):
            name = f"influence_{slug(level)}"
            columns[name] = shares[level]
            feats.append(Feature(name, "accounts", "needs",
                                 f"share of its people who are {str(level).replace('_', ' ')}",
                                 "share", "none", str(level).replace("_", " ")))  # fmt: skip
    out = pd.DataFrame({k: v.reindex(index) for k, v in columns.items()}, index=index)
    if score is not None and any(f.name == "nps_category" for f in feats):
        out["nps_category"] = pd.cut(
            out[_SCORE], [-1, 6, 8, 10], labels=["detractor", "passive", "promoter"]
        ).astype("string")
    for f in feats:
        if f.fill == "zero" and f.transform != "category":
            out[f.name] = out[f.name].fillna(0.0)
    out = out[[f.name for f in feats]]
    logger.info("Rolled %d people up to %d accounts.", len(frame), len(out))
    return FeatureTable(frame=out, features=feats, as_of=table.as_of)
