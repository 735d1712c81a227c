"""Where the feature SQL runs, and the small SQL helpers the feature families share.

The builders describe their aggregations in plain SQL; the `Engine` runs it where the data
lives (DuckDB here, Spark at scale) and hands back pandas frames. The few expressions that
differ between engines are the `Dialect`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import TypeVar

import pandas as pd

from features.loading import LoadedData
from features.sql import sql_name, sql_text, sql_time

__all__ = ["Dialect", "Engine", "slug", "sql_text", "sql_time", "window_start"]

T = TypeVar("T")

#: DuckDB types that come back from Arrow as DuckDB's own ``df()`` gives them (`Engine.query`)
_ARROW_SAFE = (
    "DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "BOOLEAN",
    "TIMESTAMP", "DATE", "DECIMAL",
)  # fmt: skip

#: Up to this many possible values, `Dialect.distinct_days` and `Dialect.distinct_positions`
#: count in bits per customer (`_bit_count`); beyond, as ``COUNT(DISTINCT ...)``.
MAX_BITS = 1024


class Dialect:
    """The few SQL expressions that differ between engines (DuckDB by default).

    Everything else the builders write (``CASE``, ``COUNT(DISTINCT ...)``, window
    functions, ``date_trunc('day', ...)``, ``USING`` joins) reads the same in DuckDB and
    Spark SQL; see `features.spark.SparkDialect` for Spark's versions of these.
    """

    def days(self, start: str, end: str) -> str:
        """Fractional days from ``start`` to ``end`` (two timestamp expressions)."""
        return f"((epoch({end}) - epoch({start})) / 86400.0)"

    def micros(self, start: str, end: str) -> str:
        """Whole microseconds from ``start`` to ``end``: an integer, which sums exactly."""
        return f"date_diff('microsecond', {start}, {end})"

    def quote(self, name: str) -> str:
        """Quote a column name as an identifier (an attribute column may hold spaces)."""
        return sql_name(name)

    def double(self, expr: str) -> str:
        """Return a decimal expression (``1.0``, ``5.0 * n``) as one that averages in floats.

        DuckDB already averages and divides decimals in doubles, so its version is
        ``expr`` itself; Spark keeps a fixed number of decimal places and casts.
        """
        return expr

    def arg_min(self, value: str, key: str) -> str:
        """Aggregate: ``value`` of the row with the smallest ``key`` (Spark: ``min_by``)."""
        return f"arg_min({value}, {key})"

    def distinct_days(self, timestamp: str, start: pd.Timestamp, days: int) -> str:
        """Aggregate: the exact number of distinct calendar days of ``timestamp``.

        ``timestamp`` is NULL or a time after ``start`` and at most ``days`` days later.
        DuckDB's ``COUNT(DISTINCT ...)`` keeps a hash set per group, which costs more than
        the rest of a scan of a hundred million events: each day sets one bit per customer
        instead (`_bit_count`), and the count is the set bits.
        """
        if days + 2 > MAX_BITS:
            return f"COUNT(DISTINCT CAST({timestamp} AS DATE))"
        day = f"date_diff('day', DATE '{start:%Y-%m-%d}', CAST({timestamp} AS DATE))"
        return _bit_count(day, 0, days + 1)

    def position(self, values: list[str], expr: str) -> str:
        """Return SQL of the 1-based position of ``expr`` in ``values`` (NULL for NULL)."""
        return f"list_position([{', '.join(sql_text(v) for v in values)}], {expr})"

    def distinct_positions(self, position: str, expr: str, n: int) -> str:
        """Aggregate: the exact number of distinct values of ``expr``, NULL or one of n values.

        ``position`` is the value's position among them (`position`). As `distinct_days`,
        one bit per value; beyond `MAX_BITS` values, ``COUNT(DISTINCT expr)``.
        """
        if not n or n > MAX_BITS:
            return f"COUNT(DISTINCT {expr})"
        return _bit_count(position, 1, n)

    def purchase_gaps(self, bought: str) -> str:
        """Return SQL of one row per customer of ``bought``: the gaps between purchase days.

        ``bought`` is SQL of purchases (``customer_id``, ``day``, ``amount``). The columns:
        ``purchase_days`` (distinct days), ``first_day``, ``last_day``, ``spend`` (the
        amounts' total, each rounded to 6 places, then the total) and ``gap_mean`` and
        ``gap_cv`` (mean and coefficient of variation of the days between consecutive
        purchase days; NULL with fewer than two gaps). Each customer's distinct days are
        sorted in a list: neither a grouping by customer and day (as many groups as
        purchases) nor a window function over every purchase, which took twice as long
        and grew faster than the purchases.
        """
        gaps = f"list_transform(d[2:], lambda v, i: {self.days('d[i]', 'v')})"
        return f"""
          SELECT customer_id, len(d) AS purchase_days, d[1] AS first_day, d[-1] AS last_day,
            spend,
            CASE WHEN len(d) >= 3 THEN list_avg(g) END AS gap_mean,
            CASE WHEN len(d) >= 3 THEN list_stddev_samp(g) / list_avg(g) END AS gap_cv
          FROM (SELECT *, {gaps} AS g FROM (
            SELECT customer_id, list_sort(list_distinct(list(day))) AS d,
              ROUND(SUM(ROUND(amount, 6)), 6) AS spend
            FROM ({bought}) GROUP BY customer_id))"""


def _bit_count(value: str, low: int, high: int) -> str:
    """Aggregate: the number of distinct values of ``value``, NULL or in ``[low, high]``.

    Each value sets one bit, and the count is the set bits. Up to 126 values the bits are
    a 128-bit integer's (``bit_or``), which DuckDB aggregates faster than a bit string
    (``bitstring_agg``, up to `MAX_BITS`).
    """
    if high - low < 126:
        bit = f"CAST(1 AS HUGEINT) << CAST({value} - {low} AS HUGEINT)"
        return f"CAST(COALESCE(bit_count(bit_or({bit})), 0) AS BIGINT)"
    return f"COALESCE(bit_count(bitstring_agg({value}, {low}, {high})), 0)"


class Engine:
    """Runs builder SQL on the loaded DuckDB tables and hands back pandas frames."""

    dialect = Dialect()

    def __init__(self, data: LoadedData):
        self.data = data
        self._shared: dict[tuple, object] = {}

    def has(self, table: str, column: str | None = None) -> bool:
        """Whether a table (and optionally one of its columns) is present."""
        if table not in self.data.columns:
            return False
        return column is None or column in self.data.columns[table]

    def query(self, sql: str) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame, as DuckDB's ``df()`` gives it.

        Text columns (a million customer ids a family) come through Arrow: pandas' ``str``
        columns are Arrow arrays, so no Python string is made per value, which cost most
        of what fetching a family took. The other columns are DuckDB's ``df()`` of that
        Arrow result, with its types; a result of other types, or of no rows, is
        ``df()``'s whole. The query runs with ``execute`` (DuckDB's relation API refuses a
        connection whose last result was not read to its end, as ``fetchone`` leaves it).
        """
        con = self.data.con
        result = con.execute(sql)
        names = [d[0] for d in result.description]
        types = [str(d[1]) for d in result.description]
        text = [c for c, t in zip(names, types, strict=True) if t == "VARCHAR"]
        if not text or not all(t == "VARCHAR" or t.startswith(_ARROW_SAFE) for t in types):
            return result.df()
        with warnings.catch_warnings():  # "an extra copy of the rows": of Arrow buffers, cheap
            warnings.filterwarnings("ignore", "Arrow output on a DB-API result", UserWarning)
            table = result.to_arrow_table()
        if not table.num_rows:  # no rows to convert: df() gives the empty columns' types
            return con.from_arrow(table).df()
        rest = [c for c in names if c not in text]
        if not rest:
            return table.to_pandas()
        frame = con.from_arrow(table.select(rest)).df()
        for c in text:
            frame.insert(names.index(c), c, table[c].to_pandas())
        return frame

    def values(self, table: str, column: str, where: str) -> tuple[list, bool]:
        """Return the distinct values of a column among the rows meeting ``where``, or more.

        Returns the sorted non-NULL values and whether the list is exact. Over the rows of
        a checked table (`checked`), before its view leaves out unknown customers and rows
        after ``as_of``, DuckDB reads a Parquet column's dictionaries rather than every
        row: a few of the values may then be absent from the view's rows meeting
        ``where``, and a caller that needs the exact list checks them.
        """
        q = self.dialect.quote(column)
        checked = self.checked(table)
        source = f"valid_{table}" if checked else f"{table} WHERE {where}"
        rows = self.query(f"SELECT DISTINCT {q} AS v FROM {source}")["v"].dropna()
        return sorted(str(v) for v in rows), not checked

    def checked(self, table: str) -> bool:
        """Whether the checks left the table's valid rows as ``valid_<table>`` (`load_data`).

        A bucket's views of Spark's staged files (`pipelines.cluster_table`) have none.
        """
        return bool(
            self.data.con.execute(
                "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [f"valid_{table}"]
            ).fetchone()[0]
        )

    def shared(self, key: tuple, compute: Callable[[], T]) -> T:
        """Return ``compute()``, computed once per engine and ``key``.

        One scan of a table serves several feature families (usage and usage mix) or
        stages (RFM scores and the CLV summary). ``key`` starts with the table read and
        names everything else the result depends on.
        """
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]  # type: ignore[return-value]

    def release(self, *tables: str) -> None:
        """Forget the shared results that read these tables (see `shared`)."""
        self._shared = {k: v for k, v in self._shared.items() if k[0] not in tables}


def window_start(as_of: pd.Timestamp, days: int) -> str:
    """Return the SQL literal of the time ``days`` before ``as_of`` (windows are ``> start``)."""
    return sql_time(as_of - pd.Timedelta(days=days))


def slug(text) -> str:
    """Return a value as a lower-case snake_case name (``Web Visit`` -> ``web_visit``)."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", str(text).strip().lower()).strip("_")
    return name or "blank"
