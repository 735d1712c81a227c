"""Find the tables of a data source and read their files, or say why a file cannot be read.

CSV files are read with the field separator of their header row (a comma, as the contract
says, or a semicolon, tab or bar), double quotes and every value as text: DuckDB's own
sniffing would take ``a;b`` ids in a one-column file for two columns, or strip the quotes
of ``'a'``. What DuckDB cannot read becomes a `DataError` in words: an empty file, a file
that is not UTF-8 (and which encoding it looks like), rows with more or fewer fields than
the header.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from features.contract import TABLES, DataError
from features.sql import sql_name, sql_text

__all__ = [
    "DB_SUFFIXES",
    "SUFFIXES",
    "csv_delimiter",
    "describe_read_error",
    "empty_file_error",
    "file_digest",
    "file_of",
    "find_sources",
    "ragged_rows_error",
    "reading",
]

SUFFIXES = (".parquet", ".csv", ".csv.gz")
DB_SUFFIXES = (".duckdb", ".db", ".ddb")
_DELIMITERS = (",", ";", "\t", "|")
_BOMS = {b"\xff\xfe": "UTF-16 (little-endian)", b"\xfe\xff": "UTF-16 (big-endian)"}


def csv_delimiter(path: Path) -> str:
    """Return the field separator of a CSV file: the one that splits its header most.

    Parameters
    ----------
    path : Path
        A CSV file, plain or gzipped.

    Returns
    -------
    str
        ``,`` (also for a one-column file, or a tie), ``;``, a tab or ``|``.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = fh.readline()
    fields = {d: len(next(csv.reader([header], delimiter=d), [])) for d in _DELIMITERS}
    return max(_DELIMITERS, key=fields.__getitem__)


def _reader(path: Path) -> str:
    """Return the SQL table function that reads a table's file, every CSV value as text.

    A ``<table>.parquet`` folder is a Parquet dataset as Spark writes it: its part files.
    """
    if path.suffix == ".parquet":
        files = path / "*.parquet" if path.is_dir() else path
        return f"read_parquet({sql_text(str(files))})"
    lenient = ", strict_mode=false" if mixed_line_endings(path) else ""
    return (
        f"read_csv({sql_text(str(path))}, header=true, all_varchar=true, "
        f"delim={sql_text(csv_delimiter(path))}, quote='\"', escape='\"'{lenient})"
    )


#: What DuckDB's CSV reader parses itself, by kind of contract column (`typed_csv`)
CSV_TYPES = {"timestamp": "TIMESTAMP", "number": "DOUBLE", "integer": "DOUBLE"}
#: The time formats the reader is given, one per file (`features.checks.parse_sql` tries
#: the first itself; it reads the second, with a fraction of a second, as the reader does)
CSV_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f")


def typed_csv(reader: str, types: dict[str, str], time_format: str) -> str:
    """Return `_reader`'s SQL of a CSV file with these column types rather than all text.

    Columns not in ``types`` stay text. Timestamps must be written as ``time_format`` (one
    of `CSV_TIME_FORMATS`): the reader parses it exactly as ``strptime`` does, and refuses
    anything else rather than guess (it would read ``10:00:00+02:00`` as 10:00, dropping
    the offset).
    """
    spec = ", ".join(f"{sql_text(c)}: {sql_text(t)}" for c, t in types.items())
    typed = f"all_varchar=true, types={{{spec}}}, timestampformat={sql_text(time_format)}"
    return reader.replace("all_varchar=true", typed)


def typed_tail_format(path: Path, types: dict[str, str], probe: int = 1 << 16) -> str | None:
    """Return the time format of a CSV file's last rows if `typed_csv` reads them, else None.

    The first of `CSV_TIME_FORMATS` in which every timestamp of those rows is written
    (the first when they hold none), provided their numbers read as numbers. Rows appended
    by another tool come last and may write times their own way (a ``T``, a zone): the
    typed reader would refuse them only after reading the whole file. Only the last
    ``probe`` bytes are looked at (a gzipped file is not: its end is the whole file, and
    the first format is tried); a row split across lines by a quoted line break is skipped.
    """
    if path.suffix == ".gz":
        return CSV_TIME_FORMATS[0]
    delimiter, size = csv_delimiter(path), path.stat().st_size
    with path.open("rb") as fh:
        first = fh.readline().decode("utf-8-sig", "replace")
        header = next(csv.reader([first], delimiter=delimiter))
        start = max(size - probe, fh.tell())
        fh.seek(start)
        lines = fh.read().decode("utf-8", "replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first may be the end of a row
    columns = {i: types[c] for i, c in enumerate(header) if c in types}
    times = []
    for row in csv.reader(lines, delimiter=delimiter):
        if len(row) != len(header):
            continue
        for i, kind in columns.items():
            value = row[i].strip()
            if value and kind == "TIMESTAMP":
                times.append(value)
            elif value:
                try:
                    float(value)
                except ValueError:
                    return None
    for time_format in CSV_TIME_FORMATS:
        try:
            for value in times:
                dt.datetime.strptime(value, time_format)
        except ValueError:
            continue
        return time_format
    return None


def mixed_line_endings(path: Path, probe: int = 1 << 16) -> bool:
    """Whether a CSV file ends its lines both with CRLF and with LF.

    Rows appended by another tool do that; DuckDB's strict reader then fails to sniff the
    file ("invalid state"), so it is read leniently instead. Only the first and last
    ``probe`` bytes are looked at: appended rows are at the end.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(probe)
        fh.seek(max(size - probe, 0))
        tail = fh.read(probe)
    endings = set()
    for chunk in (head, tail):
        crlf = chunk.count(b"\r\n")
        if crlf:
            endings.add("crlf")
        if chunk.count(b"\n") > crlf:
            endings.add("lf")
    return len(endings) > 1


def find_sources(source: Path, tables: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """Return the kind of source and, per present table, the SQL that reads it raw.

    Parameters
    ----------
    source : Path
        A folder of CSV and Parquet files (a ``<table>.parquet`` folder of part files, as
        Spark writes a table, counts as one Parquet file), or a DuckDB database file.
    tables : dict of str to str, optional
        The config's ``tables:``: contract table -> the name the source gives it (the file
        stem in a folder, the table in a DuckDB file); a named table must exist.

    Returns
    -------
    kind : {"folder", "duckdb"}
        What the source is.
    readers : dict of str to str
        Per present table, the SQL (a table function or a table name) that reads it.

    Raises
    ------
    DataError
        If the source does not exist, a table is given twice, a table named in ``tables``
        is missing, or a CSV file is empty.
    """
    tables = tables or {}
    if not source.exists():
        hint = (
            " Tables of a Spark metastore (spark:<database>) are read by `personas train "
            "--engine spark` only."
            if str(source).startswith("spark:")
            else ""
        )
        if str(source).startswith(("postgresql:", "postgres:")):
            hint = " A PostgreSQL URL is written postgresql://user@host:port/database?schema=..."
        raise DataError(f"Data source {source} does not exist.{hint}")
    if source.is_file() and source.suffix in DB_SUFFIXES:
        con = duckdb.connect(str(source), read_only=True)
        try:
            names = {
                r[0]
                for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
            }
        finally:
            con.close()
        for table, named in tables.items():
            if named not in names:
                raise DataError(
                    f"{source} has no table {named!r} (tables.{table} names it); its tables "
                    f"are: {', '.join(sorted(names)) or 'none'}."
                )
        return "duckdb", {
            t: f"src.main.{sql_name(tables.get(t, t))}" for t in TABLES if tables.get(t, t) in names
        }
    if not source.is_dir():
        raise DataError(
            f"Data source {source} is neither a folder of CSV/Parquet files nor a DuckDB file "
            f"({', '.join(DB_SUFFIXES)})."
        )
    found: dict[str, str] = {}
    for table in TABLES:
        stem = tables.get(table, table)
        files = [source / f"{stem}{s}" for s in SUFFIXES if (source / f"{stem}{s}").exists()]
        if len(files) > 1:
            raise DataError(
                f"Table {table} is given twice in {source} ({', '.join(f.name for f in files)}); "
                "keep one file per table."
            )
        if not files and table in tables:
            raise DataError(
                f"{source} has no file {stem}.csv or {stem}.parquet (tables.{table} names "
                f"{stem!r}); its files are: "
                f"{', '.join(sorted(p.name for p in source.iterdir())) or 'none'}."
            )
        if files:
            problem = empty_file_error(files[0], table)
            if problem:
                raise DataError(problem)
            found[table] = _reader(files[0])
    return "folder", found


def file_of(source: Path, kind: str, table: str, tables: dict[str, str] | None = None) -> str:
    """Return the name of a table's file, as messages quote it (``tables``: as `find_sources`)."""
    stem = (tables or {}).get(table, table)
    if kind == "duckdb":
        return f"{source} (table {stem})"
    return next(str(source / f"{stem}{s}") for s in SUFFIXES if (source / f"{stem}{s}").exists())


def file_digest(source: Path, kind: str, table: str, tables: dict[str, str] | None = None) -> bytes:
    """Return a cheap content digest: the size and the first and last MiB of the file.

    A Parquet dataset folder is digested part file by part file, in name order.
    """
    if kind == "duckdb":
        return b""
    path = Path(file_of(source, kind, table, tables))
    if path.is_dir():
        return b"".join(_digest(part) for part in sorted(path.glob("*.parquet")))
    return _digest(path)


def _digest(path: Path) -> bytes:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), 2)
            digest.update(fh.read())
    return digest.digest()


@contextmanager
def reading(file: str, n_examples: int) -> Iterator[None]:
    """Turn DuckDB's failure to read a table's file into a `DataError` that says why.

    Parameters
    ----------
    file : str
        The table's file, as `file_of` names it.
    n_examples : int
        How many offending lines a message quotes.

    Yields
    ------
    None
        The block that reads the file.
    """
    try:
        yield
    except duckdb.Error as error:
        raise DataError(describe_read_error(Path(file), error, n_examples)) from error


def empty_file_error(path: Path, table: str) -> str | None:
    """Return the error for a CSV file with nothing in it (not even a header), else None.

    Parameters
    ----------
    path : Path
        The CSV file.
    table : str
        The contract table it holds.

    Returns
    -------
    str or None
        A one-paragraph message, or None when the file has content.
    """
    if path.suffix != ".csv":
        return None
    size = path.stat().st_size
    if size > 1 << 16:
        return None
    text = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    if text.strip():
        return None
    leave_out = (
        "customers is required, so re-export it"
        if table == "customers"
        else f"re-export it, or remove the file to leave the {table} table out"
    )
    return (
        f"{path} is empty ({size} bytes, not even a header row): 0 rows, no columns; {leave_out}."
    )


def ragged_rows_error(path: Path, n_examples: int) -> str | None:
    """Return the error for a CSV whose rows do not all have the header's number of fields.

    Only called when DuckDB could not read the file; the scan is plain Python.

    Parameters
    ----------
    path : Path
        The CSV file (UTF-8, with the separator of its header row).
    n_examples : int
        How many offending lines to quote.

    Returns
    -------
    str or None
        A one-paragraph message naming the lines, or None when every row has as many
        fields as the header.
    """
    if path.suffix != ".csv":
        return None
    bad, total, examples, sep = 0, 0, [], csv_delimiter(path)
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=sep)
        width = len(next(reader, []))
        for row in reader:
            total += bool(row)
            if row and len(row) != width:
                bad += 1
                if len(examples) < n_examples:
                    examples.append(f"line {reader.line_num}: {sep.join(row)[:80]!r}")
    if not bad:
        return None
    return (
        f"{path}: {bad:,} of {total:,} rows do not have the header's {width} fields (e.g. "
        f"{'; '.join(examples)}). A value that holds the separator {sep!r} must be quoted "
        f'("1{sep}200"); re-export the file as UTF-8 CSV with a header row.'
    )


def describe_read_error(path: Path, error: duckdb.Error, n_examples: int) -> str:
    """Explain, in one paragraph, why DuckDB could not read a table's file.

    Parameters
    ----------
    path : Path
        The file (CSV or Parquet).
    error : duckdb.Error
        What DuckDB raised.
    n_examples : int
        How many offending lines to quote.

    Returns
    -------
    str
        The message: an encoding that is not UTF-8 (and which one it looks like), rows with
        the wrong number of fields, or DuckDB's own first line.
    """
    text = str(error)
    line = re.search(r"Line:\s*(\d+)", text)
    where = f" (line {line.group(1)})" if line else ""
    if path.is_file() and path.suffix == ".csv":
        bad_line = _first_non_utf8_line(path)
        if bad_line is not None:
            looks = _BOMS.get(path.read_bytes()[:2])
            if looks is None:
                looks = "Latin-1 / Windows-1252" if _decodes_as_cp1252(path) else "another encoding"
            return (
                f"{path} is not UTF-8 text (line {bad_line}): it looks like {looks}. The "
                "contract wants UTF-8 (a byte-order mark is fine); re-export the file as UTF-8 "
                "CSV."
            )
        ragged = ragged_rows_error(path, n_examples)
        if ragged:
            return ragged
    first = next((s.strip() for s in text.splitlines() if s.strip()), type(error).__name__)
    return f"{path} could not be read{where}: {first}"


def _first_non_utf8_line(path: Path) -> int | None:
    """Return the number of the first line that is not UTF-8, or None if all are."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def _decodes_as_cp1252(path: Path) -> bool:
    try:
        path.read_bytes()[: 1 << 20].decode("cp1252")
    except UnicodeDecodeError:
        return False
    return True
