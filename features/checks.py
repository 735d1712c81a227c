"""The contract's checks: columns mapped to the contract, and the rules every value obeys.

`map_columns` matches a table's columns to the contract's (with the config's mapping and
a "did you mean"); `table_checks` lists the validity rules of a table as SQL (`Check`);
`scan_checks` counts every rule's offending rows in one query, with examples, which
`failed_checks` turns into the one-paragraph errors and `quarantined_rows` into the rows
set aside.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import duckdb
import pandas as pd

from features.contract import ColumnSpec, DataError, TableSpec, is_pii
from features.privacy import pseudonymize, pseudonymize_values
from features.quality import MISSING_MARKERS
from features.sql import sql_name, sql_text

FLOATS = ("FLOAT", "DOUBLE")


INTEGERS = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
)  # fmt: skip


def raw_sql(spec: ColumnSpec, col: str, dtype: str) -> str:
    """Return SQL of a column's raw text, NULL where it holds no value.

    Ids are read as `parse_sql` reads them. In number and timestamp columns the usual
    markers of a missing value (``NA``, ``null``, ``NaN``..., see
    `features.quality.MISSING_MARKERS`) are no value either; in text columns only the empty
    string is. Typed columns keep their type (``NaN`` is no value).
    """
    if spec.kind == "id":
        return parse_sql(spec, col, dtype)
    q = sql_name(col)
    # typed columns (Parquet, DuckDB) need no text round trip: only NaN means "no value"
    if spec.kind == "timestamp" and dtype.startswith(("TIMESTAMP", "DATE")):
        return q
    if spec.kind in ("number", "integer") and dtype in FLOATS:
        return f"CASE WHEN isnan({q}) THEN NULL ELSE {q} END"
    if spec.kind in ("number", "integer") and (dtype in INTEGERS or dtype.startswith("DECIMAL")):
        return q
    text = f"TRIM(CAST({q} AS VARCHAR))"
    if spec.kind == "text":
        return f"NULLIF({text}, '')"
    markers = ", ".join(sql_text(m) for m in MISSING_MARKERS)
    # the markers are short: longer values skip lowering (a hundred million of them add up)
    short = max(len(m.encode()) for m in MISSING_MARKERS)
    return (
        f"CASE WHEN strlen({text}) <= {short} AND lower({text}) IN ({markers}) THEN NULL "
        f"ELSE {text} END"
    )


def parse_sql(spec: ColumnSpec, col: str, dtype: str) -> str:
    """Return SQL that turns a raw column into its contract type (NULL where it cannot).

    Ids are text, compared exactly after trimming: ``007`` and ``7`` are two customers.
    Whole numbers of a typed source (a Parquet ``DOUBLE`` column holding ``7.0``) are
    written without decimals, so they match the ``7`` of a CSV file. Numbers must be
    finite: ``inf`` and ``NaN`` are not numbers.
    """
    q = sql_name(col)
    if spec.kind == "id":
        if dtype in ("FLOAT", "DOUBLE"):
            return (
                f"CASE WHEN NOT isfinite({q}) THEN NULL "
                f"WHEN {q} = trunc({q}) AND abs({q}) < 1e18 "
                f"THEN CAST(CAST({q} AS BIGINT) AS VARCHAR) ELSE CAST({q} AS VARCHAR) END"
            )
        return f"NULLIF(TRIM(CAST({q} AS VARCHAR)), '')"
    if spec.kind == "text":
        return f"NULLIF(CAST({q} AS VARCHAR), '')"
    raw = raw_sql(spec, col, dtype)
    if spec.kind == "timestamp":
        if dtype.startswith(("TIMESTAMP", "DATE")):
            return f"CAST({q} AS TIMESTAMP)"
        # the common zone-free form first: strptime reads it several times faster than the
        # TIMESTAMPTZ cast, which only the rest (offsets, zones, a "T") still go through
        fast = f"try_strptime({raw}, '%Y-%m-%d %H:%M:%S')"
        return f"COALESCE({fast}, CAST(TRY_CAST({raw} AS TIMESTAMPTZ) AS TIMESTAMP))"
    number = f"TRY_CAST({raw} AS DOUBLE)"
    return f"CASE WHEN isfinite({number}) THEN {number} END"


def plain_sql(spec: ColumnSpec, col: str, dtype: str) -> tuple[str, bool] | None:
    """Return SQL reading a typed column as its contract type without `parse_sql`'s cleaning.

    Returns the expression and whether it always equals `parse_sql`'s (True: an integer id
    written as text, an integer or decimal as a double, a timestamp), or only when the
    column holds nothing to clean (False: text that needs no trimming and is never empty,
    floats that are all finite); None when the column must be parsed (text holding
    numbers or times, a float id). When every row passes the checks and these hold, later
    reads skip the parsing and checking (see `_valid_view`).
    """
    q = sql_name(col)
    if spec.kind in ("id", "text") and dtype == "VARCHAR":
        return q, False
    if spec.kind == "id" and dtype in INTEGERS:
        return f"CAST({q} AS VARCHAR)", True
    if spec.kind == "timestamp" and dtype.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({q} AS TIMESTAMP)", True
    if spec.kind in ("number", "integer") and (dtype in INTEGERS or dtype.startswith("DECIMAL")):
        return f"CAST({q} AS DOUBLE)", True
    if spec.kind in ("number", "integer") and dtype in FLOATS:
        return f"CAST({q} AS DOUBLE)", False
    return None


def tidy_columns(
    con: duckdb.DuckDBPyConnection, name: str, table: TableSpec, found: dict[str, str],
    columns: list[str],
) -> set[str]:  # fmt: skip
    """Return the text and id columns of a typed table whose values need no cleaning.

    A value needs cleaning when trimming changes it or leaves it empty (`parse_sql`,
    `raw_sql`); a tidy column is then read as it is, with no trimming or comparing of
    every row, which cost most of an event table's checking scan (README, Benchmarks).
    Each column's distinct values tell (a few product features, one id per customer; the
    ids from the temp table ``__ids_<name>``). Free text (comments) is left to the rows:
    its distinct values would be the whole column, held in memory.
    """
    tidy = set()
    for c in columns:
        spec = table.column(c)
        if spec.kind not in ("id", "text") or spec.free_text:
            continue
        q = sql_name(found[c])
        values = f"__ids_{name}" if c == "customer_id" else f"(SELECT DISTINCT {q} FROM raw_{name})"
        dirty = f"{q} IS NOT NULL AND NULLIF(TRIM({q}), '') IS DISTINCT FROM {q}"
        if not con.execute(f"SELECT count_if({dirty}) FROM {values}").fetchone()[0]:
            tidy.add(c)
    return tidy


def unknown_ids(con: duckdb.DuckDBPyConnection, name: str, ids: str) -> int:
    """Keep the ids of a table that name no valid customer in ``__unknown_<name>``; count them.

    ``ids`` is SQL of the table's distinct ids (column ``customer_id``) as the checks read
    them. Each is looked up once, a million rather than every event's hundred million: the
    checking scan then probes only the few unknown ones (`known_flag`).
    """
    con.execute(
        f"CREATE TEMP TABLE __unknown_{name} AS SELECT customer_id FROM {ids} "
        "WHERE customer_id IS NOT NULL "
        "AND customer_id NOT IN (SELECT customer_id FROM valid_customers)"
    )
    return con.execute(f"SELECT count(*) FROM __unknown_{name}").fetchone()[0]


def known_flag(name: str, n_unknown: int) -> str:
    """Return SQL of ``__known``: the row's id names a customer (see `unknown_ids`).

    With no unknown id every row's does (a NULL id fails its own check); otherwise the
    rows probe the few unknown ids, not every customer's.
    """
    if not n_unknown:
        return "true AS __known"
    return f"customer_id NOT IN (SELECT customer_id FROM __unknown_{name}) AS __known"


def did_you_mean(name: str, names: list[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest of ``names``, or nothing."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def map_columns(
    table: TableSpec, raw: list[str], mapping: dict[str, str], file: str, privacy: dict
) -> tuple[dict[str, str], list[str], list[str]]:
    """Match raw columns to contract names.

    Returns the contract-name -> raw-name map, the attribute columns kept (customers
    only) and the personal-data columns dropped.
    """
    by_lower = {c.strip().lower(): c for c in raw}
    for contract, src in mapping.items():
        if table.column(contract) is None:
            names = [c.name for c in table.columns]
            raise DataError(
                f"The config maps {table.name}.{contract} to {src!r}, but the contract has no "
                f"column {contract!r} in {table.name}{did_you_mean(contract, names)} (its "
                f"columns: {', '.join(names)})."
            )
        if src not in raw:
            raise DataError(
                f"The config maps {table.name}.{contract} to column {src!r}, which {file} does "
                f"not have{did_you_mean(src, raw)} (its columns: {', '.join(raw)})."
            )
    found: dict[str, str] = {}
    for spec in table.columns:
        src = mapping.get(spec.name) or by_lower.get(spec.name)
        if src is not None:
            found[spec.name] = src
    missing = [c for c in table.required if c not in found]
    if missing:
        hints = []
        for c in missing:
            close = difflib.get_close_matches(c, raw, n=1, cutoff=0.6)
            hints.append(f"{c!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        sep = next((s for s in (";", "\t", "|") if len(raw) == 1 and s in raw[0]), None)
        extra = f" The header looks {sep!r}-separated; the contract wants commas." if sep else ""
        raise DataError(
            f"{file} lacks the required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(hints)}. Its columns are: {', '.join(raw) or '(none)'}. Rename the "
            f"column or map it in the config (columns: {{{table.name}: {{{missing[0]}: "
            f"<your column>}}}}).{extra}"
        )
    if table.one_of and not any(c in found for c in table.one_of):
        raise DataError(
            f"{file} needs at least one of the columns {', '.join(table.one_of)}; "
            f"its columns are: {', '.join(raw)}."
        )
    used = set(found.values())
    pii = [
        c
        for c in raw
        if c not in used and is_pii(c, privacy["pii_patterns"], privacy["pii_columns"])
    ]
    attributes = (
        [c for c in raw if c not in used and c not in pii] if table.name == "customers" else []
    )
    return found, attributes, pii


@dataclass(frozen=True)
class Check:
    """One validity rule: rows where ``bad`` holds are reported (or quarantined)."""

    column: str
    reason: str
    bad: str  # SQL predicate over a staged row
    shown: str  # SQL of the offending raw value, quoted in errors


def table_checks(table: TableSpec, found: dict[str, str]) -> list[Check]:
    """Return the validity rules of a table's found columns (types, ranges, uniqueness)."""
    checks = []
    for name in found:
        spec = table.column(name)
        raw, v = sql_name(f"__raw_{name}"), sql_name(name)
        if spec.required:
            checks.append(Check(name, "is empty", f"{raw} IS NULL", "NULL"))
        if spec.kind in ("timestamp", "number", "integer"):
            what = "a timestamp" if spec.kind == "timestamp" else "a number"
            checks.append(Check(name, f"is not {what}", f"{v} IS NULL AND {raw} IS NOT NULL", raw))
        if spec.check:
            cond = spec.check.format(v=v)
            if spec.kind == "integer":
                cond = f"{cond} AND {v} = ROUND({v})"
            checks.append(Check(name, spec.rule, f"{v} IS NOT NULL AND NOT ({cond})", raw))
    if table.name == "customers":
        checks.append(
            Check(
                "customer_id",
                "is duplicated",
                "customer_id IS NOT NULL AND __dup > 1",
                "customer_id",
            )
        )
    return checks


def scan_checks(
    con: duckdb.DuckDBPyConnection,
    rows: str,
    checks: list[Check],
    extra: list[str],
    derived: list[str] | None = None,
) -> tuple[int, int, list[int], list]:
    """Count rows, invalid rows and the rows breaking each check, in one scan with ``extra``.

    ``rows`` is SQL of the rows with a boolean column ``__bad_<i>`` per check; ``extra``
    are more aggregates over them, which may read ``__valid`` (no check broken) and the
    ``derived`` columns (SQL over a row and ``__valid``, computed once per row). Counts
    are ``count_if(...)``: DuckDB evaluates them several times faster than ``FILTER``.
    Returns the row count, the invalid count, the count per check and the ``extra`` values.
    """
    flags = [f"__bad_{i}" for i in range(len(checks))]
    counts = [f"count_if({f})" for f in flags]
    aggregates = ["count(*)", "count_if(NOT __valid)", *counts, *extra]
    rows = f"(SELECT *, NOT ({' OR '.join(flags) or 'false'}) AS __valid FROM {rows})"
    if derived:
        rows = f"(SELECT *, {', '.join(derived)} FROM {rows})"
    row = con.execute(f"SELECT {', '.join(aggregates)} FROM {rows}").fetchone()
    n = len(checks)  # count_if over no rows is NULL in DuckDB: 0 here
    counts = [int(v or 0) for v in row[: 2 + n]]
    return counts[0], counts[1], counts[2:], list(row[2 + n :])


def failed_checks(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    checks: list[Check],
    counts: list[int],
    n_examples: int,
    salt: str | None,
) -> dict[tuple[str, str], dict]:
    """Return the broken checks with their row counts and a few offending values.

    Examples of an id column (a duplicated ``customer_id``) are pseudonyms when ``salt``
    is given.
    """
    failed = {}
    for check, n_bad in zip(checks, counts, strict=True):
        if n_bad:
            examples = con.execute(
                f"SELECT DISTINCT CAST({check.shown} AS VARCHAR) FROM staged_{table.name} "
                f"WHERE {check.bad} LIMIT {n_examples}"
            ).fetchall()
            shown = [e[0] for e in examples]
            if table.column(check.column).kind == "id":
                shown = pseudonymize_values(shown, salt)
            failed[(check.column, check.reason)] = {"rows": int(n_bad), "examples": shown}
    return failed


def valid_mask(checks: list[Check]) -> str:
    """Return SQL of a row's broken checks as bits of one integer (check ``i``: bit ``i``)."""
    if len(checks) > 62:  # a table has a few checks per column
        raise RuntimeError(f"Too many checks for one bit mask: {len(checks)}")
    bits = [f"CASE WHEN {c.bad} THEN {1 << i} ELSE 0 END" for i, c in enumerate(checks)]
    return f"CAST({' + '.join(bits) or '0'} AS BIGINT)"


def as_pseudonyms(salt: str | None) -> str:
    """Return the note that follows quoted ids when they are pseudonyms, else nothing."""
    return ", as pseudonyms: privacy.pseudonymize_ids is on" if salt else ""


def advice(reason: str, failed: dict) -> str:
    """Return a word of advice for a broken rule, when its examples suggest the cause."""
    if not reason.startswith("is not a number"):
        return ""
    examples = [e or "" for e in failed["examples"]]
    if any(re.fullmatch(r"-?[\d.]*\d,\d+", e) for e in examples):
        return " (decimal commas? the contract wants a point: 12.50)"
    if any(re.search(r"\d", e) and re.search(r"[$€£%]", e) for e in examples):
        return " (write plain numbers, without currency or percent signs)"
    return ""


def quarantined_rows(
    con: duckdb.DuckDBPyConnection,
    name: str,
    found: dict[str, str],
    attrs: list[str],
    checks: list[Check],
) -> pd.DataFrame:
    """Return the rows of a table that break a check, as the user wrote them.

    Contract columns come as their raw text (``ten``, ``12,50``), not as the parsed value
    (NaN), so the user sees what to fix; attribute columns come as they are. The
    ``reason`` column lists every rule the row breaks.
    """
    bad = " OR ".join(f"({c.bad})" for c in checks)
    reasons = " || ".join(
        f"CASE WHEN {c.bad} THEN {sql_text(c.column + ' ' + c.reason + '; ')} ELSE '' END"
        for c in checks
    )
    cols = [f"{sql_name('__raw_' + c)} AS {sql_name(c)}" for c in found] + [
        sql_name(a) for a in attrs
    ]
    return con.execute(
        f"SELECT {', '.join(cols)}, rtrim({reasons}, '; ') AS reason FROM staged_{name} WHERE {bad}"
    ).df()


def pseudonymized_rows(rows: pd.DataFrame, table: TableSpec, salt: str | None) -> pd.DataFrame:
    """Return quarantined rows with their id columns, but ``customer_id``, as pseudonyms.

    ``customer_id`` stays as read: whoever writes the outputs pseudonymizes it with every
    other output, so hashing it here too would hash it twice.
    """
    if salt is None:
        return rows
    ids = [c.name for c in table.columns if c.kind == "id" and c.name != "customer_id"]
    return rows.assign(**{c: pseudonymize(rows[c], salt) for c in ids if c in rows})
