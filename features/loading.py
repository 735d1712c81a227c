"""Load the contract tables into DuckDB, check them and summarise their quality.

The tables stay in DuckDB: every check is one SQL query over the whole table, so a
100-million-row event log is never pulled into pandas. What comes out is a connection
with one clean view per present table (valid rows, known customers, nothing after
``as_of``), ready for the feature builders.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from features import postgres
from features.contract import PII_PATTERNS, TABLES, ColumnSpec, DataError, TableSpec, is_pii
from features.privacy import id_salt, pseudonymize, pseudonymize_values
from features.quality import EXTREME_RATIO, MISSING_MARKERS, TableProfile, id_key
from features.reading import file_digest, file_of, find_sources, reading
from features.sql import sql_name, sql_text

__all__ = ["LoadedData", "load_data"]

logger = logging.getLogger(__name__)


@dataclass
class LoadedData:
    """The checked tables, held in DuckDB.

    Attributes
    ----------
    con : duckdb.DuckDBPyConnection
        Connection holding one view per present table, named after the table.
    tables : list of str
        The contract tables that are present.
    columns : dict of str to list of str
        Contract columns (and, for customers, attribute columns) available per table.
    attributes : list of str
        The customers' own attribute columns, personal data removed.
    as_of : pandas.Timestamp
        Reference time (UTC, without zone); later events are ignored.
    quality : dict
        The data-quality summary (rows, rejects, unknown customers, ranges per table).
        With ``privacy.pseudonymize_ids`` on, the ids it quotes are pseudonyms.
    quarantine : dict of str to pandas.DataFrame
        Rows set aside per table (quarantine mode only): the contract columns as the raw
        text the file holds (so a bad value reads ``ten``, not NaN), the attribute columns
        as they are, and a ``reason`` column. With ``privacy.pseudonymize_ids`` on, id
        columns other than ``customer_id`` are pseudonyms (the writer of the outputs
        pseudonymizes ``customer_id``, as in every output).
    fingerprint : str
        Short hash identifying the input data.
    digests : dict of str to str
        Per table, a short hash of its rows, columns and content (files: their size, first
        and last MiB; PostgreSQL: every row; DuckDB files: rows and columns only), as the
        fingerprint hashes them together.
    schemas : dict of str to dict of str to str
        Per table, its columns as the source holds them -> their DuckDB type.
    """

    con: duckdb.DuckDBPyConnection
    tables: list[str]
    columns: dict[str, list[str]]
    attributes: list[str]
    as_of: pd.Timestamp
    quality: dict
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)
    fingerprint: str = ""
    digests: dict[str, str] = field(default_factory=dict)
    schemas: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def n_customers(self) -> int:
        """Number of customers (rows of the customers table after checks)."""
        return self.quality["tables"]["customers"]["rows_used"]


_FLOATS = ("FLOAT", "DOUBLE")
_INTEGERS = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
)  # fmt: skip


def _raw(spec: ColumnSpec, col: str, dtype: str) -> str:
    """Return SQL of a column's raw text, NULL where it holds no value.

    Ids are read as `_parse` reads them. In number and timestamp columns the usual
    markers of a missing value (``NA``, ``null``, ``NaN``..., see
    `features.quality.MISSING_MARKERS`) are no value either; in text columns only the empty
    string is. Typed columns keep their type (``NaN`` is no value).
    """
    if spec.kind == "id":
        return _parse(spec, col, dtype)
    q = sql_name(col)
    # typed columns (Parquet, DuckDB) need no text round trip: only NaN means "no value"
    if spec.kind == "timestamp" and dtype.startswith(("TIMESTAMP", "DATE")):
        return q
    if spec.kind in ("number", "integer") and dtype in _FLOATS:
        return f"CASE WHEN isnan({q}) THEN NULL ELSE {q} END"
    if spec.kind in ("number", "integer") and (dtype in _INTEGERS or dtype.startswith("DECIMAL")):
        return q
    text = f"TRIM(CAST({q} AS VARCHAR))"
    if spec.kind == "text":
        return f"NULLIF({text}, '')"
    markers = ", ".join(sql_text(m) for m in MISSING_MARKERS)
    return f"CASE WHEN lower({text}) IN ({markers}) THEN NULL ELSE {text} END"


def _parse(spec: ColumnSpec, col: str, dtype: str) -> str:
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
    raw = _raw(spec, col, dtype)
    if spec.kind == "timestamp":
        if dtype.startswith(("TIMESTAMP", "DATE")):
            return f"CAST({q} AS TIMESTAMP)"
        return f"CAST(TRY_CAST({raw} AS TIMESTAMPTZ) AS TIMESTAMP)"
    number = f"TRY_CAST({raw} AS DOUBLE)"
    return f"CASE WHEN isfinite({number}) THEN {number} END"


def _plain(spec: ColumnSpec, col: str, dtype: str) -> tuple[str, bool] | None:
    """Return SQL reading a typed column as its contract type without `_parse`'s cleaning.

    Returns the expression and whether it always equals `_parse`'s (True: an integer id
    written as text, an integer or decimal as a double, a timestamp), or only when the
    column holds nothing to clean (False: text that needs no trimming and is never empty,
    floats that are all finite); None when the column must be parsed (text holding
    numbers or times, a float id). When every row passes the checks and these hold, later
    reads skip the parsing and checking (see `_valid_view`).
    """
    q = sql_name(col)
    if spec.kind in ("id", "text") and dtype == "VARCHAR":
        return q, False
    if spec.kind == "id" and dtype in _INTEGERS:
        return f"CAST({q} AS VARCHAR)", True
    if spec.kind == "timestamp" and dtype.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({q} AS TIMESTAMP)", True
    if spec.kind in ("number", "integer") and (dtype in _INTEGERS or dtype.startswith("DECIMAL")):
        return f"CAST({q} AS DOUBLE)", True
    if spec.kind in ("number", "integer") and dtype in _FLOATS:
        return f"CAST({q} AS DOUBLE)", False
    return None


def _did_you_mean(name: str, names: list[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest of ``names``, or nothing."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _map_columns(
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
                f"column {contract!r} in {table.name}{_did_you_mean(contract, names)} (its "
                f"columns: {', '.join(names)})."
            )
        if src not in raw:
            raise DataError(
                f"The config maps {table.name}.{contract} to column {src!r}, which {file} does "
                f"not have{_did_you_mean(src, raw)} (its columns: {', '.join(raw)})."
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
class _Check:
    """One validity rule: rows where ``bad`` holds are reported (or quarantined)."""

    column: str
    reason: str
    bad: str  # SQL predicate over a staged row
    shown: str  # SQL of the offending raw value, quoted in errors


def _checks(table: TableSpec, found: dict[str, str]) -> list[_Check]:
    checks = []
    for name in found:
        spec = table.column(name)
        raw, v = sql_name(f"__raw_{name}"), sql_name(name)
        if spec.required:
            checks.append(_Check(name, "is empty", f"{raw} IS NULL", "NULL"))
        if spec.kind in ("timestamp", "number", "integer"):
            what = "a timestamp" if spec.kind == "timestamp" else "a number"
            checks.append(_Check(name, f"is not {what}", f"{v} IS NULL AND {raw} IS NOT NULL", raw))
        if spec.check:
            cond = spec.check.format(v=v)
            if spec.kind == "integer":
                cond = f"{cond} AND {v} = ROUND({v})"
            checks.append(_Check(name, spec.rule, f"{v} IS NOT NULL AND NOT ({cond})", raw))
    if table.name == "customers":
        checks.append(
            _Check(
                "customer_id",
                "is duplicated",
                "customer_id IS NOT NULL AND __dup > 1",
                "customer_id",
            )
        )
    return checks


def _scan(
    con: duckdb.DuckDBPyConnection,
    rows: str,
    checks: list[_Check],
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
    n = len(checks)
    return int(row[0]), int(row[1]), [int(v) for v in row[2 : 2 + n]], list(row[2 + n :])


def _failed(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    checks: list[_Check],
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


def _mask(checks: list[_Check]) -> str:
    """Return SQL of a row's broken checks as bits of one integer (check ``i``: bit ``i``)."""
    if len(checks) > 62:  # a table has a few checks per column
        raise RuntimeError(f"Too many checks for one bit mask: {len(checks)}")
    bits = [f"CASE WHEN {c.bad} THEN {1 << i} ELSE 0 END" for i, c in enumerate(checks)]
    return f"CAST({' + '.join(bits) or '0'} AS BIGINT)"


def _stage_columns(time_col: str, cutoff: str) -> list[str]:
    """Return the columns `_stage_aggregates` reads, to compute once per row.

    The rows need ``__valid`` and ``__known`` (the row names a customer of the customers
    table); ``cutoff`` is as_of when it is configured, else now (see `_load`).
    """
    return [
        "__valid AND __known AS __mine",
        f"__valid AND __known AND {sql_name(time_col)} <= {cutoff} AS __used",
    ]


def _stage_aggregates(
    time_col: str, profile: TableProfile, cutoff: str, now: str, bounds: dict[str, float]
) -> list[str]:
    """Return the aggregates of an event table's valid rows that staging reads (`_Staging`).

    They read the columns of `_stage_columns`.
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


def _bounds(
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
class _Staging:
    """What staging needs to know of an event table, read in the scan that checks it."""

    n_valid: int
    n_unknown: int
    n_later: int
    n_future: int
    first: object
    last: object
    past: object  # the latest timestamp up to now, for as_of
    profile: list
    bounds: dict[str, float]  # see `_bounds`

    @classmethod
    def of(cls, values: list, bounds: dict[str, float]) -> _Staging:
        """Read `_stage_aggregates` back."""
        return cls(*[int(v) for v in values[:4]], *values[4:7], list(values[7:]), bounds)


def load_data(
    source: str | Path,
    *,
    columns: dict | None = None,
    validation: dict | None = None,
    privacy: dict | None = None,
    as_of: str | None = None,
    names: dict[str, str] | None = None,
    tables: dict[str, str] | None = None,
) -> LoadedData:
    """Load, check and stage the contract tables of a data source.

    Parameters
    ----------
    source : str or Path
        A folder with one CSV or Parquet file per table, a DuckDB database file, or a
        PostgreSQL URL (``postgresql://user@host:port/db?schema=sales``, see
        `features.postgres`: each table is copied into DuckDB as Arrow, then checked as a
        Parquet table is).
    columns : dict, optional
        Per table, contract column name -> column name in the data.
    validation : dict, optional
        ``on_error`` ("fail" or "quarantine"), ``max_unknown_share``, ``examples``,
        ``extreme_ratio`` (numbers beyond this many times a column's median size are
        counted in the summary, default `features.quality.EXTREME_RATIO`).
    privacy : dict, optional
        ``pii_patterns`` (default `features.contract.PII_PATTERNS`) and ``pii_columns``;
        matching columns are dropped at the door. With ``pseudonymize_ids`` on, the ids
        that messages, the quality summary and the quarantine quote are pseudonyms keyed
        with ``$PERSONAS_ID_SALT`` (see `features.privacy.id_salt`).
    as_of : str, optional
        Reference time; default the latest timestamp of a known customer's valid row. A
        plain date (``2026-03-31``) means the end of that day, so events later that day
        count; a time with a zone offset is converted to UTC like every timestamp.
    names : dict of str to str, optional
        How messages and the quality summary name a table's origin (default its file):
        ``{"customers": "metastore table sales.customers", "source": "spark:sales"}`` for
        a snapshot of metastore tables (see `features.metastore`); ``source`` names the
        whole source. A PostgreSQL source names its tables ``table sales.customers``.
    tables : dict of str to str, optional
        The config's ``tables:``, contract table -> the name the source gives it: a file
        stem in a folder, a table in a DuckDB file, ``table`` or ``schema.table`` in
        PostgreSQL. A named table must exist.

    Returns
    -------
    LoadedData
        The staged tables and their data-quality summary.

    Raises
    ------
    DataError
        When a table breaks the contract: a missing column, bad values (in fail mode), too
        many rows naming unknown customers, or no customers at all; or when
        ``pseudonymize_ids`` is on without a salt.
    """
    mapping = columns or {}
    validation = {
        "on_error": "fail",
        "max_unknown_share": 0.05,
        "examples": 5,
        "extreme_ratio": EXTREME_RATIO,
        **(validation or {}),
    }
    privacy = {"pii_columns": [], **(privacy or {})}
    if privacy.get("pii_patterns") is None:
        privacy["pii_patterns"] = list(PII_PATTERNS)
    privacy["salt"] = id_salt(privacy)
    con = duckdb.connect()
    try:
        if postgres.is_postgres(source):  # its tables are found (or missing) once connected
            kind = "postgres"
            readers, found, digests = postgres.read_tables(con, source, tables)
        else:
            source = Path(source)
            kind, readers = _find(source, tables)
            digests = {t: file_digest(source, kind, t, tables) for t in readers}
            found = {t: file_of(source, kind, t, tables) for t in readers}
        names = found | (names or {})
        settings = (mapping, validation, privacy, as_of)
        return _load(con, source, kind, readers, *settings, names, digests)
    except BaseException:
        con.close()
        raise


def _find(source: Path, tables: dict[str, str] | None) -> tuple[str, dict[str, str]]:
    """Find the tables of a folder or DuckDB file; stop when customers or the rest is missing."""
    kind, readers = find_sources(source, tables)
    if "customers" not in readers:
        raise DataError(
            f"{source} has no customers table (customers.csv or customers.parquet); it is required."
        )
    if len(readers) == 1:
        raise DataError(
            f"{source} has only the customers table; add at least one of "
            f"{', '.join(t for t in TABLES if t != 'customers')}."
        )
    return kind, readers


def _load(
    con, source, kind, readers, mapping, validation, privacy, as_of, names, digests
) -> LoadedData:
    con.execute("SET TimeZone = 'UTC'")
    if kind == "duckdb":
        con.execute(f"ATTACH {sql_text(str(source))} AS src (READ_ONLY)")
    quality: dict = {"source": names.get("source", str(source)), "tables": {}, "problems": []}
    quarantine: dict[str, pd.DataFrame] = {}
    available: dict[str, list[str]] = {}
    attributes: list[str] = []
    problems: list[str] = []
    digest = hashlib.sha256()
    table_digests: dict[str, str] = {}
    schemas: dict[str, dict[str, str]] = {}
    quarantining = validation["on_error"] == "quarantine"
    ratio = float(validation["extreme_ratio"])
    # The scan that checks an event table also gathers what staging needs, which depends on
    # as_of. A configured as_of is known now. An inferred one is the latest valid timestamp
    # of a known customer up to now, so for those rows "up to as_of" is "up to now"; only
    # when every timestamp is in the future does staging scan again (`_restage`).
    now = _now()
    try:
        cutoff = now if as_of is None else _parse_as_of(as_of)
    except DataError:
        cutoff = now  # raised where as_of is resolved, after the data's own problems
    staging: dict[str, _Staging] = {}

    for name in [t for t in TABLES if t in readers]:
        table, file = TABLES[name], names[name]
        n_examples = int(validation["examples"])
        with reading(file, n_examples):
            con.execute(f"CREATE VIEW raw_{name} AS SELECT * FROM {readers[name]}")
            schema = con.execute(f"DESCRIBE raw_{name}").fetchall()
        raw_cols, dtypes = [r[0] for r in schema], {r[0]: r[1] for r in schema}
        found, attrs, pii = _map_columns(table, raw_cols, mapping.get(name, {}), file, privacy)
        if name == "customers":
            attributes = attrs
        # Customers and text sources (CSV) are parsed once: their typed rows, with a bit mask
        # of the checks each breaks, are kept in memory and every later step reads them.
        # Typed event tables (Parquet, DuckDB) stay views, read in one scan that checks them
        # and gathers what staging needs; when every row passes, later reads skip the parsing
        # (`_plain`): reading the file again is cheaper than holding 100M events in memory.
        held = name == "customers" or "read_csv" in readers[name]
        plain = {} if held else {c: _plain(table.column(c), s, dtypes[s]) for c, s in found.items()}
        compared = [c for c, got in plain.items() if got is not None and not got[1]]
        select = [
            f"{_parse(table.column(c), s, dtypes[s])} AS {sql_name(c)}" for c, s in found.items()
        ]
        select += [
            f"{_raw(table.column(c), s, dtypes[s])} AS {sql_name('__raw_' + c)}"
            for c, s in found.items()
        ]
        select += [f"{plain[c][0]} AS {sql_name('__plain_' + c)}" for c in compared]
        select += [sql_name(a) for a in attrs]
        dup = name == "customers"
        if dup:  # the first row of each id wins; later ones are duplicates
            select.insert(0, "row_number() OVER () AS __row")
        con.execute(
            f"CREATE VIEW staged_{name} AS SELECT *"
            + (
                ", row_number() OVER (PARTITION BY customer_id ORDER BY __row) AS __dup"
                if dup
                else ""
            )
            + f" FROM (SELECT {', '.join(select)} FROM raw_{name})"
        )
        checks = _checks(table, found)
        bad = " OR ".join(f"({c.bad})" for c in checks) or "false"
        drop = ", ".join(
            [sql_name("__raw_" + c) for c in found]
            + [sql_name("__plain_" + c) for c in compared]
            + (["__row", "__dup"] if dup else [])
        )
        available[name] = list(found) + attrs
        if held:
            with reading(file, n_examples):
                con.execute(
                    f"CREATE TEMP TABLE checked_{name} AS SELECT * EXCLUDE ({drop}), "
                    f"{_mask(checks)} AS __bad FROM staged_{name}"
                )
            flags = [f"(__bad & {1 << i}) <> 0 AS __bad_{i}" for i in range(len(checks))]
            rows = f"checked_{name}"
        else:
            flags = [f"({c.bad}) AS __bad_{i}" for i, c in enumerate(checks)]
            rows = f"staged_{name}"
        extra = [
            f"count_if({sql_name(c)} IS DISTINCT FROM {sql_name('__plain_' + c)})" for c in compared
        ]
        derived = None
        if name != "customers":
            known = "customer_id IN (SELECT customer_id FROM valid_customers) AS __known"
            flags.append(known)
            profile = TableProfile.of(name, table, available[name], [])
            if held:
                sizes = {c: sql_name(c) for c in profile.numbers}
            else:  # a typed file's statistics tell, without a scan
                sizes = {c: sql_name(found[c]) for c in profile.numbers if plain[c] is not None}
            with reading(file, n_examples):
                bounds = _bounds(con, rows if held else f"raw_{name}", sizes, ratio)
            extra += _stage_aggregates(
                table.time_column, profile, _stamp(cutoff), _stamp(now), bounds
            )
            derived = _stage_columns(table.time_column, _stamp(cutoff))
        with reading(file, n_examples):
            n_rows, n_bad, counts, values = _scan(
                con, f"(SELECT *, {', '.join(flags)} FROM {rows})", checks, extra, derived
            )
            failed = _failed(con, table, checks, counts, n_examples, privacy["salt"])
        for (col, reason), st in failed.items():
            ids = _as_pseudonyms(privacy["salt"]) if table.column(col).kind == "id" else ""
            problems.append(
                f"{file}: column {col!r} {reason} in {st['rows']:,} of {n_rows:,} rows "
                f"(e.g. {', '.join(repr(e) for e in st['examples'])}{ids}){_hint(reason, st)}"
            )
        if failed and quarantining:
            rows_out = _quarantined(con, name, found, attrs, checks)
            quarantine[name] = _pseudonymized(rows_out, table, privacy["salt"])
        clean = not n_bad and not any(values[: len(compared)]) and None not in plain.values()
        if held:
            valid = f"SELECT * EXCLUDE (__bad) FROM checked_{name}" + (
                " WHERE __bad = 0" if n_bad else ""
            )
        elif clean:  # nothing to clean or leave out: read the source's columns as they are
            cols = [f"{plain[c][0]} AS {sql_name(c)}" for c in found] + [sql_name(a) for a in attrs]
            valid = f"SELECT {', '.join(cols)} FROM raw_{name}"
        else:
            valid = f"SELECT * EXCLUDE ({drop}) FROM staged_{name} WHERE NOT ({bad})"
        con.execute(f"CREATE VIEW valid_{name} AS {valid}")
        if name != "customers":
            staging[name] = _Staging.of(values[len(compared) :], bounds)
        quality["tables"][name] = {
            "file": file,
            "rows": n_rows,
            "rows_invalid": n_bad,
            "invalid": {f"{c} {r}": st["rows"] for (c, r), st in failed.items()},
            "pii_columns_dropped": pii,
        }
        part = f"{name}:{n_rows}:{raw_cols}".encode() + digests[name]
        digest.update(part)
        table_digests[name] = hashlib.sha256(part).hexdigest()[:16]
        schemas[name] = dtypes

    if problems and not quarantining:
        raise DataError(
            "The data breaks the contract: "
            + "; ".join(problems)
            + ". Fix the export, or set validation.on_error: quarantine in the config to set "
            "these rows aside and go on."
        )
    for p in problems:
        logger.warning("Quarantined: %s", p)
    quality["problems"] = problems

    _require_customers(con, quality["tables"]["customers"])
    as_of_ts = _resolve_as_of(staging, as_of, quality, now)
    if as_of is None and all(st.past is None for st in staging.values()):
        for name in staging:
            staging[name] = _restage(con, name, available[name], as_of_ts, now, staging[name])
    salt = privacy["salt"]
    _stage(con, staging, available, attributes, as_of_ts, quality, validation, salt)
    quality["as_of"] = str(as_of_ts)
    return LoadedData(
        con=con,
        tables=list(readers),
        columns=available,
        attributes=attributes,
        as_of=as_of_ts,
        quality=quality,
        quarantine=quarantine,
        fingerprint=digest.hexdigest()[:16],
        digests=table_digests,
        schemas=schemas,
    )


def _as_pseudonyms(salt: str | None) -> str:
    """Return the note that follows quoted ids when they are pseudonyms, else nothing."""
    return ", as pseudonyms: privacy.pseudonymize_ids is on" if salt else ""


def _hint(reason: str, failed: dict) -> str:
    """Return a word of advice for a broken rule, when its examples suggest the cause."""
    if not reason.startswith("is not a number"):
        return ""
    examples = [e or "" for e in failed["examples"]]
    if any(re.fullmatch(r"-?[\d.]*\d,\d+", e) for e in examples):
        return " (decimal commas? the contract wants a point: 12.50)"
    if any(re.search(r"\d", e) and re.search(r"[$€£%]", e) for e in examples):
        return " (write plain numbers, without currency or percent signs)"
    return ""


def _quarantined(
    con: duckdb.DuckDBPyConnection,
    name: str,
    found: dict[str, str],
    attrs: list[str],
    checks: list[_Check],
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


def _pseudonymized(rows: pd.DataFrame, table: TableSpec, salt: str | None) -> pd.DataFrame:
    """Return quarantined rows with their id columns, but ``customer_id``, as pseudonyms.

    ``customer_id`` stays as read: whoever writes the outputs pseudonymizes it with every
    other output, so hashing it here too would hash it twice.
    """
    if salt is None:
        return rows
    ids = [c.name for c in table.columns if c.kind == "id" and c.name != "customer_id"]
    return rows.assign(**{c: pseudonymize(rows[c], salt) for c in ids if c in rows})


def _is_plain_date(value) -> bool:
    """Whether ``as_of`` names a day (``YYYY-MM-DD`` or a `datetime.date`), not a time."""
    if isinstance(value, str):
        return re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is not None
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


def _parse_as_of(as_of) -> pd.Timestamp:
    """Turn the configured ``as_of`` into a UTC timestamp without zone.

    A plain date (``2026-03-31``) means the end of that day, the last microsecond before
    the next midnight, so every event of that day counts. A time with a zone offset
    (``2026-03-02T10:00:00+02:00``) is converted to UTC, like every timestamp in the
    data; a time without one is read as UTC.
    """
    value = as_of.strip() if isinstance(as_of, str) else as_of
    try:
        ts = pd.Timestamp(value)
        if pd.isna(ts):
            raise ValueError("no date")
    except (ValueError, TypeError) as err:
        raise DataError(f"as_of {as_of!r} in the config is not a date (use YYYY-MM-DD).") from err
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if _is_plain_date(value):
        ts = ts.normalize() + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return ts


def _stamp(value: pd.Timestamp) -> str:
    """Return the SQL literal of a timestamp, to the microsecond."""
    return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S.%f}'"


def _now() -> pd.Timestamp:
    """Return the moment of the run, UTC without zone: later timestamps are in the future."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def _resolve_as_of(
    staging: dict[str, _Staging], as_of: str | None, quality: dict, now: pd.Timestamp
) -> pd.Timestamp:
    """Return the configured reference time, else the latest timestamp of a known customer.

    Rows naming customers that are not in the customers table do not count, so a stray
    row of an unknown id cannot move the reference date; nor do rows dated after ``now``
    (a placeholder ``2099-01-01``, a day and month swapped), unless every row is (see
    `_parse_as_of` for how a configured value is read). ``staging`` holds each event
    table's latest timestamps, from the scan that checked it.
    """
    if as_of is not None:
        return _parse_as_of(as_of)
    past = max((st.past for st in staging.values() if st.past is not None), default=None)
    latest = max((st.last for st in staging.values() if st.last is not None), default=None)
    if latest is None:
        counts = [
            f"{Path(quality['tables'][t]['file']).name}: {quality['tables'][t]['rows']:,} "
            f"rows, {st.n_valid - st.n_unknown:,} valid of known customers"
            for t, st in staging.items()
        ]
        raise DataError(
            f"No table has a single valid timestamp of a known customer ({'; '.join(counts)}), "
            "so as_of cannot be inferred and there is no behaviour to segment on. Check that "
            "the files are complete and write customer ids as customers does, or set as_of."
        )
    if past is None:
        logger.warning("Every timestamp is after today (%s); as_of is the latest, %s.", now, latest)
        return pd.Timestamp(latest)
    return pd.Timestamp(past)


def _restage(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: list[str],
    as_of: pd.Timestamp,
    now: pd.Timestamp,
    first: _Staging,
) -> _Staging:
    """Gather what staging needs of an event table again, up to ``as_of`` (a second scan)."""
    profile, time_col = TableProfile.of(name, TABLES[name], columns, []), TABLES[name].time_column
    aggregates = _stage_aggregates(time_col, profile, _stamp(as_of), _stamp(now), first.bounds)
    derived = _stage_columns(time_col, _stamp(as_of))
    values = con.execute(
        f"SELECT {', '.join(aggregates)} FROM (SELECT *, {', '.join(derived)} FROM (SELECT *, "
        "true AS __valid, customer_id IN (SELECT customer_id FROM valid_customers) AS __known "
        f"FROM valid_{name}))"
    ).fetchone()
    return _Staging.of(list(values), first.bounds)


def _require_customers(con: duckdb.DuckDBPyConnection, info: dict) -> None:
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


def _near_matches(con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, list]:
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


def _stage(con, staging, available, attributes, as_of, quality, validation, salt):
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
    stamp = _stamp(as_of)
    for name, st in staging.items():
        time_col = sql_name(TABLES[name].time_column)
        info = quality["tables"][name]
        known = "customer_id IN (SELECT customer_id FROM customers)"
        profile = TableProfile.of(name, TABLES[name], available[name], [])
        n_unknown_ids = 0
        if st.n_unknown:  # their ids, once: the examples, the near matches, the count
            con.execute(
                f"CREATE TEMP TABLE unknown_{name} AS SELECT DISTINCT customer_id "
                f"FROM valid_{name} WHERE NOT {known}"
            )
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
            n_near, pairs = _near_matches(con, name)
            pairs = zip(
                pseudonymize_values([u for u, _ in pairs], salt),
                pseudonymize_values([c for _, c in pairs], salt),
                strict=True,
            )
            info["unknown_customer_near_matches"] = n_near
            hint = (
                f" {n_near:,} of these ids match a customer id once case, leading zeros and a "
                f"trailing '.0' are ignored (e.g. "
                f"{', '.join(f'{u!r} vs {c!r}' for u, c in pairs)}{_as_pseudonyms(salt)}): "
                "ids are compared as "
                "text, exactly, so every file must write them alike."
                if n_near
                else ""
            )
            if share > validation["max_unknown_share"]:
                raise DataError(
                    f"{info['file']}: {st.n_unknown:,} of {st.n_valid:,} rows ({share:.1%}) name "
                    f"{n_unknown_ids:,} customer ids that are not in customers (e.g. "
                    f"{', '.join(repr(e) for e in examples)}{_as_pseudonyms(salt)}); the limit is "
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
        # the rows of unknown customers are left out; when there are none, no join is needed
        where = f"{known} AND " if st.n_unknown else ""
        con.execute(
            f"CREATE VIEW {name} AS SELECT {cols} FROM valid_{name} "
            f"WHERE {where}{time_col} <= {stamp}"
        )
        info["rows_used"] = int(st.n_valid - st.n_unknown - st.n_later)
        info.update(profile.summary(st.profile, con, ratio, n_examples, st.bounds))
