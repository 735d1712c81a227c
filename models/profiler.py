"""Turn clusters into personas: size, value, NPS with its interval, traits and a name.

The profiler reads the raw (unscaled) feature table and a metadata table describing
each feature (family, lens, unit, transform, label, description), so it can speak in
the units a customer-success team uses.
"""

from __future__ import annotations

import fnmatch
import math

import numpy as np
import pandas as pd
from scipy.stats import norm

from models.preprocessing import signed_log1p

__all__ = ["name_personas", "nps_summary", "profile_personas"]


def nps_summary(scores, *, ci_level: float = 0.95) -> dict:
    """Count NPS the standard way, with a confidence interval.

    Parameters
    ----------
    scores : array-like of float
        Each respondent's latest 0-10 score; NaN means "not a respondent".
    ci_level : float, default=0.95
        Coverage of the interval.

    Returns
    -------
    dict
        ``nps``, ``nps_ci_low``, ``nps_ci_high``, ``respondents``, ``promoters``,
        ``passives``, ``detractors`` (counts). NPS fields are None without respondents.

    Notes
    -----
    NPS = 100 (p - d), with p and d the shares of promoters (9-10) and detractors (0-6).
    Its variance is that of a difference of two proportions from one multinomial sample,
    ``100^2 [p + d - (p - d)^2] / n``. The interval is Wald's, centred on the observed
    NPS, but with the variance computed from shares that carry one pseudo-respondent in
    each category (``(P + 1) / (n + 3)``, in the spirit of Agresti and Coull): plain Wald
    collapses to zero width when every respondent answers alike, which small personas do.
    The interval is clipped to [-100, 100].

    Examples
    --------
    >>> nps_summary([10, 9, 8, 3])["nps"]
    25.0
    """
    s = np.asarray(scores, dtype=float)
    s = s[~np.isnan(s)]
    n = int(s.size)
    promoters, detractors = int((s >= 9).sum()), int((s <= 6).sum())
    out = {
        "respondents": n,
        "promoters": promoters,
        "passives": n - promoters - detractors,
        "detractors": detractors,
        "nps": None,
        "nps_ci_low": None,
        "nps_ci_high": None,
    }
    if n == 0:
        return out
    p, d = promoters / n, detractors / n
    pa, da = (promoters + 1) / (n + 3), (detractors + 1) / (n + 3)
    se = 100 * math.sqrt((pa + da - (pa - da) ** 2) / n)
    z = float(norm.ppf(0.5 + ci_level / 2))
    nps = 100 * (p - d)
    out.update(
        nps=round(nps, 2),
        nps_ci_low=round(max(-100.0, nps - z * se), 2),
        nps_ci_high=round(min(100.0, nps + z * se), 2),
    )
    return out


def _transformed(values: pd.Series, transform: str) -> pd.Series:
    return pd.Series(signed_log1p(values), index=values.index) if transform == "log" else values


def _traits(frame: pd.DataFrame, meta: pd.DataFrame, mask: np.ndarray) -> list[dict]:
    """Standardized difference of the persona vs the population, for every feature."""
    rows = []
    for name, info in meta.iterrows():
        col = frame[name]
        if info["transform"] == "category":
            levels = col.dropna().astype(str)
            for level, pop_share in levels.value_counts(normalize=True).items():
                inside = (levels[mask[col.notna().to_numpy()]] == level).mean()
                sd = math.sqrt(pop_share * (1 - pop_share))
                if sd > 0 and not math.isnan(inside):
                    rows.append(
                        _trait(
                            f"{name}={level}",
                            info,
                            inside,
                            pop_share,
                            (inside - pop_share) / sd,
                            "share",
                            f"{info['label']} is {level}",
                        )
                    )
            continue
        values = pd.to_numeric(col, errors="coerce")
        t = _transformed(values, info["transform"])
        sd = t.std()
        inside = t[mask]
        if not sd or np.isnan(sd) or inside.notna().sum() == 0:
            continue
        stat = "median" if info["transform"] == "log" else "mean"
        persona_value = getattr(values[mask], stat)()
        population_value = getattr(values, stat)()
        effect = (inside.mean() - t.mean()) / sd
        rows.append(
            _trait(name, info, persona_value, population_value, effect, stat, info["label"])
        )
    return sorted(rows, key=lambda r: -abs(r["std_diff"]))


def _trait(feature, info, persona_value, population_value, effect, statistic, label) -> dict:
    return {
        "feature": feature,
        "label": label,
        "description": info["description"],
        "unit": info["unit"] if statistic != "share" else "share",
        "lens": info["lens"],
        "statistic": statistic,
        "persona_value": round(float(persona_value), 4),
        "population_value": round(float(population_value), 4),
        "std_diff": round(float(effect), 3),
    }


def _phrase(trait: dict, rules: list[dict]) -> str | None:
    direction = "high" if trait["std_diff"] > 0 else "low"
    base = trait["feature"].split("=")[0]
    for rule in rules:
        pattern = rule["feature"]
        match = fnmatch.fnmatch(base, pattern) if "*" in pattern else base.startswith(pattern)
        if match and direction in rule:
            return rule[direction].format(label=trait["label"])
        if match:
            return None
    return None


def name_personas(personas: list[dict], naming: dict, min_effect: float) -> list[str]:
    """Readable, unique names from each persona's strongest traits, by configured rules.

    Parameters
    ----------
    personas : list of dict
        Profiles with ``all_traits`` (sorted by strength) and ``value_effect``.
    naming : dict
        ``value_words`` ({high, low}), ``value_threshold``, ``phrases`` (rules of
        ``feature`` pattern and ``high`` / ``low`` phrases) and ``fallback``.
    min_effect : float
        Traits weaker than this never name a persona.

    Returns
    -------
    list of str
        One name per persona, e.g. "High-value power users"; duplicates are told apart
        by their next distinguishing phrase.
    """
    candidates = []
    for p in personas:
        value_word = ""
        effect = p.get("value_effect")
        if effect is not None and abs(effect) >= naming["value_threshold"]:
            value_word = naming["value_words"]["high" if effect > 0 else "low"]
        phrases = []
        for t in p["all_traits"]:
            if abs(t["std_diff"]) < min_effect or t["feature"] == naming["value_feature"]:
                continue
            phrase = _phrase(t, naming["phrases"])
            if phrase and phrase not in phrases:
                phrases.append(phrase)
        phrases = phrases or [naming["fallback"]]
        candidates.append((value_word, phrases))
    names = []
    for value_word, phrases in candidates:
        name = f"{value_word} {phrases[0]}".strip()
        extra = iter(phrases[1:])
        while name in names:
            nxt = next(extra, None)
            name = f"{name}, {nxt}" if nxt else f"{name} {len(names) + 1}"
        names.append(name[0].upper() + name[1:])
    return names


def _describe(traits: list[dict], share: float) -> str:
    def fmt(v, unit):
        if unit == "share":
            return f"{100 * v:.0f}%"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"

    parts = []
    for t in traits[:3]:
        word = "higher" if t["std_diff"] > 0 else "lower"
        unit = "" if t["unit"] in ("share", "ratio", "flag", "category") else f" {t['unit']}"
        parts.append(
            f"{word} {t['description']} ({t['statistic']} {fmt(t['persona_value'], t['unit'])}"
            f"{unit} vs {fmt(t['population_value'], t['unit'])})"
        )
    lead = f"{100 * share:.0f}% of customers."
    return lead + (" Compared with everyone: " + "; ".join(parts) + "." if parts else "")


def profile_personas(
    frame: pd.DataFrame,
    labels: np.ndarray,
    meta: pd.DataFrame,
    *,
    nps_column: str | None = "nps_latest",
    value_column: str | None = "revenue_monetary",
    trait_features: list[str] | None = None,
    top_traits: int = 5,
    min_trait_effect: float = 0.2,
    ci_level: float = 0.95,
    naming: dict | None = None,
) -> list[dict]:
    """Describe each cluster as a persona.

    Parameters
    ----------
    frame : pandas.DataFrame of shape (n_customers, n_features)
        Raw feature values (not scaled).
    labels : ndarray of shape (n_customers,)
        Persona id of each customer, 0 the largest; -1 means unassigned.
    meta : pandas.DataFrame
        Feature metadata indexed by feature name (family, lens, description, unit,
        transform, label).
    nps_column : str or None, default="nps_latest"
        Column holding each customer's latest NPS score, if any.
    value_column : str or None, default="revenue_monetary"
        Column holding each customer's revenue, for the revenue share.
    trait_features : list of str, optional
        Features that may appear as traits (default: every feature in ``meta``).
    top_traits : int, default=5
        Traits kept per persona.
    min_trait_effect : float, default=0.2
        Smallest absolute standardized difference that counts as a trait.
    ci_level : float, default=0.95
        Coverage of the NPS interval.
    naming : dict, optional
        Naming rules (see `name_personas`); without them personas are named "Persona N".

    Returns
    -------
    list of dict
        One profile per persona, ordered by id, with the fields of ``personas.json``.
    """
    labels = np.asarray(labels)
    candidates = meta.loc[[f for f in (trait_features or meta.index) if f in meta.index]]
    revenue = None
    if value_column and value_column in frame:
        revenue = pd.to_numeric(frame[value_column], errors="coerce").clip(lower=0).fillna(0.0)
    n = len(frame)
    personas = []
    for pid in sorted(set(labels.tolist())):
        mask = labels == pid
        all_traits = _traits(frame, candidates, mask)
        traits = [t for t in all_traits if abs(t["std_diff"]) >= min_trait_effect][:top_traits]
        size = int(mask.sum())
        nps = nps_summary(frame[nps_column][mask] if nps_column in frame else [], ci_level=ci_level)
        value_effect = next(
            (t["std_diff"] for t in all_traits if t["feature"] == value_column), None
        )
        personas.append(
            {
                "persona_id": int(pid),
                "size": size,
                "share": round(size / n, 4),
                **nps,
                "revenue_share": (
                    round(float(revenue[mask].sum() / revenue.sum()), 4)
                    if revenue is not None and revenue.sum() > 0
                    else None
                ),
                "value_effect": value_effect,
                "traits": traits,
                "all_traits": all_traits,
                "description": _describe(traits, size / n),
            }
        )
    if naming:
        names = name_personas(personas, naming, min_trait_effect)
    else:
        names = [f"Persona {p['persona_id']}" for p in personas]
    for p, name in zip(personas, names, strict=True):
        p["name"] = "Unassigned" if p["persona_id"] == -1 else name
        del p["all_traits"]
    order = [
        "persona_id",
        "name",
        "description",
        "size",
        "share",
        "nps",
        "nps_ci_low",
        "nps_ci_high",
        "respondents",
        "promoters",
        "passives",
        "detractors",
        "revenue_share",
        "value_effect",
        "traits",
    ]
    return [{k: p[k] for k in order} for p in personas]
