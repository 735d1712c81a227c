"""Staging: the clean views of the checked tables, what the feature builders read.

Each present table gets a view of its valid rows of known customers up to ``as_of``
(`stage_views`); the counts and bounds the data-quality summary reports are gathered in
the same scan as the checks (`stage_aggregates`, read back by `Staging`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import duckdb
import pandas as pd

from features.checks import as_pseudonyms
from features.contract import TABLES, DataError
from features.privacy import pseudonymize_values
from features.quality import TableProfile, id_key
from features.sql import sql_name, sql_time

logger = logging.getLogger(__name__)


def stage_columns(time_col: str, cutoff: str) -> list[str]:
    """Return the columns `stage_aggregates` reads, to compute once per row.

    The rows need ``__valid`` and ``__known`` (the row names a customer of the customers
    table); ``cutoff`` is as_of when it is configured, else now (see `_load`).
    """
    return [
        "__valid AND __known AS __mine",
        f"__valid AND __known AND {sql_name(time_col)} <= {cutoff} AS __used",
    ]


def stage_aggregates(
    time_col: str, profile: TableProfile, cutoff: str, now: str, bounds: dict[str, float]
) -> list[str]:
    """Return the aggregates of an event table's valid rows that staging reads (`Staging`).

    They read the columns of `stage_columns`.
    """
    t = sql_name(time_col)
    return [
        "count_if(__valid)",
        "count_if(__valid AND NOT __known)",
        f"count_if(__mine AND {t} > {cutoff})",
        f"count_if(__mine AND {t} > {now})",
        f"min(CASE WHEN __mine THEN {t} END)",
        f"max(CASE WHEN __mine THEN {t} END)",
        f"max(CASE WHEN __mine AND {t} <= {now} THEN {t} END)",
        *profile.aggregates("__used", bounds),
    ]


def value_bounds(
    con: duckdb.DuckDBPyConnection, rows: str, sizes: dict[str, str], ratio: float
) -> dict[str, float]:
    """Return each number column's largest size in ``rows`` over the extreme ratio.

    ``sizes`` maps a column to SQL of its values (its source column in a typed file, whose
    statistics tell the smallest and largest value without a scan); see
    `features.quality.TableProfile.aggregates` for what the bounds are for. A column
    whose largest size is not a finite number gets no bound.
    """
    if not sizes or ratio <= 0:
        return {}
    row = con.execute(
        f"SELECT {', '.join(f'min({v}), max({v})' for v in sizes.values())} FROM {rows}"
    ).fetchone()
    bounds = {}
    for i, c in enumerate(sizes):
        ends = [row[2 * i], row[2 * i + 1]]
        if None not in ends:
            largest = max(abs(float(v)) for v in ends)
            if math.isfinite(largest):
                bounds[c] = largest / ratio
    return bounds


@dataclass
class Staging:
    """What staging needs to know of an event table, read in the scan that checks it."""

    n_valid: int
    n_unknown: int
    n_later: int
    n_future: int
    first: object
    last: object
    past: object  # the latest timestamp up to now, for as_of
    profile: list
    bounds: dict[str, float]  # see `value_bounds`

    @classmethod
    def of(cls, values: list, bounds: dict[str, float]) -> Staging:
        """Read `stage_aggregates` back."""
        counts = [int(v or 0) for v in values[:4]]  # count_if over no rows is NULL
        return cls(*counts, *values[4:7], list(values[7:]), bounds)


def restage(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: list[str],
    as_of: pd.Timestamp,
    now: pd.Timestamp,
    first: Staging,
) -> Staging:
    """Gather what staging needs of an event table again, up to ``as_of`` (a second scan)."""
    profile, time_col = TableProfile.of(name, TABLES[name], columns, []), TABLES[name].time_column
    aggregates = stage_aggregates(time_col, profile, sql_time(as_of), sql_time(now), first.bounds)
    derived = stage_columns(time_col, sql_time(as_of))
    values = con.execute(
        f"SELECT {', '.join(aggregates)} FROM (SELECT *, {', '.join(derived)} FROM (SELECT *, "
        "true AS __valid, customer_id IN (SELECT customer_id FROM valid_customers) AS __known "
        f"FROM valid_{name}))"
    ).fetchone()
    return Staging.of(list(values), first.bounds)


def stage_views(con, staging, available, attributes, as_of, quality, validation, salt):
    """Create the final views over the valid rows: known customers only, nothing after ``as_of``.

    The quality summary of each event table counts the rows of unknown customers (and
    how many of their ids would match a customer once written alike), the rows after
    ``as_of`` and the rows dated after now; its ``first`` and ``last`` (the data span)
    cover the valid rows of known customers, after ``as_of`` included. These, and the
    profile of the rows used (`features.quality.TableProfile`), come from the scan that
    checked the table (``staging``). With a ``salt`` (``privacy.pseudonymize_ids``), the
    unknown ids that the summary, the warning and the error quote are pseudonyms.
    """
    ratio, n_examples = float(validation["extreme_ratio"]), int(validation["examples"])
    con.execute("CREATE VIEW customers AS SELECT * FROM valid_customers")
    profile = TableProfile.of("customers", TABLES["customers"], available["customers"], attributes)
    values = con.execute(f"SELECT {', '.join(profile.aggregates())} FROM customers").fetchone()
    quality["tables"]["customers"]["rows_used"] = values[0]
    quality["tables"]["customers"].update(profile.summary(values, con, ratio, n_examples))
    stamp = sql_time(as_of)
    for name, st in staging.items():
        time_col = sql_name(TABLES[name].time_column)
        info = quality["tables"][name]
        known = "customer_id IN (SELECT customer_id FROM customers)"
        profile = TableProfile.of(name, TABLES[name], available[name], [])
        n_unknown_ids = 0
        if st.n_unknown:  # their ids, once: the examples, the near matches, the count
            # with every row valid, those the checks found (`features.checks.unknown_ids`)
            ids = (
                f"(SELECT DISTINCT customer_id FROM valid_{name}) WHERE NOT {known}"
                if info["rows_invalid"]
                else f"__unknown_{name}"
            )
            con.execute(f"CREATE TEMP TABLE unknown_{name} AS SELECT customer_id FROM {ids}")
            n_unknown_ids = con.execute(f"SELECT count(*) FROM unknown_{name}").fetchone()[0]
        info.update(
            unknown_customer_rows=st.n_unknown,
            unknown_customer_ids=int(n_unknown_ids),
            rows_after_as_of=st.n_later,
            rows_in_future=st.n_future,
            first=str(st.first) if st.first is not None else None,
            last=str(st.last) if st.last is not None else None,
        )
        if st.n_future:
            logger.warning(
                "%s: %d rows are dated after today (up to %s); as_of is %s.",
                info["file"],
                st.n_future,
                st.last,
                as_of,
            )
        share = st.n_unknown / st.n_valid if st.n_valid else 0.0
        if st.n_unknown:
            examples = pseudonymize_values(
                (
                    r[0]
                    for r in con.execute(
                        f"SELECT customer_id FROM unknown_{name} ORDER BY customer_id "
                        f"LIMIT {int(validation['examples'])}"
                    ).fetchall()
                ),
                salt,
            )
            info["unknown_customer_examples"] = examples
            n_near, pairs = near_matches(con, name)
            pairs = zip(
                pseudonymize_values([u for u, _ in pairs], salt),
                pseudonymize_values([c for _, c in pairs], salt),
                strict=True,
            )
            info["unknown_customer_near_matches"] = n_near
            hint = (
                f" {n_near:,} of these ids match a customer id once case, leading zeros and a "
                f"trailing '.0' are ignored (e.g. "
                f"{', '.join(f'{u!r} vs {c!r}' for u, c in pairs)}{as_pseudonyms(salt)}): "
                "ids are compared as "
                "text, exactly, so every file must write them alike."
                if n_near
                else ""
            )
            if share > validation["max_unknown_share"]:
                raise DataError(
                    f"{info['file']}: {st.n_unknown:,} of {st.n_valid:,} rows ({share:.1%}) name "
                    f"{n_unknown_ids:,} customer ids that are not in customers (e.g. "
                    f"{', '.join(repr(e) for e in examples)}{as_pseudonyms(salt)}); the limit is "
                    f"validation.max_unknown_share = {validation['max_unknown_share']:.1%}. "
                    f"Check that both files come from the same export and write ids alike.{hint}"
                )
            logger.warning(
                "%s: %d rows (%.2f%%) name unknown customers; they are left out and counted.%s",
                info["file"],
                st.n_unknown,
                100 * share,
                hint,
            )
        cols = ", ".join(sql_name(c) for c in available[name])
        # the rows of unknown customers are left out: their few ids make a small hash table
        # to probe (rather than every customer's); when there are none, no join at all
        unknown = f"customer_id NOT IN (SELECT customer_id FROM unknown_{name}) AND "
        where = unknown if st.n_unknown else ""
        con.execute(
            f"CREATE VIEW {name} AS SELECT {cols} FROM valid_{name} "
            f"WHERE {where}{time_col} <= {stamp}"
        )
        info["rows_used"] = int(st.n_valid - st.n_unknown - st.n_later)
        info.update(profile.summary(st.profile, con, ratio, n_examples, st.bounds))


def near_matches(con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, list]:
    """Count the unknown ids of a table that match a customer once written alike.

    Returns the count and up to three ``(id in the table, id in customers)`` pairs
    (``('7', '007')``); see `features.quality.id_key`.
    """
    pairs = con.execute(
        f"SELECT u.customer_id, min(c.customer_id) FROM unknown_{name} u "
        f"JOIN customers c ON {id_key('u.customer_id')} = {id_key('c.customer_id')} "
        "GROUP BY u.customer_id ORDER BY u.customer_id"
    ).fetchall()
    return len(pairs), pairs[:3]


def require_customers(con: duckdb.DuckDBPyConnection, info: dict) -> None:
    """Stop when the customers table has no valid row: there is nobody to segment."""
    if con.execute("SELECT count(*) FROM valid_customers").fetchone()[0]:
        return
    what = (
        "a header but no rows"
        if info["rows"] == 0
        else f"{info['rows']:,} rows and none is a valid customer"
    )
    raise DataError(
        f"{info['file']} has {what}: column 'customer_id' names no customer, so there is "
        "nobody to segment. Check the export."
    )
