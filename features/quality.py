"""The data-quality summary of the rows `load_data` lets through.

`load_data` stops on data that breaks the contract; what it lets through is still worth
counting. This module profiles the staged tables for the data-quality summary (missing
values, extreme numbers, refunds, the customers' attribute columns) and spells ids the
way careless exports do, to hint that unknown ids would match a customer once written
alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from features.contract import TableSpec

__all__ = ["EXTREME_RATIO", "MISSING_MARKERS", "TableProfile", "id_key"]

#: Text that means "no value" in number and timestamp columns (compared lower-case, trimmed),
#: as pandas and R write it.
MISSING_MARKERS: tuple[str, ...] = ("", "na", "n/a", "nan", "null", "none")

#: A number is extreme when its size exceeds this many times the column's median size
#: (``validation.extreme_ratio``); extreme values are counted, not rejected.
EXTREME_RATIO: float = 1000.0


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def id_key(sql: str) -> str:
    """Return SQL folding an id's spelling: case, leading zeros, a trailing ``.0`` (``007``: ``7``).

    Used only to hint that ids which do not match would match once written alike;
    matching itself is exact.
    """
    return f"ltrim(regexp_replace(lower({sql}), '\\.0+$', ''), '0')"


@dataclass(frozen=True)
class TableProfile:
    """The data-quality aggregates of one table, computed inside a scan the caller makes.

    `load_data` already scans every event table once to count unknown customers; the
    profile adds its aggregates to that query (`aggregates`) and reads them back
    (`summary`), so a large table is not read again. Only a column whose largest value
    could be extreme costs more queries: its exact median size, then the extreme values.

    Parameters
    ----------
    name : str
        Table name; after staging, the table of the rows the features use.
    columns : list of str
        The staged columns (contract names, then attributes).
    numbers : list of str
        The contract columns of kind ``number``.
    attributes : list of str
        The customers' attribute columns (empty for other tables).
    required : list of str, default=()
        The contract's required columns: a valid row always has a value there, so their
        missing values are 0 without a count.
    """

    name: str
    columns: list[str]
    numbers: list[str]
    attributes: list[str]
    required: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, spec: TableSpec, columns: list[str], attributes: list[str]):
        """Return the profile of a staged table with these columns."""
        numbers = [
            c for c in columns if spec.column(c) is not None and spec.column(c).kind == "number"
        ]
        required = tuple(c for c in columns if c in spec.required)
        return cls(name, list(columns), numbers, list(attributes), required)

    @property
    def refunds(self) -> bool:
        """Whether the table holds refunds (negative transaction amounts)."""
        return self.name == "transactions" and "amount" in self.columns

    def aggregates(self, used: str = "true", bounds: dict[str, float] | None = None) -> list[str]:
        """Return the SQL aggregates of the profile over the rows where ``used`` holds.

        Conditional counts are ``count_if(...)``: in a scan of a hundred million rows
        DuckDB evaluates them several times faster than ``FILTER`` clauses.
        The rows are valid, so a required column is never empty there: its count of
        missing values is the constant 0 (a scan of a hundred million rows need not count
        them). A number column's median size is not estimated here (a quantile sketch costs more
        than the rest of the scan). Instead the scan counts the sizes below the column's
        bound, its largest size in the whole table (a Parquet file's statistics tell it)
        over the extreme ratio: when fewer than half the sizes are below it, the median is
        above it and no value can be extreme. Only otherwise does `summary` compute the
        exact median.

        Parameters
        ----------
        used : str, default="true"
            SQL predicate selecting the rows the features use.
        bounds : dict of str to float, optional
            Per number column, its bound (finite); a column without one always gets its
            exact median computed. `summary` needs the same.

        Returns
        -------
        list of str
            Aggregate expressions, in the order `summary` reads them.
        """

        def count(where: str = "") -> str:
            return f"count_if(({used}){f' AND {where}' if where else ''})"

        parts = [count()]
        parts += ["0" if c in self.required else count(f"{_q(c)} IS NULL") for c in self.columns]
        for c in self.numbers:
            bound = (bounds or {}).get(c)
            parts.append(f"max(CASE WHEN {used} THEN abs({_q(c)}) END)")
            parts.append(count(f"{_q(c)} = 0"))
            parts.append(count(f"abs({_q(c)}) < {bound!r}") if bound is not None else "NULL")
        parts += [f"count(DISTINCT CASE WHEN {used} THEN {_q(a)} END)" for a in self.attributes]
        parts += [
            f"count(CASE WHEN {used} THEN TRY_CAST(CAST({_q(a)} AS VARCHAR) AS DOUBLE) END)"
            for a in self.attributes
        ]
        if self.refunds:
            parts.append(count('"amount" < 0'))
        return parts

    def summary(
        self,
        values: list,
        con: duckdb.DuckDBPyConnection,
        extreme_ratio: float,
        n_examples: int,
        bounds: dict[str, float] | None = None,
    ) -> dict:
        """Read the aggregates back into the table's entries of the data-quality summary.

        Parameters
        ----------
        values : list
            The values of `aggregates`, in order.
        con : duckdb.DuckDBPyConnection
            Connection holding the staged table ``name``, for the median size of a column
            whose largest value could be extreme, and for the examples of extreme values.
        extreme_ratio : float
            A number is extreme when ``|x| > extreme_ratio * median(|x|)``.
        n_examples : int
            How many extreme values to quote.
        bounds : dict of str to float, optional
            The bounds `aggregates` was given.

        Returns
        -------
        dict
            ``missing`` (column -> empty values, only columns that have some),
            ``extreme_values`` (column -> rows, examples and the rule), ``refund_rows``
            (transactions), and for customers ``attributes`` (per column: missing,
            distinct and numeric values) with ``attributes_empty`` (no value at all) and
            ``attributes_constant`` (one value, for every customer).
        """
        it = iter(values)  # count_if over no rows is NULL in DuckDB: 0 here
        n_rows = int(next(it) or 0)
        missing = {c: int(next(it) or 0) for c in self.columns}
        sizes = {c: (next(it), next(it), (bounds or {}).get(c), next(it)) for c in self.numbers}
        distinct = {a: int(next(it) or 0) for a in self.attributes}
        numeric = {a: int(next(it) or 0) for a in self.attributes}
        extremes = {}
        for c, (largest, zeros, bound, below) in sizes.items():
            n = n_rows - missing[c]
            if not n or not largest or zeros > n // 2:  # no value, or a median of 0: none
                continue
            # fewer than half the sizes below the bound: the median is at least the bound
            if bound is not None and below <= (n - 1) // 2 and largest <= extreme_ratio * bound:
                continue
            median = con.execute(
                f"SELECT median(abs({_q(c)})) FROM {self.name} WHERE {_q(c)} IS NOT NULL"
            ).fetchone()[0]
            if median and largest > extreme_ratio * median:
                extremes[c] = self._extremes(con, c, float(median), extreme_ratio, n_examples)
        info: dict = {
            "missing": {c: n for c, n in missing.items() if n},
            "extreme_values": extremes,
        }
        if self.refunds:
            info["refund_rows"] = int(next(it) or 0)
        if self.name == "customers":
            info["attributes"] = {
                a: {"missing": missing[a], "distinct": distinct[a], "numeric": numeric[a]}
                for a in self.attributes
            }
            info["attributes_empty"] = [a for a in self.attributes if missing[a] == n_rows > 0]
            info["attributes_constant"] = [
                a for a in self.attributes if distinct[a] == 1 and missing[a] == 0
            ]
        return info

    def _extremes(self, con, column: str, median: float, ratio: float, n_examples: int) -> dict:
        q, limit = _q(column), ratio * median
        n_bad, shown = con.execute(
            f"SELECT count(*), (SELECT list(DISTINCT v ORDER BY abs(v) DESC)[:{int(n_examples)}] "
            f"FROM (SELECT {q} AS v FROM {self.name} WHERE abs({q}) > {limit!r})) "
            f"FROM {self.name} WHERE abs({q}) > {limit!r}"
        ).fetchone()
        return {
            "rows": int(n_bad),
            "examples": [float(v) for v in shown or []],
            "rule": f"|{column}| > {ratio:g} x median |{column}| ({median:g})",
        }
