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


def _check_table(
    con: duckdb.DuckDBPyConnection,
    table: TableSpec,
    checks: list[_Check],
    n_examples: int,
    salt: str | None,
) -> tuple[int, int, dict[tuple[str, str], dict]]:
    """Count rows, bad rows and rows breaking each check in one scan; quote a few examples.

    Examples of an id column (a duplicated ``customer_id``) are pseudonyms when ``salt``
    is given.
    """
    name = table.name
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
            shown = [e[0] for e in examples]
            if table.column(check.column).kind == "id":
                shown = pseudonymize_values(shown, salt)
            failed[(check.column, check.reason)] = {"rows": int(n_bad), "examples": shown}
    return int(row[0]), int(row[1]), failed


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
        select = [
            f"{_parse(table.column(c), s, dtypes[s])} AS {sql_name(c)}" for c, s in found.items()
        ]
        select += [
            f"{_raw(table.column(c), s, dtypes[s])} AS {sql_name('__raw_' + c)}"
            for c, s in found.items()
        ]
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
        with reading(file, n_examples):
            n_rows, n_bad, failed = _check_table(con, table, checks, n_examples, privacy["salt"])
        bad = " OR ".join(f"({c.bad})" for c in checks) or "false"
        for (col, reason), st in failed.items():
            ids = _as_pseudonyms(privacy["salt"]) if table.column(col).kind == "id" else ""
            problems.append(
                f"{file}: column {col!r} {reason} in {st['rows']:,} of {n_rows:,} rows "
                f"(e.g. {', '.join(repr(e) for e in st['examples'])}{ids}){_hint(reason, st)}"
            )
        drop = ", ".join(
            [sql_name("__raw_" + c) for c in found] + (["__row", "__dup"] if dup else [])
        )
        if failed and quarantining:
            rows = _quarantined(con, name, found, attrs, checks)
            quarantine[name] = _pseudonymized(rows, table, privacy["salt"])
        # Text sources (CSV) are parsed once: their valid rows, typed, are kept in memory and
        # every later step (as_of, unknown ids, staging, features) reads them. Typed sources
        # (Parquet, DuckDB) stay views: reading them again is cheaper than holding 100M
        # events in memory.
        kind_of_valid = "TEMP TABLE" if "read_csv" in readers[name] else "VIEW"
        with reading(file, n_examples):
            con.execute(
                f"CREATE {kind_of_valid} valid_{name} AS SELECT * EXCLUDE ({drop}) "
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
    now = _now()
    as_of_ts = _resolve_as_of(con, list(readers), as_of, quality, now)
    salt = privacy["salt"]
    _stage(con, list(readers), available, attributes, as_of_ts, quality, validation, now, salt)
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
    con: duckdb.DuckDBPyConnection,
    tables: list[str],
    as_of: str | None,
    quality: dict,
    now: pd.Timestamp,
) -> pd.Timestamp:
    """Return the configured reference time, else the latest timestamp of a known customer.

    Rows naming customers that are not in the customers table do not count, so a stray
    row of an unknown id cannot move the reference date; nor do rows dated after ``now``
    (a placeholder ``2099-01-01``, a day and month swapped), unless every row is (see
    `_parse_as_of` for how a configured value is read).
    """
    if as_of is not None:
        return _parse_as_of(as_of)
    known = "customer_id IN (SELECT customer_id FROM valid_customers)"
    times = [
        f"SELECT {sql_name(TABLES[t].time_column)} AS t FROM valid_{t} WHERE {known}"
        for t in tables
        if TABLES[t].time_column
    ]
    past, latest = con.execute(
        f"SELECT max(t) FILTER (WHERE t <= {_stamp(now)}), max(t) "
        f"FROM ({' UNION ALL '.join(times)})"
    ).fetchone()
    if latest is None:
        counts = []
        for t in tables:
            if TABLES[t].time_column:
                n_known = con.execute(f"SELECT count(*) FROM valid_{t} WHERE {known}").fetchone()
                counts.append(
                    f"{Path(quality['tables'][t]['file']).name}: {quality['tables'][t]['rows']:,} "
                    f"rows, {n_known[0]:,} valid of known customers"
                )
        raise DataError(
            f"No table has a single valid timestamp of a known customer ({'; '.join(counts)}), "
            "so as_of cannot be inferred and there is no behaviour to segment on. Check that "
            "the files are complete and write customer ids as customers does, or set as_of."
        )
    if past is None:
        logger.warning("Every timestamp is after today (%s); as_of is the latest, %s.", now, latest)
        return pd.Timestamp(latest)
    return pd.Timestamp(past)


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


def _near_matches(con: duckdb.DuckDBPyConnection, name: str, known: str) -> tuple[int, list]:
    """Count the unknown ids of a table that match a customer once written alike.

    Returns the count and up to three ``(id in the table, id in customers)`` pairs
    (``('7', '007')``); see `features.quality.id_key`.
    """
    pairs = con.execute(
        f"SELECT u.customer_id, min(c.customer_id) FROM "
        f"(SELECT DISTINCT customer_id FROM valid_{name} WHERE NOT {known}) u "
        f"JOIN customers c ON {id_key('u.customer_id')} = {id_key('c.customer_id')} "
        "GROUP BY u.customer_id ORDER BY u.customer_id"
    ).fetchall()
    return len(pairs), pairs[:3]


def _stage(con, tables, available, attributes, as_of, quality, validation, now, salt):
    """Create the final views over the valid rows: known customers only, nothing after ``as_of``.

    The quality summary of each event table counts the rows of unknown customers (and
    how many of their ids would match a customer once written alike), the rows after
    ``as_of`` and the rows dated after ``now``; its ``first`` and ``last`` (the data span)
    cover the valid rows of known customers, after ``as_of`` included. The profile of the
    rows used (`features.quality.TableProfile`) comes from the same scan. With a ``salt``
    (``privacy.pseudonymize_ids``), the unknown ids that the summary, the warning and the
    error quote are pseudonyms.
    """
    ratio, n_examples = float(validation["extreme_ratio"]), int(validation["examples"])
    con.execute("CREATE VIEW customers AS SELECT * FROM valid_customers")
    profile = TableProfile.of("customers", TABLES["customers"], available["customers"], attributes)
    values = con.execute(f"SELECT {', '.join(profile.aggregates())} FROM customers").fetchone()
    quality["tables"]["customers"]["rows_used"] = values[0]
    quality["tables"]["customers"].update(profile.summary(values, con, ratio, n_examples))
    stamp, future = _stamp(as_of), _stamp(now)
    for name in [t for t in tables if t != "customers"]:
        time_col = sql_name(TABLES[name].time_column)
        info = quality["tables"][name]
        known = "customer_id IN (SELECT customer_id FROM customers)"
        profile = TableProfile.of(name, TABLES[name], available[name], [])
        row = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT __known), "
            "count(DISTINCT customer_id) FILTER (WHERE NOT __known), "
            f"count(*) FILTER (WHERE __known AND {time_col} > {stamp}), "
            f"count(*) FILTER (WHERE __known AND {time_col} > {future}), "
            f"min({time_col}) FILTER (WHERE __known), max({time_col}) FILTER (WHERE __known), "
            + ", ".join(profile.aggregates(f"__known AND {time_col} <= {stamp}"))
            + f" FROM (SELECT *, {known} AS __known FROM valid_{name})"
        ).fetchone()
        n_valid, n_unknown, n_unknown_ids, n_later, n_future, first, last = row[:7]
        info.update(
            unknown_customer_rows=int(n_unknown),
            unknown_customer_ids=int(n_unknown_ids),
            rows_after_as_of=int(n_later),
            rows_in_future=int(n_future),
            first=str(first) if first is not None else None,
            last=str(last) if last is not None else None,
        )
        if n_future:
            logger.warning(
                "%s: %d rows are dated after today (up to %s); as_of is %s.",
                info["file"],
                n_future,
                last,
                as_of,
            )
        share = n_unknown / n_valid if n_valid else 0.0
        if n_unknown:
            examples = pseudonymize_values(
                (
                    r[0]
                    for r in con.execute(
                        f"SELECT DISTINCT customer_id FROM valid_{name} WHERE NOT {known} "
                        f"LIMIT {int(validation['examples'])}"
                    ).fetchall()
                ),
                salt,
            )
            info["unknown_customer_examples"] = examples
            n_near, pairs = _near_matches(con, name, known)
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
                    f"{info['file']}: {n_unknown:,} of {n_valid:,} rows ({share:.1%}) name "
                    f"{n_unknown_ids:,} customer ids that are not in customers (e.g. "
                    f"{', '.join(repr(e) for e in examples)}{_as_pseudonyms(salt)}); the limit is "
                    f"validation.max_unknown_share = {validation['max_unknown_share']:.1%}. "
                    f"Check that both files come from the same export and write ids alike.{hint}"
                )
            logger.warning(
                "%s: %d rows (%.2f%%) name unknown customers; they are left out and counted.%s",
                info["file"],
                n_unknown,
                100 * share,
                hint,
            )
        cols = ", ".join(sql_name(c) for c in available[name])
        con.execute(
            f"CREATE VIEW {name} AS SELECT {cols} FROM valid_{name} "
            f"WHERE {known} AND {time_col} <= {stamp}"
        )
        info["rows_used"] = int(n_valid - n_unknown - n_later)
        info.update(profile.summary(row[7:], con, ratio, n_examples))
