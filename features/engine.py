"""Where the feature SQL runs, and the small SQL helpers the feature families share.

The builders describe their aggregations in plain SQL; the `Engine` runs it where the data
lives (DuckDB here, Spark at scale) and hands back pandas frames. The few expressions that
differ between engines are the `Dialect`.
"""

from __future__ import annotations

import re

import pandas as pd

from features.loading import LoadedData
from features.sql import sql_name, sql_text, sql_time

__all__ = ["Dialect", "Engine", "slug", "sql_text", "sql_time", "window_start"]


class Dialect:
    """The few SQL expressions that differ between engines (DuckDB by default).

    Everything else the builders write (``CASE``, ``COUNT(DISTINCT ...)``, window
    functions, ``date_trunc('day', ...)``, ``USING`` joins) reads the same in DuckDB and
    Spark SQL; see `features.spark.SparkDialect` for Spark's versions of these.
    """

    def days(self, start: str, end: str) -> str:
        """Fractional days from ``start`` to ``end`` (two timestamp expressions)."""
        return f"((epoch({end}) - epoch({start})) / 86400.0)"

    def quote(self, name: str) -> str:
        """Quote a column name as an identifier (an attribute column may hold spaces)."""
        return sql_name(name)

    def double(self, expr: str) -> str:
        """Return a decimal expression (``1.0``, ``5.0 * n``) as one that averages in floats.

        DuckDB already averages and divides decimals in doubles, so its version is
        ``expr`` itself; Spark keeps a fixed number of decimal places and casts.
        """
        return expr


class Engine:
    """Runs builder SQL on the loaded DuckDB tables and hands back pandas frames."""

    dialect = Dialect()

    def __init__(self, data: LoadedData):
        self.data = data

    def has(self, table: str, column: str | None = None) -> bool:
        """Whether a table (and optionally one of its columns) is present."""
        if table not in self.data.columns:
            return False
        return column is None or column in self.data.columns[table]

    def query(self, sql: str) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame."""
        return self.data.con.execute(sql).df()


def window_start(as_of: pd.Timestamp, days: int) -> str:
    """Return the SQL literal of the time ``days`` before ``as_of`` (windows are ``> start``)."""
    return sql_time(as_of - pd.Timedelta(days=days))


def slug(text) -> str:
    """Return a value as a lower-case snake_case name (``Web Visit`` -> ``web_visit``)."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", str(text).strip().lower()).strip("_")
    return name or "blank"
