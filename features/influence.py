"""People's influence in their account, from their role: C-level, decision maker, influencer...

In B2B the individual is part of an account, and who they are in it matters: the person
who signs the contract and the person who uses the product every day can be unhappy for
different reasons. `influence_levels` maps a free-text role (a job title from the CRM) to
an influence level by configured words, kept as data (``b2b.influence`` in the config).
"""

from __future__ import annotations

import re

import pandas as pd

__all__ = ["UNKNOWN", "influence_levels", "words"]

#: The level of a person whose role is empty.
UNKNOWN = "unknown"


def words(text: str) -> tuple[str, ...]:
    """Split a role or a configured phrase into lower-case words (``VP, Sales`` -> vp, sales)."""
    return tuple(w for w in re.split(r"[^0-9a-z]+", str(text).lower()) if w)


def _contains(role: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return n > 0 and any(role[i : i + n] == phrase for i in range(len(role) - n + 1))


def influence_levels(
    roles: pd.Series, influence: dict[str, list[str]], *, other: str = "end_user"
) -> pd.Series:
    """Map each person's role to an influence level.

    A role takes the first level (in the order of ``influence``) one of whose words or
    phrases it contains as whole words, case-insensitively: ``Head of Sales`` contains
    ``head``, ``Vice President, Operations`` contains ``vice president``, but ``Headcount
    Analyst`` contains no ``head``. A role that contains none is ``other``; an empty role is
    `UNKNOWN`.

    Parameters
    ----------
    roles : pandas.Series
        One role per person (any index); missing values allowed.
    influence : dict of str to list of str
        Level -> words and phrases, in order of precedence (the defaults are
        ``b2b.influence`` in ``pipelines/conf/default.yaml``).
    other : str, default="end_user"
        The level of a role that matches no word.

    Returns
    -------
    pandas.Series
        The influence level per person (dtype ``string``), same index and name.

    Examples
    --------
    >>> levels = {"c_level": ["ceo"], "decision_maker": ["vp", "head"], "influencer": ["lead"]}
    >>> roles = pd.Series(["CEO", "VP of Sales", "Team Lead", "Analyst", None])
    >>> influence_levels(roles, levels).tolist()
    ['c_level', 'decision_maker', 'influencer', 'end_user', 'unknown']
    """
    phrases = [(level, [words(w) for w in ws]) for level, ws in influence.items()]

    def one(role) -> str:
        if role is None or pd.isna(role) or not str(role).strip():
            return UNKNOWN
        split = words(role)
        for level, options in phrases:
            if any(_contains(split, p) for p in options):
                return level
        return other

    distinct = {r: one(r) for r in roles.dropna().unique()}
    out = roles.map(lambda r: distinct.get(r, UNKNOWN) if pd.notna(r) else UNKNOWN)
    return out.astype("string").rename(roles.name)
