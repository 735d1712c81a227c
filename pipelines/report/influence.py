"""The B2B part of the report: a persona of accounts' people, their NPS by influence, the gap.

`influence_card` is the block a persona card shows when the personas are of accounts
(``level: account``); `influence_markdown` is its line in ``report.md``. Both read the
fields `pipelines.b2b.add_influence` puts on each persona and return an empty string
for personas without them, so customer-level reports are unchanged.
"""

from __future__ import annotations

import html

from models.nps import format_nps

__all__ = ["ACCOUNT_NPS_WORDS", "influence_card", "influence_markdown", "units"]

#: How the accounts' NPS was counted, in words (``b2b.account_nps``).
ACCOUNT_NPS_WORDS = {
    "mean": "one score per account, the mean of its respondents' latest scores (rounded)",
    "decision_makers": "one score per account, its decision makers' latest score",
}


def units(model: dict) -> str:
    """Return what was segmented: ``5,000 customers`` or ``500 accounts (3,158 people)``."""
    if model.get("unit") == "accounts":
        return f"{model['n_customers']:,} accounts ({model['people']:,} people)"
    return f"{model['n_customers']:,} customers"


def _nps(row: dict) -> str:
    if row.get("nps") is None:
        return "—"
    return format_nps(row["nps"], row["nps_ci_low"], row["nps_ci_high"])


def _level_row(label: str, row: dict, people: int) -> str:
    muted = not row.get("reliable", True)
    if not row.get("shown", True):
        nps, muted = "not shown: too few respondents to keep them anonymous", True
    elif row.get("nps") is None:
        nps = "no respondents"
    else:
        nps = _nps(row) + (" too few respondents" if muted else "")
    cls = " class='muted'" if muted else ""
    return (
        f"<tr{cls}><td>{html.escape(label)}</td><td>{people:,}</td>"
        f"<td>{row['respondents']:,}</td><td>{nps}</td></tr>"
    )


def _gap_line(gap: dict | None) -> str:
    if not gap:
        return ""
    a, b = (x.replace("_", " ") for x in gap["between"])
    if gap.get("called_out"):
        return f"<p class='gap'><b>Gap:</b> {html.escape(gap['text'])}</p>"
    if not gap.get("tested"):
        return f"<p class='muted'>{a.capitalize()} vs {b}: not tested (too few respondents).</p>"
    return (
        f"<p class='muted'>{a.capitalize()} vs {b}: gap {gap['gap']:+.0f} "
        f"[{gap['gap_ci_low']:+.0f}, {gap['gap_ci_high']:+.0f}], p = {gap['p_value']:.2g}; "
        "not called out.</p>"
    )


def influence_card(p: dict) -> str:
    """Return the HTML block of a persona of accounts: its people and their NPS by influence.

    Parameters
    ----------
    p : dict
        A persona with the fields of `pipelines.b2b.add_influence` (``people``,
        ``people_nps``, ``nps_by_influence``, ``influence_gap``, ``account_nps``).

    Returns
    -------
    str
        The block, or ``""`` for a persona without those fields.
    """
    if p.get("people") is None:
        return ""
    rows = "".join(
        _level_row(r["level"].replace("_", " "), r, r["people"])
        for r in p.get("nps_by_influence") or []
    )
    rows += _level_row("all people", p["people_nps"], p["people"])
    basis = ACCOUNT_NPS_WORDS.get(p.get("account_nps"), "")
    return (
        "<h4>The people in these accounts, by influence</h4>"
        "<table><tr><th>influence</th><th>people</th><th>respondents</th>"
        f"<th>people's NPS [95%]</th></tr>{rows}</table>"
        f"{_gap_line(p.get('influence_gap'))}"
        f"<p class='meta'>The NPS above counts {html.escape(basis)}; this table counts "
        "each person's latest score.</p>"
    )


def influence_markdown(p: dict) -> str:
    """Return a sentence for ``report.md``: the people's NPS and the gap, if any.

    Parameters
    ----------
    p : dict
        A persona with the fields of `pipelines.b2b.add_influence`.

    Returns
    -------
    str
        The sentence (starting with a space), or ``""`` for a persona without those fields.
    """
    if p.get("people") is None:
        return ""
    text = f" {p['people']:,} people, people's NPS {_nps(p['people_nps'])}."
    gap = p.get("influence_gap") or {}
    if gap.get("called_out"):
        text += f" **Gap:** {gap['text']}"
    return text
