"""Seeded, vectorized generator of a synthetic B2B SaaS customer base with planted personas.

The generated tables follow the project's input contract (``customers``, ``transactions``,
``usage_events``, ``engagement_events``, ``feedback``, ``support_tickets``) and come with the
ground-truth table ``planted_personas`` so that segmentation quality can be measured.

All randomness flows from a single :func:`numpy.random.default_rng` seed and the data ends on
the fixed date :data:`DEMO_END`, so the same seed always yields identical tables.
"""

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = ["DEMO_END", "PERSONAS", "TABLES", "make_demo", "write_demo", "write_tables"]

logger = logging.getLogger(__name__)
Rng = np.random.Generator
Cust = dict[str, np.ndarray]  # per-customer arrays: persona code, signup day, size, plan

DEMO_END = "2026-09-30"
"""Last calendar date covered by the demo data (inclusive)."""

TABLES = (
    "customers", "transactions", "usage_events", "engagement_events", "feedback", "support_tickets",
)  # fmt: skip
FEATURES = (
    "dashboards", "reports", "api", "integrations", "alerts",
    "mobile_app", "data_export", "admin_console", "collaboration", "automation",
)  # fmt: skip
CHANNELS = ("email_open", "email_click", "web_visit", "webinar", "event", "community_post")
PRIORITIES = ("low", "medium", "high", "urgent")
TOPICS = ("billing", "bug", "how_to", "integration", "performance", "account")
PLANS = ("Starter", "Pro", "Enterprise")
PLAN_PRICE = (49.0, 249.0, 1200.0)  # monthly list price per plan
REGIONS, REGION_P = ("NA", "EMEA", "APAC", "LATAM"), (0.4, 0.3, 0.2, 0.1)
INDUSTRIES = (
    "software", "finance", "healthcare", "retail",
    "manufacturing", "education", "media", "logistics",
)  # fmt: skip
FIRST_NAMES = (
    "Ana", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Kenji", "Lara", "Marco", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
    "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Liam", "Mia", "Noah", "Aisha",
)  # fmt: skip
LAST_NAMES = (
    "Silva", "Smith", "Muller", "Rossi", "Kim", "Nguyen", "Garcia", "Okafor", "Novak",
    "Tanaka", "Khan", "Dubois", "Larsen", "Costa", "Patel", "Ivanova", "Brown", "Sato",
    "Lopez", "Schmidt", "Haddad", "Moreau", "Jensen", "Alvarez", "Chen", "Ferreira",
)  # fmt: skip

DAY = 86_400
HISTORY_DAYS = 730  # customers sign up within the last two years
USAGE_DAYS = 270  # the usage export keeps the last nine months of product events
NEW_SIGNUP_DAYS = (7, 120)  # signup window (days before the end) of recent customers
OLD_SIGNUP_DAYS = (150, HISTORY_DAYS - 1)  # signup window of established customers

# One row per planted persona. Weight tuples follow FEATURES / CHANNELS / PRIORITIES / TOPICS /
# PLANS. Rates are per customer: usage and engagement events per day (at the end of the data),
# tickets and add-on purchases per month. ``growth`` is the log-change of usage per 30 days;
# ``decline`` marks accounts whose usage collapses over the last ~60 days.
PERSONAS: dict[str, dict] = {
    "power_users": dict(
        share=0.18, new=False, plan=(0.05, 0.55, 0.40), size=(250, 1.0), price=1.15,
        usage=0.70, growth=0.03, decline=False, quantity=3.0, mix_conc=15,
        mix=(3, 2, 1.5, 1.5, 1.5, 1.5, 1, 1, 2, 2),
        engage=0.10, channels=(3, 2, 2, 1, 1, 2),
        discount=(0.10, 0.05), late=(0.03, 3), addons=0.15, churn=0.02,
        tickets=0.08, priority=(0.5, 0.35, 0.12, 0.03), topics=(1, 2, 1, 1, 1, 1), close=1.5,
        respond=0.45, nps=9.0,
        comments=("Love the automation features, saves us hours every week",
                  "Dashboards are fantastic and the whole team uses them daily",
                  "Best tool in our stack, keep shipping",
                  "Collaboration features made onboarding new teammates easy"),
    ),
    "struggling_enterprise": dict(
        share=0.12, new=False, plan=(0.0, 0.10, 0.90), size=(2500, 0.9), price=1.35,
        usage=0.30, growth=0.0, decline=False, quantity=2.5, mix_conc=8,
        mix=(0.6, 0.4, 3, 3.5, 0.4, 0.2, 0.4, 2.5, 0.3, 0.3),
        engage=0.04, channels=(4, 1, 1, 0.5, 0.5, 0.5),
        discount=(0.20, 0.05), late=(0.10, 8), addons=0.08, churn=0.10,
        tickets=1.2, priority=(0.1, 0.3, 0.35, 0.25), topics=(1, 3, 0.5, 4, 3, 1), close=7.0,
        respond=0.55, nps=3.2,
        comments=("Support takes days to answer our tickets",
                  "The integrations keep breaking",
                  "Admin console is painfully slow with our number of users",
                  "We pay enterprise prices but get starter-level support",
                  "API rate limits are blocking our rollout"),
    ),
    "bargain_hunters": dict(
        share=0.20, new=False, plan=(0.85, 0.15, 0.0), size=(20, 0.9), price=0.9,
        usage=0.12, growth=0.0, decline=False, quantity=1.5, mix_conc=6,
        mix=(5.5, 3.5, 0.1, 0.1, 0.3, 0.2, 0.1, 0.05, 0.1, 0.05),
        engage=0.05, channels=(10, 1, 1, 0.2, 0.1, 0.1),
        discount=(0.80, 0.30), late=(0.25, 12), addons=0.01, churn=0.12,
        tickets=0.10, priority=(0.4, 0.4, 0.15, 0.05), topics=(5, 1, 2, 0.5, 0.5, 1), close=3.0,
        respond=0.35, nps=6.6,
        comments=("Good value, but only with the discount",
                  "Price is too high for what we actually use",
                  "Reports are fine, we do not need much else",
                  "We will renew if the promotion continues"),
    ),
    "fading_accounts": dict(
        share=0.15, new=False, plan=(0.25, 0.65, 0.10), size=(120, 1.0), price=1.0,
        usage=0.40, growth=0.0, decline=True, quantity=2.0, mix_conc=8,
        mix=(2.5, 2, 0.5, 0.8, 1.5, 1, 0.5, 0.5, 1, 0.7),
        engage=0.08, channels=(3, 1, 1.5, 0.5, 0.5, 0.5),
        discount=(0.20, 0.08), late=(0.08, 6), addons=0.03, churn=0.55,
        tickets=0.15, priority=(0.35, 0.4, 0.2, 0.05), topics=(2, 1, 1, 1, 1, 2), close=3.0,
        respond=0.35, nps=5.0,
        comments=("We are not using it as much anymore",
                  "Most of the team moved to another tool",
                  "Hard to justify the cost lately",
                  "Not sure we still need this"),
    ),
    "new_explorers": dict(
        share=0.15, new=True, plan=(0.55, 0.40, 0.05), size=(60, 1.1), price=1.0,
        usage=0.60, growth=0.45, decline=False, quantity=2.0, mix_conc=6,
        mix=(2, 1, 0.7, 0.7, 1, 1.2, 0.6, 0.8, 1.5, 1),
        engage=0.30, channels=(2, 1.5, 3, 3, 0.5, 1),
        discount=(0.30, 0.10), late=(0.05, 4), addons=0.05, churn=0.04,
        tickets=1.0, priority=(0.7, 0.25, 0.04, 0.01), topics=(0.5, 0.5, 6, 1, 0.2, 1), close=1.0,
        respond=0.40, nps=7.4,
        comments=("Still learning the ropes, the webinars help a lot",
                  "Onboarding docs could be clearer",
                  "Setting up the first dashboards was easy",
                  "Lots of features, still figuring out where to start"),
    ),
    "analytics_specialists": dict(
        share=0.20, new=False, plan=(0.10, 0.75, 0.15), size=(200, 1.0), price=1.0,
        usage=0.35, growth=0.01, decline=False, quantity=4.0, mix_conc=12,
        mix=(0.5, 4, 2.5, 0.2, 0.1, 0.1, 3.5, 0.1, 0.1, 0.2),
        engage=0.07, channels=(3, 2, 2, 1.5, 0.5, 1),
        discount=(0.15, 0.05), late=(0.04, 3), addons=0.08, churn=0.03,
        tickets=0.12, priority=(0.45, 0.4, 0.12, 0.03), topics=(1, 2, 1, 2, 1, 1), close=2.0,
        respond=0.45, nps=8.2,
        comments=("Data export is exactly what our analysts need",
                  "The report builder is powerful",
                  "API access makes our BI pipeline simple",
                  "Would love more export formats"),
    ),
}  # fmt: skip


def _param(key: str) -> np.ndarray:
    """Stack one numeric persona parameter into an array indexed by persona code (first axis)."""
    return np.array([p[key] for p in PERSONAS.values()], dtype=float)


def _cum_probs(weights: np.ndarray) -> np.ndarray:
    """Row-normalised cumulative probabilities with the last column exactly 1."""
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    return cum


def _pick(rng: np.random.Generator, cum: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Draw one category per element of ``group`` from the rows of ``cum`` (vectorized)."""
    n_groups, k = cum.shape
    flat = (cum + np.arange(n_groups)[:, None]).ravel()
    draws = group + rng.random(group.size)
    idx = np.searchsorted(flat, draws, side="right") - group * k
    return np.minimum(idx, k - 1)


def _events(
    rng: np.random.Generator, rate: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sample Poisson events per (customer, time bin); return sorted customer idx and seconds."""
    width = np.clip(hi - lo, 0, None)
    counts = rng.poisson(rate * width / DAY).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    secs = lo.ravel()[cell] + (rng.random(cell.size) * width.ravel()[cell]).astype(np.int64)
    key = np.sort(((cell // rate.shape[1]).astype(np.int64) << 32) | secs)
    return key >> 32, key & 0xFFFFFFFF


def _ts(secs: np.ndarray) -> np.ndarray:
    """Convert epoch seconds to a ``datetime64[us]`` array."""
    return np.asarray(secs, dtype=np.int64).astype("datetime64[s]").astype("datetime64[us]")


def _frame(ids: pa.Array, cust: np.ndarray, sort: bool = False, **cols: np.ndarray) -> pd.DataFrame:
    """Build a frame whose ``customer_id`` is gathered from ``ids``; NaT and None become null.

    With ``sort``, rows are ordered by customer, then by the first column (a timestamp).
    """
    o = np.lexsort((next(iter(cols.values())), cust)) if sort else slice(None)
    table = {k: pa.array(v[o], from_pandas=True) for k, v in cols.items()}
    return pa.table({"customer_id": ids.take(pa.array(cust[o])), **table}).to_pandas()


def _in_lifetime(rng: Rng, signup: np.ndarray, end_s: int) -> np.ndarray:
    """Uniform random epoch seconds between each signup day and the end of the data."""
    lo = signup * DAY
    return lo + (rng.random(signup.size) * (end_s - lo)).astype(np.int64)


def _customers(rng: np.random.Generator, n: int, end_day: int) -> dict[str, np.ndarray]:
    """Draw persona, signup day and firmographics; rows are ordered by signup like real ids."""
    shares = _param("share") / _param("share").sum()
    counts = np.floor(shares * n).astype(int)  # exact shares, remainder to the largest fractions
    counts[np.argsort(-(shares * n - counts))[: n - counts.sum()]] += 1
    code = rng.permutation(np.repeat(np.arange(len(PERSONAS)), counts))
    is_new = _param("new")[code].astype(bool)
    ago = np.where(
        is_new,
        rng.integers(*NEW_SIGNUP_DAYS, size=n, endpoint=True),
        rng.integers(*OLD_SIGNUP_DAYS, size=n, endpoint=True),
    )
    order = np.lexsort((rng.random(n), -ago))
    code, signup = code[order], end_day - ago[order]
    size_med, size_sig = _param("size").T
    size = np.exp(np.log(size_med[code]) + size_sig[code] * rng.standard_normal(n))
    plan = _pick(rng, _cum_probs(_param("plan")), code)
    size = np.maximum(1, np.round(size)).astype(np.int64)
    return {"code": code, "signup": signup, "size": size, "plan": plan}


def _names(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fake full names and matching e-mail addresses."""
    first = np.array(FIRST_NAMES)[rng.integers(len(FIRST_NAMES), size=n)]
    last = np.array(LAST_NAMES)[rng.integers(len(LAST_NAMES), size=n)]
    digits = np.char.mod("%04d", rng.integers(1000, 10_000, size=n))
    local = np.char.add(np.char.add(np.char.lower(first), "."), np.char.lower(last))
    email = np.char.add(np.char.add(local, digits), "@example.com")
    return np.char.add(np.char.add(first, " "), last), email


def _transactions(rng: Rng, c: Cust, ids: pa.Array, price: np.ndarray, end_s: int) -> pd.DataFrame:
    """Monthly invoices from signup to the end, add-ons, and a few refunds."""
    n, code = len(c["code"]), c["code"]
    start_m = c["signup"].astype("datetime64[D]").astype("datetime64[M]")
    months = (np.datetime64(DEMO_END, "M") - start_m).astype(int) + 1
    cust = np.repeat(np.arange(n), months)
    k = np.arange(cust.size) - np.repeat(np.cumsum(months) - months, months)
    dom = c["signup"] - start_m.astype("datetime64[D]").astype(np.int64)  # 0-based day of month
    month = start_m[cust] + k
    first, nxt = month.astype("datetime64[D]").astype(np.int64), (month + 1).astype("datetime64[D]")
    day = first + np.minimum(dom[cust], nxt.astype(np.int64) - first - 1)  # anniversary billing
    secs = day * DAY + rng.integers(6 * 3600, 20 * 3600, size=cust.size)
    # churn: some customers cancel (recently, mostly); billing and add-ons stop then
    lo_s = np.maximum(c["signup"] * DAY, end_s - 180 * DAY)
    cancel = np.where(
        rng.random(n) < _param("churn")[code],
        lo_s + rng.random(n) * np.maximum(end_s - 14 * DAY - lo_s, DAY),
        end_s,
    ).astype(np.int64)
    keep = secs < cancel[cust]
    cust, secs = cust[keep], secs[keep]
    gross = price[cust] * rng.lognormal(0.0, 0.05, size=cust.size)
    # add-on purchases: uniform over the customer's lifetime
    n_add = rng.poisson(_param("addons")[code] * months)
    a_cust = np.repeat(np.arange(n), n_add)
    a_secs = _in_lifetime(rng, c["signup"][a_cust], end_s)
    a_keep = a_secs < cancel[a_cust]
    a_cust, a_secs = a_cust[a_keep], a_secs[a_keep]
    a_gross = price[a_cust] * rng.lognormal(np.log(0.25), 0.5, size=a_cust.size)
    cust, secs = np.concatenate([cust, a_cust]), np.concatenate([secs, a_secs])
    gross = np.concatenate([gross, a_gross])
    # discounts: a share of customers has a standing discount rate, plus rare promotions
    p_disc, mean_disc = _param("discount").T
    # beta(4, b) has mean 4 / (4 + b): mean_disc is the mean rate among discounted customers
    rate = np.where(rng.random(n) < p_disc[code], rng.beta(4, 4 / mean_disc[code] - 4), 0.0)
    rate = np.clip(rate[cust] + (rng.random(cust.size) < 0.02) * 0.2, 0, 0.8)
    discount = np.round(gross * rate, 2)
    amount = np.round(np.round(gross, 2) - discount, 2)
    p_late, late_days = _param("late").T
    is_late = rng.random(cust.size) < p_late[code][cust]
    days_late = np.where(is_late, 1 + rng.poisson(late_days[code][cust] - 1), 0)
    # refunds: about 0.5% of charges are refunded a few days later
    ref = np.flatnonzero(rng.random(cust.size) < 0.005)
    r_secs = np.minimum(secs[ref] + rng.integers(DAY, 20 * DAY, size=ref.size), end_s - 1)
    cust, secs = np.concatenate([cust, cust[ref]]), np.concatenate([secs, r_secs])
    amount = np.concatenate([amount, -amount[ref]])
    discount = np.concatenate([discount, np.zeros(ref.size)])
    days_late = np.concatenate([days_late, np.zeros(ref.size, dtype=days_late.dtype)])
    cols = {"timestamp": _ts(secs), "amount": amount, "discount": discount}
    return _frame(ids, cust, True, **cols, days_late=days_late.astype(np.int64))


def _feedback(rng: Rng, c: Cust, ids: pa.Array, email: np.ndarray, end_s: int) -> pd.DataFrame:
    """Survey answers (NPS, CSAT) with persona-specific comments and a little PII."""
    n, code = len(c["code"]), c["code"]
    responds = rng.random(n) < _param("respond")[code]
    n_resp = responds * (1 + rng.poisson(0.4, size=n))
    cust = np.repeat(np.arange(n), n_resp)
    secs = _in_lifetime(rng, c["signup"][cust], end_s)
    centre = _param("nps")[code] + rng.normal(0, 0.8, size=n)
    nps = np.clip(np.round(rng.normal(centre[cust], 1.2)), 0, 10).astype(np.int64)
    csat = np.clip(np.round(1 + 0.4 * nps + rng.normal(0, 0.6, cust.size)), 1, 5)
    templates = [t for p in PERSONAS.values() for t in p["comments"]]
    n_tpl = np.array([len(p["comments"]) for p in PERSONAS.values()])
    offset = np.cumsum(n_tpl) - n_tpl
    pcode = code[cust]
    tpl = offset[pcode] + (rng.random(cust.size) * n_tpl[pcode]).astype(int)
    text = np.array(templates)[tpl].astype(object)
    has = rng.random(cust.size) < 0.55
    pii = has & (rng.random(cust.size) < 0.01)
    mail = pii & (rng.random(cust.size) < 0.5)
    text[mail] = np.char.add(text[mail].astype(str), ". You can reach me at ")
    text[mail] = np.char.add(text[mail].astype(str), email[cust[mail]])
    phone = pii & ~mail
    line = rng.integers(0, 10**4, size=int(phone.sum()))
    digits = np.char.mod("+1 202 555 %04d", line)
    text[phone] = np.char.add(text[phone].astype(str), np.char.add(". Call me on ", digits))
    text[~has] = None
    csat = csat.astype(np.int64)
    return _frame(ids, cust, True, timestamp=_ts(secs), nps=nps, csat=csat, comment=text)


def _tickets(rng: Rng, c: Cust, ids: pa.Array, end_s: int) -> pd.DataFrame:
    """Support tickets with persona-specific volume, priority, topic and time to close."""
    n, code = len(c["code"]), c["code"]
    tenure_m = (end_s - c["signup"] * DAY) / (30 * DAY)
    n_tix = rng.poisson(_param("tickets")[code] * tenure_m * rng.lognormal(0, 0.4, size=n))
    cust = np.repeat(np.arange(n), n_tix)
    opened = _in_lifetime(rng, c["signup"][cust], end_s)
    pcode = code[cust]
    prio = _pick(rng, _cum_probs(_param("priority")), pcode)
    topic = _pick(rng, _cum_probs(_param("topics")), pcode)
    hours = rng.gamma(1.5, _param("close")[pcode] * 24 / 1.5) + 0.1
    closed = opened + (hours * 3600).astype(np.int64)
    closed_at = np.where(closed < end_s, _ts(closed), np.datetime64("NaT"))  # NaT: still open
    prio, topic = np.array(PRIORITIES)[prio], np.array(TOPICS)[topic]
    return _frame(
        ids, cust, True, opened_at=_ts(opened), closed_at=closed_at, priority=prio, topic=topic
    )


def make_demo(n_customers: int = 5000, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Generate a synthetic B2B SaaS customer base with planted personas.

    Parameters
    ----------
    n_customers : int, default 5000
        Number of customers to generate.
    seed : int, default 0
        Seed for :func:`numpy.random.default_rng`; the same seed gives identical tables.

    Returns
    -------
    dict of str to pandas.DataFrame
        The six contract tables (see :data:`TABLES`) plus ``planted_personas`` with columns
        ``customer_id`` and ``persona`` (the ground truth).
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be positive, got {n_customers}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = n_customers
    end_day = int(np.datetime64(DEMO_END, "D").astype(np.int64))
    end_s = (end_day + 1) * DAY  # exclusive end: midnight after DEMO_END
    c = _customers(rng, n, end_day)
    code = c["code"]
    ids_np = np.char.mod("C%06d", np.arange(1, n + 1))
    ghosts = np.char.mod("C9%07d", rng.choice(10**7, size=max(3, n // 200), replace=False))
    ids = pa.array(np.concatenate([ids_np, ghosts]).tolist(), pa.string())
    name, email = _names(rng, n)
    region = rng.choice(len(REGIONS), size=n, p=REGION_P)
    customers = _frame(
        ids, np.arange(n), name=name, email=email, signup_date=_ts(c["signup"] * DAY),
        region=np.array(REGIONS)[region],
        industry=np.array(INDUSTRIES)[rng.integers(len(INDUSTRIES), size=n)],
        company_size=c["size"], plan=np.array(PLANS)[c["plan"]],
    )  # fmt: skip
    noise = np.exp(0.15 * np.log(c["size"] / 100) + rng.normal(0, 0.35, size=n))  # bigger pay more
    price = np.array(PLAN_PRICE)[c["plan"]] * _param("price")[code] * noise

    # weekly time grid over the whole history, clipped to each customer's lifetime
    n_bins = -(-HISTORY_DAYS // 7)
    edges = end_s - 7 * DAY * np.arange(n_bins, -1, -1, dtype=np.int64)
    lo = np.maximum(edges[None, :-1], c["signup"][:, None] * DAY)
    hi = np.broadcast_to(edges[None, 1:], lo.shape)
    u_lo = np.maximum(lo, end_s - USAGE_DAYS * DAY)
    to_end = ((u_lo + hi) / 2 - end_s) / (30 * DAY)  # bin midpoint in months (<= 0)
    growth = _param("growth")[code] + rng.normal(0, 0.06, size=n)
    trend = np.exp(growth[:, None] * to_end)
    start = -rng.uniform(1.5, 2.7, size=n)  # fading accounts start declining 45-80 days ago
    tau = rng.uniform(0.3, 0.8, size=n)
    fall = np.exp(-np.clip(to_end - start[:, None], 0, None) / tau[:, None])
    fade = np.where(_param("decline")[code].astype(bool)[:, None], np.maximum(fall, 0.02), 1.0)
    level = _param("usage")[code] * rng.lognormal(-0.125, 0.5, size=n)
    u_cust, u_secs = _events(rng, level[:, None] * trend * fade, u_lo, hi)
    mix = _param("mix")
    alpha = (mix / mix.sum(axis=1, keepdims=True) * _param("mix_conc")[:, None])[code]
    feature = _pick(rng, _cum_probs(rng.gamma(alpha) + 1e-12), u_cust)
    quantity = 1 + rng.poisson(_param("quantity")[code][u_cust] - 1)
    ghost_rows = rng.random(u_cust.size) < 0.002
    u_cust[ghost_rows] = n + rng.integers(len(ghosts), size=int(ghost_rows.sum()))
    feature, quantity = np.array(FEATURES)[feature], quantity.astype(np.int64)
    usage = _frame(ids, u_cust, timestamp=_ts(u_secs), feature=feature, quantity=quantity)

    e_rate = _param("engage")[code] * rng.lognormal(-0.125, 0.5, size=n)
    e_cust, e_secs = _events(rng, e_rate[:, None] * fade**1.5, lo, hi)
    chan = _pick(rng, _cum_probs(_param("channels")), code[e_cust])
    engagement = _frame(ids, e_cust, timestamp=_ts(e_secs), channel=np.array(CHANNELS)[chan])

    out = {
        "customers": customers,
        "transactions": _transactions(rng, c, ids, price, end_s),
        "usage_events": usage,
        "engagement_events": engagement,
        "feedback": _feedback(rng, c, ids, email, end_s),
        "support_tickets": _tickets(rng, c, ids, end_s),
        "planted_personas": _frame(ids, np.arange(n), persona=np.array(list(PERSONAS))[code]),
    }
    sizes = {k: len(v) for k, v in out.items()}
    logger.info("demo data: %s rows in %.1fs", sizes, time.perf_counter() - t0)
    return out


def _to_arrow(df: pd.DataFrame, for_csv: bool) -> pa.Table:
    """Convert a frame for writing: whole-second timestamps in CSV, ``signup_date`` as date."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    for i, field in enumerate(table.schema):
        if field.name == "signup_date":
            table = table.set_column(i, field.name, table.column(i).cast(pa.date32()))
        elif pa.types.is_timestamp(field.type) and for_csv:
            table = table.set_column(i, field.name, table.column(i).cast(pa.timestamp("s")))
    return table


def write_demo(
    out: str | Path, *, n_customers: int = 5000, seed: int = 0, file_format: str = "csv"
) -> dict[str, int]:
    """Generate the demo data and write one file per table.

    Parameters
    ----------
    out : str or Path
        Output directory (created if missing).
    n_customers : int, default 5000
        Number of customers to generate.
    seed : int, default 0
        Random seed passed to :func:`make_demo`.
    file_format : {"csv", "parquet"}, default "csv"
        File format of the six contract tables; ``planted_personas`` is always CSV.

    Returns
    -------
    dict of str to int
        Number of rows written per table (including ``planted_personas``).
    """
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"file_format must be 'csv' or 'parquet', got {file_format!r}")
    return write_tables(out, make_demo(n_customers, seed=seed), file_format)


def write_tables(out: str | Path, frames: dict[str, pd.DataFrame], file_format: str) -> dict:
    """Write one file per table, atomically; the ground truth (``planted_*``) is always CSV."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: dict[str, int] = {}
    for name, df in frames.items():
        fmt = "csv" if name.startswith("planted_") else file_format
        path = out / f"{name}.{fmt}"
        tmp = path.with_name(f".{path.name}.tmp")
        table = _to_arrow(df, for_csv=fmt == "csv")
        if fmt == "csv":
            pacsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, path)
        rows[name] = len(df)
    logger.info("wrote %d tables to %s in %.1fs", len(rows), out, time.perf_counter() - t0)
    return rows
