"""Read the contract tables from a Spark metastore: find them, then snapshot them to Parquet.

A data source written ``spark:<database>`` (``personas train --engine spark --data
spark:sales``) names tables of the Spark session's metastore instead of files: the
database's tables named as in the contract (``sales.customers``, ``sales.transactions``...),
with ``spark.tables`` in the config naming others (``{transactions: invoices}`` for a table
of the same database, ``{transactions: billing.invoices}`` for one elsewhere).

What runs where:

1. **Spark, before any work, finds the tables** (`resolve_tables`): a table the config
   names that the metastore lacks, or a database without customers, stops the run with
   one paragraph naming it and listing the tables the database has.
2. **Spark writes each table once as Parquet** (`snapshot`) into a staging folder, as it
   is (no column is renamed or cast): one extra write of the raw tables, which is the price
   of checking them exactly as a Parquet folder is checked.
3. **DuckDB checks the snapshot on the driver** (`features.load_data` reads the folder,
   each ``<table>.parquet`` a folder of Spark's part files), with the column mapping
   (``columns:``) and the contract's rules, so a valid row means the same whatever the
   source; then Spark computes the features from the checked tables
   (`features.spark.SparkEngine`).

This module needs only the session object it is given; it imports no pyspark.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from features.contract import TABLES, DataError

__all__ = ["PREFIX", "database_of", "is_metastore", "resolve_tables", "snapshot"]

logger = logging.getLogger(__name__)

#: How a data source names a metastore database: ``spark:<database>`` (``spark:`` alone:
#: the session's current database).
PREFIX = "spark:"


def is_metastore(source: str | Path) -> bool:
    """Whether a data source names metastore tables (``spark:<database>``).

    Parameters
    ----------
    source : str or Path
        The data source as the user gave it.

    Returns
    -------
    bool
        True for ``spark:`` sources.
    """
    return str(source).startswith(PREFIX)


def database_of(source: str | Path) -> str:
    """Return the database a ``spark:<database>`` source names (empty: the current one).

    Parameters
    ----------
    source : str or Path
        A metastore source.

    Returns
    -------
    str
        The database name, possibly empty.
    """
    return str(source)[len(PREFIX) :].strip()


def _listing(spark, database: str) -> str:
    names = sorted(t.name for t in spark.catalog.listTables(database) if not t.isTemporary)
    return ", ".join(names) if names else "none"


def _require_database(spark, database: str, why: str) -> None:
    if not spark.catalog.databaseExists(database):
        databases = sorted(d.name for d in spark.catalog.listDatabases())
        raise DataError(
            f"The Spark metastore has no database {database!r} ({why}); its databases are: "
            f"{', '.join(databases) or 'none'}."
        )


def resolve_tables(spark, database: str, tables: dict[str, str]) -> dict[str, str]:
    """Find the metastore table of each contract table, before any work.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        The session whose metastore (catalog) holds the tables.
    database : str
        The database of the source; empty for the session's current database.
    tables : dict of str to str
        ``spark.tables``: contract table -> metastore table; a name without a database is
        in ``database``. Contract tables not named are the database's tables of the same
        name, where it has them.

    Returns
    -------
    dict of str to str
        Per present contract table, in contract order, its qualified metastore name
        (``sales.customers``).

    Raises
    ------
    DataError
        When the database is missing, a named table is missing (the message lists the
        tables its database has), or there is no customers table or no other table.
    """
    database = database or spark.catalog.currentDatabase()
    _require_database(spark, database, f"the data source spark:{database}")
    present = {t.name.lower(): t.name for t in spark.catalog.listTables(database)}
    found: dict[str, str] = {}
    for table in TABLES:
        named = tables.get(table)
        if named is None:
            if table in present:
                found[table] = f"{database}.{present[table]}"
            continue
        qualified = named if "." in named else f"{database}.{named}"
        home = qualified.rsplit(".", 1)[0]
        _require_database(spark, home, f"spark.tables.{table} names {named!r}")
        if not spark.catalog.tableExists(qualified):
            raise DataError(
                f"The Spark metastore has no table {qualified} (spark.tables.{table} names "
                f"it); the tables of database {home} are: {_listing(spark, home)}. Name an "
                f"existing table in spark.tables, or create {qualified}."
            )
        found[table] = qualified
    if "customers" not in found:
        raise DataError(
            f"The Spark metastore database {database} has no customers table; it is required. "
            f"Its tables are: {_listing(spark, database)}. Name yours in the config "
            "(spark: {tables: {customers: <table>}})."
        )
    if len(found) == 1:
        raise DataError(
            f"The Spark metastore database {database} has only the customers table of the "
            f"contract (its tables: {_listing(spark, database)}); add or name in spark.tables "
            f"at least one of {', '.join(t for t in TABLES if t != 'customers')}."
        )
    return found


def snapshot(spark, tables: dict[str, str], folder: Path) -> Path:
    """Write each metastore table once, as it is, as Parquet: ``<folder>/<table>.parquet/``.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        The session.
    tables : dict of str to str
        Contract table -> qualified metastore table (`resolve_tables`).
    folder : Path
        An empty folder every executor can write and the driver can read.

    Returns
    -------
    Path
        ``folder``, a data source `features.load_data` reads like any Parquet folder.
    """
    start = time.perf_counter()
    for table, name in tables.items():
        spark.table(name).write.parquet(str(Path(folder) / f"{table}.parquet"))
    logger.info(
        "Spark: %d metastore tables (%s) written as Parquet to %s in %.1fs.",
        len(tables),
        ", ".join(tables.values()),
        folder,
        time.perf_counter() - start,
    )
    return Path(folder)
