"""Load the contract tables into DuckDB, check them and summarise their quality.

The tables stay in DuckDB: every check is one SQL query over the whole table, so a
100-million-row event log is never pulled into pandas. What comes out is a connection
with one clean view per present table (valid rows, known customers, nothing after
``as_of``), ready for the feature builders.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from features import postgres
from features.checks import (
    advice,
    as_pseudonyms,
    failed_checks,
    known_flag,
    map_columns,
    parse_sql,
    plain_sql,
    pseudonymized_rows,
    quarantined_rows,
    raw_sql,
    scan_checks,
    table_checks,
    tidy_columns,
    unknown_ids,
    valid_mask,
)
from features.contract import PII_PATTERNS, TABLES, DataError
from features.privacy import id_salt
from features.quality import EXTREME_RATIO, TableProfile
from features.reading import (
    CSV_TYPES,
    file_digest,
    file_of,
    find_sources,
    reading,
    typed_csv,
    typed_tail_format,
)
from features.sql import sql_name, sql_text, sql_time
from features.staging import (
    Staging,
    require_customers,
    restage,
    stage_aggregates,
    stage_columns,
    stage_views,
    value_bounds,
)

__all__ = ["LoadedData", "load_data"]

logger = logging.getLogger(__name__)
_progress = logging.getLogger("personas.progress")  # shown by pipelines.run.stage


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
    # DuckDB 2's partitioned execution splits a filtered grouping by customer into ranges
    # of ids, each scanning the table again: at 3M customers twice as long (README,
    # benchmarks/duckdb_probes.py). Older DuckDB has no such optimizer to turn off.
    if con.execute(
        "SELECT count(*) FROM duckdb_optimizers() WHERE name = 'partitioned_execution'"
    ).fetchone()[0]:
        con.execute("SET disabled_optimizers = 'partitioned_execution'")
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
    # when every timestamp is in the future does staging scan again (`restage`).
    now = _now()
    try:
        cutoff = now if as_of is None else _parse_as_of(as_of)
    except DataError:
        cutoff = now  # raised where as_of is resolved, after the data's own problems
    staging: dict[str, Staging] = {}

    present = [t for t in TABLES if t in readers]
    for i, name in enumerate(present):
        _progress.info("", extra={"progress": (i + 1, len(present), "tables checked")})
        table, file = TABLES[name], names[name]
        n_examples = int(validation["examples"])
        with reading(file, n_examples):
            con.execute(f"CREATE VIEW raw_{name} AS SELECT * FROM {readers[name]}")
            schema = con.execute(f"DESCRIBE raw_{name}").fetchall()
        raw_cols, dtypes = [r[0] for r in schema], {r[0]: r[1] for r in schema}
        found, attrs, pii = map_columns(table, raw_cols, mapping.get(name, {}), file, privacy)
        if name == "customers":
            attributes = attrs
        # Customers and text sources (CSV) are parsed once: their typed rows, with a bit mask
        # of the checks each breaks, are kept in memory and every later step reads them.
        # Typed event tables (Parquet, DuckDB) stay views, read in one scan that checks them
        # and gathers what staging needs; when every row passes, later reads skip the parsing
        # (`plain_sql`): reading the file again is cheaper than holding 100M events in memory.
        # Their ids and texts are checked per distinct value first: a tidy column is read as
        # it is, and the rows probe only the unknown ids (`tidy_columns`, `unknown_ids`).
        held = name == "customers" or "read_csv" in readers[name]
        plain = (
            {} if held else {c: plain_sql(table.column(c), s, dtypes[s]) for c, s in found.items()}
        )
        compared = [c for c, got in plain.items() if got is not None and not got[1]]
        tidy = set()
        if not held and name != "customers":  # typed event tables: their distinct ids once
            with reading(file, n_examples):
                con.execute(
                    f"CREATE TEMP TABLE __ids_{name} AS "
                    f"SELECT DISTINCT {sql_name(found['customer_id'])} FROM raw_{name}"
                )
                tidy = tidy_columns(con, name, table, found, compared)
        compared = [c for c in compared if c not in tidy]
        # read plainly: a tidy column, and one whose plain reading always equals the parsed
        # one (an integer id: no trimming of every event's id written as text)
        plainly = {c: got[0] for c, got in plain.items() if c in tidy or (got and got[1])}
        dup = name == "customers"
        plains = {c: plain[c][0] for c in compared}
        sql = _staged_sql(table, found, attrs, dtypes, plainly, plains, dup, f"raw_{name}")
        con.execute(f"CREATE VIEW staged_{name} AS {sql}")
        checks = table_checks(table, found)
        bad = " OR ".join(f"({c.bad})" for c in checks) or "false"
        drop = ", ".join(
            [sql_name("__raw_" + c) for c in found]
            + [sql_name("__plain_" + c) for c in compared]
            + (["__row", "__dup"] if dup else [])
        )
        available[name] = list(found) + attrs
        # CSV events as DuckDB's reader types them, if it can: else parsed from their text
        typed = held and not dup and _held_typed(con, name, readers[name], file, table, found,
                                                 checks, drop)  # fmt: skip
        if held and not typed:
            with reading(file, n_examples):
                _hold(con, name, f"staged_{name}", checks, drop)
        if held:
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
            src = found["customer_id"]
            if held:
                ids = f"(SELECT DISTINCT customer_id FROM checked_{name})"
            elif "customer_id" in tidy:
                ids = f"(SELECT {sql_name(src)} AS customer_id FROM __ids_{name})"
            else:
                parsed = parse_sql(table.column("customer_id"), src, dtypes[src])
                ids = f"(SELECT DISTINCT {parsed} AS customer_id FROM __ids_{name})"
            flags.append(known_flag(name, unknown_ids(con, name, ids)))
            con.execute(f"DROP TABLE IF EXISTS __ids_{name}")
            profile = TableProfile.of(name, table, available[name], [])
            if held:
                sizes = {c: sql_name(c) for c in profile.numbers}
            else:  # a typed file's statistics tell, without a scan
                sizes = {c: sql_name(found[c]) for c in profile.numbers if plain[c] is not None}
            with reading(file, n_examples):
                bounds = value_bounds(con, rows if held else f"raw_{name}", sizes, ratio)
            extra += stage_aggregates(
                table.time_column, profile, sql_time(cutoff), sql_time(now), bounds
            )
            derived = stage_columns(table.time_column, sql_time(cutoff))
        with reading(file, n_examples):
            n_rows, n_bad, counts, values = scan_checks(
                con, f"(SELECT *, {', '.join(flags)} FROM {rows})", checks, extra, derived
            )
            failed = failed_checks(con, table, checks, counts, n_examples, privacy["salt"])
        for (col, reason), st in failed.items():
            ids = as_pseudonyms(privacy["salt"]) if table.column(col).kind == "id" else ""
            problems.append(
                f"{file}: column {col!r} {reason} in {st['rows']:,} of {n_rows:,} rows "
                f"(e.g. {', '.join(repr(e) for e in st['examples'])}{ids}){advice(reason, st)}"
            )
        if failed and quarantining:
            rows_out = quarantined_rows(con, name, found, attrs, checks)
            quarantine[name] = pseudonymized_rows(rows_out, table, privacy["salt"])
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
            staging[name] = Staging.of(values[len(compared) :], bounds)
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

    require_customers(con, quality["tables"]["customers"])
    as_of_ts = _resolve_as_of(staging, as_of, quality, now)
    if as_of is None and all(st.past is None for st in staging.values()):
        for name in staging:
            staging[name] = restage(con, name, available[name], as_of_ts, now, staging[name])
    salt = privacy["salt"]
    stage_views(con, staging, available, attributes, as_of_ts, quality, validation, salt)
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


def _staged_sql(table, found, attrs, dtypes, plainly, compared, dup, source) -> str:
    """Return SQL of a table's rows as the checks read them, from ``source`` (its raw rows).

    Each contract column parsed to its type (or read plainly: ``plainly``), its raw value
    (``__raw_<column>``), its plain reading where the checks compare the two
    (``__plain_<column>``), the attribute columns; with ``dup`` (customers), each row's
    number in the file and among the rows of its id (``__row``, ``__dup``).
    """
    select = [
        f"{plainly.get(c) or parse_sql(table.column(c), s, dtypes[s])} AS {sql_name(c)}"
        for c, s in found.items()
    ]
    raw = {c: raw_sql(table.column(c), s, dtypes[s]) for c, s in found.items()}
    raw |= {c: got for c, got in plainly.items() if table.column(c).kind in ("id", "text")}
    select += [f"{raw[c]} AS {sql_name('__raw_' + c)}" for c in found]
    select += [f"{q} AS {sql_name('__plain_' + c)}" for c, q in compared.items()]
    select += [sql_name(a) for a in attrs]
    if not dup:
        return f"SELECT {', '.join(select)} FROM {source}"
    select.insert(0, "row_number() OVER () AS __row")  # the first row of each id wins
    return (
        "SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY __row) AS __dup "
        f"FROM (SELECT {', '.join(select)} FROM {source})"
    )


def _hold(con, name, rows, checks, drop) -> None:
    """Keep ``rows`` (staged SQL) as ``checked_<name>``, with the mask of the checks each breaks."""
    con.execute(
        f"CREATE TEMP TABLE checked_{name} AS SELECT * EXCLUDE ({drop}), "
        f"{valid_mask(checks)} AS __bad FROM {rows}"
    )


def _held_typed(con, name, reader, file, table, found, checks, drop) -> bool:
    """Hold a CSV event table's checked rows as DuckDB's CSV reader types them; whether it did.

    The reader parses timestamps written ``YYYY-MM-DD HH:MM:SS`` (with a fraction of a
    second, or without, as the file's last rows are written) and numbers itself, as
    fast as it reads text, where parsing the text after costs most of a read again
    (README, Benchmarks); every other column stays text. Its values then equal `parse_sql`'s. Kept
    only when every row passes the checks: a value the reader refuses (another time
    format, a zone, a marker such as ``NA``) or a row a check flags, and the table is read
    as text, whose messages quote the file as it is written. Not tried when the file's last
    rows would be refused (`typed_tail_format`: rows appended by another tool), which the
    reader would find only at the end of the file.
    """
    types = {s: CSV_TYPES[table.column(c).kind] for c, s in found.items()
             if table.column(c).kind in CSV_TYPES}  # fmt: skip
    time_format = Path(file).is_file() and types and typed_tail_format(Path(file), types)
    if not time_format:
        return False
    dtypes = {s: types.get(s, "VARCHAR") for s in found.values()}
    typed = typed_csv(reader, types, time_format)
    sql = _staged_sql(table, found, [], dtypes, {}, {}, False, typed)
    try:
        _hold(con, name, f"({sql})", checks, drop)
    except duckdb.Error:
        return False
    if con.execute(f"SELECT count(*) FROM checked_{name} WHERE __bad <> 0").fetchone()[0]:
        con.execute(f"DROP TABLE checked_{name}")
        return False
    return True


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


def _now() -> pd.Timestamp:
    """Return the moment of the run, UTC without zone: later timestamps are in the future."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def _resolve_as_of(
    staging: dict[str, Staging], as_of: str | None, quality: dict, now: pd.Timestamp
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
