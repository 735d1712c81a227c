"""Read the contract tables from a PostgreSQL schema, straight into DuckDB as Arrow.

A data source written as a URL, ``postgresql://user@host:port/database?schema=sales``
(``personas train --data ...``), names the tables of a schema instead of files: the
schema's tables named as in the contract (``sales.customers``, ``sales.transactions``...),
with the config's ``tables:`` naming others (``{transactions: invoices}`` for a table of the
same schema, ``{transactions: billing.invoices}`` for one elsewhere). Without ``?schema=``
the schema is ``public``; other query parameters are libpq's (``sslmode=require``...).

What runs where:

1. **Before any work, the tables are found** (`check`, `resolve_tables`): a wrong host,
   port, user, password, database or schema, or a missing table, stops the run with one
   paragraph naming it (and listing the schemas or tables there are).
2. **Each table is read once, whole, with ADBC's PostgreSQL driver** (libpq's binary
   ``COPY``), as a stream of Arrow record batches that DuckDB copies into a table of its
   own (`read_tables`): no Python object per row, no pandas. The columns keep their
   PostgreSQL types (``timestamp``, ``double precision``, ``bigint``; ``numeric`` comes as
   text and is parsed like a CSV value).
3. **DuckDB checks those tables exactly as it checks a Parquet folder**
   (`features.load_data`), with the column mapping (``columns:``) and the contract's
   rules; messages name ``table sales.transactions``.

The password is never in the URL nor in the config: libpq takes it from ``$PGPASSWORD`` or
``~/.pgpass`` (``$PGPASSFILE``), as ``psql`` does. A URL that holds one is refused, so no
message, log line or MLflow record can show it; `shown` is the URL as they print it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import urllib.parse
from dataclasses import dataclass

from features.contract import TABLES, DataError
from features.sql import sql_name, sql_text

__all__ = [
    "PREFIXES",
    "PgUrl",
    "check",
    "connect",
    "is_postgres",
    "parse_url",
    "read_tables",
    "resolve_tables",
    "shown",
]

logger = logging.getLogger(__name__)

#: How a data source names a PostgreSQL database.
PREFIXES = ("postgresql://", "postgres://")

#: Seconds libpq waits for a server before giving up (unless the URL sets connect_timeout).
CONNECT_TIMEOUT = 10

_AUTH = (
    "the password comes from $PGPASSWORD or ~/.pgpass (libpq's conventions), never from the "
    "URL or the config"
)


def is_postgres(source: object) -> bool:
    """Whether a data source is a PostgreSQL URL (``postgresql://...``).

    Parameters
    ----------
    source : object
        The data source as the user gave it (a str or a Path).

    Returns
    -------
    bool
        True for ``postgresql://`` and ``postgres://`` URLs.
    """
    return isinstance(source, str) and source.startswith(PREFIXES)


@dataclass(frozen=True)
class PgUrl:
    """A parsed PostgreSQL URL.

    Attributes
    ----------
    dsn : str
        The libpq connection URI (no ``schema`` parameter, a ``connect_timeout``).
    schema : str
        The schema the contract tables are in.
    shown : str
        The URL as messages, logs and MLflow show it (never with a password).
    """

    dsn: str
    schema: str
    shown: str


def shown(url: str) -> str:
    """Return a URL with any password replaced by ``***``.

    Parameters
    ----------
    url : str
        A URL, perhaps ``scheme://user:secret@host/...``.

    Returns
    -------
    str
        The same URL without the secret.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def parse_url(url: str, what: str = "the data source", default_schema: str = "public") -> PgUrl:
    """Split a ``postgresql://`` URL into the libpq URI and the schema.

    Parameters
    ----------
    url : str
        ``postgresql://user@host:port/database?schema=sales`` (other query parameters are
        passed to libpq).
    what : str
        What the URL is, for messages (``the data source``, ``publish``).
    default_schema : str
        The schema when the URL names none.

    Returns
    -------
    PgUrl
        The connection URI, the schema and the shown URL.

    Raises
    ------
    DataError
        When the URL holds a password or names no host.
    """
    parts = urllib.parse.urlsplit(url)
    safe = shown(url)
    if parts.password is not None:
        raise DataError(
            f"The URL of {what} ({safe}) holds a password; remove it from the URL: {_AUTH} "
            "(export PGPASSWORD=..., or a line host:port:database:user:password in ~/.pgpass "
            "with mode 0600)."
        )
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    schema = schemas[-1].strip() if schemas else default_schema
    if not schema:
        raise DataError(f"The URL of {what} ({safe}) has an empty ?schema=.")
    rest = [(k, v) for k, v in query if k != "schema"]
    if not any(k == "connect_timeout" for k, _ in rest):
        rest.append(("connect_timeout", str(CONNECT_TIMEOUT)))
    dsn = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest)))
    return PgUrl(dsn=dsn, schema=schema, shown=safe)


def connect(url: PgUrl, what: str = "read the data"):
    """Open an ADBC connection (autocommit off), or stop with one paragraph saying why.

    Parameters
    ----------
    url : PgUrl
        The parsed URL.
    what : str
        What the connection is for, for messages.

    Returns
    -------
    adbc_driver_manager.dbapi.Connection
        The connection; the caller closes it.

    Raises
    ------
    DataError
        When the driver is missing or the server refuses or cannot be reached.
    """
    try:
        import adbc_driver_postgresql.dbapi as pg
    except ImportError as error:  # a dependency of the project; a broken install only
        raise DataError(
            "Reading from or writing to PostgreSQL needs the ADBC driver "
            "(pip install adbc-driver-postgresql), which is not installed."
        ) from error
    try:
        return pg.connect(url.dsn)
    except pg.Error as error:
        reason = _reason(error)
        raise DataError(
            f"Cannot connect to PostgreSQL to {what} at {url.shown}: {reason}. Check the "
            f"host, port, user and database in the URL; {_AUTH}."
        ) from None


def _reason(error: Exception) -> str:
    """Return libpq's own words for a failure, on one line, without the driver's prefix."""
    text = " ".join(str(error).split())
    for prefix in ("IO: ", "[libpq] ", "Failed to connect: "):
        text = text.removeprefix(prefix)
    return text.rstrip(".")


def _rows(conn, sql: str) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def _relations(conn, schema: str) -> dict[str, str]:
    """Return the tables and views of a schema: lower-case name -> name."""
    rows = _rows(
        conn,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {sql_text(schema)} AND c.relkind IN ('r', 'v', 'm', 'p', 'f') "
        "ORDER BY c.relname",
    )
    found: dict[str, str] = {}
    for (name,) in rows:
        found.setdefault(name.lower(), name)
        if name == name.lower():
            found[name] = name
    return found


def _listing(conn, schema: str) -> str:
    names = sorted(_relations(conn, schema).values())
    return ", ".join(names) if names else "none"


def _require_schema(conn, schema: str, url: PgUrl, why: str) -> None:
    present = [r[0] for r in _rows(conn, "SELECT nspname FROM pg_namespace ORDER BY nspname")]
    if schema in present:
        return
    visible = [s for s in present if not s.startswith(("pg_", "information_schema"))]
    raise DataError(
        f"The PostgreSQL database at {url.shown} has no schema {schema!r} ({why}); its "
        f"schemas are: {', '.join(visible) or 'none'}."
    )


def resolve_tables(conn, url: PgUrl, tables: dict[str, str] | None = None) -> dict[str, str]:
    """Find the table of each contract table, before any work.

    Parameters
    ----------
    conn : adbc_driver_manager.dbapi.Connection
        An open connection.
    url : PgUrl
        The data source (its ``schema``).
    tables : dict of str to str, optional
        The config's ``tables:``, contract table -> the user's table; a name without a
        schema is in the source's schema. Contract tables not named are the schema's
        tables of the same name, where it has them.

    Returns
    -------
    dict of str to str
        Per present contract table, in contract order, ``(schema, table)`` joined as
        ``schema.table``; both parts are the names as PostgreSQL spells them.

    Raises
    ------
    DataError
        When the schema is missing, a named table is missing (the message lists the tables
        its schema has), or there is no customers table or no other table.
    """
    tables = tables or {}
    schema = url.schema
    _require_schema(conn, schema, url, f"the data source {url.shown}")
    present = _relations(conn, schema)
    found: dict[str, str] = {}
    for table in TABLES:
        named = tables.get(table)
        if named is None:
            if table in present:
                found[table] = f"{schema}.{present[table]}"
            continue
        home, name = named.rsplit(".", 1) if "." in named else (schema, named)
        if home != schema:
            _require_schema(conn, home, url, f"tables.{table} names {named!r}")
        there = present if home == schema else _relations(conn, home)
        real = there.get(name) or there.get(name.lower())
        if real is None:
            raise DataError(
                f"The PostgreSQL database at {url.shown} has no table {home}.{name} "
                f"(tables.{table} names it); the tables of schema {home} are: "
                f"{_listing(conn, home)}. Name an existing table in tables:, or create it."
            )
        found[table] = f"{home}.{real}"
    if "customers" not in found:
        raise DataError(
            f"The PostgreSQL schema {schema} at {url.shown} has no customers table; it is "
            f"required. Its tables are: {_listing(conn, schema)}. Name yours in the config "
            "(tables: {customers: <table>})."
        )
    if len(found) == 1:
        raise DataError(
            f"The PostgreSQL schema {schema} at {url.shown} has only the customers table of "
            f"the contract (its tables: {_listing(conn, schema)}); add, or name in tables:, at "
            f"least one of {', '.join(t for t in TABLES if t != 'customers')}."
        )
    return found


def check(source: str, tables: dict[str, str] | None = None) -> dict[str, str]:
    """Connect and find the tables, then disconnect: a bad URL or table stops here.

    Parameters
    ----------
    source : str
        The ``postgresql://`` URL.
    tables : dict of str to str, optional
        The config's ``tables:``.

    Returns
    -------
    dict of str to str
        Contract table -> ``schema.table`` (`resolve_tables`).
    """
    url = parse_url(source)
    conn = connect(url)
    try:
        return resolve_tables(conn, url, tables)
    finally:
        conn.close()


def read_tables(
    con, source: str, tables: dict[str, str] | None = None, into: str = "pg"
) -> tuple[dict[str, str], dict[str, str], dict[str, bytes]]:
    """Copy the contract tables of a schema into DuckDB, as Arrow, and digest them.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        The connection the tables are checked in.
    source : str
        The ``postgresql://`` URL.
    tables : dict of str to str, optional
        The config's ``tables:``.
    into : str
        The DuckDB schema the copies go to.

    Returns
    -------
    readers : dict of str to str
        Per present contract table, the DuckDB table holding its copy.
    names : dict of str to str
        How messages name each table (``table sales.transactions``) and the whole source
        (``source``: the URL, without a password).
    digests : dict of str to bytes
        Per table, a digest of its content (every row, in any order).

    Raises
    ------
    DataError
        As `resolve_tables`, or when a table cannot be read.
    """
    url = parse_url(source)
    conn = connect(url)
    readers, names, digests = {}, {"source": url.shown}, {}
    try:
        found = resolve_tables(conn, url, tables)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {into}")
        for table, qualified in found.items():
            schema, name = qualified.rsplit(".", 1)
            start = time.perf_counter()
            target = f"{into}.{sql_name(table)}"
            with conn.cursor() as cur:
                try:
                    cur.execute(f"SELECT * FROM {sql_name(schema)}.{sql_name(name)}")
                    stream = cur.fetch_record_batch()
                except Exception as error:  # the driver's errors have no common base here
                    raise DataError(
                        f"table {qualified} at {url.shown} could not be read: {_reason(error)}."
                    ) from None
                view = f"__pg_stream_{table}"
                con.register(view, stream)
                try:
                    con.execute(f"CREATE TABLE {target} AS SELECT * FROM {view}")
                finally:
                    con.unregister(view)
                    stream.close()  # the connection takes no other query until it is
            n, digest = con.execute(f"SELECT count(*), {_content_hash(con, target)}").fetchall()[0]
            readers[table] = target
            names[table] = f"table {qualified}"
            digests[table] = hashlib.sha256(f"{n}:{digest}".encode()).digest()
            logger.info(
                "PostgreSQL: %s, %d rows read in %.1fs.",
                qualified,
                n,
                time.perf_counter() - start,
            )
    finally:
        with contextlib.suppress(Exception):  # read-only: nothing to keep
            conn.rollback()
        conn.close()
    return readers, names, digests


def _content_hash(con, table: str) -> str:
    """Return SQL of an order-free hash of every row of ``table`` (with its FROM clause)."""
    columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
    cells = ", ".join(sql_name(c) for c in columns)
    return f"sum(hash({cells})::HUGEINT) FROM {table}"
