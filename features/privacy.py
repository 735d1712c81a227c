"""Keep personal data out of what a run shows: scrub free text, pseudonymize ids.

Columns that look like personal data never get past `features.load_data` (see
`features.contract.is_pii`). Two kinds of personal data get through anyway: e-mail
addresses and phone numbers that customers type into free text (feedback comments), and
the customer ids themselves, which link every output back to the CRM. `scrub` replaces
the first with ``[email]`` and ``[phone]``; `pseudonymize` replaces the second with a
salted hash that stays the same from run to run as long as the salt does. `id_salt`
reads that salt from ``$PERSONAS_ID_SALT`` when ``privacy.pseudonymize_ids`` is on, and
`pseudonymize_values` hashes the few ids a message or a summary quotes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable

import pandas as pd

from features.contract import DataError

__all__ = ["EMAIL", "PHONE", "SALT_ENV", "id_salt", "pseudonymize", "pseudonymize_values", "scrub"]

#: The environment variable holding the secret key of pseudonymized ids.
SALT_ENV = "PERSONAS_ID_SALT"

#: An e-mail address: ``jane.doe+news@mail.example.co.uk``. The local part takes letters
#: (any script), digits and ``. _ % + -``; the domain ends in a label of letters.
EMAIL = re.compile(
    r"(?<![\w.%+-])[\w%+-]+(?:\.[\w%+-]+)*@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*"
    r"\.[^\W\d_]{2,}(?![\w-])"
)

#: A phone number candidate: an optional country code (``+44``, ``0044``), an optional
#: area code in parentheses, then groups of digits joined by single spaces, dots or
#: hyphens. `_is_phone` decides which candidates are phone numbers.
PHONE = re.compile(
    r"(?<![\w#$€£¥+.,/-])"
    r"(?:(?:\+|\b00)\d{1,3}[ .-]?)?"
    r"(?:\(\d{1,5}\)[ .-]?)?"
    r"\d{1,8}(?:[ .-]?\d{1,8}){0,5}"
    r"(?![\w%$€£¥])(?![.,:/-]?\d)"
)

# What looks like a phone number but is not: dates, year ranges, times.
_NOT_PHONE = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}"  # 2026-03-01
    r"|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}"  # 01.03.2026, 1-3-26
    r"|(?:19|20)\d\d ?- ?(?:19|20)\d\d"  # 2025-2026
)
_MIN_DIGITS, _MAX_DIGITS = 7, 15  # E.164 allows at most 15 digits; 7 is a short local number


def _is_phone(candidate: str) -> bool:
    """Whether a `PHONE` candidate is a phone number rather than some other number.

    It needs 7 to 15 digits and is not a date. With a country code (``+``, ``00``) or an
    area code in parentheses, that is enough. Otherwise it must be written in groups that
    are not thousands (``555 123 4567``, not ``1 200 000``) and, as two groups, have at
    least 9 digits or read ``555-1234`` (not ``in 2026 1200 seats``); or be one run of at
    least 10 digits: a plain number that long in a comment is more likely a phone than
    anything else, and erring on the side of privacy costs little. An IPv4 address
    (``192.168.1.1``) counts as a phone number: it is personal data too.
    """
    digits = re.sub(r"\D", "", candidate)
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS or _NOT_PHONE.fullmatch(candidate):
        return False
    if candidate.startswith(("+", "00")) or "(" in candidate:
        return True
    groups = re.split(r"[ .-]", candidate)
    if len(groups) == 1:
        return len(digits) >= 10
    if len(groups) == 2 and len(digits) < 9:  # "555-1234", not "in 2026 1200 seats"
        return "-" in candidate and [len(g) for g in groups] == [3, 4]
    return not all(len(g) == 3 for g in groups[1:])


def scrub(text: str) -> str:
    """Replace the e-mail addresses and phone numbers in free text with placeholders.

    Parameters
    ----------
    text : str
        A comment, ticket body or any free text (``None`` and NaN are returned as they
        are, so a column with missing values can be mapped).

    Returns
    -------
    str
        The text with each address replaced by ``[email]`` and each phone number by
        ``[phone]``. Ordinary numbers stay: prices (``$1,200``, ``1.200,50 €``), years
        (``2026``), dates (``2026-03-01``), times, percentages, versions and ticket ids
        (``#4521``).

    Examples
    --------
    >>> scrub("Call me on +44 20 7946 0958 or write to jane.doe+news@example.co.uk")
    'Call me on [phone] or write to [email]'
    >>> scrub("Ticket #4521: charged $1,200 twice in 2026")
    'Ticket #4521: charged $1,200 twice in 2026'
    """
    if not isinstance(text, str):
        return text
    text = EMAIL.sub("[email]", text)
    return PHONE.sub(lambda m: "[phone]" if _is_phone(m.group()) else m.group(), text)


def pseudonymize(ids: pd.Series, salt: str) -> pd.Series:
    """Replace customer ids with salted SHA-256 hashes, the first 16 hex digits.

    The hash is HMAC-SHA-256 keyed with ``salt``: the same id and salt always give the
    same pseudonym (so runs can be compared and joined), another salt gives unrelated
    ones, and without the salt the ids cannot be recovered by hashing every plausible id
    (``CUST-1``, ``CUST-2``...). Keep the salt secret, out of the config and the outputs.

    Parameters
    ----------
    ids : pandas.Series
        Customer ids; each is hashed as its text (``str(id)``). Missing ids stay missing.
    salt : str
        The secret, non-empty.

    Returns
    -------
    pandas.Series
        Pseudonyms (16 lower-case hex characters, dtype ``string``), same index and name.

    Raises
    ------
    ValueError
        If ``salt`` is empty: an unsalted hash of a guessable id is no pseudonym.

    Examples
    --------
    >>> s = pseudonymize(pd.Series(["C001", "C002"]), salt="s3cret")
    >>> s.str.len().tolist(), s.is_unique
    ([16, 16], True)
    """
    if not isinstance(salt, str) or not salt:
        raise ValueError("pseudonymize needs a non-empty salt (a secret string).")
    key = salt.encode()

    def one(value) -> str:
        return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:16]

    out = ids.map(one, na_action="ignore")
    return out.astype("string").rename(ids.name)


def pseudonymize_values(values: Iterable, salt: str | None) -> list:
    """Return quoted ids as `pseudonymize` writes them; as they are when ``salt`` is None.

    Parameters
    ----------
    values : iterable
        A few ids (examples in a message or the data-quality summary); None stays None.
    salt : str or None
        The key (see `id_salt`); None leaves the ids as they are.

    Returns
    -------
    list
        The ids, or their pseudonyms, in order.

    Examples
    --------
    >>> pseudonymize_values(["CUST-1", None], salt=None)
    ['CUST-1', None]
    >>> [len(v) for v in pseudonymize_values(["CUST-1"], salt="s3cret")]
    [16]
    """
    values = list(values)
    if salt is None:
        return values
    hashed = pseudonymize(pd.Series(values, dtype=object), salt)
    return [None if pd.isna(v) else str(v) for v in hashed]


def id_salt(privacy: dict | None) -> str | None:
    """Return the key of pseudonymized ids, or None when ``pseudonymize_ids`` is off.

    Parameters
    ----------
    privacy : dict or None
        The ``privacy`` section of the config; reads ``pseudonymize_ids``. The key itself
        never comes from the config: it is read from ``$PERSONAS_ID_SALT``.

    Returns
    -------
    str or None
        The salt, or None when ids are written as they are.

    Raises
    ------
    DataError
        When ``pseudonymize_ids`` is on and ``$PERSONAS_ID_SALT`` is unset or empty.
    """
    if not (privacy or {}).get("pseudonymize_ids"):
        return None
    salt = os.environ.get(SALT_ENV)
    if not salt:
        raise DataError(
            f"privacy.pseudonymize_ids is on but the environment variable {SALT_ENV} is "
            "empty; set it to a secret string (the same one on every run keeps ids comparable)."
        )
    return salt
