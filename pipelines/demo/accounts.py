"""Seeded generator of a B2B customer base: accounts, and the people in them with their roles.

The tables follow the input contract like `pipelines.demo`'s, with two more columns on
``customers``: ``account_id`` (the account a person belongs to) and ``role`` (a job title,
mapped to an influence level by the config's ``b2b.influence``). Each account carries one
of the planted account personas of `ACCOUNT_PERSONAS`; its people behave by that persona
and by their influence level: decision makers use the product less, raise fewer tickets
and, in two personas, score NPS far from their end users (the planted gaps). Invoices go to
one billing contact per account. The ground truth is the table ``planted_accounts``
(``account_id``, ``persona``), which the pipeline never reads.

All randomness flows from one :func:`numpy.random.default_rng` seed and the data ends on
`pipelines.demo.DEMO_END`, so the same seed always gives identical tables.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines.demo.customers import (
    CHANNELS,
    DAY,
    DEMO_END,
    FEATURES,
    INDUSTRIES,
    PLAN_PRICE,
    PLANS,
    PRIORITIES,
    REGION_P,
    REGIONS,
    TOPICS,
    USAGE_DAYS,
    _cum_probs,
    _events,
    _frame,
    _in_lifetime,
    _names,
    _pick,
    _ts,
    write_tables,
)

__all__ = ["ACCOUNT_PERSONAS", "LEVELS", "ROLE_TITLES", "make_b2b_demo", "write_b2b_demo"]

logger = logging.getLogger(__name__)
Rng = np.random.Generator

#: The influence levels of the demo's people, in the order of the ``nps`` tuples below;
#: the default config (``b2b.influence``) maps every title of `ROLE_TITLES` back to them.
LEVELS = ("c_level", "decision_maker", "influencer", "end_user")

#: Job titles per influence level, in the spellings a CRM export holds.
ROLE_TITLES: dict[str, tuple[str, ...]] = {
    "c_level": ("CEO", "CTO", "CFO", "COO", "Chief Data Officer", "Co-Founder"),
    "decision_maker": (
        "VP Engineering", "VP of Sales", "Vice President, Operations", "Director of IT",
        "IT Director", "Head of Analytics", "Head of Customer Success",
    ),
    "influencer": (
        "Engineering Manager", "Team Lead", "Solutions Architect", "Product Manager",
        "Analytics Lead", "System Admin",
    ),
    "end_user": (
        "Data Analyst", "Software Engineer", "Support Agent", "Sales Rep",
        "Marketing Specialist", "Accountant", "Associate", "Designer",
    ),
}  # fmt: skip

# Per influence level (LEVELS order): usage, engagement, tickets and survey response,
# relative to an end user of the same account.
ROLE_USAGE = np.array([0.15, 0.35, 0.8, 1.0])
ROLE_ENGAGE = np.array([0.6, 1.2, 1.0, 1.0])
ROLE_TICKETS = np.array([0.1, 0.3, 1.0, 1.0])
ROLE_RESPOND = np.array([1.2, 1.4, 1.0, 0.9])

# One row per planted account persona. ``people``: people per account (inclusive range);
# ``signup``: days before the end the account signed up; ``size``: company size (median,
# log sd); ``plan``: weights of PLANS; ``seat_price``: x the plan's list price per person
# and month. Rates are per person: usage and engagement events per day, tickets per month.
# ``nps`` is the centre of the 0-10 score per influence level (LEVELS order): two
# personas carry a planted gap between their decision makers and their end users.
ACCOUNT_PERSONAS: dict[str, dict] = {
    "enterprise_champions": dict(
        share=0.15, people=(8, 15), signup=(300, 720), size=(3000, 0.5), c_level=0.1,
        plan=(0.0, 0.15, 0.85), seat_price=1.1, usage=0.70, decline=False, quantity=3.0,
        mix=(3, 1, 1, 2, 1.5, 1, 0.5, 1, 3, 3), mix_conc=15,
        engage=0.10, channels=(3, 2, 2, 1, 1, 2), discount=(0.15, 0.08), late=(0.03, 3),
        addons=0.20, churn=0.02, tickets=0.08, priority=(0.5, 0.35, 0.12, 0.03),
        topics=(1, 2, 1, 1, 1, 1), close=1.5, respond=0.45, nps=(8.9, 8.9, 8.9, 8.9),
        comments=("The whole company runs on the dashboards now",
                  "Automation saves every team hours each week",
                  "Collaboration features made the rollout easy"),
    ),
    "struggling_rollouts": dict(
        share=0.15, people=(6, 14), signup=(200, 720), size=(2500, 0.5), c_level=0.1,
        plan=(0.0, 0.1, 0.9), seat_price=1.3, usage=0.15, decline=False, quantity=2.0,
        mix=(0.6, 0.4, 3, 3.5, 0.4, 0.2, 0.4, 2.5, 0.3, 0.3), mix_conc=8,
        engage=0.04, channels=(4, 1, 1, 0.5, 0.5, 0.5), discount=(0.25, 0.08), late=(0.1, 8),
        addons=0.05, churn=0.08, tickets=0.8, priority=(0.1, 0.3, 0.35, 0.25),
        topics=(0.5, 3, 0.5, 4, 3, 1), close=7.0, respond=0.5, nps=(9.0, 8.8, 4.5, 3.2),
        comments=("The integrations keep breaking",
                  "Support takes days to answer our tickets",
                  "Admin console is painfully slow with our number of users",
                  "Great strategic partner, the roadmap fits our plans"),
    ),
    "small_teams": dict(
        share=0.30, people=(2, 4), signup=(30, 400), size=(15, 0.6), c_level=0.6,
        plan=(0.85, 0.15, 0.0), seat_price=0.9, usage=0.30, decline=False, quantity=1.5,
        mix=(5.5, 3.5, 0.1, 0.1, 0.3, 0.2, 0.1, 0.05, 0.1, 0.05), mix_conc=6,
        engage=0.08, channels=(6, 1, 3, 2, 0.2, 0.5), discount=(0.8, 0.3), late=(0.25, 12),
        addons=0.01, churn=0.10, tickets=0.15, priority=(0.5, 0.35, 0.12, 0.03),
        topics=(5, 1, 3, 0.5, 0.5, 1), close=2.0, respond=0.45, nps=(7.4, 7.4, 7.4, 7.4),
        comments=("Good value, but only with the discount",
                  "Reports are fine, we do not need much else",
                  "Setting up the first dashboards was easy"),
    ),
    "analytics_shops": dict(
        share=0.20, people=(4, 8), signup=(200, 720), size=(250, 0.6), c_level=0.2,
        plan=(0.1, 0.8, 0.1), seat_price=1.0, usage=0.45, decline=False, quantity=4.0,
        mix=(0.5, 4, 2.5, 0.2, 0.1, 0.1, 3.5, 0.1, 0.1, 0.2), mix_conc=12,
        engage=0.07, channels=(3, 2, 2, 1.5, 0.5, 1), discount=(0.15, 0.05), late=(0.04, 3),
        addons=0.08, churn=0.03, tickets=0.12, priority=(0.45, 0.4, 0.12, 0.03),
        topics=(1, 2, 1, 2, 1, 1), close=2.0, respond=0.45, nps=(8.3, 8.3, 8.3, 8.3),
        comments=("Data export is exactly what our analysts need",
                  "API access makes our BI pipeline simple",
                  "Would love more export formats"),
    ),
    "fading_accounts": dict(
        share=0.20, people=(3, 8), signup=(200, 720), size=(150, 0.6), c_level=0.2,
        plan=(0.25, 0.65, 0.1), seat_price=1.0, usage=0.40, decline=True, quantity=2.0,
        mix=(2.5, 2, 0.5, 0.8, 1.5, 1, 0.5, 0.5, 1, 0.7), mix_conc=8,
        engage=0.08, channels=(3, 1, 1.5, 0.5, 0.5, 0.5), discount=(0.2, 0.08), late=(0.08, 6),
        addons=0.03, churn=0.55, tickets=0.15, priority=(0.35, 0.4, 0.2, 0.05),
        topics=(2, 1, 1, 1, 1, 2), close=3.0, respond=0.45, nps=(2.8, 3.0, 6.6, 7.0),
        comments=("Hard to justify the cost lately",
                  "Most of the team moved to another tool",
                  "The tool is fine, but budget decisions are above us"),
    ),
}  # fmt: skip


def _p(key: str) -> np.ndarray:
    """Stack one persona parameter into an array indexed by persona code (first axis)."""
    return np.array([p[key] for p in ACCOUNT_PERSONAS.values()], dtype=float)


def _accounts(rng: Rng, n: int, end_day: int) -> dict[str, np.ndarray]:
    """Draw each account's persona, signup day, size, plan and number of people."""
    shares = _p("share") / _p("share").sum()
    counts = np.floor(shares * n).astype(int)  # exact shares, remainder to the largest fractions
    counts[np.argsort(-(shares * n - counts))[: n - counts.sum()]] += 1
    code = rng.permutation(np.repeat(np.arange(len(ACCOUNT_PERSONAS)), counts))
    lo, hi = _p("signup").T.astype(int)
    ago = rng.integers(lo[code], hi[code], endpoint=True)
    order = np.lexsort((rng.random(n), -ago))  # ids in order of signup, like a real CRM
    code, ago = code[order], ago[order]
    size_med, size_sig = _p("size").T
    size = np.exp(np.log(size_med[code]) + size_sig[code] * rng.standard_normal(n))
    low, high = _p("people").T.astype(int)
    return {
        "code": code,
        "signup": end_day - ago,
        "size": np.maximum(1, np.round(size)).astype(np.int64),
        "plan": _pick(rng, _cum_probs(_p("plan")), code),
        "people": rng.integers(low[code], high[code], endpoint=True),
        "region": rng.choice(len(REGIONS), size=n, p=REGION_P),
        "industry": rng.integers(len(INDUSTRIES), size=n),
    }


def _people(rng: Rng, a: dict[str, np.ndarray], end_day: int) -> dict[str, np.ndarray]:
    """Place people in accounts with an influence level, a title and a signup day.

    The first person of an account is its buyer (C-level or a decision maker) and its
    billing contact; accounts of four or more have a second decision maker; the others
    are influencers (a quarter) and end users.
    """
    k = a["people"]
    acc = np.repeat(np.arange(k.size), k)
    pos = np.arange(acc.size) - np.repeat(np.cumsum(k) - k, k)
    u = rng.random(acc.size)
    level = np.where(u < 0.25, 2, 3)
    level = np.where((pos == 1) & (k[acc] >= 4), 1, level)
    buyer = np.where(rng.random(acc.size) < _p("c_level")[a["code"]][acc], 0, 1)
    level = np.where(pos == 0, buyer, level)
    titles = [ROLE_TITLES[name] for name in LEVELS]
    pick = (rng.random(acc.size) * np.array([len(t) for t in titles])[level]).astype(int)
    role = np.array([titles[lv][i] for lv, i in zip(level, pick, strict=True)], dtype=object)
    start = a["signup"][acc]
    joined = start + ((end_day - 14 - start) * rng.random(acc.size) ** 2).astype(np.int64)
    return {"acc": acc, "pos": pos, "level": level, "role": role,
            "signup": np.where(pos == 0, start, joined)}  # fmt: skip


def _transactions(rng: Rng, a: dict, billing: np.ndarray, end_s: int) -> tuple[np.ndarray, dict]:
    """Monthly seat invoices of each account to its billing contact, add-ons and discounts."""
    n, code = a["code"].size, a["code"]
    start_m = a["signup"].astype("datetime64[D]").astype("datetime64[M]")
    months = (np.datetime64(DEMO_END, "M") - start_m).astype(int) + 1
    acc = np.repeat(np.arange(n), months)
    k = np.arange(acc.size) - np.repeat(np.cumsum(months) - months, months)
    first = (start_m[acc] + k).astype("datetime64[D]").astype(np.int64)
    dom = a["signup"] - start_m.astype("datetime64[D]").astype(np.int64)
    secs = (first + np.minimum(dom[acc], 27)) * DAY + rng.integers(6 * 3600, 20 * 3600, acc.size)
    lo_s = np.maximum(a["signup"] * DAY, end_s - 180 * DAY)  # churners cancel in the last months
    cancel = np.where(
        rng.random(n) < _p("churn")[code],
        lo_s + rng.random(n) * np.maximum(end_s - 14 * DAY - lo_s, DAY),
        end_s,
    ).astype(np.int64)
    monthly = np.array(PLAN_PRICE)[a["plan"]] * a["people"] * _p("seat_price")[code]
    monthly = monthly * rng.lognormal(0.0, 0.2, size=n)
    gross = monthly[acc] * rng.lognormal(0.0, 0.03, size=acc.size)
    n_add = rng.poisson(_p("addons")[code] * months)
    a_acc = np.repeat(np.arange(n), n_add)
    a_secs = _in_lifetime(rng, a["signup"][a_acc], end_s)
    acc, secs = np.concatenate([acc, a_acc]), np.concatenate([secs, a_secs])
    gross = np.concatenate([gross, monthly[a_acc] * rng.lognormal(np.log(0.2), 0.5, a_acc.size)])
    keep = secs < cancel[acc]
    acc, secs, gross = acc[keep], secs[keep], gross[keep]
    p_disc, mean_disc = _p("discount").T
    rate = np.where(rng.random(n) < p_disc[code], rng.beta(4, 4 / mean_disc[code] - 4), 0.0)
    discount = np.round(gross * np.clip(rate[acc], 0, 0.8), 2)
    p_late, late_days = _p("late").T
    late = rng.random(acc.size) < p_late[code][acc]
    days_late = np.where(late, 1 + rng.poisson(late_days[code][acc] - 1), 0).astype(np.int64)
    amount = np.round(np.round(gross, 2) - discount, 2)
    cols = {"timestamp": _ts(secs), "amount": amount, "discount": discount}
    return billing[acc], {**cols, "days_late": days_late}


def _usage(rng: Rng, a: dict, p: dict, end_s: int) -> tuple[np.ndarray, dict, tuple]:
    """Draw product usage per person; return the events and the time grid with its fade."""
    n_bins = -(-USAGE_DAYS // 7)
    edges = end_s - 7 * DAY * np.arange(n_bins, -1, -1, dtype=np.int64)
    code = a["code"][p["acc"]]
    lo = np.maximum(edges[None, :-1], p["signup"][:, None] * DAY)
    hi = np.broadcast_to(edges[None, 1:], lo.shape)
    to_end = ((lo + hi) / 2 - end_s) / (30 * DAY)  # bin midpoint in months (<= 0)
    start = -rng.uniform(1.5, 2.7, size=code.size)  # fading accounts decline 45-80 days ago
    tau = rng.uniform(0.3, 0.8, code.size)
    fall = np.exp(-np.clip(to_end - start[:, None], 0, None) / tau[:, None])
    fade = np.where(_p("decline")[code].astype(bool)[:, None], np.maximum(fall, 0.02), 1.0)
    rate = _p("usage")[code] * ROLE_USAGE[p["level"]] * rng.lognormal(-0.125, 0.5, code.size)
    cust, secs = _events(rng, rate[:, None] * fade, lo, hi)
    mix = _p("mix")
    alpha = (mix / mix.sum(axis=1, keepdims=True) * _p("mix_conc")[:, None])[code]
    feature = _pick(rng, _cum_probs(rng.gamma(alpha) + 1e-12), cust)
    quantity = 1 + rng.poisson(_p("quantity")[code][cust] - 1)
    cols = {"timestamp": _ts(secs), "feature": np.array(FEATURES)[feature],
            "quantity": quantity.astype(np.int64)}  # fmt: skip
    return cust, cols, (lo, hi, fade)


def _engagement(rng: Rng, a: dict, p: dict, grid: tuple) -> tuple[np.ndarray, dict]:
    """Marketing and community touchpoints per person, over the usage window."""
    lo, hi, fade = grid
    code = a["code"][p["acc"]]
    rate = _p("engage")[code] * ROLE_ENGAGE[p["level"]] * rng.lognormal(-0.125, 0.5, code.size)
    cust, secs = _events(rng, rate[:, None] * fade**1.5, lo, hi)
    chan = _pick(rng, _cum_probs(_p("channels")), code[cust])
    return cust, {"timestamp": _ts(secs), "channel": np.array(CHANNELS)[chan]}


def _tickets(rng: Rng, a: dict, p: dict, end_s: int) -> tuple[np.ndarray, dict]:
    """Support tickets per person: raised mostly by end users and influencers."""
    code = a["code"][p["acc"]]
    months = (end_s - p["signup"] * DAY) / (30 * DAY)
    rate = _p("tickets")[code] * ROLE_TICKETS[p["level"]] * rng.lognormal(0, 0.4, code.size)
    cust = np.repeat(np.arange(code.size), rng.poisson(rate * months))
    opened = _in_lifetime(rng, p["signup"][cust], end_s)
    prio = _pick(rng, _cum_probs(_p("priority")), code[cust])
    topic = _pick(rng, _cum_probs(_p("topics")), code[cust])
    hours = rng.gamma(1.5, _p("close")[code[cust]] * 24 / 1.5) + 0.1
    closed = opened + (hours * 3600).astype(np.int64)
    closed_at = np.where(closed < end_s, _ts(closed), np.datetime64("NaT"))
    prio, topic = np.array(PRIORITIES)[prio], np.array(TOPICS)[topic]
    return cust, {
        "opened_at": _ts(opened),
        "closed_at": closed_at,
        "priority": prio,
        "topic": topic,
    }


def _feedback(rng: Rng, a: dict, p: dict, email: np.ndarray, end_s: int):
    """Draw survey answers with a little personal data typed into comments.

    A person's score centres on their persona's score for their influence level, plus an
    account effect shared by the account's people.
    """
    n_acc, code = a["code"].size, a["code"][p["acc"]]
    responds = rng.random(code.size) < np.clip(_p("respond")[code] * ROLE_RESPOND[p["level"]], 0, 1)
    cust = np.repeat(np.arange(code.size), responds * (1 + rng.poisson(0.4, size=code.size)))
    secs = _in_lifetime(rng, p["signup"][cust], end_s)
    nps_by_level = np.array([q["nps"] for q in ACCOUNT_PERSONAS.values()], dtype=float)
    centre = nps_by_level[code, p["level"]] + rng.normal(0, 0.6, n_acc)[p["acc"]]
    centre = centre + rng.normal(0, 0.4, code.size)
    nps = np.clip(np.round(rng.normal(centre[cust], 1.1)), 0, 10).astype(np.int64)
    csat = np.clip(np.round(1 + 0.4 * nps + rng.normal(0, 0.6, cust.size)), 1, 5).astype(np.int64)
    templates = [t for q in ACCOUNT_PERSONAS.values() for t in q["comments"]]
    n_tpl = np.array([len(q["comments"]) for q in ACCOUNT_PERSONAS.values()])
    pcode = code[cust]
    tpl = (np.cumsum(n_tpl) - n_tpl)[pcode] + (rng.random(cust.size) * n_tpl[pcode]).astype(int)
    text = np.array(templates, dtype=object)[tpl]
    has = rng.random(cust.size) < 0.55
    mail = has & (rng.random(cust.size) < 0.01)
    text[mail] = [
        f"{t}. You can reach me at {e}" for t, e in zip(text[mail], email[cust[mail]], strict=True)
    ]
    text[~has] = None
    return cust, {"timestamp": _ts(secs), "nps": nps, "csat": csat, "comment": text}


def make_b2b_demo(n_accounts: int = 500, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Generate a B2B customer base: accounts with 2-15 people each, with roles.

    Parameters
    ----------
    n_accounts : int, default=500
        Number of accounts; each has 2 to 15 people (6 on average), by its persona.
    seed : int, default=0
        Seed for :func:`numpy.random.default_rng`; the same seed gives identical tables.

    Returns
    -------
    dict of str to pandas.DataFrame
        The six contract tables (``customers`` with ``account_id`` and ``role``) plus
        ``planted_accounts`` with columns ``account_id`` and ``persona`` (the ground truth).

    Examples
    --------
    >>> tables = make_b2b_demo(50, seed=1)
    >>> tables["customers"]["account_id"].nunique(), len(tables["planted_accounts"])
    (50, 50)
    """
    if n_accounts < 1:
        raise ValueError(f"n_accounts must be positive, got {n_accounts}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    end_day = int(np.datetime64(DEMO_END, "D").astype(np.int64))
    end_s = (end_day + 1) * DAY
    a = _accounts(rng, n_accounts, end_day)
    p = _people(rng, a, end_day)
    n_people = p["acc"].size
    account_ids = np.char.mod("A%05d", np.arange(1, n_accounts + 1))
    ids = pa.array(np.char.mod("P%06d", np.arange(1, n_people + 1)).tolist(), pa.string())
    name, email = _names(rng, n_people)
    acc = p["acc"]
    customers = _frame(
        ids, np.arange(n_people), account_id=account_ids[acc], name=name, email=email,
        signup_date=_ts(p["signup"] * DAY), role=p["role"],
        region=np.array(REGIONS)[a["region"]][acc],
        industry=np.array(INDUSTRIES)[a["industry"]][acc],
        company_size=a["size"][acc], plan=np.array(PLANS)[a["plan"]][acc],
    )  # fmt: skip
    billing = np.flatnonzero(p["pos"] == 0)
    t_cust, t_cols = _transactions(rng, a, billing, end_s)
    u_cust, u_cols, grid = _usage(rng, a, p, end_s)
    e_cust, e_cols = _engagement(rng, a, p, grid)
    f_cust, f_cols = _feedback(rng, a, p, email, end_s)
    s_cust, s_cols = _tickets(rng, a, p, end_s)
    out = {
        "customers": customers,
        "transactions": _frame(ids, t_cust, True, **t_cols),
        "usage_events": _frame(ids, u_cust, **u_cols),
        "engagement_events": _frame(ids, e_cust, **e_cols),
        "feedback": _frame(ids, f_cust, True, **f_cols),
        "support_tickets": _frame(ids, s_cust, True, **s_cols),
        "planted_accounts": pd.DataFrame(
            {"account_id": account_ids, "persona": np.array(list(ACCOUNT_PERSONAS))[a["code"]]}
        ),
    }
    sizes = {k: len(v) for k, v in out.items()}
    logger.info("B2B demo data: %s rows in %.1fs", sizes, time.perf_counter() - t0)
    return out


def write_b2b_demo(
    out: str | Path, *, n_accounts: int = 500, seed: int = 0, file_format: str = "csv"
) -> dict[str, int]:
    """Generate the B2B demo data and write one file per table.

    Parameters
    ----------
    out : str or Path
        Output directory (created if missing).
    n_accounts : int, default=500
        Number of accounts to generate.
    seed : int, default=0
        Random seed passed to :func:`make_b2b_demo`.
    file_format : {"csv", "parquet"}, default="csv"
        File format of the six contract tables; ``planted_accounts`` is always CSV.

    Returns
    -------
    dict of str to int
        Number of rows written per table (including ``planted_accounts``).
    """
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"file_format must be 'csv' or 'parquet', got {file_format!r}")
    return write_tables(out, make_b2b_demo(n_accounts, seed=seed), file_format)
