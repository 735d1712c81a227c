"""What to do with the personas: which to focus on, which are at risk, and actions by rules.

The rules are data, in the spirit of pymc-marketing's ``rfm_segments`` config: a persona
field (or a trait, ``trait:<feature>``, its standardized difference from all customers)
compared with a threshold. A user replaces them in the config without touching code.
"""

from __future__ import annotations

import operator

__all__ = [
    "DEFAULT_ACTIONS",
    "DEFAULT_FOCUS_RULE",
    "FALLBACK_ACTION",
    "focus_rule_text",
    "pick_focus",
    "suggest_actions",
]

#: Settings of `pick_focus`: at most ``max_focus`` focus personas; "high value" means
#: value per customer at least ``min_value_index`` times the average; "low P(alive)"
#: means a mean probability of being alive below ``max_p_alive``.
DEFAULT_FOCUS_RULE = {"max_focus": 3, "min_value_index": 1.2, "max_p_alive": 0.5}

#: Actions the domain notes suggest, by rule. Each rule has a ``rule`` name, ``when``
#: (every condition must hold: ``field: [operator, threshold]``; a missing field fails)
#: and the ``action``. Fields are persona fields (``value_index``, ``nps_vs_rest``,
#: ``is_at_risk``, ``p_alive_mean``...), ``trait:<feature>`` (standardized difference vs
#: all customers) or ``business`` (``b2b`` or ``b2c``: who the customers are, from the
#: config's ``business``), so one rule set speaks to both.
DEFAULT_ACTIONS: list[dict] = [
    {
        "rule": "lapsed",
        "when": {"p_alive_mean": ["<", 0.3]},
        "action": "Win back or let go: a win-back offer to the most valuable of them, then stop "
        "spending on the rest; ask the ones who answer why they left.",
    },
    {
        "rule": "at risk",
        "when": {"business": ["==", "b2b"], "is_at_risk": ["==", True]},
        "action": "Proactive outreach now: check-in calls from customer success, a short "
        "survey on what is not working, an executive sponsor for the largest accounts.",
    },
    {
        "rule": "at risk",
        "when": {"business": ["==", "b2c"], "is_at_risk": ["==", True]},
        "action": "Act before they lapse: an in-app check-in on what is not working, a "
        "reminder of what they use most, and pause instead of cancel.",
    },
    {
        "rule": "high value",
        "when": {"business": ["==", "b2b"], "value_index": [">=", 1.2]},
        "action": "Premium support and custom onboarding, with a named customer success manager.",
    },
    {
        "rule": "high value",
        "when": {"business": ["==", "b2c"], "value_index": [">=", 1.2]},
        "action": "Reward loyalty: early access to new features, a perk on renewal and a "
        "plan that fits how much they use.",
    },
    {
        "rule": "promoters",
        "when": {"nps_significant": ["==", True], "nps_vs_rest": [">", 0]},
        "action": "Ask for referrals, reviews and case studies; invite them to early-access "
        "programmes.",
    },
    {
        "rule": "detractors",
        "when": {"nps_significant": ["==", True], "nps_vs_rest": ["<", 0]},
        "action": "Close the loop with detractors: follow up on their comments and fix their "
        "top complaints first.",
    },
    {
        "rule": "fading usage",
        "when": {"trait:usage_trend": ["<=", -0.5]},
        "action": "Win back: a re-engagement campaign on what they no longer use, and a call "
        "to find the blocker.",
    },
    {
        "rule": "support heavy",
        "when": {"trait:support_tickets": [">=", 0.5]},
        "action": "Fix the root causes of their top ticket topics; give them a faster support "
        "channel.",
    },
    {
        "rule": "newcomers",
        "when": {"trait:tenure_days": ["<=", -0.5]},
        "action": "Structured onboarding: guided setup, training webinars and a 30-day check-in.",
    },
    {
        "rule": "discount seekers",
        "when": {"trait:revenue_discount_share": [">=", 0.5]},
        "action": "Value-based messaging and annual plans rather than deeper discounts.",
    },
    {
        "rule": "late payers",
        "when": {"trait:revenue_days_late": [">=", 0.5]},
        "action": "Automated payment reminders and card or direct-debit billing.",
    },
    {
        "rule": "low value",
        "when": {"value_index": ["<", 0.5]},
        "action": "Low-touch digital service: self-serve help centre, in-app guides, "
        "automated emails.",
    },
    {
        "rule": "silent",
        "when": {"trait:engagement_silent": [">=", 0.5]},
        "action": "Reach them in the product (in-app messages), not by email.",
    },
]

#: The action of a persona that no rule matches.
FALLBACK_ACTION = "Keep serving as today; watch NPS and usage at each run."

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def _field(persona: dict, name: str, context: dict | None = None):
    if context and name in context:
        return context[name]
    if name.startswith("trait:"):
        return (persona.get("trait_effects") or {}).get(name[len("trait:") :])
    return persona.get(name)


def _holds(persona: dict, when: dict, context: dict | None = None) -> bool:
    for name, (op, threshold) in when.items():
        if op not in _OPS:
            raise ValueError(
                f"Unknown operator {op!r} in action rule on {name!r}; use {list(_OPS)}"
            )
        value = _field(persona, name, context)
        if value is None or not _OPS[op](value, threshold):
            return False
    return True


def suggest_actions(
    persona: dict,
    rules: list[dict] | None = None,
    *,
    max_actions: int = 4,
    business: str = "b2b",
) -> list[dict]:
    """Actions for one persona, from the first ``max_actions`` rules that match.

    Parameters
    ----------
    persona : dict
        A persona profile; ``trait:<feature>`` conditions read ``trait_effects``.
    rules : list of dict, optional
        Rules of ``rule``, ``when`` and ``action`` (default `DEFAULT_ACTIONS`).
    max_actions : int, default=4
        Most actions returned.
    business : {"b2b", "b2c"}, default="b2b"
        Who the customers are, for rules on ``business``.

    Returns
    -------
    list of dict
        ``{"rule": ..., "action": ...}`` in rule order; `FALLBACK_ACTION` when none matches.

    Examples
    --------
    >>> suggest_actions({"value_index": 2.0}, [{"rule": "vip", "when": {"value_index": [">=", 1.5]},
    ...                                         "action": "Call them."}])
    [{'rule': 'vip', 'action': 'Call them.'}]
    """
    rules = DEFAULT_ACTIONS if rules is None else rules
    context = {"business": business}
    out = [
        {"rule": r["rule"], "action": r["action"]}
        for r in rules
        if _holds(persona, r["when"], context)
    ]
    return out[:max_actions] or [{"rule": "none", "action": FALLBACK_ACTION}]


def _x(value: float) -> str:
    return f"{value:.1f}×"


def pick_focus(
    personas: list[dict],
    *,
    max_focus: int = 3,
    min_value_index: float = 1.2,
    max_p_alive: float = 0.5,
) -> list[dict]:
    """Mark the focus personas (ideal customer profile) and the personas at risk, in place.

    Parameters
    ----------
    personas : list of dict
        Profiles with ``value_index``, ``nps``, ``nps_vs_rest``, ``nps_significant``
        and ``p_alive_mean`` (None where unknown).
    max_focus : int, default=3
        Most focus personas.
    min_value_index : float, default=1.2
        High value: value per customer at least this many times the average.
    max_p_alive : float, default=0.5
        Low P(alive): mean probability of being alive below this.

    Returns
    -------
    list of dict
        The same profiles, with ``is_focus``, ``focus_reason``, ``is_at_risk`` and
        ``risk_reason`` set.

    See Also
    --------
    focus_rule_text : the rule in words, for the report.
    """
    focus = []
    for p in personas:
        p.update(is_focus=False, focus_reason=None, is_at_risk=False, risk_reason=None)
        vi = p.get("value_index")
        if vi is None or vi < min_value_index:
            continue
        value = f"value per customer {_x(vi)} the average"
        significant, diff = p.get("nps_significant") is True, p.get("nps_vs_rest")
        if significant and diff > 0:
            focus.append(p)
            p["focus_reason"] = f"{value}; NPS {p['nps']:+.0f}, {diff:+.0f} points above the rest"
        reasons = []
        if significant and diff < 0:
            reasons.append(f"NPS {p['nps']:+.0f}, {-diff:.0f} points below the rest")
        alive = p.get("p_alive_mean")
        if alive is not None and alive < max_p_alive:
            reasons.append(f"mean P(alive) {alive:.2f}")
        if reasons:
            p.update(is_at_risk=True, risk_reason=f"{value}; " + " and ".join(reasons))
    focus.sort(key=lambda p: (-p["value_index"], -p["nps"]))
    for p in focus[:max_focus]:
        p["is_focus"] = True
    for p in focus[max_focus:]:
        p["focus_reason"] = None
    return personas


def focus_rule_text(
    *,
    max_focus: int = 3,
    min_value_index: float = 1.2,
    max_p_alive: float = 0.5,
    min_respondents: int = 30,
    alpha: float = 0.05,
) -> str:
    """State the focus and at-risk rule in plain words, as `pick_focus` applies it.

    Returns
    -------
    str
        Two sentences for the report.
    """
    test = (
        f"its NPS differs from the rest of the customers in a two-sample test at the "
        f"{100 * alpha:g}% level, Holm-corrected across personas, with at least "
        f"{min_respondents} respondents"
    )
    return (
        f"Focus (ideal customer profile): up to {max_focus} personas, highest value first, "
        f"whose value per customer is at least {min_value_index:g}× the average and whose NPS "
        f"is above the rest ({test}). At risk: personas of the same high value whose NPS is "
        f"below the rest (same test) or whose mean probability of being alive is below "
        f"{max_p_alive:g}."
    )
