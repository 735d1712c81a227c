"""The persona table's numbers over every customer, as Spark aggregations.

On the cluster path (`pipelines.cluster`) the personas are profiled on the sample the
driver holds: their traits, names, drivers, themes and stability. Once every customer is
assigned on the executors, `aggregate_personas` recomputes from the whole base, in one
Spark aggregation (a ``rollup``: per persona, and over everyone) of which only one row
per persona reaches the driver, and a second one for the exact medians:

- size and share; NPS respondents, promoters, passives and detractors (exact counts),
  the NPS, its interval and its test against the rest (`models.nps.nps_from_counts`,
  `models.nps.nps_vs_rest_counts`, the profiler's own formulas on those counts);
- revenue and CLV shares, the value index, mean revenue, CLV and P(alive), and the
  revenue at risk (`pipelines.value.revenue_at_risk`'s definition);
- each listed trait's persona and population value (mean; exact median for
  log-scaled features, bracketed by ``percentile_approx`` in the first aggregation, then
  counted exactly within the bracket in the second, `pipelines.cluster_quantiles`, so
  that no executor holds a persona's values; share for a category level) and its
  standardized difference; then the description, focus, at-risk flags and actions that
  follow from them (`models.profiler`, `models.actions`).

The action rules' ``trait:<feature>`` conditions read that feature's standardized
difference over every customer too. What stays the sample's: which traits are listed
and the names built from them, the heatmap's effects, drivers, themes and stability.
"""

from __future__ import annotations

import math

from models.actions import DEFAULT_ACTIONS, pick_focus, suggest_actions
from models.nps import nps_from_counts, nps_vs_rest_counts
from models.profiler import _describe
from pipelines.cluster_quantiles import exact_medians, median_aggregations

__all__ = ["aggregate_personas"]

#: The feature holding each customer's latest NPS answer (`models.profile_personas`).
NPS_COLUMN = "nps_latest"


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _num(name: str):
    """Return a numeric feature as a Spark column, NaN read as missing."""
    from pyspark.sql import functions as sf

    return sf.nanvl(sf.col(_q(name)), sf.lit(None).cast("double"))


def _signed_log1p(c):
    """`models.preprocessing.signed_log1p` as a Spark expression."""
    from pyspark.sql import functions as sf

    return sf.signum(c) * sf.log1p(sf.abs(c))


def _aggregations(
    meta, traits: set[str], columns: set[str], value: str | None, effects: set[str] = frozenset()
) -> list:
    """Return the named aggregate columns both levels (persona, everyone) compute.

    A log-scaled trait's exact median needs a second pass (`_medians`); this one holds
    its bracket (`pipelines.cluster_quantiles.median_aggregations`). The traits in
    ``effects`` only need their standardized difference (an action rule reads it).
    """
    from pyspark.sql import functions as sf

    aggs = [sf.count(sf.lit(1)).alias("n")]
    if NPS_COLUMN in columns:
        s = _num(NPS_COLUMN)
        aggs += [
            sf.count(s).alias("respondents"),
            sf.count(sf.when(s >= 9, 1)).alias("promoters"),
            sf.count(sf.when(s <= 6, 1)).alias("detractors"),
        ]
    for name in (value, "clv_value"):
        if name and name in columns:
            aggs += [
                sf.sum(sf.coalesce(sf.greatest(_num(name), sf.lit(0.0)), sf.lit(0.0))).alias(
                    f"pos:{name}"
                ),
                sf.avg(_num(name)).alias(f"mean:{name}"),
            ]
    if "clv_p_alive" in columns:
        aggs.append(sf.avg(_num("clv_p_alive")).alias("mean:clv_p_alive"))
        if "revenue_12m" in columns:
            revenue = sf.coalesce(sf.greatest(_num("revenue_12m"), sf.lit(0.0)), sf.lit(0.0))
            alive = sf.coalesce(_num("clv_p_alive"), sf.lit(1.0))
            aggs.append(sf.sum(revenue * (1 - alive)).alias("at_risk"))
    for trait in sorted(traits):
        name, _, level = trait.partition("=")
        if name not in columns:
            continue
        if level:  # a category level: its share of the customers with a value
            c = sf.col(_q(name))
            aggs += [
                sf.count(sf.when(c == level, 1)).alias(f"hits:{trait}"),
                sf.count(c).alias(f"known:{trait}"),
            ]
            continue
        transform = meta.loc[name, "transform"]
        x = _num(name)
        t = _signed_log1p(x) if transform == "log" else x
        if trait not in effects:  # a log-scaled trait's median: its bracket here
            log = transform == "log"
            aggs += median_aggregations(x, trait) if log else [sf.avg(x).alias(f"stat:{trait}")]
        aggs += [
            sf.avg(t).alias(f"tmean:{trait}"),
            sf.stddev_samp(t).alias(f"tsd:{trait}"),
        ]
    return aggs


def aggregate_personas(personas: list[dict], joined, meta, cfg: dict, business: str) -> dict:
    """Recompute the persona table's numbers over every customer (see the module docstring).

    Parameters
    ----------
    personas : list of dict
        The persona table profiled on the sample, updated in place.
    joined : pyspark.sql.DataFrame
        Every customer: ``persona_id`` (as assigned on the executors) and the features.
    meta : pandas.DataFrame
        The features' metadata (`features.FeatureTable.meta`).
    cfg : dict
        The run configuration (``naming``, ``profile``, ``focus``, ``actions``).
    business : {"b2b", "b2c"}
        Whom the actions speak to (`pipelines.profile.business_model`).

    Returns
    -------
    dict
        ``n_customers`` (every customer), ``outlier_share`` and ``sizes`` (persona id ->
        customers), for the run's metrics and report.
    """
    from pyspark.sql import functions as sf

    value = cfg["naming"]["value_feature"]
    columns = set(joined.columns)
    ruled = _rule_traits(cfg["actions"], meta)
    listed = {t["feature"] for p in personas for t in p["traits"]}
    aggs = _aggregations(meta, listed | ruled, columns, value, effects=ruled - listed)
    extra = [
        sf.avg(sf.col("is_outlier").cast("double")).alias("outliers"),
        sf.grouping_id().alias("_everyone"),
    ]
    # one pass: a row per persona and one over everyone (rollup), one row each to the driver
    rows = [r.asDict() for r in joined.rollup("persona_id").agg(*aggs, *extra).collect()]
    total = next(r for r in rows if r["_everyone"])
    by_id = {int(r["persona_id"]): r for r in rows if not r["_everyone"]}
    _medians(joined, total, by_id)
    n = int(total["n"])
    counts = {
        pid: (r.get("promoters", 0), r.get("detractors", 0), r.get("respondents", 0))
        for pid, r in by_id.items()
    }
    prof = cfg["profile"]
    tests = nps_vs_rest_counts(counts, min_respondents=prof["min_respondents"], alpha=prof["alpha"])
    for p in personas:
        r = by_id.get(p["persona_id"], dict.fromkeys(total, 0) | {"n": 0})
        _update(p, r, total, n, meta, prof["ci_level"], value)
        if p["persona_id"] in tests:
            p.update(tests[p["persona_id"]])
        p["trait_effects"] = _effects(ruled, r, total)
    _refocus(personas, cfg, business)
    for p in personas:
        del p["trait_effects"]
    return {
        "n_customers": n,
        "outlier_share": float(total["outliers"] or 0.0),
        "sizes": {pid: int(r["n"]) for pid, r in by_id.items()},
    }


def _medians(joined, total: dict, by_id: dict) -> None:
    """Set ``stat:<trait>`` of the log-scaled traits: exact medians, one more Spark job."""
    names = [k.split(":", 1)[1] for k in total if k.startswith("bracket:")]
    if not names:
        return
    values = {t: _num(t) for t in names}
    found = exact_medians(joined, "persona_id", values, {None: total, **by_id})
    for level, row in [(None, total), *by_id.items()]:
        row.update({f"stat:{t}": found[(level, t)] for t in names})


def _rule_traits(rules: list[dict] | None, meta) -> set[str]:
    """Return the traits the action rules read (``trait:<feature>``) that the profile has.

    The profile standardizes every feature but the feedback family's
    (`pipelines.profile.profile`); the persona table keeps only the listed traits, so
    the ones a rule reads are aggregated too.
    """
    names = {
        key.split(":", 1)[1]
        for rule in (DEFAULT_ACTIONS if rules is None else rules)
        for key in rule["when"]
        if key.startswith("trait:")
    }
    profiled = set(meta.index[meta["family"] != "feedback"])
    return {name for name in names if name.partition("=")[0] in profiled}


def _effects(traits: set[str], r: dict, total: dict) -> dict[str, float]:
    """Return the standardized difference of each trait over every customer (for rules)."""
    out = {}
    for name in traits:
        if f"hits:{name}" in r:  # a category level
            t = {"feature": name}
            _retrait(t, r, total)
            if "std_diff" in t:
                out[name] = t["std_diff"]
        elif f"tmean:{name}" in r and r[f"tmean:{name}"] is not None and total[f"tsd:{name}"]:
            diff = (r[f"tmean:{name}"] - total[f"tmean:{name}"]) / total[f"tsd:{name}"]
            out[name] = round(float(diff), 3)
    return out


def _share(r: dict, total: dict, name: str | None) -> float | None:
    key = f"pos:{name}"
    if key not in total or not total[key]:
        return None
    return round(float(r[key] or 0.0) / float(total[key]), 4)


def _mean(r: dict, name: str) -> float | None:
    value = r.get(f"mean:{name}")
    return None if value is None else round(float(value), 4)


def _update(p: dict, r: dict, total: dict, n: int, meta, ci_level: float, value) -> None:
    """Set one persona's numbers from its aggregate row ``r`` and the population's."""
    size = int(r["n"])
    share = size / n if n else 0.0
    p.update(size=size, share=round(share, 4))
    if "respondents" in r:
        p.update(
            nps_from_counts(r["promoters"], r["detractors"], r["respondents"], ci_level=ci_level)
        )
    revenue_share, clv_share = _share(r, total, value), _share(r, total, "clv_value")
    basis = clv_share if clv_share is not None else revenue_share
    p.update(
        revenue_share=revenue_share,
        clv_share=clv_share,
        value_index=None if basis is None or not share else round(basis / share, 3),
        revenue_mean=_mean(r, value) if value else None,
        clv_mean=_mean(r, "clv_value"),
        p_alive_mean=_mean(r, "clv_p_alive"),
    )
    if "at_risk" in r:
        p["revenue_at_risk"] = round(float(r["at_risk"] or 0.0), 2)
    for t in p["traits"]:
        _retrait(t, r, total)
    p["description"] = _describe(p["traits"], size, share, revenue_share)


def _retrait(t: dict, r: dict, total: dict) -> None:
    """Set a trait's persona and population values and its standardized difference."""
    f = t["feature"]
    if f"hits:{f}" in r:
        inside = r[f"hits:{f}"] / r[f"known:{f}"] if r[f"known:{f}"] else math.nan
        pop = total[f"hits:{f}"] / total[f"known:{f}"] if total[f"known:{f}"] else math.nan
        sd = math.sqrt(pop * (1 - pop)) if not math.isnan(pop) else 0.0
        if sd > 0 and not math.isnan(inside):
            t.update(
                persona_value=round(float(inside), 4),
                population_value=round(float(pop), 4),
                std_diff=round(float((inside - pop) / sd), 3),
            )
        return
    if f"stat:{f}" not in r or r[f"stat:{f}"] is None or not total[f"tsd:{f}"]:
        return
    t.update(
        persona_value=round(float(r[f"stat:{f}"]), 4),
        population_value=round(float(total[f"stat:{f}"]), 4),
        std_diff=round(float((r[f"tmean:{f}"] - total[f"tmean:{f}"]) / total[f"tsd:{f}"]), 3),
    )


def _refocus(personas: list[dict], cfg: dict, business: str) -> None:
    """Pick the focus and at-risk personas and their actions again, from the new numbers."""
    named = [p for p in personas if p["persona_id"] != -1]
    for p in personas:
        p.update(is_focus=False, focus_reason=None, is_at_risk=False, risk_reason=None)
    pick_focus(named, **(cfg["focus"] or {}))
    for p in named:
        p["actions"] = suggest_actions(p, cfg["actions"], business=business)
