"""Held-out customer bases for the model-selection benchmark (`benchmarks/selection.py`).

Not the demo (`pipelines.demo`) and not the tests' data: other product features, other
channels, other tables' rhythms, and personas drawn at random in a latent space of
behaviour, so that the number of personas, their sizes, how much they overlap and how
many customers belong to none are all set by the design.

Every customer has a vector of latent behaviour parameters (log usage rate, usage mix,
usage trend, log engagement rate, channel mix, log price, discount and late-payment
propensities, log ticket rate, urgent-ticket propensity, tenure). A persona is a centre
in that space, drawn as ``separation x N(0, 1)`` per parameter; a customer is their
persona's centre plus customer-level spread ``N(0, spread)``. *Noise* customers belong to
no persona: each draws their own centre, with twice the personas' spread of centres. A
design with one persona is a customer base with no cluster structure at all: one
behaviour profile and customer-level spread, a continuum.

The tables follow the input contract (``customers``, ``transactions``, ``usage_events``,
``engagement_events``, ``feedback``, ``support_tickets``) and come with
``planted_personas`` (``customer_id``, ``persona``; noise customers are ``noise``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DESIGNS", "Design", "make_base", "non_convex", "write_base"]

END = np.datetime64("2025-06-30", "D")
DAY = 86_400
PRODUCT = (
    "search", "billing_portal", "workflows", "chat", "forecasts", "sharing", "imports", "sso",
)  # fmt: skip
CHANNELS = ("newsletter_open", "forum_post", "webinar", "site_visit", "meetup")
PRIORITY = ("normal", "high")
TOPIC = ("setup", "billing", "defect", "access")


@dataclass(frozen=True)
class Design:
    """One held-out customer base.

    Parameters
    ----------
    name : str
        Short name, used in the results table.
    shares : tuple of float
        Share of the structured customers in each persona (normalised); one share means
        no cluster structure.
    separation : float
        Spread of persona centres in the latent space (customer spread is ``spread``).
    noise : float
        Share of customers who belong to no persona.
    spread : float
        Customer-level standard deviation around their persona's centre.
    what : str
        One line on what the design tests.
    """

    name: str
    shares: tuple[float, ...]
    separation: float
    noise: float = 0.0
    spread: float = 0.45
    what: str = ""

    @property
    def k(self) -> int:
        """Number of planted personas (1: no structure)."""
        return len(self.shares)


# sizes are shares of the structured customers; 3%-35% across designs
DESIGNS: dict[str, Design] = {
    d.name: d
    for d in [
        Design(
            "four_separated",
            (0.35, 0.30, 0.20, 0.15),
            separation=1.0,
            what="a few well-separated personas, large and unequal",
        ),
        Design(
            "six_overlap",
            (0.30, 0.22, 0.16, 0.14, 0.10, 0.08),
            separation=0.75,
            what="six personas with moderate overlap",
        ),
        Design(
            "nine_unequal",
            (0.18, 0.16, 0.15, 0.13, 0.11, 0.10, 0.08, 0.06, 0.03),
            separation=0.95,
            what="nine unequal personas (3%-18%), moderate overlap",
        ),
        Design(
            "fourteen_small",
            (0.12, 0.11, 0.10, 0.09, 0.08, 0.08, 0.07, 0.07, 0.06, 0.06, 0.05, 0.04, 0.04, 0.03),
            separation=1.1,
            what="many small personas (3%-12%)",
        ),
        Design(
            "seven_noisy",
            (0.25, 0.20, 0.15, 0.12, 0.12, 0.10, 0.06),
            separation=0.85,
            noise=0.05,
            what="seven personas and 5% customers who belong to none",
        ),
        Design(
            "continuum",
            (1.0,),
            separation=0.0,
            what="no cluster structure: one behaviour profile, customer-level spread",
        ),
    ]
}

# latent parameters: name -> (baseline, scale of the persona offsets)
_LATENT = {
    "usage": (np.log(1.5), 0.8),  # log events per day
    "trend": (0.0, 0.25),  # log change of usage per 30 days
    "engage": (np.log(0.15), 0.8),  # log touchpoints per day
    "price": (np.log(150.0), 0.9),  # log monthly invoice
    "discount": (-1.2, 1.6),  # logit of the discount rate (as a share of 40% off)
    "late": (-2.5, 1.4),  # logit of a payment being late
    "tickets": (np.log(2.0), 0.8),  # log tickets per month
    "urgent": (-1.5, 1.5),  # logit of a ticket being high priority
    "tenure": (np.log(400.0), 0.5),  # log days since signup
}
# Floors of the per-customer rates (per day; tickets per month), so that customers with no
# event at all in the 90-day window stay rare: a zero count is a point mass in the features
# (no usage: every usage share is 0), a group of its own that no persona planted.
MIN_RATE = {"usage": 0.15, "engage": 0.05, "tickets": 1.0}
_MIX_SCALE = 1.3  # persona offsets of the log usage-mix and channel-mix weights


def _scale() -> np.ndarray:
    """Scale of each latent parameter (the persona offsets and the customer spread)."""
    mixes = [_MIX_SCALE] * (len(PRODUCT) + len(CHANNELS))
    return np.array([s for _, s in _LATENT.values()] + mixes)


def _centres(rng: np.random.Generator, k: int, separation: float) -> np.ndarray:
    scale = _scale()
    return separation * scale * rng.standard_normal((k, len(scale)))


def make_base(design: Design, n_customers: int = 5000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Generate the contract tables of one design.

    Parameters
    ----------
    design : Design
        What to plant.
    n_customers : int, default=5000
        Customers in the base (noise included).
    seed : int, default=0
        Seed of everything (persona centres included): two seeds are two different bases
        of the same design.

    Returns
    -------
    dict of str to pandas.DataFrame
        The six contract tables and ``planted_personas``.
    """
    rng = np.random.default_rng([seed, design.k, int(design.separation * 1000)])
    n = n_customers
    n_noise = int(round(design.noise * n))
    shares = np.asarray(design.shares) / np.sum(design.shares)
    counts = np.floor(shares * (n - n_noise)).astype(int)
    counts[np.argsort(-(shares * (n - n_noise) - counts))[: n - n_noise - counts.sum()]] += 1
    code = np.concatenate([np.repeat(np.arange(design.k), counts), np.full(n_noise, -1)])
    code = rng.permutation(code)
    centres = _centres(rng, design.k, design.separation)
    noise_centres = _centres(rng, n_noise, 2 * max(design.separation, 0.5))
    theta = np.empty((n, centres.shape[1]))
    theta[code >= 0] = centres[code[code >= 0]]
    theta[code < 0] = noise_centres
    theta += design.spread * rng.standard_normal(theta.shape) * _scale()
    names = list(_LATENT)
    base = np.array([b for b, _ in _LATENT.values()])
    lat = dict(zip(names, (theta[:, : len(names)] + base).T, strict=True))
    mix_w = np.exp(theta[:, len(names) : len(names) + len(PRODUCT)])
    chan_w = np.exp(theta[:, len(names) + len(PRODUCT) :])

    ids = np.char.mod("K%05d", np.arange(1, n + 1))
    end_s = (int(END.astype(np.int64)) + 1) * DAY
    tenure = np.clip(np.exp(lat["tenure"]), 20, 1400).astype(np.int64)
    signup = int(END.astype(np.int64)) - tenure
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": (signup * DAY).astype("datetime64[s]"),
            "segment_hint": rng.choice(["smb", "mid", "ent"], size=n),
        }
    )
    usage = _usage(rng, ids, lat, mix_w, signup, end_s)
    engagement = _engagement(rng, ids, lat, chan_w, signup, end_s)
    transactions = _transactions(rng, ids, lat, signup, end_s)
    tickets = _tickets(rng, ids, lat, signup, end_s)
    feedback = _feedback(rng, ids, theta, signup, end_s)
    persona = np.where(code >= 0, np.char.mod("p%02d", np.maximum(code, 0)), "noise")
    return {
        "customers": customers,
        "transactions": transactions,
        "usage_events": usage,
        "engagement_events": engagement,
        "feedback": feedback,
        "support_tickets": tickets,
        "planted_personas": pd.DataFrame({"customer_id": ids, "persona": persona}),
    }


def _poisson_times(rng, rate_per_day, lo_s, hi_s):
    """Poisson events per customer between lo_s and hi_s; (customer index, epoch seconds)."""
    width = np.clip(hi_s - lo_s, 0, None)
    counts = rng.poisson(rate_per_day * width / DAY)
    cust = np.repeat(np.arange(len(counts)), counts)
    secs = lo_s[cust] + (rng.random(cust.size) * width[cust]).astype(np.int64)
    return cust, secs


def _ts(secs):
    return np.asarray(secs, dtype=np.int64).astype("datetime64[s]")


def _choice_rows(rng, weights, rows):
    """One category per element of ``rows``, from each row's own weights."""
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(rows.size)[:, None]
    return np.minimum((u > cum[rows]).sum(axis=1), weights.shape[1] - 1)


def _usage(rng, ids, lat, mix_w, signup, end_s):
    n = len(ids)
    lo = np.maximum(signup * DAY, end_s - 180 * DAY)
    hi = np.full(n, end_s)
    # usage changes by exp(trend) per 30 days: draw in two halves with their mean rates
    mid = (lo + hi) // 2
    rate = np.maximum(np.exp(lat["usage"]), MIN_RATE["usage"])
    c1, s1 = _poisson_times(rng, rate * np.exp(-lat["trend"] * 1.5), lo, mid)
    c2, s2 = _poisson_times(rng, rate * np.exp(lat["trend"] * 0.5), mid, hi)
    cust, secs = np.concatenate([c1, c2]), np.concatenate([s1, s2])
    feature = np.array(PRODUCT)[_choice_rows(rng, mix_w, cust)]
    quantity = 1 + rng.poisson(1.0, cust.size)
    o = np.lexsort((secs, cust))
    return pd.DataFrame(
        {
            "customer_id": ids[cust[o]],
            "timestamp": _ts(secs[o]),
            "feature": feature[o],
            "quantity": quantity[o],
        }
    )


def _engagement(rng, ids, lat, chan_w, signup, end_s):
    lo = np.maximum(signup * DAY, end_s - 180 * DAY)
    rate = np.maximum(np.exp(lat["engage"]), MIN_RATE["engage"])
    cust, secs = _poisson_times(rng, rate, lo, np.full(len(ids), end_s))
    channel = np.array(CHANNELS)[_choice_rows(rng, chan_w, cust)]
    o = np.lexsort((secs, cust))
    return pd.DataFrame(
        {"customer_id": ids[cust[o]], "timestamp": _ts(secs[o]), "channel": channel[o]}
    )


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _transactions(rng, ids, lat, signup, end_s):
    """An invoice every 30 days from signup."""
    n = len(ids)
    period = np.full(n, 30)
    count = (end_s // DAY - signup) // period + 1
    cust = np.repeat(np.arange(n), count)
    k = np.arange(cust.size) - np.repeat(np.cumsum(count) - count, count)
    secs = (signup[cust] + k * period[cust]) * DAY + rng.integers(8 * 3600, 18 * 3600, cust.size)
    keep = secs < end_s
    cust, secs = cust[keep], secs[keep]
    gross = np.exp(lat["price"])[cust] * period[cust] / 30 * rng.lognormal(0, 0.08, cust.size)
    rate = (0.4 * _sigmoid(lat["discount"]))[cust]
    discount = np.round(gross * rate, 2)
    amount = np.round(gross - discount, 2)
    late = rng.random(cust.size) < _sigmoid(lat["late"])[cust]
    days_late = np.where(late, 1 + rng.poisson(6, cust.size), 0)
    o = np.lexsort((secs, cust))
    return pd.DataFrame(
        {
            "customer_id": ids[cust[o]],
            "timestamp": _ts(secs[o]),
            "amount": amount[o],
            "discount": discount[o],
            "days_late": days_late[o],
        }
    )


def _tickets(rng, ids, lat, signup, end_s):
    lo = np.maximum(signup * DAY, end_s - 365 * DAY)
    rate = np.maximum(np.exp(lat["tickets"]), MIN_RATE["tickets"]) / 30
    cust, opened = _poisson_times(rng, rate, lo, np.full(len(ids), end_s))
    urgent = rng.random(cust.size) < _sigmoid(lat["urgent"])[cust]
    hours = rng.gamma(2.0, np.where(urgent, 30, 12))
    closed = opened + (hours * 3600).astype(np.int64)
    closed_at = np.where(closed < end_s, _ts(closed), np.datetime64("NaT"))
    o = np.lexsort((opened, cust))
    return pd.DataFrame(
        {
            "customer_id": ids[cust[o]],
            "opened_at": _ts(opened[o]),
            "closed_at": closed_at[o],
            "priority": np.array(PRIORITY)[urgent.astype(int)][o],
            "topic": np.array(TOPIC)[rng.integers(len(TOPIC), size=cust.size)][o],
        }
    )


def _feedback(rng, ids, theta, signup, end_s):
    """NPS answers from 40% of customers; the score leans on a persona-level direction."""
    n = len(ids)
    answers = rng.random(n) < 0.4
    direction = np.random.default_rng(7).standard_normal(theta.shape[1])
    centre = 7.0 + 1.2 * (theta @ direction) / np.sqrt(theta.shape[1])
    cust = np.flatnonzero(answers)
    secs = signup[cust] * DAY + (rng.random(cust.size) * (end_s - signup[cust] * DAY)).astype(
        np.int64
    )
    nps = np.clip(np.round(rng.normal(centre[cust], 1.5)), 0, 10).astype(np.int64)
    return pd.DataFrame({"customer_id": ids[cust], "timestamp": _ts(secs), "nps": nps})


def write_base(out: str | Path, design: Design, n_customers: int = 5000, seed: int = 0) -> Path:
    """Write one design's tables as Parquet (``planted_personas`` as CSV) into ``out``.

    Parameters
    ----------
    out : str or Path
        Folder to write (created if missing).
    design : Design
        What to plant.
    n_customers : int, default=5000
        Customers in the base.
    seed : int, default=0
        Seed of the base.

    Returns
    -------
    Path
        The folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in make_base(design, n_customers, seed).items():
        if name == "planted_personas":
            frame.to_csv(out / f"{name}.csv", index=False)
        else:
            frame.to_parquet(out / f"{name}.parquet", index=False)
    return out


def non_convex(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scaled-feature-like data with non-round groups, for the model-family comparison.

    These are matrices, not customer tables: the feature path makes round-ish personas, so
    the shapes HDBSCAN is for are drawn directly where the clustering works.

    Parameters
    ----------
    kind : {"moons", "rings"}
        ``moons``: two interleaved half-moons and two round groups (30/30/20/15%) in two
        dimensions, rotated into 12 with 10 dimensions of noise, and 5% noise points;
        ``rings``: two concentric rings and a core in 2 dimensions, and 5% noise points.
    seed : int, default=0
        Seed.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The points.
    y : ndarray of str
        Planted group, ``noise`` for the noise points.
    """
    rng = np.random.default_rng([seed, 99])
    if kind == "rings":
        parts, labels = [], []
        for label, (radius, size, spread) in enumerate([(6.0, 600, 0.25), (3.0, 300, 0.15)]):
            angle = rng.uniform(0, 2 * np.pi, size)
            r = radius + rng.normal(0, spread, size)
            parts.append(np.column_stack([r * np.cos(angle), r * np.sin(angle)]))
            labels += [str(label)] * size
        parts.append(rng.normal(0, 0.3, size=(120, 2)))
        labels += ["2"] * 120
        n_noise = int(0.05 * sum(len(p) for p in parts))
        parts.append(rng.uniform(-8, 8, size=(n_noise, 2)))
        return np.vstack(parts), np.array(labels + ["noise"] * n_noise)
    n, dims = 4000, 12
    counts = (np.array([0.3, 0.3, 0.2, 0.15]) * n).astype(int)
    t1, t2 = rng.uniform(0, np.pi, counts[0]), rng.uniform(0, np.pi, counts[1])
    points = np.vstack(
        [
            np.column_stack([np.cos(t1), np.sin(t1)]),
            np.column_stack([1 - np.cos(t2), 0.5 - np.sin(t2)]),
            rng.normal([3.5, 0.2], 0.25, size=(counts[2], 2)),
            rng.normal([-1.8, -0.8], 0.25, size=(counts[3], 2)),
        ]
    )
    points += rng.normal(0, 0.08, size=points.shape)
    n_noise = int(0.05 * n)
    points = np.vstack([points, rng.uniform([-2.5, -1.5], [4.5, 1.5], size=(n_noise, 2))])
    y = np.concatenate([np.repeat(np.arange(4).astype(str), counts), ["noise"] * n_noise])
    Z = np.hstack([2 * points, rng.normal(0, 0.3, size=(len(points), dims - 2))])
    rotation, _ = np.linalg.qr(rng.normal(size=(dims, dims)))
    return Z @ rotation, y
