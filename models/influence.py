"""NPS by influence level inside each account persona, and the gap between two sides.

In B2B the people who decide (C-level, decision makers) and the people who use the product
(end users) often score it very differently: a persona whose buyers are happy while its
users are not is at risk at renewal in a way its average NPS hides. For each persona of
accounts, `influence_nps` counts the NPS of every influence level with its adjusted Wald
interval (`models.nps.nps_interval`), and tests the gap between the two configured
sides (by default decision makers vs end users).

People of one account answer alike, so the test treats accounts, not people, as the
independent units: the variance of the gap is the cluster-robust (Taylor linearization)
variance of a difference of two ratio estimators, summed over accounts. The gap is called
out when both sides have at least ``min_respondents`` respondents, the test is significant
at ``alpha`` after Holm's correction across the personas tested, and the gap is at least
``min_gap`` NPS points.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import t as student

from models.nps import holm, nps_from_counts

__all__ = [
    "gap_from_sums",
    "gap_rule_text",
    "gap_test",
    "influence_from_counts",
    "influence_nps",
]

_COUNTS = ("nps", "nps_ci_low", "nps_ci_high", "promoters", "passives", "detractors")


def gap_test(
    a_scores, a_clusters, b_scores, b_clusters, *, ci_level: float = 0.95
) -> dict[str, float]:
    """Test the NPS gap between two groups of people sampled in clusters (accounts).

    Parameters
    ----------
    a_scores, b_scores : array-like of float
        The latest 0-10 score of each respondent of side A and of side B.
    a_clusters, b_clusters : array-like
        The cluster (account) of each respondent; a cluster may hold people of both sides.
    ci_level : float, default=0.95
        Coverage of the interval of the gap.

    Returns
    -------
    dict
        ``gap`` (NPS of A minus NPS of B, in points), ``ci_low``, ``ci_high``, ``se``
        (points), ``p_value`` (two-sided, unadjusted) and ``clusters`` (how many clusters
        hold a respondent). ``se`` and ``p_value`` are NaN with fewer than two clusters.

    Notes
    -----
    With ``y_c`` the promoters minus detractors and ``n_c`` the respondents of side A in
    cluster ``c`` (likewise for B), NPS_A = sum(y) / sum(n). Its linearization is
    ``u_c = (y_c - NPS_A n_c) / sum(n)``; the variance of the gap is
    ``m / (m - 1) * sum_c (u_c^A - u_c^B)^2`` over the ``m`` clusters. Clusters holding
    both sides enter once, so a shared account mood is not counted as evidence twice. The
    reference distribution is Student's t on ``m - 1`` degrees of freedom: with no true gap
    the test rejects 4.4-6.5% of the time at the 5% level from 30 accounts
    (``scripts/gap_size.py``).

    Examples
    --------
    >>> out = gap_test([10, 9, 10, 9], ["x", "y", "z", "w"], [2, 9, 9, 8], ["x", "y", "z", "w"])
    >>> out["gap"]
    75.0
    """
    sides = []
    for scores, clusters in ((a_scores, a_clusters), (b_scores, b_clusters)):
        s = np.asarray(scores, dtype=float)
        frame = pd.DataFrame(
            {"c": np.asarray(clusters), "y": (s >= 9).astype(float) - (s <= 6), "n": 1.0}
        )
        sides.append(frame.groupby("c")[["y", "n"]].sum())
    (a, b) = sides
    both = a.merge(b, how="outer", left_index=True, right_index=True, suffixes=("_a", "_b"))
    both = both.fillna(0.0)
    n_a, n_b = both["n_a"].sum(), both["n_b"].sum()
    r_a, r_b = float(both["y_a"].sum() / n_a), float(both["y_b"].sum() / n_b)
    u = (both["y_a"] - r_a * both["n_a"]) / n_a - (both["y_b"] - r_b * both["n_b"]) / n_b
    return gap_from_sums(r_a, r_b, float((u**2).sum()), len(both), ci_level=ci_level)


def gap_from_sums(
    r_a: float, r_b: float, squares: float, m: int, *, ci_level: float = 0.95
) -> dict[str, float]:
    """Return `gap_test`'s result from its sums (as a cluster aggregates them).

    Parameters
    ----------
    r_a, r_b : float
        Each side's NPS as a ratio: promoters minus detractors over respondents.
    squares : float
        The sum over clusters of the squared linearized difference ``(u_c^A - u_c^B)^2``.
    m : int
        The clusters holding a respondent of either side.
    ci_level : float, default=0.95
        Coverage of the interval of the gap.

    Returns
    -------
    dict
        As `gap_test`.
    """
    gap = 100 * (r_a - r_b)
    if m < 2:
        return {"gap": gap, "ci_low": -200.0, "ci_high": 200.0, "se": math.nan,
                "p_value": math.nan, "clusters": m}  # fmt: skip
    se = 100 * math.sqrt(m / (m - 1) * squares)
    q = float(student.ppf(0.5 + ci_level / 2, df=m - 1))
    p = 2 * student.sf(abs(gap) / se, df=m - 1) if se > 0 else (0.0 if gap else 1.0)
    return {
        "gap": gap,
        "ci_low": max(gap - q * se, -200.0),
        "ci_high": min(gap + q * se, 200.0),
        "se": se,
        "p_value": float(p),
        "clusters": m,
    }


def _level(counts, ci_level: float, min_shown: int, min_respondents: int) -> dict:
    """NPS of one group, hidden below ``min_shown`` respondents, greyed below the minimum.

    ``counts``: its promoters, detractors and respondents.
    """
    out = nps_from_counts(*counts, ci_level=ci_level)
    out["reliable"] = out["respondents"] >= min_respondents
    out["shown"] = out["respondents"] >= min_shown
    if not out["shown"]:
        out.update(dict.fromkeys(_COUNTS))
    return out


def _side_name(name: str) -> str:
    return name.replace("_", " ")


def influence_nps(
    scores, levels, accounts, labels, *, sides: dict[str, list[str]], **settings
) -> dict[int, dict]:
    """Count each persona's NPS per influence level and test the gap between two sides.

    Parameters
    ----------
    scores : array-like of float of shape (n_people,)
        Each person's latest 0-10 score, NaN for non-respondents.
    levels : array-like of str of shape (n_people,)
        Each person's influence level.
    accounts : array-like of shape (n_people,)
        Each person's account (the cluster of the gap test).
    labels : array-like of int of shape (n_people,)
        The persona of each person's account; -1 (unassigned) is counted, never tested.
    sides : dict of str to list of str
        Exactly two sides of the gap, each a name and the levels it pools, e.g.
        ``{"decision_makers": ["c_level", "decision_maker"], "end_users": ["end_user"]}``.
        The gap is the first side's NPS minus the second's.
    **settings
        ``order``, ``min_respondents``, ``min_shown``, ``alpha``, ``min_gap`` and
        ``ci_level``, as `influence_from_counts` takes them.

    Returns
    -------
    dict of int to dict
        As `influence_from_counts`.
    """
    if len(sides) != 2:
        raise ValueError(f"sides should name exactly two sides, got {list(sides)}")
    s = np.asarray(scores, dtype=float)
    levels = np.asarray(pd.Series(levels).astype(str))
    accounts, labels = np.asarray(accounts), np.asarray(labels)
    frame = pd.DataFrame({"persona": labels, "level": levels, "s": s})
    grouped = frame.assign(promoters=s >= 9, detractors=s <= 6, respondents=~np.isnan(s)).groupby(
        ["persona", "level"]
    )
    counts = grouped[["promoters", "detractors", "respondents"]].sum().astype(int)
    counts = counts.assign(people=grouped.size()).reset_index()

    def gap(pid: int, totals: list, ci_level: float) -> dict:
        (levels_a, levels_b), m = sides.values(), labels == pid
        in_a = m & np.isin(levels, levels_a) & ~np.isnan(s)
        in_b = m & np.isin(levels, levels_b) & ~np.isnan(s)
        return gap_test(s[in_a], accounts[in_a], s[in_b], accounts[in_b], ci_level=ci_level)

    return influence_from_counts(counts, gap, sides=sides, **settings)


def influence_from_counts(
    counts: pd.DataFrame,
    gap,
    *,
    sides: dict[str, list[str]],
    order: list[str] | None = None,
    min_respondents: int = 30,
    min_shown: int = 0,
    alpha: float = 0.05,
    min_gap: float = 10.0,
    ci_level: float = 0.95,
) -> dict[int, dict]:
    """Return `influence_nps`'s result from counts per persona and level.

    Parameters
    ----------
    counts : pandas.DataFrame
        One row per persona and influence level holding people: ``persona``, ``level``,
        ``people``, ``promoters``, ``detractors``, ``respondents``.
    gap : callable
        ``gap(persona, totals, ci_level)``: the gap test of one persona's two sides
        (`gap_test`'s result), given each side's promoters minus detractors and
        respondents (``totals``, one pair per side).
    sides : dict of str to list of str
        Exactly two sides of the gap, each a name and the levels it pools (see
        `influence_nps`).
    order : list of str, optional
        The order levels are listed in (others follow, sorted).
    min_respondents : int, default=30
        A level or side with fewer respondents is greyed out (``reliable`` false) and the
        gap is not tested.
    min_shown : int, default=0
        A level with fewer respondents shows no NPS, only its size, so a handful of
        people's scores cannot be read off it (``shown`` false).
    alpha : float, default=0.05
        Family-wise error rate of the gap tests, Holm-corrected across personas.
    min_gap : float, default=10.0
        Smallest gap, in NPS points, that is called out.
    ci_level : float, default=0.95
        Coverage of the intervals.

    Returns
    -------
    dict of int to dict
        Per persona id: ``people`` (how many people its accounts hold), ``people_nps``
        (`models.nps.nps_summary` of all its people, with ``reliable``),
        ``nps_by_influence`` (a list of one dict per level: ``level``, ``people`` and the
        NPS fields, ``reliable`` and ``shown``) and ``influence_gap`` (``between``, the two
        sides and their NPS and respondents, ``gap`` with ``gap_ci_low`` and
        ``gap_ci_high``, ``p_value`` (Holm-adjusted), ``tested``, ``significant``,
        ``called_out`` and ``text``).
    """
    if len(sides) != 2:
        raise ValueError(f"sides should name exactly two sides, got {list(sides)}")
    known = list(order or [])
    shown_levels = known + sorted(set(counts["level"].astype(str)) - set(known))
    (name_a, levels_a), (name_b, levels_b) = sides.items()
    fields = ["promoters", "detractors", "respondents"]
    out, tests = {}, {}
    for pid in sorted(set(counts["persona"].tolist())):
        mine = counts[counts["persona"] == pid].set_index("level")
        rows = [
            {"level": lv, "people": int(mine.loc[lv, "people"]),
             **_level(mine.loc[lv, fields], ci_level, min_shown, min_respondents)}
            for lv in shown_levels if lv in mine.index and mine.loc[lv, "people"] > 0
        ]  # fmt: skip
        side = [mine[mine.index.isin(list(ls))][fields].sum() for ls in (levels_a, levels_b)]
        side_a, side_b = (_level(x, ci_level, min_shown, min_respondents) for x in side)
        result = {
            "between": [name_a, name_b],
            "levels": [list(levels_a), list(levels_b)],
            "nps_a": side_a["nps"], "respondents_a": side_a["respondents"],
            "nps_b": side_b["nps"], "respondents_b": side_b["respondents"],
            "gap": None, "gap_ci_low": None, "gap_ci_high": None, "p_value": None,
            "tested": False, "significant": False, "called_out": False, "text": None,
        }  # fmt: skip
        if pid != -1 and side_a["reliable"] and side_b["reliable"]:
            totals = [(int(x["promoters"] - x["detractors"]), int(x["respondents"])) for x in side]
            t = gap(pid, totals, ci_level)
            result.update(
                gap=round(t["gap"], 2),
                gap_ci_low=round(t["ci_low"], 2),
                gap_ci_high=round(t["ci_high"], 2),
                tested=bool(np.isfinite(t["p_value"])),
            )
            if result["tested"]:
                tests[pid] = t["p_value"]
        people_nps = nps_from_counts(*mine[fields].sum(), ci_level=ci_level)
        people_nps["reliable"] = people_nps["respondents"] >= min_respondents
        out[pid] = {
            "people": int(mine["people"].sum()),
            "people_nps": people_nps,
            "nps_by_influence": rows,
            "influence_gap": result,
        }
    if tests:
        adjusted = holm(np.array(list(tests.values())))
        for pid, p in zip(tests, adjusted, strict=True):
            gap = out[pid]["influence_gap"]
            gap["p_value"] = float(f"{p:.4g}")
            gap["significant"] = bool(p < alpha)
            gap["called_out"] = bool(gap["significant"] and abs(gap["gap"]) >= min_gap)
            if gap["called_out"]:
                gap["text"] = _gap_text(gap, ci_level)
    return out


def _gap_text(gap: dict, ci_level: float) -> str:
    a, b = (_side_name(x) for x in gap["between"])
    where = "above" if gap["gap"] > 0 else "below"
    return (
        f"{a.capitalize()}' NPS is {abs(gap['gap']):.0f} points {where} their {b}' "
        f"({gap['nps_a']:+.0f} vs {gap['nps_b']:+.0f}; gap {gap['gap']:+.0f}, "
        f"{100 * ci_level:g}% interval [{gap['gap_ci_low']:+.0f}, {gap['gap_ci_high']:+.0f}], "
        f"p = {gap['p_value']:.2g})."
    )


def gap_rule_text(sides: dict, *, min_respondents: int, alpha: float, min_gap: float) -> str:
    """State, in plain words, when a gap between the two sides is called out.

    Returns
    -------
    str
        One sentence for the report.
    """
    a, b = (_side_name(x) for x in sides)
    return (
        f"A gap between {a} and {b} is called out when both have at least {min_respondents} "
        f"respondents, it is at least {min_gap:g} NPS points, and a two-sided test with "
        f"accounts as clusters (people of one account answer alike) finds it at the "
        f"{100 * alpha:g}% level, Holm-corrected across personas."
    )
