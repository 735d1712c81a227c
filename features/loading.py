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
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from features.contract import PII_PATTERNS, TABLES, ColumnSpec, DataError, TableSpec, is_pii

__all__ = ["LoadedData", "load_data"]

logger = logging.getLogger(__name__)

_SUFFIXES = (".parquet", ".csv", ".csv.gz")
_DB_SUFFIXES = (".duckdb", ".db", ".ddb")


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
    quarantine : dict of str to pandas.DataFrame
        Rows set aside per table (quarantine mode only): the contract columns as the raw
        text the file holds (so a bad value reads ``ten``, not NaN), the attribute columns
        as they are, and a ``reason`` column.
    fingerprint : str
        Short hash identifying the input data.
    """

    con: duckdb.DuckDBPyConnection
    tables: list[str]
    columns: dict[str, list[str]]
    attributes: list[str]
    as_of: pd.Timestamp
    quality: dict
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def n_customers(self) -> int:
        """Number of customers (rows of the customers table after checks)."""
        return self.quality["tables"]["customers"]["rows_used"]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _find_sources(source: Path) -> tuple[str, dict[str, str]]:
    """Return the kind of source and, per present table, the SQL that reads it raw."""
    if not source.exists():
        raise DataError(f"Data source {source} does not exist.")
    if source.is_file() and source.suffix in _DB_SUFFIXES:
        con = duckdb.connect(str(source), read_only=True)
        try:
            names = {
                r[0]
                for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
            }
        finally:
            con.close()
        return "duckdb", {t: f"src.main.{_quote(t)}" for t in TABLES if t in names}
    if not source.is_dir():
        raise DataError(
            f"Data source {source} is neither a folder of CSV/Parquet files nor a DuckDB file "
            f"({', '.join(_DB_SUFFIXES)})."
        )
    found: dict[str, str] = {}
    for table in TABLES:
        files = [source / f"{table}{s}" for s in _SUFFIXES if (source / f"{table}{s}").exists()]
        if len(files) > 1:
            raise DataError(
                f"Table {table} is given twice in {source} ({', '.join(f.name for f in files)}); "
                "keep one file per table."
            )
        if files:
            path = _literal(str(files[0]))
            found[table] = (
                f"read_parquet({path})"
                if files[0].suffix == ".parquet"
                else f"read_csv({path}, header=true, all_varchar=true)"
            )
    return "folder", found


def _file_of(source: Path, kind: str, table: str) -> str:
    if kind == "duckdb":
        return f"{source} (table {table})"
    return next(str(source / f"{table}{s}") for s in _SUFFIXES if (source / f"{table}{s}").exists())


def _parse(spec: ColumnSpec, col: str, dtype: str) -> str:
    """Return SQL that turns a raw column into its contract type (NULL where it cannot)."""
    q = _quote(col)
    if spec.kind == "id":
        return f"NULLIF(TRIM(CAST({q} AS VARCHAR)), '')"
    if spec.kind == "text":
        return f"NULLIF(CAST({q} AS VARCHAR), '')"
    if spec.kind == "timestamp":
        if dtype.startswith(("TIMESTAMP", "DATE")):
            return f"CAST({q} AS TIMESTAMP)"
        return f"CAST(TRY_CAST(NULLIF(TRIM(CAST({q} AS VARCHAR)), '') AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"TRY_CAST(NULLIF(TRIM(CAST({q} AS VARCHAR)), '') AS DOUBLE)"


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
            raise DataError(
                f"The config maps {table.name}.{contract} to {src!r}, but the contract has no "
                f"column {contract!r} in {table.name} (its columns: "
                f"{', '.join(c.name for c in table.columns)})."
            )
        if src not in raw:
            raise DataError(
                f"The config maps {table.name}.{contract} to column {src!r}, which {file} does "
                f"not have (its columns: {', '.join(raw)})."
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
        raw, v = _quote(f"__raw_{name}"), _quote(name)
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


def _check_table(
    con: duckdb.DuckDBPyConnection, name: str, checks: list[_Check], n_examples: int
) -> tuple[int, int, dict[tuple[str, str], dict]]:
    """Count rows, bad rows and rows breaking each check in one scan; quote a few examples."""
    any_bad = " OR ".join(f"({c.bad})" for c in checks) or "false"
    counts = "".join(f", count(*) FILTER (WHERE {c.bad})" for c in checks)
    row = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {any_bad}){counts} FROM staged_{name}"
    ).fetchone()
    failed = {}
    for check, n_bad in zip(checks, row[2:], strict=True):
        if n_bad:
            examples = con.execute(
                f"SELECT DISTINCT CAST({check.shown} AS VARCHAR) FROM staged_{name} "
                f"WHERE {check.bad} LIMIT {n_examples}"
            ).fetchall()
            failed[(check.column, check.reason)] = {
                "rows": int(n_bad),
                "examples": [e[0] for e in examples],
            }
    return int(row[0]), int(row[1]), failed


def _file_digest(source: Path, kind: str, table: str) -> bytes:
    """Cheap content digest: size and the first and last MiB of the file."""
    if kind == "duckdb":
        return b""
    path = Path(_file_of(source, kind, table))
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), 2)
            digest.update(fh.read())
    return digest.digest()


def load_data(
    source: str | Path,
    *,
    columns: dict | None = None,
    validation: dict | None = None,
    privacy: dict | None = None,
    as_of: str | None = None,
) -> LoadedData:
    """Load, check and stage the contract tables of a data source.

    Parameters
    ----------
    source : str or Path
        A folder with one CSV or Parquet file per table, or a DuckDB database file.
    columns : dict, optional
        Per table, contract column name -> column name in the data.
    validation : dict, optional
        ``on_error`` ("fail" or "quarantine"), ``max_unknown_share``, ``examples``.
    privacy : dict, optional
        ``pii_patterns`` (default `features.contract.PII_PATTERNS`) and ``pii_columns``;
        matching columns are dropped at the door.
    as_of : str, optional
        Reference time; default the latest timestamp of a known customer's valid row. A
        plain date (``2026-03-31``) means the end of that day, so events later that day
        count; a time with a zone offset is converted to UTC like every timestamp.

    Returns
    -------
    LoadedData
        The staged tables and their data-quality summary.

    Raises
    ------
    DataError
        When a table breaks the contract: a missing column, bad values (in fail mode), too
        many rows naming unknown customers, or no customers at all.
    """
    source = Path(source)
    mapping = columns or {}
    validation = {
        "on_error": "fail",
        "max_unknown_share": 0.05,
        "examples": 5,
        **(validation or {}),
    }
    privacy = {"pii_columns": [], **(privacy or {})}
    if privacy.get("pii_patterns") is None:
        privacy["pii_patterns"] = list(PII_PATTERNS)
    kind, readers = _find_sources(source)
    if "customers" not in readers:
        raise DataError(
            f"{source} has no customers table (customers.csv or customers.parquet); it is required."
        )
    if len(readers) == 1:
        raise DataError(
            f"{source} has only the customers table; add at least one of "
            f"{', '.join(t for t in TABLES if t != 'customers')}."
        )
    con = duckdb.connect()
    try:
        return _load(con, source, kind, readers, mapping, validation, privacy, as_of)
    except BaseException:
        con.close()
        raise


def _load(con, source, kind, readers, mapping, validation, privacy, as_of) -> LoadedData:
    con.execute("SET TimeZone = 'UTC'")
    if kind == "duckdb":
        con.execute(f"ATTACH {_literal(str(source))} AS src (READ_ONLY)")
    quality: dict = {"source": str(source), "tables": {}, "problems": []}
    quarantine: dict[str, pd.DataFrame] = {}
    available: dict[str, list[str]] = {}
    attributes: list[str] = []
    problems: list[str] = []
    digest = hashlib.sha256()
    quarantining = validation["on_error"] == "quarantine"

    for name in [t for t in TABLES if t in readers]:
        table, file = TABLES[name], _file_of(source, kind, name)
        con.execute(f"CREATE VIEW raw_{name} AS SELECT * FROM {readers[name]}")
        schema = con.execute(f"DESCRIBE raw_{name}").fetchall()
        raw_cols, dtypes = [r[0] for r in schema], {r[0]: r[1] for r in schema}
        found, attrs, pii = _map_columns(table, raw_cols, mapping.get(name, {}), file, privacy)
        if name == "customers":
            attributes = attrs
        select = [
            f"{_parse(table.column(c), s, dtypes[s])} AS {_quote(c)}" for c, s in found.items()
        ]
        select += [
            f"NULLIF(TRIM(CAST({_quote(s)} AS VARCHAR)), '') AS {_quote('__raw_' + c)}"
            for c, s in found.items()
        ]
        select += [_quote(a) for a in attrs]
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
        n_rows, n_bad, failed = _check_table(con, name, checks, int(validation["examples"]))
        bad = " OR ".join(f"({c.bad})" for c in checks) or "false"
        for (col, reason), st in failed.items():
            problems.append(
                f"{file}: column {col!r} {reason} in {st['rows']:,} of {n_rows:,} rows "
                f"(e.g. {', '.join(repr(e) for e in st['examples'])})"
            )
        drop = ", ".join(
            [_quote("__raw_" + c) for c in found] + (["__row", "__dup"] if dup else [])
        )
        if failed and quarantining:
            quarantine[name] = _quarantined(con, name, found, attrs, checks)
        con.execute(
            f"CREATE VIEW valid_{name} AS SELECT * EXCLUDE ({drop}) "
            f"FROM staged_{name} WHERE NOT ({bad})"
        )
        available[name] = list(found) + attrs
        quality["tables"][name] = {
            "file": file,
            "rows": n_rows,
            "rows_invalid": n_bad,
            "invalid": {f"{c} {r}": st["rows"] for (c, r), st in failed.items()},
            "pii_columns_dropped": pii,
        }
        digest.update(f"{name}:{n_rows}:{raw_cols}".encode() + _file_digest(source, kind, name))

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

    as_of_ts = _resolve_as_of(con, list(readers), as_of)
    materialize = kind == "folder" and any("read_csv" in r for r in readers.values())
    _stage(con, list(readers), available, as_of_ts, quality, validation, materialize)
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
    )


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
        f"CASE WHEN {c.bad} THEN {_literal(c.column + ' ' + c.reason + '; ')} ELSE '' END"
        for c in checks
    )
    cols = [f"{_quote('__raw_' + c)} AS {_quote(c)}" for c in found] + [_quote(a) for a in attrs]
    return con.execute(
        f"SELECT {', '.join(cols)}, rtrim({reasons}, '; ') AS reason FROM staged_{name} WHERE {bad}"
    ).df()


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


def _resolve_as_of(
    con: duckdb.DuckDBPyConnection, tables: list[str], as_of: str | None
) -> pd.Timestamp:
    """Return the configured reference time, else the latest timestamp of a known customer.

    Rows naming customers that are not in the customers table do not count, so a stray
    future-dated row of an unknown id cannot move the reference date (see `_parse_as_of`
    for how a configured value is read).
    """
    if as_of is not None:
        return _parse_as_of(as_of)
    known = "customer_id IN (SELECT customer_id FROM valid_customers)"
    times = [
        f"SELECT max({_quote(TABLES[t].time_column)}) AS t FROM valid_{t} WHERE {known}"
        for t in tables
        if TABLES[t].time_column
    ]
    latest = con.execute(f"SELECT max(t) FROM ({' UNION ALL '.join(times)})").fetchone()[0]
    if latest is None:
        raise DataError(
            "No table has a single valid timestamp, so as_of cannot be inferred; set as_of."
        )
    return pd.Timestamp(latest)


def _stage(con, tables, available, as_of, quality, validation, materialize) -> None:
    """Create the final views: known customers only, nothing after ``as_of``.

    The quality summary of each event table counts the rows of unknown customers and the
    rows after ``as_of``; its ``first`` and ``last`` (the data span) cover the valid rows
    of known customers, after ``as_of`` included.
    """
    kind = "TEMP TABLE" if materialize else "VIEW"
    con.execute(f"CREATE {kind} customers AS SELECT * FROM valid_customers")
    n_customers = con.execute("SELECT count(*) FROM customers").fetchone()[0]
    quality["tables"]["customers"]["rows_used"] = n_customers
    if n_customers == 0:
        raise DataError(f"{quality['tables']['customers']['file']} has no valid customer rows.")
    stamp = f"TIMESTAMP '{as_of}'"
    for name in [t for t in tables if t != "customers"]:
        time_col = _quote(TABLES[name].time_column)
        info = quality["tables"][name]
        known = "customer_id IN (SELECT customer_id FROM customers)"
        row = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE NOT {known}), "
            f"count(DISTINCT customer_id) FILTER (WHERE NOT {known}), "
            f"count(*) FILTER (WHERE {known} AND {time_col} > {stamp}), "
            f"min({time_col}) FILTER (WHERE {known}), max({time_col}) FILTER (WHERE {known}) "
            f"FROM valid_{name}"
        ).fetchone()
        n_valid, n_unknown, n_unknown_ids, n_later, first, last = row
        info.update(
            unknown_customer_rows=int(n_unknown),
            unknown_customer_ids=int(n_unknown_ids),
            rows_after_as_of=int(n_later),
            first=str(first) if first is not None else None,
            last=str(last) if last is not None else None,
        )
        share = n_unknown / n_valid if n_valid else 0.0
        if n_unknown:
            examples = [
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT customer_id FROM valid_{name} WHERE NOT {known} "
                    f"LIMIT {int(validation['examples'])}"
                ).fetchall()
            ]
            info["unknown_customer_examples"] = examples
            if share > validation["max_unknown_share"]:
                raise DataError(
                    f"{info['file']}: {n_unknown:,} of {n_valid:,} rows ({share:.1%}) name "
                    f"{n_unknown_ids:,} customer ids that are not in customers (e.g. "
                    f"{', '.join(repr(e) for e in examples)}); the limit is "
                    f"validation.max_unknown_share = {validation['max_unknown_share']:.1%}. "
                    "Check that both files come from the same export and write ids alike."
                )
            logger.warning(
                "%s: %d rows (%.2f%%) name unknown customers; they are left out and counted.",
                info["file"],
                n_unknown,
                100 * share,
            )
        cols = ", ".join(_quote(c) for c in available[name])
        con.execute(
            f"CREATE {kind} {name} AS SELECT {cols} FROM valid_{name} "
            f"WHERE {known} AND {time_col} <= {stamp}"
        )
        info["rows_used"] = int(n_valid - n_unknown - n_later)
