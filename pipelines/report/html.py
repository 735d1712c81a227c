"""The analyst report: one self-contained HTML file that opens offline, and a Markdown summary.

Figures are drawn with matplotlib in the Okabe-Ito palette (`pipelines.report.figures`) and
embedded as base64 PNG; the page has no scripts, fonts or links to fetch, so it makes no
network request. Its size depends on the number of personas, not of customers (the persona
map is sampled).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from models.actions import DEFAULT_FOCUS_RULE, focus_rule_text
from models.nps import format_nps
from models.profiler import format_value
from pipelines.report.figures import (
    PALETTE,
    bubble_figure,
    drivers_figure,
    map_figure,
    nps_figure,
    nps_is_reliable,
    percent,
    persona_color,
    persona_name,
    size_figure,
    trait_figure,
)
from pipelines.report.influence import influence_card, units
from pipelines.report.segmentation import continuum_note, segmentation_section

# PALETTE lives in `pipelines.report.figures`; it is re-exported here, where it was first.
__all__ = ["PALETTE", "write_report"]

_DIRECTION = {1: " (higher: better score)", -1: " (higher: worse score)"}


def _times(value) -> str:
    return "—" if value is None else f"{value:.1f}× avg"


def _nps_cell(p: dict) -> str:
    if p.get("nps") is None:
        return "<span class='muted'>no respondents</span>"
    interval = format_nps(None, p["nps_ci_low"], p["nps_ci_high"])
    text = f"{format_nps(p['nps'])} <small>{interval}</small>"
    if not nps_is_reliable(p):
        return f"<span class='muted' title='too few respondents'>{text} too few respondents</span>"
    return text


def _vs_rest(p: dict) -> str:
    if not nps_is_reliable(p) or p.get("nps_vs_rest") is None:
        return "<span class='muted'>not tested</span>"
    mark = "significant" if p["nps_significant"] else "not significant"
    return f"{p['nps_vs_rest']:+.0f} <small>(p={p['nps_p_value']:.2g}, {mark})</small>"


def _ppd_bar(p: dict) -> str:
    n = p.get("respondents") or 0
    if not n:
        return ""
    parts = [
        ("promoters", p["promoters"], "#009E73"),
        ("passives", p["passives"], "#BBBBBB"),
        ("detractors", p["detractors"], "#D55E00"),
    ]
    bar = "".join(
        f"<span style='width:{100 * c / n:.1f}%;background:{col}' title='{k}'></span>"
        for k, c, col in parts
    )
    legend = " · ".join(f"{k} {100 * c / n:.0f}% ({c:,})" for k, c, _ in parts)
    return f"<div class='ppd'>{bar}</div><small>{legend} of {n:,} respondents</small>"


def _list(title: str, items: list[str]) -> str:
    return f"<h4>{title}</h4><ul>{''.join(items)}</ul>" if items else ""


def _card(p: dict, who: str = "customers") -> str:
    e = html.escape
    badges = "".join(
        f"<span class='badge {cls}'>{text}</span>"
        for cls, text, on in [
            ("focus", "Focus", p.get("is_focus")),
            ("risk", "At risk", p.get("is_at_risk")),
            ("unstable", "Unstable", p.get("unstable")),
            ("gap", "Influence gap", (p.get("influence_gap") or {}).get("called_out")),
        ]
        if on
    )
    original = f" <small>(model's name: {e(p['name'])})</small>" if p.get("custom_name") else ""
    desc = p.get("custom_description") or p["description"]
    facts = [
        (who, f"{p['size']:,} ({percent(p['share'])})"),
        ("revenue share", percent(p.get("revenue_share"))),
        (f"value per {who.rstrip('s')}", _times(p.get("value_index"))),
        ("NPS [95%]", _nps_cell(p)),
        ("vs the rest", _vs_rest(p)),
        ("NPS rank", str(p["nps_rank"]) if p.get("nps_rank") else "—"),
    ]
    if p.get("stability") is not None:
        facts.append(("stability (Jaccard)", f"{p['stability']:.2f}"))
    if p.get("p_alive_mean") is not None:
        facts.append(("mean P(alive)", f"{p['p_alive_mean']:.2f}"))
    table = "".join(f"<div><b>{k}</b><br>{v}</div>" for k, v in facts)
    traits = [
        f"<li>{e(t['description'].replace('_', ' '))}: "
        f"<b>{format_value(t['persona_value'], t['unit'])}</b> vs "
        f"{format_value(t['population_value'], t['unit'])} "
        f"<small>({t['std_diff']:+.1f} sd)</small></li>"
        for t in p["traits"]
    ]
    drivers = [
        f"<li class='{'' if d['clear'] else 'muted'}'>{e(d['description'])}"
        f"{_DIRECTION.get(d.get('direction'), '')} <small>{d['importance']:+.2f} "
        f"[{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]{'' if d['clear'] else ', not clear'}"
        "</small></li>"
        for d in p.get("drivers") or []
    ]
    if drivers and not any(d["clear"] for d in p["drivers"]):
        drivers.append("<li class='muted'>No clear driver inside this persona.</li>")
    themes = p.get("themes") or {}
    needs = [
        f"<li>“{e(k['term'])}”: {percent(k['share'])} of their comments"
        f" vs {percent(k['rest_share'])} of others'</li>"
        for k in themes.get("keywords", [])
    ] + [
        f"<li>tickets on <b>{e(t['topic'])}</b>: {percent(t['share'])}"
        f" vs {percent(t['rest_share'])} for others</li>"
        for t in themes.get("topics", [])
    ]
    quotes = "".join(f"<blockquote>{e(q)}</blockquote>" for q in themes.get("examples", []))
    actions = [f"<li><b>{e(a['rule'])}</b>: {e(a['action'])}</li>" for a in p.get("actions", [])]
    reasons = "".join(
        f"<p class='why'>{label}: {e(p[k])}</p>"
        for label, k in [("Focus because", "focus_reason"), ("At risk because", "risk_reason")]
        if p.get(k)
    )
    return (
        f"<section class='card' data-persona='{p['persona_id']}'>"
        f"<h3><span class='dot' style='background:{persona_color(p['persona_id'])}'></span>"
        f"{e(persona_name(p))}{original} {badges}</h3><p>{e(desc)}</p>{reasons}"
        f"<div class='facts'>{table}</div>{_ppd_bar(p)}{influence_card(p)}"
        f"<div class='cols'><div>{_list('What sets them apart', traits)}"
        f"{_list('What moves their score', drivers)}</div>"
        f"<div>{_list('In their own words', needs)}{quotes}{_list('Actions', actions)}</div></div>"
        "</section>"
    )


def _overview(personas: list[dict], who: str = "customers") -> str:
    rows = "".join(
        f"<tr><td><span class='dot' style='background:{persona_color(p['persona_id'])}'></span>"
        f"{html.escape(persona_name(p))}</td><td>{p['size']:,}</td><td>{percent(p['share'])}</td>"
        f"<td>{percent(p.get('revenue_share'))}</td><td>{_nps_cell(p)}</td><td>{_vs_rest(p)}</td>"
        f"<td>{p.get('nps_rank') or '—'}</td></tr>"
        for p in personas
    )
    return (
        f"<table><tr><th>persona</th><th>{who}</th><th>share</th><th>revenue share</th>"
        f"<th>NPS [95%]</th><th>vs the rest</th><th>rank</th></tr>{rows}</table>"
    )


def _focus_block(personas: list[dict], rule: str) -> str:
    def names(key, reason):
        picked = [p for p in personas if p.get(key)]
        if not picked:
            return "<li class='muted'>none meets the rule</li>"
        return "".join(
            f"<li><b>{html.escape(persona_name(p))}</b>: {html.escape(p[reason])}</li>"
            for p in picked
        )

    return (
        f"<div class='where'><div><h3>Focus</h3><ul>{names('is_focus', 'focus_reason')}</ul></div>"
        f"<div><h3>At risk</h3><ul>{names('is_at_risk', 'risk_reason')}</ul></div></div>"
        f"<p class='meta'>The rule: {html.escape(rule)}</p>"
    )


def _quality_rows(quality: dict) -> str:
    rows = []
    for name, t in quality["tables"].items():
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{t['rows']:,}</td>"
            f"<td>{t.get('rows_used', 0):,}</td>"
            f"<td>{t['rows_invalid']:,}</td><td>{t.get('unknown_customer_rows', 0):,}</td>"
            f"<td>{t.get('rows_after_as_of', 0):,}</td>"
            f"<td>{html.escape(str(t.get('first') or ''))[:10]} – "
            f"{html.escape(str(t.get('last') or ''))[:10]}</td></tr>"
        )
    return "".join(rows)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1150px;color:#222;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem} h4{margin:.6rem 0 .2rem} .meta{color:#555;font-size:.9rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border-bottom:1px solid #ddd;
padding:.25rem .6rem;text-align:left;font-size:.9rem} th{color:#555;font-weight:600}
.card{border:1px solid #ccc;border-radius:8px;padding:.8rem 1.2rem;margin:1rem 0}
.card h3{margin:.2rem 0} .dot{display:inline-block;width:.8rem;height:.8rem;
border-radius:50%;margin-right:.5rem} img{max-width:100%} small{color:#666}
.muted,.muted small{color:#999} .facts{display:flex;flex-wrap:wrap;gap:.4rem 1.6rem;
font-size:.9rem;margin:.4rem 0} .facts b{color:#555;font-weight:600;font-size:.8rem}
.ppd{display:flex;height:.7rem;border-radius:4px;overflow:hidden;margin:.4rem 0 .1rem;
max-width:420px} .ppd span{display:block} .cols{display:grid;grid-template-columns:1fr 1fr;
gap:1.5rem} .cols ul{margin:.2rem 0;padding-left:1.2rem;font-size:.9rem}
blockquote{margin:.3rem 0;padding:.2rem .7rem;border-left:3px solid #56B4E9;color:#444;
font-style:italic;font-size:.9rem} .badge{font-size:.75rem;padding:.1rem .45rem;
border-radius:4px;margin-left:.3rem;vertical-align:middle} .badge.focus{
background:#009E73;color:#fff} .badge.risk{background:#D55E00;color:#fff}
.badge.unstable{background:#999;color:#fff} .badge.gap{background:#CC79A7;color:#fff}
.gap{border-left:3px solid #CC79A7;padding:.2rem .7rem;font-size:.9rem} .where{display:grid;
grid-template-columns:1fr 1fr;gap:1.5rem} .why{font-size:.9rem;color:#333;margin:.2rem 0}
figure{margin:1rem 0} figcaption{color:#555;font-size:.9rem}
.warning{border-left:4px solid #D55E00;background:#fdf1e8;padding:.5rem .8rem}
"""


def rule_text(focus_rule: dict | None, min_respondents: int, alpha: float) -> str:
    """Return the focus and at-risk rule in words, with the run's settings."""
    settings = {**DEFAULT_FOCUS_RULE, **(focus_rule or {})}
    return focus_rule_text(**settings, min_respondents=min_respondents, alpha=alpha)


def _continuum(segmentation: dict | None) -> str:
    note = continuum_note(segmentation)
    return f"<p class='warning'><b>{html.escape(note)}</b></p>" if note else ""


def _num(value) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}"


def _changes_section(changes: dict | None, promotion: dict | None) -> str:
    """Render "What changed": persona by persona, drift, and the promotion decision."""
    parts = []
    if promotion is not None:
        verdict = (
            "This model is now the champion."
            if promotion["promoted"]
            else "This model was kept as a candidate, not promoted: "
            + html.escape("; ".join(promotion["failed_gates"]))
            + "."
        )
        parts.append(f"<p class='meta'>{verdict}</p>")
    if changes:
        rows = []
        for r in changes["personas"]:
            change = r.get("nps_change") or {}
            sig = (
                ""
                if change.get("significant") is None
                else (" (significant)" if change["significant"] else " (not significant)")
            )
            delta = "" if change.get("change") is None else f"{change['change']:+.0f}{sig}"
            rows.append(
                f"<tr><td>{r['persona_id']}</td><td>{html.escape(r['name'])}</td>"
                f"<td>{r['status']}</td><td>{_num(r['size_before'])} → {_num(r['size_after'])}</td>"
                f"<td>{_num(r['nps_before'])} → {_num(r['nps_after'])}</td><td>{delta}</td></tr>"
            )
        drift = ", ".join(
            f"{html.escape(k)} ({v:.2f})" for k, v in list(changes["drift"].items())[:5]
        )
        parts.append(
            "<table><tr><th>id</th><th>persona</th><th>status</th><th>customers</th>"
            "<th>NPS</th><th>NPS change</th></tr>" + "".join(rows) + "</table>"
            f"<p class='meta'>Compared with run {html.escape(str(changes['previous_run']))} on "
            f"{changes['customers_compared']:,} customers present in both; migration.csv has "
            f"who moved where. Features that moved most (population stability index; above 0.25 "
            f"is a large shift): {drift or 'none'}.</p>"
        )
    if not parts:
        return ""
    return "<h2>What changed</h2>" + "".join(parts)


def write_report(
    path: str | Path,
    *,
    personas: list[dict],
    quality: dict,
    model: dict,
    embedding: np.ndarray,
    labels: np.ndarray,
    run_id: str,
    drivers: dict | None = None,
    focus_rule: dict | None = None,
    min_respondents: int = 30,
    alpha: float = 0.05,
    map_sample: int = 5000,
    changes: dict | None = None,
    promotion: dict | None = None,
    segmentation: dict | None = None,
) -> Path:
    """Write ``report.html``: one self-contained page, no network requests.

    Parameters
    ----------
    path : str or Path
        Where to write the file.
    personas : list of dict
        The persona table (as in ``personas.json``); fields the profiler did not set
        (drivers, themes, focus...) are left out of the page.
    quality : dict
        The data-quality summary.
    model : dict
        What was fitted: ``n_customers``, ``as_of``, ``silhouette``, ``families``; for
        personas of accounts also ``unit`` ("accounts"), ``people`` and ``gap_rule``.
    embedding : ndarray of shape (n_points, 2)
        2-D coordinates of customers for the persona map (sampled to ``map_sample``).
    labels : ndarray of shape (n_points,)
        Persona id of each point.
    run_id : str
        The MLflow run id.
    drivers : dict, optional
        Output of `models.drivers.key_drivers`, for the overall drivers figure.
    focus_rule : dict, optional
        The settings `models.actions.pick_focus` ran with, to state the rule.
    min_respondents : int, default=30
        The profiler's threshold below which NPS is greyed out.
    alpha : float, default=0.05
        The profiler's significance level for NPS vs the rest.
    map_sample : int, default=5000
        Most points drawn on the persona map.
    changes, promotion : dict, optional
        ``changes.json`` and the promotion decision, for "What changed".
    segmentation : dict, optional
        ``segmentation.json``: a "How many personas" section, and a warning when the
        personas are slices of a continuum.

    Returns
    -------
    Path
        The written file.
    """
    rule = rule_text(focus_rule, min_respondents, alpha)
    figures = [
        ("NPS per persona", "Grey: too few respondents to rank.", nps_figure(personas)),
        ("Value vs NPS", "High value and low NPS is where to act first.", bubble_figure(personas)),
        ("Persona sizes", "", size_figure(personas)),
        (
            "Persona map",
            f"{min(len(labels), map_sample):,} customers drawn.",
            map_figure(embedding, labels, personas, map_sample),
        ),
    ]
    if any(p.get("effects") or p.get("traits") for p in personas):
        figures.append(
            ("Traits", "Standardized differences; |d| >= 0.5 printed.", trait_figure(personas))
        )
    if drivers and drivers.get("overall"):
        figures.append(
            (
                "Key drivers",
                "Permutation importance on held-out respondents.",
                drivers_figure(drivers),
            )
        )
    figs = "".join(
        f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'>"
        f"<figcaption>{html.escape(t)}. {html.escape(c)}</figcaption></figure>"
        for t, c, b in figures
    )
    silhouette = model.get("silhouette")
    fit = f"silhouette {silhouette:.3f} · " if silhouette is not None else ""
    driver_note = ""
    if drivers and drivers.get("overall"):
        score = drivers["kind"] == "score"
        driver_note = (
            f"Key drivers: a gradient-boosted model of the "
            f"{'score' if score else 'promoter vs detractor'} from the features (held-out "
            f"{'R²' if score else 'ROC AUC'} {drivers['model_quality']}, "
            f"{drivers['respondents']:,} respondents); importance = {drivers['metric']} when "
            f"the feature is shuffled, in {drivers['unit']}, within the persona for a "
            "persona's drivers. Clear = above zero after Holm correction."
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Personas report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_CSS}</style></head><body>
<h1>Customer personas</h1>
<p class="meta">{units(model)} as of {html.escape(str(model["as_of"]))} ·
{sum(p["persona_id"] != -1 for p in personas)} personas · {fit}clustered on
{html.escape(", ".join(model.get("families", [])))} · MLflow run {html.escape(run_id)}</p>
{_continuum(segmentation)}
<h2>Where to act</h2>
{_focus_block(personas, rule)}
<h2>Overview</h2>
{_overview(personas, model.get("unit", "customers"))}
<h2>Personas</h2>
{"".join(_card(p, model.get("unit", "customers")) for p in personas)}
{_changes_section(changes, promotion)}
{segmentation_section(segmentation)}
<h2>Figures</h2>
{figs}
<h2>How to read this</h2>
<p class="meta">NPS counts each respondent's latest score (promoters 9-10, passives 7-8,
detractors 0-6): NPS = % promoters - % detractors. The 95% interval is the adjusted Wald
interval (3/4 added to promoters and detractors, 3 to respondents), which covers the true NPS
about 95% of the time from 30 respondents. "vs the rest" compares a persona's NPS with all
other customers (two-sample z test with the pooled trinomial variance, Holm-corrected across
personas). Personas with fewer than {min_respondents} respondents are greyed out and never ranked.
Traits compare the persona with all customers in standard deviations (medians for counts and
money). {html.escape(driver_note)} Comments are scrubbed of e-mails, phone numbers and links.
{html.escape(model.get("gap_rule") or "")}</p>
<h2>Data quality</h2>
<table><tr><th>table</th><th>rows</th><th>used</th><th>invalid</th><th>unknown customer</th>
<th>after as_of</th><th>date range</th></tr>{_quality_rows(quality)}</table>
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
