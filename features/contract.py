"""The input tables of the contract: their columns, types and validity rules.

Each table is described once, as data. Loading, validation and the feature builders all
read these specs, so a rule is never written twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "NOT_PII_WORDS",
    "PII_PATTERNS",
    "TABLES",
    "ColumnSpec",
    "DataError",
    "TableSpec",
    "is_pii",
]


class DataError(ValueError):
    """Input data breaks the contract; the message is one paragraph meant for the user."""


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract table.

    Parameters
    ----------
    name : str
        Contract name of the column.
    kind : {"id", "timestamp", "number", "integer", "text"}
        How the raw value is parsed.
    required : bool, default=False
        Whether the table is unusable without it.
    check : str or None, default=None
        SQL predicate over the parsed value ``{v}`` that every non-null value must satisfy.
    rule : str, default=""
        The predicate in words, for error messages.
    free_text : bool, default=False
        Text written freely (comments), nearly every value distinct: checked row by row,
        never per distinct value (`features.checks.tidy_columns`).
    """

    name: str
    kind: str
    required: bool = False
    check: str | None = None
    rule: str = ""
    free_text: bool = False


@dataclass(frozen=True)
class TableSpec:
    """One contract table.

    Parameters
    ----------
    name : str
        Table name, also the file stem (``customers.csv``).
    columns : tuple of ColumnSpec
        The columns the contract knows.
    time_column : str or None
        The column whose value is compared with ``as_of``.
    one_of : tuple of str, default=()
        At least one of these optional columns must be present.
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    time_column: str | None
    one_of: tuple[str, ...] = field(default_factory=tuple)

    @property
    def required(self) -> list[str]:
        """Names of the required columns."""
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> ColumnSpec | None:
        """Return the spec of column ``name``, or None for an attribute column."""
        return next((c for c in self.columns if c.name == name), None)


_ID = ColumnSpec("customer_id", "id", required=True)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        TableSpec(
            "customers",
            (_ID, ColumnSpec("signup_date", "timestamp"), ColumnSpec("account_id", "id")),
            time_column=None,
        ),
        TableSpec(
            "transactions",
            (
                _ID,
                ColumnSpec("timestamp", "timestamp", required=True),
                ColumnSpec("amount", "number", required=True),
                ColumnSpec("discount", "number", check="{v} >= 0", rule="must be >= 0"),
                ColumnSpec("days_late", "number", check="{v} >= 0", rule="must be >= 0"),
            ),
            time_column="timestamp",
        ),
        TableSpec(
            "usage_events",
            (
                _ID,
                ColumnSpec("timestamp", "timestamp", required=True),
                ColumnSpec("feature", "text", required=True),
                ColumnSpec("quantity", "number", check="{v} >= 0", rule="must be >= 0"),
            ),
            time_column="timestamp",
        ),
        TableSpec(
            "engagement_events",
            (
                _ID,
                ColumnSpec("timestamp", "timestamp", required=True),
                ColumnSpec("channel", "text", required=True),
            ),
            time_column="timestamp",
        ),
        TableSpec(
            "feedback",
            (
                _ID,
                ColumnSpec("timestamp", "timestamp", required=True),
                ColumnSpec(
                    "nps",
                    "integer",
                    check="{v} BETWEEN 0 AND 10",
                    rule="must be a whole number from 0 to 10",
                ),
                ColumnSpec(
                    "csat",
                    "integer",
                    check="{v} BETWEEN 1 AND 5",
                    rule="must be a whole number 1-5",
                ),
                ColumnSpec("comment", "text", free_text=True),
            ),
            time_column="timestamp",
            one_of=("nps", "csat"),
        ),
        TableSpec(
            "support_tickets",
            (
                _ID,
                ColumnSpec("opened_at", "timestamp", required=True),
                ColumnSpec("closed_at", "timestamp"),
                ColumnSpec("priority", "text"),
                ColumnSpec("topic", "text"),
            ),
            time_column="opened_at",
        ),
    ]
}


#: Name fragments that mark a column as personal data when the config names none
#: (``privacy.pii_patterns``).
PII_PATTERNS: tuple[str, ...] = (
    "email", "e_mail", "name", "phone", "mobile", "address", "street", "postcode", "zip", "ip",
    "ssn", "birth", "passport",
)  # fmt: skip

#: Words that end (or start) like a personal-data pattern but name no person.
NOT_PII_WORDS: frozenset[str] = frozenset(
    {"basename", "classname", "dbname", "dirname", "filename", "hostname", "pathname",
     "rename", "tablename", "typename"}
)  # fmt: skip


def is_pii(column: str, patterns: list[str], extra: list[str]) -> bool:
    """Whether a column name looks like personal data.

    The name is split into lower-case words at ``_``, other non-word characters and
    camelCase humps (``firstName`` -> ``first``, ``name``). A pattern matches when

    - its words appear together in the name (``email`` in ``customer_email``, ``e_mail``
      in ``E-Mail`` or ``eMail``), or
    - it has more than three letters and a word starts or ends with it (``emails``,
      ``passport_no``, ``lastname``, ``username``), unless the word is one of
      `NOT_PII_WORDS` (``filename``, ``hostname``...).

    Short patterns (``ip``, ``zip``, ``ssn``) only match whole words, so ``zipper`` or
    ``tip`` are not personal data. When in doubt the rule errs on the side of privacy:
    ``plan_name`` counts as personal data.

    Parameters
    ----------
    column : str
        Column name as it appears in the data.
    patterns : list of str
        Name fragments that mark personal data (``email``, ``phone``...), see
        `PII_PATTERNS`.
    extra : list of str
        Column names the user listed under ``privacy.pii_columns``.

    Returns
    -------
    bool
        True when the column must never become a feature or reach an output.
    """
    if column.lower() in {c.lower() for c in extra}:
        return True
    words = [w.lower() for w in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", column) if w]
    joined = "_" + "_".join(words) + "_"
    for pattern in (p.lower() for p in patterns):
        if f"_{pattern}_" in joined:
            return True
        if len(pattern) > 3 and any(
            w not in NOT_PII_WORDS and (w.startswith(pattern) or w.endswith(pattern)) for w in words
        ):
            return True
    return False
