"""The analyst report: one self-contained HTML file that opens offline.

Figures are drawn with matplotlib and embedded as base64 PNG; the page loads nothing
from the network.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["PALETTE", "write_report"]

#: Okabe-Ito, readable with the common colour-vision deficiencies; grey for unassigned.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#8C564B",
    "#7F7F7F",
    "#BCBD22",
    "#17BECF",
]


def _color(pid: int) -> str:
    return "#BBBBBB" if pid < 0 else PALETTE[pid % len(PALETTE)]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _nps_figure(personas: list[dict]) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.55 * len(personas) + 1.4), sharey=True)
    names = [p["name"] for p in personas]
    y = np.arange(len(personas))[::-1]
    ax1.barh(y, [p["size"] for p in personas], color=[_color(p["persona_id"]) for p in personas])
    ax1.set_yticks(y, names)
    ax1.set_xlabel("customers")
    ax1.set_title("Persona size")
    for yi, p in zip(y, personas, strict=True):
        if p["nps"] is None:
            continue
        ax2.errorbar(
            p["nps"],
            yi,
            xerr=[[p["nps"] - p["nps_ci_low"]], [p["nps_ci_high"] - p["nps"]]],
            fmt="o",
            color=_color(p["persona_id"]),
            capsize=4,
        )
    ax2.axvline(0, color="#999999", lw=0.8)
    ax2.set_xlim(-100, 100)
    ax2.set_xlabel("NPS (points, 95% interval)")
    ax2.set_title("NPS per persona")
    return _png(fig)


def _map_figure(embedding: np.ndarray, labels: np.ndarray, personas: list[dict]) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    names = {p["persona_id"]: p["name"] for p in personas}
    for pid in sorted(set(labels.tolist())):
        pts = embedding[labels == pid]
        ax.scatter(
            pts[:, 0], pts[:, 1], s=6, alpha=0.6, color=_color(pid), label=names.get(pid, str(pid))
        )
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.set_title("Persona map (PCA of the scaled features, a sample of customers)")
    ax.legend(markerscale=3, fontsize=8, loc="best", frameon=False)
    return _png(fig)


def _trait_figure(personas: list[dict]) -> str:
    features = []
    for p in personas:
        features += [t["feature"] for t in p["traits"] if t["feature"] not in features]
    features = features[:18]
    grid = np.array(
        [
            [next((t["std_diff"] for t in p["traits"] if t["feature"] == f), 0.0) for f in features]
            for p in personas
        ]
    )
    fig, ax = plt.subplots(figsize=(1 + 0.55 * len(features), 0.5 * len(personas) + 2.2))
    lim = max(1.0, float(np.abs(grid).max()) if grid.size else 1.0)
    im = ax.imshow(grid, cmap="PuOr_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(features)), features, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(personas)), [p["name"] for p in personas], fontsize=8)
    fig.colorbar(im, ax=ax, label="standardized difference vs all customers")
    ax.set_title("What sets each persona apart (top traits)")
    return _png(fig)


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "share":
        return f"{100 * value:.0f}%"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _persona_rows(personas: list[dict]) -> str:
    rows = []
    for p in personas:
        nps = (
            f"{p['nps']:+.0f} <small>[{p['nps_ci_low']:+.0f}, {p['nps_ci_high']:+.0f}]</small>"
            if p["nps"] is not None
            else "—"
        )
        traits = "".join(
            f"<li>{html.escape(t['description'])}: <b>{_fmt(t['persona_value'], t['unit'])}</b>"
            f" vs {_fmt(t['population_value'], t['unit'])} "
            f"<small>({t['std_diff']:+.1f} sd)</small></li>"
            for t in p["traits"]
        )
        rows.append(
            f"<section class='card' data-persona='{p['persona_id']}'>"
            f"<h3><span class='dot' style='background:{_color(p['persona_id'])}'></span>"
            f"{html.escape(p['name'])}</h3>"
            f"<p>{html.escape(p['description'])}</p>"
            f"<table><tr><th>customers</th><th>share</th><th>revenue share</th><th>NPS [95%]</th>"
            f"<th>respondents</th><th>promoters / passives / detractors</th></tr>"
            f"<tr><td>{p['size']:,}</td><td>{_fmt(p['share'], 'share')}</td>"
            f"<td>{_fmt(p['revenue_share'], 'share')}</td><td>{nps}</td>"
            f"<td>{p['respondents']:,}</td>"
            f"<td>{p['promoters']:,} / {p['passives']:,} / {p['detractors']:,}</td></tr></table>"
            f"<ul>{traits}</ul></section>"
        )
    return "\n".join(rows)


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
max-width:1100px;color:#222;line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666;font-size:.9rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{border-bottom:1px solid #ddd;
padding:.25rem .6rem;text-align:left;font-size:.9rem} th{color:#555;font-weight:600}
.card{border:1px solid #ddd;border-radius:8px;padding:.8rem 1.2rem;margin:1rem 0}
.card h3{margin:.2rem 0} .dot{display:inline-block;width:.8rem;height:.8rem;
border-radius:50%;margin-right:.5rem} img{max-width:100%} small{color:#666}
"""


def write_report(
    path: str | Path,
    *,
    personas: list[dict],
    quality: dict,
    model: dict,
    embedding: np.ndarray,
    labels: np.ndarray,
    run_id: str,
) -> Path:
    """Write ``report.html``.

    Parameters
    ----------
    path : str or Path
        Where to write the file.
    personas : list of dict
        The persona table (as in ``personas.json``).
    quality : dict
        The data-quality summary.
    model : dict
        What was fitted: ``n_customers``, ``k``, ``silhouette``, ``families``, ``as_of``.
    embedding : ndarray of shape (n_points, 2)
        2-D coordinates of a sample of customers for the persona map.
    labels : ndarray of shape (n_points,)
        Persona id of each point.
    run_id : str
        The MLflow run id.

    Returns
    -------
    Path
        The written file.
    """
    figures = [
        ("Persona sizes and NPS", _nps_figure(personas)),
        ("Persona map", _map_figure(embedding, labels, personas)),
        ("Traits", _trait_figure(personas)),
    ]
    figs = "".join(
        f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{b}'></figure>"
        for t, b in figures
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Personas report</title>
<style>{_CSS}</style></head><body>
<h1>Customer personas</h1>
<p class="meta">{model["n_customers"]:,} customers as of {html.escape(str(model["as_of"]))} ·
{len(personas)} personas (k-means, k chosen by silhouette = {model["silhouette"]:.3f}) ·
clustered on {html.escape(", ".join(model["families"]))} · MLflow run {html.escape(run_id)}</p>
<p class="meta">NPS counts each respondent's latest score (promoters 9-10, detractors 0-6);
the interval is a 95% Wald interval from the trinomial variance (see personas.json).
Traits compare the persona with all customers in standard deviations.</p>
<h2>Personas</h2>
{_persona_rows(personas)}
<h2>Figures</h2>
{figs}
<h2>Data quality</h2>
<table><tr><th>table</th><th>rows</th><th>used</th><th>invalid</th><th>unknown customer</th>
<th>after as_of</th><th>date range</th></tr>{_quality_rows(quality)}</table>
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
