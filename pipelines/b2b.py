"""B2B: personas of accounts, and the people in them by influence (``level: account``).

The train recipe calls three steps here when the config says ``level: account``:

1. `to_accounts`: each person's account and influence level (from their role, by the
   words under ``b2b.influence``), the account's NPS score (``b2b.account_nps``), and the
   people's feature table rolled up to one row per account (`features.accounts.roll_up`).
   The models then segment accounts.
2. `add_influence`: each account persona gets the NPS of its people, per influence level,
   and the tested gap between decision makers and end users (`models.influence`).
3. `people_assignments`: every person placed in their account's persona
   (``people_assignments.csv``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import DataError, FeatureTable, LoadedData
from features.accounts import account_scores, latest_scores, people, roll_up
from features.engine import Engine, slug
from features.influence import UNKNOWN, influence_levels
from features.privacy import pseudonymize
from models.influence import gap_rule_text, influence_nps

__all__ = [
    "Accounts",
    "add_influence",
    "gap_rule",
    "influence_settings",
    "metrics",
    "people_assignments",
    "person_labels",
    "require_accounts",
    "to_accounts",
    "update_influence",
    "write_people",
]

logger = logging.getLogger(__name__)

_SCORE_WORDS = {
    "mean": "the account's score: the mean of its people's latest scores, rounded (0-10)",
    "decision_makers": "the account's score: the latest score of any of its decision makers (0-10)",
}


@dataclass
class Accounts:
    """The people of each account, and the account x feature table.

    Attributes
    ----------
    members : pandas.DataFrame
        Index ``customer_id`` (every person); ``account_id``, ``role`` and
        ``influence`` (the level; `features.influence.UNKNOWN` without a role).
    scores : pandas.Series
        Each person's latest NPS score, NaN for non-respondents (index ``customer_id``).
    table : FeatureTable
        One row per account (index ``account_id``).
    has_roles : bool
        Whether any person has a role.
    """

    members: pd.DataFrame
    scores: pd.Series
    table: FeatureTable
    has_roles: bool


def _sides(b2b: dict) -> dict[str, list[str]]:
    return {"decision_makers": list(b2b["decision_makers"]), "end_users": list(b2b["end_users"])}


def to_accounts(loaded: LoadedData, table: FeatureTable, cfg: dict) -> Accounts:
    """Map people to accounts and influence levels, and roll their features up.

    Parameters
    ----------
    loaded : LoadedData
        The checked tables (customers with ``account_id``).
    table : FeatureTable
        The people's features (one row per person).
    cfg : dict
        The run configuration (``b2b``, ``features``, ``model.k_min``).

    Returns
    -------
    Accounts
        The people and the account table.

    Raises
    ------
    DataError
        When a person has no account, or ``account_nps: decision_makers`` is asked for
        without roles.
    """
    b = cfg["b2b"]
    engine = Engine(loaded)
    members = people(engine, b["role_column"])
    has_roles = bool(members["role"].notna().any())
    members["influence"] = influence_levels(members["role"], b["influence"], other=b["other_roles"])
    if b["account_nps"] == "decision_makers" and not has_roles:
        raise DataError(
            f"b2b.account_nps is decision_makers, but no person has a role (column "
            f"{b['role_column']!r} of customers); add roles or set b2b.account_nps: mean."
        )
    latest = latest_scores(engine)
    score = None
    if engine.has("feedback", "nps"):
        score = account_scores(
            latest, members, how=b["account_nps"], decision_levels=b["decision_makers"]
        )
    drop = [f"attr_{slug(b['role_column'])}"] if b["role_column"] else []
    accounts = roll_up(
        table,
        members[["account_id", "influence"]] if has_roles else members[["account_id"]],
        window_days=cfg["features"]["window_days"],
        score=score,
        score_description=_SCORE_WORDS[b["account_nps"]],
        drop=drop,
    )
    scores = latest["nps"].reindex(members.index).astype(float)
    return Accounts(members=members, scores=scores, table=accounts, has_roles=has_roles)


def require_accounts(accounts: Accounts, k_min: int, file: str) -> None:
    """Stop when there are too few accounts to find ``k_min`` personas of accounts."""
    n = len(accounts.table.frame)
    if n < k_min + 1:
        raise DataError(
            f"{file}: only {n} account{'s' if n != 1 else ''}: at least {k_min + 1} are needed "
            f"to find {k_min} or more personas of accounts (model.k_min = {k_min}); or set "
            "level: customer."
        )


def person_labels(accounts: Accounts, labels: pd.Series) -> pd.Series:
    """Return each person's persona: their account's (index ``customer_id``)."""
    return accounts.members["account_id"].map(labels).astype(int)


def add_influence(personas: list[dict], accounts: Accounts, labels: np.ndarray, cfg: dict) -> None:
    """Add the people's NPS, NPS by influence level and the gap to each persona, in place.

    Parameters
    ----------
    personas : list of dict
        The account personas (`models.profile_personas`).
    accounts : Accounts
        The people and the account table.
    labels : ndarray of shape (n_accounts,)
        The persona of each account, in the order of ``accounts.table.frame``.
    cfg : dict
        The run configuration (``b2b``, ``profile``, ``privacy``).

    Notes
    -----
    Each persona gains ``people``, ``people_nps``, ``nps_by_influence``, ``influence_gap``
    (see `models.influence.influence_nps`; the last two are empty without roles) and
    ``account_nps`` (how its ``nps`` was counted: ``mean`` or ``decision_makers``).
    """
    per_person = person_labels(accounts, pd.Series(labels, index=accounts.table.frame.index))
    m = accounts.members
    found = influence_nps(
        accounts.scores.to_numpy(),
        m["influence"].to_numpy(),
        m["account_id"].to_numpy(),
        per_person.to_numpy(),
        **influence_settings(cfg),
    )
    update_influence(personas, found, accounts.has_roles, cfg)


def influence_settings(cfg: dict) -> dict:
    """Return `models.influence.influence_nps`'s settings from the run configuration."""
    b, prof = cfg["b2b"], cfg["profile"]
    return {
        "sides": _sides(b),
        "order": [*b["influence"], b["other_roles"], UNKNOWN],
        "min_respondents": prof["min_respondents"],
        "min_shown": cfg["privacy"]["min_persona_size"],
        "alpha": prof["alpha"],
        "min_gap": b["min_gap"],
        "ci_level": prof["ci_level"],
    }


def update_influence(personas: list[dict], found: dict, has_roles: bool, cfg: dict) -> None:
    """Set each persona's people, NPS by influence level and gap (``found``), in place."""
    for p in personas:
        extra = found.get(p["persona_id"])
        if extra is None:
            continue
        if not has_roles:
            extra = {**extra, "nps_by_influence": [], "influence_gap": None}
        p.update(extra, account_nps=cfg["b2b"]["account_nps"])


def gap_rule(cfg: dict) -> str:
    """Return the rule that calls out a gap, in words (see `models.influence.gap_rule_text`)."""
    return gap_rule_text(
        _sides(cfg["b2b"]),
        min_respondents=cfg["profile"]["min_respondents"],
        alpha=cfg["profile"]["alpha"],
        min_gap=cfg["b2b"]["min_gap"],
    )


def people_assignments(accounts: Accounts, assignments: pd.DataFrame) -> pd.DataFrame:
    """Place every person in their account's persona.

    Parameters
    ----------
    accounts : Accounts
        The people.
    assignments : pandas.DataFrame
        One row per account: ``account_id``, ``persona_id``, ``persona_name``...

    Returns
    -------
    pandas.DataFrame
        One row per person, every person once: ``customer_id``, ``account_id``,
        ``influence``, ``persona_id``, ``persona_name``.
    """
    m = accounts.members.reset_index()[["customer_id", "account_id", "influence"]]
    by_account = assignments.set_index("account_id")[["persona_id", "persona_name"]]
    out = m.join(by_account, on="account_id", how="left")
    if out["persona_id"].isna().any():  # a bug, never the user's data
        raise RuntimeError("Some people's accounts have no persona.")
    out["persona_id"] = out["persona_id"].astype(int)
    return out.astype({"customer_id": str, "account_id": str, "influence": str})


def write_people(folder: Path, people_rows: pd.DataFrame, salt: str | None) -> None:
    """Write ``people_assignments.csv``, with pseudonymized ids when a salt is given."""
    if salt is not None:
        people_rows = people_rows.assign(
            customer_id=pseudonymize(people_rows["customer_id"], salt),
            account_id=pseudonymize(people_rows["account_id"], salt),
        )
    people_rows.to_csv(Path(folder) / "people_assignments.csv", index=False)


def metrics(personas: list[dict], n_accounts: int, n_people: int) -> dict[str, float]:
    """Return the B2B metrics of a run: sizes, people's NPS and the gap per persona."""
    out = {"n_accounts": float(n_accounts), "n_people": float(n_people)}
    for p in personas:
        pid = p["persona_id"]
        if p.get("people") is not None:
            out[f"persona.{pid}.people"] = p["people"]
        if (p.get("people_nps") or {}).get("nps") is not None:
            out[f"persona.{pid}.people_nps"] = p["people_nps"]["nps"]
        gap = p.get("influence_gap") or {}
        if gap.get("gap") is not None:
            out[f"persona.{pid}.influence_gap"] = gap["gap"]
    return out
