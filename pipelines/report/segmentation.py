"""The report's evidence for the number of personas, and its word on a continuum.

`segmentation_section` draws every candidate model (its number of personas against the
selection's scores and the finalists' stability, the chosen one marked) with the reason
it won; `continuum_note` is the plain sentence every output carries when the customers do
not fall into distinct groups (``structure`` ``weak`` or ``none``). Both read the
summary `segmentation.json` holds (`models.Segmentation.summary`).
"""

from __future__ import annotations

import html

import numpy as np
from matplotlib.figure import Figure

from pipelines.report.figures import PALETTE, _png

__all__ = ["continuum_note", "segmentation_figure", "segmentation_section"]

#: Candidate scores drawn against the number of personas, when the selection gave them.
_SCORES = {
    "silhouette": "silhouette (higher: rounder groups)",
    "stability": "stability (mean ARI over resamples)",
    "valley_z": "separation (valley z-score of the least separated pair)",
}


def continuum_note(summary: dict | None) -> str | None:
    """Return the sentence saying the personas are slices of a continuum (None if distinct)."""
    if not summary or summary.get("structure", "distinct") == "distinct":
        return None
    strength = "no distinct groups" if summary["structure"] == "none" else "only weak groups"
    return (
        f"The customers form {strength}: these personas are slices of a continuum, useful "
        "to describe it but not distinct groups to target as such. "
        f"{summary.get('structure_reason') or ''}".strip()
    )


def segmentation_figure(summary: dict) -> str | None:
    """Draw the candidates' scores against their number of personas; base64 PNG or None."""
    rows = [c for c in summary.get("candidates", []) if c.get("n_clusters") is not None]
    if not rows:
        return None
    scores = [s for s in _SCORES if any(c.get(s) is not None for c in rows)]
    if not scores:
        return None
    fig = Figure(figsize=(7.5, 3.2), dpi=110)
    ax = fig.add_subplot()
    for i, score in enumerate(scores):
        for family, marker in (("kmeans", "o-"), ("hdbscan", "s")):
            pts = sorted(
                (c["n_clusters"], c[score])
                for c in rows
                if c.get(score) is not None and str(c.get("family", "")).startswith(family)
            )
            if pts:
                x, y = np.array(pts, dtype=float).T
                label = _SCORES[score] + ("" if family == "kmeans" else ", HDBSCAN")
                ax.plot(x, y, marker, color=PALETTE[i], label=label, ms=4, lw=1)
    chosen = next((c for c in rows if c.get("name") == summary.get("chosen")), None)
    if chosen is not None:
        ax.axvline(chosen["n_clusters"], color="#333333", lw=1, ls="--")
        ax.annotate(f"chosen: {summary['chosen']}", (chosen["n_clusters"], 1.0),
                    xycoords=("data", "axes fraction"), xytext=(4, -10),
                    textcoords="offset points", fontsize=8)  # fmt: skip
    ax.set_xlabel("personas (clusters) of the candidate")
    ax.legend(fontsize=7, frameon=False, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def segmentation_section(summary: dict | None) -> str:
    """Return the report's "How many personas" section (empty without a summary)."""
    if not summary:
        return ""
    figure = segmentation_figure(summary)
    img = (
        f"<figure><img alt='candidate models' src='data:image/png;base64,{figure}'>"
        "<figcaption>Every candidate model by its number of personas; the dashed line is "
        "the chosen one.</figcaption></figure>"
        if figure
        else ""
    )
    verdict = html.escape(summary.get("structure", "distinct"))
    return (
        f"<h2>How many personas</h2><p>{summary.get('n_personas')} personas "
        f"({html.escape(str(summary.get('chosen')))}); structure: <b>{verdict}</b>. "
        f"{html.escape(summary.get('reason') or '')}</p>{img}"
    )
