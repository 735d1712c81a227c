"""Turn clusters into personas: size, value, NPS with its interval and test, traits, a name.

The profiler reads the raw (unscaled) feature table and a metadata table describing
each feature (family, lens, unit, transform, label, description), so it can speak in
the units a customer-success team uses. Focus, risk and actions come from the rules in
`models.actions`; key drivers (`models.drivers`) and themes (`models.themes`) are
computed apart and attached here.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re

import numpy as np
import pandas as pd
from scipy.stats import norm

from models.actions import pick_focus, suggest_actions
from models.preprocessing import signed_log1p

__all__ = [
    "format_value",
    "name_personas",
    "nps_interval",
    "nps_summary",
    "nps_vs_rest",
    "profile_personas",
]

logger = logging.getLogger(__name__)

#: Pseudo-counts of the adjusted Wald interval (Rocks 2016): 3/4 added to promoters and
#: to detractors, 3 to the respondents (so 3/2 to the passives).
_PSEUDO, _PSEUDO_N = 0.75, 3.0


def _adjusted(promoters, detractors, n):
    """Return the adjusted shares and the variance of their difference, as arrays."""
    m = np.asarray(n, dtype=float) + _PSEUDO_N
    pa = (np.asarray(promoters, dtype=float) + _PSEUDO) / m
    da = (np.asarray(detractors, dtype=float) + _PSEUDO) / m
    return pa, da, (pa + da - (pa - da) ** 2) / m


def nps_interval(promoters, detractors, n, *, ci_level: float = 0.95):
    """Compute the adjusted Wald interval of NPS, vectorized over samples.

    Parameters
    ----------
    promoters, detractors, n : array-like of int
        Counts of promoters, detractors and respondents (n >= 1).
    ci_level : float, default=0.95
        Coverage of the interval.

    Returns
    -------
    low, high : ndarray of float
        Bounds in NPS points, within [-100, 100]; they always contain the observed NPS.

    Notes
    -----
    NPS = 100 (p - d) is a difference of two shares of one trinomial sample, with variance
    ``[p + d - (p - d)^2] / n``. Wald's interval centred on the observed NPS (even with
    one pseudo-respondent per category in the variance, as this function first did)
    covers too rarely in small or lopsided personas: by simulation, 90.7-92.7% at n = 30
    for some shares, and 92.5% at n = 100 when nobody is passive. The adjusted Wald interval (Rocks
    2016, "Interval estimation for the Net Promoter Score", The American Statistician)
    adds 3/4 to the promoters and to the detractors and 3 to n, and centres the interval
    on the adjusted NPS. Over a grid of shares (promoters and detractors 5-95%, passives
    >= 5%) it covers the true NPS at least 93.8% of the time from n = 30 (mean 95.0%), and
    93.1% with no passives at all; it exceeds 97% (up to 99%, on the safe side) only below
    50 respondents when nearly all answer alike. ``tests/test_report.py`` checks 93-97% on
    realistic shares at n = 30 to 500. Bounds are widened, if needed, to contain the
    observed NPS (only ever for a handful of respondents).
    """
    pa, da, var = _adjusted(promoters, detractors, n)
    z = float(norm.ppf(0.5 + ci_level / 2))
    centre, half = 100 * (pa - da), 100 * z * np.sqrt(var)
    observed = 100 * (np.asarray(promoters) - np.asarray(detractors)) / np.asarray(n, dtype=float)
    low = np.clip(np.minimum(centre - half, observed), -100.0, 100.0)
    high = np.clip(np.maximum(centre + half, observed), -100.0, 100.0)
    return low, high


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

    See Also
    --------
    nps_interval : the interval and why it is the adjusted Wald one.

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
    low, high = nps_interval(promoters, detractors, n, ci_level=ci_level)
    out.update(
        nps=round(100 * (promoters - detractors) / n, 2),
        nps_ci_low=round(float(low), 2),
        nps_ci_high=round(float(high), 2),
    )
    return out


def _holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (step-down, monotone, capped at 1)."""
    m = p_values.size
    order = np.argsort(p_values)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p_values[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def nps_vs_rest(scores, labels, *, min_respondents: int = 30, alpha: float = 0.05) -> dict:
    """Test each persona's NPS against the rest of the customers, Holm-corrected.

    Parameters
    ----------
    scores : array-like of float of shape (n_customers,)
        Latest 0-10 score per customer, NaN for non-respondents.
    labels : array-like of int of shape (n_customers,)
        Persona id per customer; -1 (unassigned) is never tested but counts in "the rest".
    min_respondents : int, default=30
        Personas with fewer respondents are not tested and not ranked.
    alpha : float, default=0.05
        Family-wise error rate across the tested personas.

    Returns
    -------
    dict of int to dict
        Per persona id: ``nps_reliable`` (enough respondents), ``nps_vs_rest`` (NPS
        points above the rest), ``nps_p_value`` (Holm-adjusted, two-sided),
        ``nps_significant`` and ``nps_rank`` (1 = highest NPS among the reliable
        personas; ties share the best rank). All but ``nps_reliable`` are None for
        personas that are not reliable.

    Notes
    -----
    The persona and the rest are independent samples; under the null hypothesis that they
    answer alike, both are trinomial with the shares of all respondents pooled, so
    z = (NPS_a - NPS_b) / (100 sqrt([p + d - (p - d)^2] (1/n_a + 1/n_b))). By simulation
    this pooled test keeps its 5% size from 30 respondents (4.9-5.3%), where the unpooled
    or the interval's adjusted variances reject 6-7% of the time.
    """
    s = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    resp = ~np.isnan(s)
    prom, det = resp & (s >= 9), resp & (s <= 6)
    total = np.array([prom.sum(), det.sum(), resp.sum()], dtype=float)
    ids = sorted(set(labels.tolist()))
    out = {pid: dict.fromkeys(_NPS_TEST_KEYS) | {"nps_reliable": False} for pid in ids}
    tested, p_raw, nps = [], [], {}
    for pid in ids:
        m = labels == pid
        inside = np.array([prom[m].sum(), det[m].sum(), resp[m].sum()], dtype=float)
        rest = total - inside
        if pid == -1 or inside[2] < min_respondents or rest[2] == 0:
            continue
        diff = 100 * ((inside[0] - inside[1]) / inside[2] - (rest[0] - rest[1]) / rest[2])
        p, d = total[0] / total[2], total[1] / total[2]
        se = 100 * math.sqrt((p + d - (p - d) ** 2) * (1 / inside[2] + 1 / rest[2]))
        tested.append(pid)
        p_raw.append(2 * norm.sf(abs(diff) / se) if se > 0 else 1.0)
        nps[pid] = (inside[0] - inside[1]) / inside[2]
        out[pid].update(nps_reliable=True, nps_vs_rest=round(diff, 2))
    if tested:
        adjusted = _holm(np.array(p_raw))
        ranked = sorted(nps.values(), reverse=True)
        for pid, p in zip(tested, adjusted, strict=True):
            out[pid].update(
                nps_p_value=float(f"{p:.4g}"),
                nps_significant=bool(p < alpha),
                nps_rank=ranked.index(nps[pid]) + 1,
            )
    return out


_NPS_TEST_KEYS = ("nps_reliable", "nps_vs_rest", "nps_p_value", "nps_significant", "nps_rank")


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
        by their next distinguishing phrase, then by a number. The same evidence always
        gives the same name.
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
    names: list[str] = []
    for value_word, phrases in candidates:
        name = _capital(f"{value_word} {phrases[0]}".strip())
        extra = iter(phrases[1:])
        while name in names:
            nxt = next(extra, None)
            name = f"{name}, {nxt}" if nxt else f"{name} {len(names) + 1}"
        names.append(name)
    return names


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


_COUNTED = {"events", "days", "features", "purchases", "refunds", "tickets", "responses"}


def format_value(value, unit: str = "") -> str:
    """Write a value in plain words with its unit: ``35%``, ``155 events``, ``+0.32``.

    Parameters
    ----------
    value : float or None
        The value.
    unit : str, default=""
        The feature's unit (``share``, ``flag``, ``ratio``, ``money``, ``days``...).

    Returns
    -------
    str
        ``—`` for a missing value.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit in ("share", "flag"):
        return f"{100 * value:.0f}%"
    if unit == "ratio":
        return f"{value:+.2f}"
    if abs(value) >= 10 or float(value).is_integer():
        number = f"{value:,.0f}"
    else:
        number = f"{value:,.1f}"
    if unit in _COUNTED:
        return f"{number} {unit[:-1] if number == '1' else unit}"  # 1 day, 2 days
    currency = len(unit) == 3 and unit.isalpha() and unit.isupper()  # "USD", "EUR"
    return f"{number} {unit}" if currency else number


def _clause(t: dict) -> str:
    size = abs(t["std_diff"])
    degree = ("much " if size >= 0.8 else "slightly " if size < 0.5 else "") + (
        "higher" if t["std_diff"] > 0 else "lower"
    )
    pv, pop = (
        format_value(t["persona_value"], t["unit"]),
        format_value(t["population_value"], t["unit"]),
    )
    if "=" in t["feature"]:
        return f"{t['label'].replace('_', ' ')} for {pv} of them (vs {pop})"
    what = re.sub(r"\s*\([^)]*\)", "", t["description"]).replace("_", " ")
    stat = "average" if t["statistic"] == "mean" else t["statistic"]
    return f"their {what} is {degree} ({stat} {pv} vs {pop})"


def _describe(traits: list[dict], size: int, share: float, revenue_share: float | None) -> str:
    """Two sentences: what sets the persona apart (with values), then its size and value."""
    lead = f"They are {100 * share:.0f}% of customers ({size:,})"
    lead += (
        f" and bring {100 * revenue_share:.0f}% of revenue." if revenue_share is not None else "."
    )
    clauses = [_clause(t) for t in traits[:3]]
    if not clauses:
        return lead
    joined = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    return f"Compared with all customers, {joined}. {lead}"


def _overrides(personas: list[dict], overrides: dict | None) -> None:
    """Set ``custom_name`` / ``custom_description`` from overrides keyed by id or default name."""
    unused = set(overrides or {})
    for p in personas:
        p["custom_name"] = p["custom_description"] = None
        for key in (p["name"], p["persona_id"], str(p["persona_id"])):
            if key in (overrides or {}):
                value = overrides[key]
                value = value if isinstance(value, dict) else {"name": value}
                p["custom_name"] = value.get("name") or None
                p["custom_description"] = value.get("description") or None
                unused.discard(key)
                break
    if unused:
        logger.warning("Persona overrides that match no persona: %s", sorted(map(str, unused)))


def _mean(frame: pd.DataFrame, column: str | None, mask: np.ndarray) -> float | None:
    if not column or column not in frame:
        return None
    value = pd.to_numeric(frame[column], errors="coerce")[mask].mean()
    return None if pd.isna(value) else round(float(value), 4)


def _value_shares(frame: pd.DataFrame, column: str | None) -> pd.Series | None:
    if not column or column not in frame:
        return None
    value = pd.to_numeric(frame[column], errors="coerce").clip(lower=0).fillna(0.0)
    return value / value.sum() if value.sum() > 0 else None


_ORDER = (
    "persona_id name description size share nps nps_ci_low nps_ci_high respondents promoters "
    "passives detractors revenue_share value_effect traits custom_name custom_description "
    "revenue_mean value_index clv_mean clv_share p_alive_mean nps_reliable nps_vs_rest "
    "nps_p_value nps_significant nps_rank is_focus focus_reason is_at_risk risk_reason actions "
    "drivers themes effects"
).split()


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
    min_respondents: int = 30,
    alpha: float = 0.05,
    overrides: dict | None = None,
    focus_rule: dict | None = None,
    actions: list[dict] | None = None,
    clv_column: str | None = "clv",
    p_alive_column: str | None = "p_alive",
    drivers: dict | None = None,
    themes: dict | None = None,
    top_drivers: int = 3,
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
    min_respondents : int, default=30
        Personas with fewer NPS respondents are neither tested, ranked nor picked on NPS.
    alpha : float, default=0.05
        Family-wise error rate of the NPS tests (see `nps_vs_rest`).
    overrides : dict, optional
        A user's names and descriptions, keyed by persona id or by the computed name;
        each value is a name or ``{name, description}``. They are kept apart, in
        ``custom_name`` and ``custom_description``; ``name`` stays the computed one.
    focus_rule : dict, optional
        Settings of `models.actions.pick_focus` (default `models.actions.DEFAULT_FOCUS_RULE`).
    actions : list of dict, optional
        Action rules (default `models.actions.DEFAULT_ACTIONS`).
    clv_column, p_alive_column : str or None, default="clv", "p_alive"
        Columns with each customer's CLV and probability of being alive, used when present.
    drivers : dict, optional
        Output of `models.drivers.key_drivers`; each persona gets its top drivers.
    themes : dict, optional
        Output of `models.themes.persona_themes`, keyed by persona id.
    top_drivers : int, default=3
        Drivers kept per persona.

    Returns
    -------
    list of dict
        One profile per persona, ordered by id, with the fields of ``personas.json``:
        the contract's fields first, then value (``revenue_mean``, ``value_index``: value
        per customer over the average, from CLV when present, else revenue), NPS
        statistics (``nps_vs_rest``, ``nps_p_value``, ``nps_significant``, ``nps_rank``),
        focus and risk, ``actions``, ``drivers``, ``themes`` and ``effects``
        (standardized differences on every persona's top traits, for a heatmap).
    """
    labels = np.asarray(labels)
    candidates = meta.loc[[f for f in (trait_features or meta.index) if f in meta.index]]
    revenue = _value_shares(frame, value_column)
    clv = _value_shares(frame, clv_column)
    scores = frame[nps_column] if nps_column in frame else pd.Series(np.nan, index=frame.index)
    scores = pd.to_numeric(scores, errors="coerce").to_numpy(dtype=float)
    tests = nps_vs_rest(scores, labels, min_respondents=min_respondents, alpha=alpha)
    n = len(frame)
    personas, all_traits = [], {}
    for pid in sorted(set(labels.tolist())):
        mask = labels == pid
        all_traits[pid] = _traits(frame, candidates, mask)
        traits = [t for t in all_traits[pid] if abs(t["std_diff"]) >= min_trait_effect]
        size = int(mask.sum())
        share = size / n
        revenue_share = None if revenue is None else round(float(revenue[mask].sum()), 4)
        clv_share = None if clv is None else round(float(clv[mask].sum()), 4)
        basis = clv_share if clv_share is not None else revenue_share
        personas.append(
            {
                "persona_id": int(pid),
                "size": size,
                "share": round(share, 4),
                **nps_summary(scores[mask], ci_level=ci_level),
                "revenue_share": revenue_share,
                "value_effect": next(
                    (t["std_diff"] for t in all_traits[pid] if t["feature"] == value_column), None
                ),
                "traits": traits[:top_traits],
                "all_traits": all_traits[pid],
                "description": _describe(traits, size, share, revenue_share),
                "revenue_mean": _mean(frame, value_column, mask),
                "value_index": None if basis is None else round(basis / share, 3),
                "clv_mean": _mean(frame, clv_column, mask),
                "clv_share": clv_share,
                "p_alive_mean": _mean(frame, p_alive_column, mask),
                **tests[pid],
            }
        )
    named = [p for p in personas if p["persona_id"] != -1]
    names = name_personas(named, naming, min_trait_effect) if naming else None
    for i, p in enumerate(named):
        p["name"] = names[i] if names else f"Persona {p['persona_id']}"
    heat = list(dict.fromkeys(t["feature"] for p in named for t in p["traits"]))
    by_persona = (drivers or {}).get("by_persona", {})
    for p in personas:
        pid = p["persona_id"]
        p.setdefault("name", "Unassigned")
        effects = {t["feature"]: t["std_diff"] for t in all_traits[pid]}
        p["effects"] = {f: effects.get(f, 0.0) for f in heat}
        p["drivers"] = list(by_persona.get(pid, by_persona.get(str(pid), [])))[:top_drivers]
        p["themes"] = (themes or {}).get(pid)
        p["trait_effects"] = effects
    _overrides(personas, overrides)
    pick_focus(named, **(focus_rule or {}))
    for p in personas:
        p.setdefault("is_focus", False)
        p.setdefault("focus_reason", None)
        p.setdefault("is_at_risk", False)
        p.setdefault("risk_reason", None)
        p["actions"] = [] if p["persona_id"] == -1 else suggest_actions(p, actions)
    return [{k: p[k] for k in _ORDER} for p in personas]
