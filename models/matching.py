"""Persona identity across runs: match new personas to old ones, and measure what changed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.stats import norm

__all__ = [
    "edge_ranks",
    "match_personas",
    "nps_change",
    "population_stability",
    "quantile_edges",
    "stability_index",
]


def _profile_similarity(old: list[dict], new: list[dict]) -> np.ndarray:
    """Similarity of trait profiles: 1 / (1 + distance) of standardized trait vectors."""

    def vector(p, features):
        effects = {t["feature"]: t["std_diff"] for t in p.get("traits", [])}
        effects.update(p.get("effects", {}) or {})
        return np.array([effects.get(f, 0.0) for f in features])

    features = sorted(
        {t["feature"] for p in old + new for t in p.get("traits", [])}
        | {f for p in old + new for f in (p.get("effects") or {})}
    )
    if not features:
        return np.zeros((len(new), len(old)))
    a = np.array([vector(p, features) for p in new])
    b = np.array([vector(p, features) for p in old])
    distance = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))
    return 1.0 / (1.0 + distance)


def match_personas(
    old: list[dict],
    new: list[dict],
    migration: pd.DataFrame | None = None,
    *,
    min_similarity: float = 0.3,
) -> dict[int, int | None]:
    """Match each new persona to at most one old persona (Hungarian assignment).

    Where customers persist between the runs, the similarity of two personas is the
    Jaccard overlap of their customers (from the migration counts); otherwise it is the
    similarity of their trait profiles. A pair below ``min_similarity`` is no match: the
    new persona is new, the old one vanished.

    Parameters
    ----------
    old, new : list of dict
        Persona profiles (``persona_id``, ``size``, ``traits``) of the two runs.
    migration : pandas.DataFrame, optional
        Columns ``from_persona``, ``to_persona``, ``customers``: customers of both runs.
    min_similarity : float, default=0.3
        The least similarity that counts as the same persona.

    Returns
    -------
    dict of int to int or None
        New persona id -> matched old persona id (None for a new persona).
    """
    new_ids = [p["persona_id"] for p in new if p["persona_id"] >= 0]
    old_ids = [p["persona_id"] for p in old if p["persona_id"] >= 0]
    if not new_ids or not old_ids:
        return {i: None for i in new_ids}
    if migration is not None and migration["customers"].sum() > 0:
        counts = migration.pivot_table(
            index="to_persona",
            columns="from_persona",
            values="customers",
            aggfunc="sum",
            fill_value=0,
        ).reindex(index=new_ids, columns=old_ids, fill_value=0)
        both = counts.to_numpy(dtype=float)
        union = both.sum(axis=1, keepdims=True) + both.sum(axis=0, keepdims=True) - both
        similarity = np.divide(both, union, out=np.zeros_like(both), where=union > 0)
    else:
        keep_new = [p for p in new if p["persona_id"] >= 0]
        keep_old = [p for p in old if p["persona_id"] >= 0]
        similarity = _profile_similarity(keep_old, keep_new)
    rows, cols = linear_sum_assignment(-similarity)
    out: dict[int, int | None] = {i: None for i in new_ids}
    for r, c in zip(rows, cols, strict=True):
        if similarity[r, c] >= min_similarity:
            out[new_ids[r]] = old_ids[c]
    return out


def nps_change(before: dict, after: dict, *, alpha: float = 0.05) -> dict:
    """Test the change of a persona's NPS between two runs (two independent samples).

    Parameters
    ----------
    before, after : dict
        ``respondents``, ``promoters``, ``detractors`` of each run.
    alpha : float, default=0.05
        Significance level.

    Returns
    -------
    dict
        ``change`` (points), ``p_value`` and ``significant``; None values without
        respondents on either side.
    """
    n1, n2 = before.get("respondents") or 0, after.get("respondents") or 0
    if not n1 or not n2:
        return {"change": None, "p_value": None, "significant": None}
    p1, d1 = before["promoters"] / n1, before["detractors"] / n1
    p2, d2 = after["promoters"] / n2, after["detractors"] / n2
    var = (p1 + d1 - (p1 - d1) ** 2) / n1 + (p2 + d2 - (p2 - d2) ** 2) / n2
    change = 100 * ((p2 - d2) - (p1 - d1))
    if var <= 0:
        return {"change": round(change, 2), "p_value": None, "significant": None}
    z = change / (100 * math.sqrt(var))
    p_value = float(2 * norm.sf(abs(z)))
    return {"change": round(change, 2), "p_value": p_value, "significant": p_value < alpha}


def edge_ranks(n: int, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the ``bins + 1`` quantile edges of ``n`` sorted values fall.

    Edge ``i`` is at position ``(n - 1) i / bins`` (NumPy's default, linear quantiles),
    between the values of rank ``lower`` and ``upper`` (from 0) with weight ``t`` on the
    upper one; the positions are computed in integers, so any engine that can return the
    values of given ranks (`pipelines.cluster_compare` on Spark) gets the same edges.

    Returns
    -------
    lower, upper : ndarray of int
    t : ndarray of float
    """
    k = (n - 1) * np.arange(bins + 1)
    lower = k // bins
    return lower, np.minimum(lower + 1, n - 1), (k % bins) / bins


def quantile_edges(lower: np.ndarray, upper: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Return the distinct bin edges from the values at `edge_ranks`, outer ones infinite.

    Fewer than two distinct edges (one value throughout) return them as they are.
    """
    edges = np.unique(np.where(t > 0, lower + (upper - lower) * t, lower))
    if len(edges) >= 2:
        edges[0], edges[-1] = -np.inf, np.inf
    return edges


def stability_index(before: np.ndarray, after: np.ndarray) -> float:
    """Return the population stability index of two runs' counts in the same bins.

    Shares get a floor of 1e-4, so an empty bin does not make the index infinite.
    """
    pa = np.maximum(before / before.sum(), 1e-4)
    pb = np.maximum(after / after.sum(), 1e-4)
    return float(((pb - pa) * np.log(pb / pa)).sum())


def population_stability(before: pd.Series, after: pd.Series, *, bins: int = 10) -> float:
    """Compute the population stability index of one numeric feature between two runs.

    Bins are the deciles of ``before`` (linear quantiles, `edge_ranks`; distinct edges
    only); shares get a floor of 1e-4 so an empty bin does not make the index infinite
    (`stability_index`). Common reading: below 0.1 stable, 0.1-0.25 moderate shift, above
    0.25 a large shift.

    Parameters
    ----------
    before, after : pandas.Series
        The feature's values in the earlier and the later run.
    bins : int, default=10
        Number of quantile bins.

    Returns
    -------
    float
        The index (0 when the distributions match); NaN without values.
    """
    a = np.sort(pd.to_numeric(before, errors="coerce").dropna().to_numpy(float))
    b = pd.to_numeric(after, errors="coerce").dropna().to_numpy()
    if not len(a) or not len(b):
        return float("nan")
    lower, upper, t = edge_ranks(len(a), bins)
    edges = quantile_edges(a[lower], a[upper], t)
    if len(edges) < 2:
        return 0.0 if np.allclose(b, a[0]) else float("inf")
    return stability_index(np.histogram(a, edges)[0], np.histogram(b, edges)[0])
