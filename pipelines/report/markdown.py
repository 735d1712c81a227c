"""The Markdown summary of a run (``report.md``): fit for a chat message or an e-mail."""

from __future__ import annotations

from pathlib import Path

from models.nps import format_nps
from pipelines.report.figures import nps_is_reliable, percent, persona_name
from pipelines.report.html import rule_text
from pipelines.report.influence import influence_markdown, units
from pipelines.report.segmentation import continuum_note

__all__ = ["write_markdown"]


def write_markdown(
    path: str | Path,
    *,
    personas: list[dict],
    model: dict,
    run_id: str,
    focus_rule: dict | None = None,
    min_respondents: int = 30,
    alpha: float = 0.05,
    segmentation: dict | None = None,
) -> Path:
    """Write ``report.md``: the summary for a chat message or an e-mail.

    Parameters
    ----------
    path : str or Path
        Where to write the file.
    personas : list of dict
        The persona table.
    model : dict
        ``n_customers`` and ``as_of``; for personas of accounts also ``unit``,
        ``people`` and ``gap_rule``.
    run_id : str
        The MLflow run id.
    focus_rule : dict, optional
        The settings `models.actions.pick_focus` ran with.
    min_respondents : int, default=30
        The profiler's threshold below which NPS is not ranked.
    alpha : float, default=0.05
        The profiler's significance level.
    segmentation : dict, optional
        ``segmentation.json``; a continuum is said plainly.

    Returns
    -------
    Path
        The written file.
    """
    shown = [p for p in personas if p["persona_id"] != -1]
    lines = [
        f"# Customer personas: {units(model)} as of {model['as_of']}",
        "",
        f"{len(shown)} personas · MLflow run `{run_id}`",
        "",
        *([f"**{continuum_note(segmentation)}**", ""] if continuum_note(segmentation) else []),
        f"| persona | {model.get('unit', 'customers')} | revenue | NPS [95%] | vs the rest |",
        "|---|---:|---:|---|---|",
    ]
    for p in personas:
        if p.get("nps") is None:
            nps = "no respondents"
        else:
            nps = format_nps(p["nps"], p["nps_ci_low"], p["nps_ci_high"])
            nps += "" if nps_is_reliable(p) else f" (too few respondents: {p['respondents']})"
        vs = "—"
        if nps_is_reliable(p) and p.get("nps_vs_rest") is not None:
            vs = f"{p['nps_vs_rest']:+.0f}{' (significant)' if p['nps_significant'] else ''}"
        lines.append(
            f"| {persona_name(p)} | {p['size']:,} ({percent(p['share'])}) "
            f"| {percent(p.get('revenue_share'))} | {nps} | {vs} |"
        )
    for title, key, reason in [
        ("Focus", "is_focus", "focus_reason"),
        ("At risk", "is_at_risk", "risk_reason"),
    ]:
        picked = [f"**{persona_name(p)}** ({p[reason]})" for p in shown if p.get(key)]
        lines += ["", f"**{title}:** " + ("; ".join(picked) if picked else "none meets the rule.")]
    lines += ["", f"_Rule: {rule_text(focus_rule, min_respondents, alpha)}_"]
    lines += ["", f"_{model['gap_rule']}_"] if model.get("gap_rule") else []
    lines += ["", "## Personas", ""]
    for p in shown:
        themes = p.get("themes") or {}
        words = ", ".join(f"“{k['term']}”" for k in themes.get("keywords", [])[:3])
        topics = ", ".join(t["topic"] for t in themes.get("topics", [])[:2])
        needs = "; ".join(
            x for x in [words and f"they say {words}", topics and f"tickets on {topics}"] if x
        )
        action = (p.get("actions") or [{}])[0].get("action")
        lines.append(
            f"- **{persona_name(p)}**: {p.get('custom_description') or p['description']}"
            + influence_markdown(p)
            + (f" Needs: {needs}." if needs else "")
            + (f" Do: {action}" if action else "")
        )
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
