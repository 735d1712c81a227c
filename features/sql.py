"""The project's one way to write names and values into SQL (DuckDB and Spark alike)."""

from __future__ import annotations

import pandas as pd

__all__ = ["sql_name", "sql_text", "sql_time"]


def sql_name(name: str) -> str:
    """Quote a table or column name as an identifier (a column may hold spaces or quotes)."""
    return '"' + str(name).replace('"', '""') + '"'


def sql_text(value) -> str:
    """Return the SQL string literal of ``value``."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_time(value: pd.Timestamp) -> str:
    """Return the SQL literal of a timestamp, to the microsecond (as_of may end at .999999)."""
    return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S.%f}'"
