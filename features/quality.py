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
    is extreme costs a second, filtered query.

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
    """

    name: str
    columns: list[str]
    numbers: list[str]
    attributes: list[str]

    @classmethod
    def of(cls, name: str, spec: TableSpec, columns: list[str], attributes: list[str]):
        """Return the profile of a staged table with these columns."""
        numbers = [
            c for c in columns if spec.column(c) is not None and spec.column(c).kind == "number"
        ]
        return cls(name, list(columns), numbers, list(attributes))

    @property
    def refunds(self) -> bool:
        """Whether the table holds refunds (negative transaction amounts)."""
        return self.name == "transactions" and "amount" in self.columns

    def aggregates(self, used: str = "true") -> list[str]:
        """Return the SQL aggregates of the profile over the rows where ``used`` holds.

        Parameters
        ----------
        used : str, default="true"
            SQL predicate selecting the rows the features use.

        Returns
        -------
        list of str
            Aggregate expressions, in the order `summary` reads them.
        """

        def agg(expr: str, where: str = "") -> str:
            return f"{expr} FILTER (WHERE ({used}){f' AND {where}' if where else ''})"

        parts = [agg("count(*)")]
        parts += [agg("count(*)", f"{_q(c)} IS NULL") for c in self.columns]
        for c in self.numbers:
            parts += [agg(f"approx_quantile(abs({_q(c)}), 0.5)"), agg(f"max(abs({_q(c)}))")]
        parts += [agg(f"count(DISTINCT {_q(a)})") for a in self.attributes]
        parts += [
            agg(f"count(TRY_CAST(CAST({_q(a)} AS VARCHAR) AS DOUBLE))") for a in self.attributes
        ]
        if self.refunds:
            parts.append(agg("count(*)", '"amount" < 0'))
        return parts

    def summary(
        self,
        values: list,
        con: duckdb.DuckDBPyConnection,
        extreme_ratio: float,
        n_examples: int,
    ) -> dict:
        """Read the aggregates back into the table's entries of the data-quality summary.

        Parameters
        ----------
        values : list
            The values of `aggregates`, in order.
        con : duckdb.DuckDBPyConnection
            Connection holding the staged table ``name``, for the examples of extreme
            values.
        extreme_ratio : float
            A number is extreme when ``|x| > extreme_ratio * median(|x|)``.
        n_examples : int
            How many extreme values to quote.

        Returns
        -------
        dict
            ``missing`` (column -> empty values, only columns that have some),
            ``extreme_values`` (column -> rows, examples and the rule), ``refund_rows``
            (transactions), and for customers ``attributes`` (per column: missing,
            distinct and numeric values) with ``attributes_empty`` (no value at all) and
            ``attributes_constant`` (one value, for every customer).
        """
        it = iter(values)
        n_rows = next(it)
        missing = {c: int(next(it)) for c in self.columns}
        spread = {c: (next(it), next(it)) for c in self.numbers}
        distinct = {a: int(next(it)) for a in self.attributes}
        numeric = {a: int(next(it)) for a in self.attributes}
        info: dict = {
            "missing": {c: n for c, n in missing.items() if n},
            "extreme_values": {
                c: self._extremes(con, c, float(median), extreme_ratio, n_examples)
                for c, (median, largest) in spread.items()
                if median and largest > extreme_ratio * median
            },
        }
        if self.refunds:
            info["refund_rows"] = int(next(it))
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
