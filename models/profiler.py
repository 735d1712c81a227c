"""Turn clusters into personas: size, value, NPS with its interval and test, traits, a name.

The profiler reads the raw (unscaled) feature table and a metadata table describing
each feature (family, lens, unit, transform, label, description), so it can speak in
the units a customer-success team uses. NPS, its interval and its test come from
`models.nps`; focus, risk and actions from the rules in `models.actions`; key drivers
(`models.drivers`) and themes (`models.themes`) are computed apart and attached here.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re

import numpy as np
import pandas as pd

from models.actions import pick_focus, suggest_actions
from models.nps import nps_interval, nps_summary, nps_vs_rest
from models.preprocessing import signed_log1p

# The NPS statistics live in `models.nps`; they are re-exported here, where they were first.
__all__ = [
    "format_value",
    "name_personas",
    "nps_interval",
    "nps_summary",
    "nps_vs_rest",
    "profile_personas",
]

logger = logging.getLogger(__name__)
_progress = logging.getLogger("personas.progress")  # shown by pipelines.run.stage


def _transformed(values: pd.Series, transform: str) -> pd.Series:
    return pd.Series(signed_log1p(values), index=values.index) if transform == "log" else values


def _traits(
    frame: pd.DataFrame, meta: pd.DataFrame, labels: np.ndarray, personas: list
) -> dict[int, list[dict]]:
    """Standardized difference of each persona vs the population, for every feature.

    Feature by feature: the population's side (the transform, its spread and mean, the
    statistic, a category's shares) is computed once for every persona, and one
    feature's transformed values are held at a time. Returns persona -> its traits,
    strongest first.
    """
    masks = {pid: labels == pid for pid in personas}
    members = {pid: np.flatnonzero(mask) for pid, mask in masks.items()}
    frame = frame.reset_index(drop=True)  # rows by position: taking string ids costs seconds
    rows: dict = {pid: [] for pid in personas}
    for done, (name, info) in enumerate(meta.iterrows(), start=1):
        _progress.info("", extra={"progress": (done, len(meta), "features")})
        col = frame[name]
        if info["transform"] == "category":
            levels = col.dropna().astype(str)
            shares = levels.value_counts(normalize=True)
            codes = pd.Categorical(levels, categories=shares.index).codes
            present = col.notna().to_numpy()
            for pid in personas:
                inside_codes = codes[masks[pid][present]]
                counts = np.bincount(inside_codes, minlength=len(shares))
                for i, (level, pop_share) in enumerate(shares.items()):
                    inside = counts[i] / len(inside_codes) if len(inside_codes) else math.nan
                    sd = math.sqrt(pop_share * (1 - pop_share))
                    if sd > 0 and not math.isnan(inside):
                        rows[pid].append(
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
        sd, t_mean = t.std(), t.mean()
        if not sd or np.isnan(sd):
            continue
        stat = "median" if info["transform"] == "log" else "mean"
        population_value = getattr(values, stat)()
        for pid in personas:
            inside = t.take(members[pid])
            if inside.notna().sum() == 0:
                continue
            persona_value = getattr(values.take(members[pid]), stat)()
            effect = (inside.mean() - t_mean) / sd
            rows[pid].append(
                _trait(name, info, persona_value, population_value, effect, stat, info["label"])
            )
    return {pid: sorted(found, key=lambda r: -abs(r["std_diff"])) for pid, found in rows.items()}


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


def name_personas(
    personas: list[dict], naming: dict, min_effect: float, lead: tuple[str, ...] = ()
) -> list[str]:
    """Readable, unique names from each persona's strongest traits, by configured rules.

    Parameters
    ----------
    personas : list of dict
        Profiles with ``all_traits`` (sorted by strength) and ``value_effect``.
    naming : dict
        ``value_words`` ({high, low}), ``value_threshold``, ``phrases`` (rules of
        ``feature`` pattern and ``high`` / ``low`` phrases), ``fallback`` and
        ``lapsed`` (``{below, word}``: personas whose mean P(alive) is below ``below``
        start with ``word`` instead of a value word).
    min_effect : float
        Traits weaker than this never name a persona.
    lead : tuple of str, default=()
        Features whose traits name a persona before any rule: the attributes, when what
        customers hold is what shaped the personas (``pipelines.segment.attributes_lead``).

    Returns
    -------
    list of str
        One name per persona, e.g. "High-value power users"; duplicates are told apart
        by their next distinguishing phrase, then by a number. The same evidence always
        gives the same name.
    """
    candidates = []
    lapsed = naming.get("lapsed") or {}
    for p in personas:
        value_word = ""
        effect = p.get("value_effect")
        if effect is not None and abs(effect) >= naming["value_threshold"]:
            value_word = naming["value_words"]["high" if effect > 0 else "low"]
        alive = p.get("p_alive_mean")
        if lapsed and alive is not None and alive < lapsed["below"]:
            value_word = lapsed["word"]  # what they were worth matters less than that they left
        phrases = [  # what shaped the personas, when it was what customers hold
            _held(t)
            for t in p["all_traits"]
            if t["feature"].split("=")[0] in lead
            and abs(t["std_diff"]) >= min_effect
            and not ("=" in t["feature"] and t["std_diff"] < 0)
        ]
        for t in p["all_traits"]:
            if abs(t["std_diff"]) < min_effect or t["feature"] == naming["value_feature"]:
                continue
            phrase = _phrase(t, naming["phrases"])
            if phrase and phrase not in phrases:
                phrases.append(phrase)
        plain = [  # what tells a persona apart when no rule names it: its raw traits
            _plain(t)
            for t in p["all_traits"]
            if abs(t["std_diff"]) >= min_effect
            and t.get("label")
            and _phrase(t, naming["phrases"]) is None
            and not ("=" in t["feature"] and t["std_diff"] < 0)
        ]
        phrases = (phrases or [naming["fallback"]]) + [x for x in plain if x not in phrases]
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


_YES, _NO = {"yes", "true", "y", "1"}, {"no", "false", "n", "0", "none"}


def _plain(trait: dict) -> str:
    """Write a raw trait: "more active days", or a level held more: "pro plan", "with tv"."""
    if "=" not in trait["feature"]:
        return f"{'more' if trait['std_diff'] > 0 else 'less'} {trait['label']}"
    what, _, level = trait["label"].rpartition(" is ")  # "<attribute> is <level>"
    if not what:
        return trait["label"]
    if level.lower() in _YES:
        return f"with {what}"
    if level.lower() in _NO:
        return f"without {what}"
    return f"{level} {what}"


def _held(trait: dict) -> str:
    """Name customers by what they hold: "customers with tv", "fibre internet customers"."""
    phrase = _plain(trait)
    if phrase.startswith(("with ", "without ")):
        return f"customers {phrase}"
    return phrase if "=" not in trait["feature"] else f"{phrase} customers"


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
    business: str = "b2b",
    lead: tuple[str, ...] = (),
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
    business : {"b2b", "b2c"}, default="b2b"
        Who the customers are: action rules on ``business`` speak to them.
    lead : tuple of str, default=()
        Features whose traits name the personas first (see `name_personas`).

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
    personas, ids = [], sorted(set(labels.tolist()))
    all_traits = _traits(frame, candidates, labels, ids)
    for pid in ids:
        mask = labels == pid
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
    names = name_personas(named, naming, min_trait_effect, lead) if naming else None
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
        if p["persona_id"] == -1:
            p["actions"] = []
        else:
            p["actions"] = suggest_actions(p, actions, business=business)
    return [{k: p[k] for k in _ORDER} for p in personas]
