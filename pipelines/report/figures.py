"""The report's figures: matplotlib drawings in the Okabe-Ito palette, as base64 PNG.

Each ``*_figure`` function draws one figure of ``report.html`` from the persona table (or
the key drivers) and returns it as a base64-encoded PNG, ready for a ``data:`` URI.
Figures are made without pyplot, so importing this module selects no matplotlib backend.
`pipelines.report` assembles the page around them, with the same colours and names
(`persona_color`, `persona_name`).
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "PALETTE",
    "bubble_figure",
    "drivers_figure",
    "map_figure",
    "nps_figure",
    "nps_is_reliable",
    "percent",
    "persona_color",
    "persona_name",
    "size_figure",
    "trait_figure",
]

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
_GREY = "#BBBBBB"
_NOTE = {"textcoords": "offset points", "ha": "center", "fontsize": 8, "color": "#333333"}
_BUBBLE = {"alpha": 0.55, "edgecolor": "#333333", "linewidth": 0.6}


def persona_color(pid: int) -> str:
    """Return a persona's colour: from `PALETTE` by id, grey for unassigned (-1)."""
    return _GREY if pid < 0 else PALETTE[pid % len(PALETTE)]


def persona_name(p: dict) -> str:
    """Return the name a persona is shown by: the user's override, else the computed one."""
    return p.get("custom_name") or p["name"]


def nps_is_reliable(p: dict) -> bool:
    """Tell whether a persona's NPS is shown as reliable (enough respondents, not -1)."""
    return p.get("nps") is not None and p.get("nps_reliable", True) and p["persona_id"] != -1


def percent(value) -> str:
    """Write a share as a whole percentage, ``—`` when missing."""
    return "—" if value is None else f"{100 * value:.0f}%"


def _subplots(figsize) -> tuple[Figure, object]:
    """Make a figure and its axes without pyplot, so importing this module sets no backend."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def nps_figure(personas: list[dict]) -> str:
    """Draw each persona's NPS with its interval, highest first; grey when unreliable."""
    shown = sorted(
        (p for p in personas if p.get("nps") is not None),
        key=lambda p: (not nps_is_reliable(p), -p["nps"]),
    )
    fig, ax = _subplots(figsize=(9, 0.45 * len(shown) + 1.5))
    y = np.arange(len(shown))[::-1]
    for yi, p in zip(y, shown, strict=True):
        color = persona_color(p["persona_id"]) if nps_is_reliable(p) else _GREY
        err = [[p["nps"] - p["nps_ci_low"]], [p["nps_ci_high"] - p["nps"]]]
        ax.errorbar(p["nps"], yi, xerr=err, fmt="o", color=color, capsize=4, ms=7)
        ax.annotate(f"{p['nps']:+.0f}", (p["nps"], yi), xytext=(0, 7), **_NOTE)
    labels = [
        persona_name(p) + ("" if nps_is_reliable(p) else " (too few respondents)") for p in shown
    ]
    ax.set_yticks(y, labels, fontsize=9)
    ax.axvline(0, color="#999999", lw=0.8)
    ax.set_xlim(-100, 100)
    ax.set_xlabel("NPS (points, from -100 to +100), with its 95% interval")
    ax.set_title("NPS per persona, highest first")
    return _png(fig)


def bubble_figure(personas: list[dict]) -> str:
    """Draw value against NPS, one bubble per persona, its area the persona's size."""
    shown = [p for p in personas if p.get("nps") is not None and p["persona_id"] != -1]
    use_mean = all(p.get("revenue_mean") is not None for p in shown)
    fig, ax = _subplots(figsize=(8.5, 5.5))
    biggest = max([p["size"] for p in shown] or [1])
    for p in shown:
        x = p["revenue_mean"] if use_mean else (p.get("value_index") or 0.0)
        color = persona_color(p["persona_id"]) if nps_is_reliable(p) else _GREY
        ax.scatter(x, p["nps"], s=2500 * p["size"] / biggest, color=color, **_BUBBLE)
        ax.annotate(persona_name(p), (x, p["nps"]), fontsize=8, ha="center", va="center")
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set_ylim(-110, 110)
    if use_mean:
        ax.set_xscale("log")
        ax.set_xlabel("average net revenue to date per customer (currency of the data, log scale)")
    else:
        ax.set_xlabel("value per customer (× the average)")
    ax.set_ylabel("NPS (points)")
    ax.set_title("Value vs NPS (bubble area = customers; grey = too few respondents)")
    return _png(fig)


def size_figure(personas: list[dict]) -> str:
    """Draw the number of customers of each persona, with its share."""
    fig, ax = _subplots(figsize=(8, 0.45 * len(personas) + 1.2))
    y = np.arange(len(personas))[::-1]
    sizes = [p["size"] for p in personas]
    ax.barh(y, sizes, color=[persona_color(p["persona_id"]) for p in personas])
    for yi, p in zip(y, personas, strict=True):
        ax.annotate(
            f" {p['size']:,} ({percent(p['share'])})", (p["size"], yi), va="center", fontsize=8
        )
    ax.set_yticks(y, [persona_name(p) for p in personas], fontsize=9)
    ax.set_xlim(0, max(sizes) * 1.25)
    ax.set_xlabel("customers")
    ax.set_title("Persona sizes (customers, share of all)")
    return _png(fig)


def map_figure(embedding, labels, personas: list[dict], map_sample: int, seed: int = 0) -> str:
    """Draw the 2-D persona map, sampled to at most ``map_sample`` points (seeded)."""
    embedding, labels = np.asarray(embedding), np.asarray(labels)
    if len(labels) > map_sample:
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), map_sample, replace=False))
        embedding, labels = embedding[keep], labels[keep]
    fig, ax = _subplots(figsize=(8, 5.8))
    names = {p["persona_id"]: persona_name(p) for p in personas}
    for pid in sorted(set(labels.tolist())):
        pts = embedding[labels == pid]
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=6,
            alpha=0.6,
            color=persona_color(pid),
            label=names.get(pid, str(pid)),
        )
    ax.set_xlabel("component 1 (no unit)")
    ax.set_ylabel("component 2 (no unit)")
    ax.set_title(f"Persona map: a 2-D projection of the scaled features, {len(labels):,} customers")
    ax.legend(markerscale=3, fontsize=8, loc="best", frameon=False)
    return _png(fig)


def trait_figure(personas: list[dict]) -> str:
    """Draw the heatmap of standardized differences on the personas' top traits."""
    shown = [p for p in personas if p["persona_id"] != -1]
    effects = [
        p.get("effects") or {t["feature"]: t["std_diff"] for t in p["traits"]} for p in shown
    ]
    features = list(dict.fromkeys(f for e in effects for f in e))[:20]
    grid = np.array([[e.get(f, 0.0) for f in features] for e in effects])
    labels = {t["feature"]: t["label"] for p in personas for t in p.get("traits", [])}
    fig, ax = _subplots(figsize=(2 + 0.6 * len(features), 0.5 * len(shown) + 2.4))
    lim = max(1.0, float(np.abs(grid).max()) if grid.size else 1.0)
    im = ax.imshow(grid, cmap="PuOr_r", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if abs(v) >= 0.5:
            color = "white" if abs(v) > 0.6 * lim else "black"
            ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=7, color=color)
    ticks = [labels.get(f, f) for f in features]
    ax.set_xticks(range(len(features)), ticks, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(shown)), [persona_name(p) for p in shown], fontsize=8)
    fig.colorbar(im, ax=ax, label="standardized difference vs all customers (sd)")
    ax.set_title("What sets each persona apart (orange: higher, purple: lower)")
    return _png(fig)


def drivers_figure(drivers: dict) -> str:
    """Draw the overall key drivers of NPS with their intervals (grey: not clear)."""
    rows = drivers["overall"][:10][::-1]
    fig, ax = _subplots(figsize=(8, 0.4 * len(rows) + 1.4))
    y = np.arange(len(rows))
    imp = np.array([r["importance"] for r in rows])
    err = [imp - [r["ci_low"] for r in rows], [r["ci_high"] for r in rows] - imp]
    colors = [PALETTE[0] if r["clear"] else _GREY for r in rows]
    ax.barh(y, imp, xerr=err, color=colors, capsize=3)
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=9)
    ax.axvline(0, color="#999999", lw=0.8)
    ax.set_xlabel(f"{drivers['metric']} when shuffled ({drivers['unit']}, 95% interval)")
    ax.set_title("Key drivers of NPS, all respondents (grey: not clear)")
    return _png(fig)
