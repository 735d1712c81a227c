"""Time the DuckDB aggregations that set the load and features stages' pace, and variants.

Each query runs on a bench base's Parquet files in a fresh DuckDB connection, every column
of its result hashed (so no aggregate is optimized away), after one read of the files (so
none pays the disk), and prints its wall seconds::

    .venv/bin/python benchmarks/duckdb_probes.py /work/bench-data/1000000
    .venv/bin/python benchmarks/duckdb_probes.py /work/bench-data/3000000 --only purchases

The probes (2026-12-07, README "Benchmarks"):

- ``usage``: the core of the usage features' aggregation (`features.usage`): events, active
  days and features used as bits of a 128-bit integer, the last event, and the usage mix
  as ten conditional sums; then the sums alone, as ``FILTER`` clauses, and after a first
  grouping by customer and product feature.
- ``purchases``: the billing history's per-customer lists of purchase days
  (`features.rfm.billing_history`), and a plain count, min and max per customer.
- ``partitioned``: a filtered grouping of the purchases by customer with DuckDB's
  ``partitioned_execution`` optimizer on (the default) and off.
- ``checks``: the core of the usage events' checking scan with every id and product
  feature trimmed and every row's customer looked up (before 2026-12-07), read as they are
  with only the unknown ids probed, and with none (`features.checks.tidy_columns`,
  `unknown_ids`); and the distinct ids those two read first.

The usage probes also time a grouping by customer with a count alone, with one sum, and
with the ten sums packed five to a 128-bit integer (exact for whole quantities).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

NOW = "TIMESTAMP '2026-09-30 23:59:59'"
START = "TIMESTAMP '2026-07-02 23:59:59'"
FEATURES = ["admin_console", "alerts", "api", "automation", "collaboration", "dashboards",
            "data_export", "integrations", "mobile_app", "reports"]  # fmt: skip


def _usage() -> dict[str, str]:
    listed = ", ".join(f"'{f}'" for f in FEATURES)
    window = f"timestamp > {START}"
    events = (
        f"SELECT customer_id, timestamp, CASE WHEN {window} THEN COALESCE(quantity, 1) ELSE 0 "
        f"END AS _used, CASE WHEN {window} THEN timestamp END AS _seen, CASE WHEN {window} "
        f"THEN list_position([{listed}], feature) END AS _i FROM usage_events"
    )
    day = "date_diff('day', DATE '2026-07-02', CAST(_seen AS DATE))"
    days = f"bit_count(bit_or(CAST(1 AS HUGEINT) << CAST({day} AS HUGEINT)))"
    breadth = "bit_count(bit_or(CAST(1 AS HUGEINT) << CAST(_i - 1 AS HUGEINT)))"
    sums = ", ".join(f"SUM(CASE WHEN _i = {j} THEN _used ELSE 0 END)" for j in range(1, 11))
    filtered = ", ".join(f"COALESCE(SUM(_used) FILTER (WHERE _i = {j}), 0)" for j in range(1, 11))
    by_feature = (
        f"SELECT customer_id, _i, SUM(_used) AS u, bit_or(CAST(1 AS HUGEINT) << CAST({day} "
        f"AS HUGEINT)) AS dm, max(timestamp) AS mx FROM ({events}) GROUP BY customer_id, _i"
    )
    two = ", ".join(f"SUM(CASE WHEN _i = {j} THEN u ELSE 0 END)" for j in range(1, 11))

    def per_customer(select: str, source: str = events) -> str:
        return f"SELECT customer_id, {select} FROM ({source}) GROUP BY customer_id"

    packed = ", ".join(
        f"SUM(CASE WHEN _i BETWEEN {1 + 5 * h} AND {5 + 5 * h} THEN CAST(_used AS HUGEINT) "
        f"<< (25 * (_i - {1 + 5 * h})) ELSE 0 END)"
        for h in range(2)
    )
    return {
        "usage: all": per_customer(f"SUM(_used), {days}, {breadth}, max(timestamp), {sums}"),
        "usage: a count alone": per_customer("count(*)"),
        "usage: one sum": per_customer("SUM(_used)"),
        "usage: the ten sums": per_customer(sums),
        "usage: ten sums packed in two HUGEINTs": per_customer(packed),
        "usage: the ten sums as FILTER": per_customer(filtered),
        "usage: by customer and feature first": per_customer(
            f"SUM(u), bit_count(bit_or(dm)), {breadth}, max(mx), {two}", by_feature
        ),
    }


def _purchases() -> dict[str, str]:
    bought = (
        "SELECT customer_id, date_trunc('day', timestamp) AS day FROM transactions "
        f"WHERE amount >= 0 AND timestamp <= {NOW}"
    )
    return {
        "purchases: list of days": "SELECT customer_id, len(list_distinct(list(day))) "
        f"FROM ({bought}) GROUP BY customer_id",
        "purchases: count, min, max": "SELECT customer_id, count(*), min(day), max(day) "
        f"FROM ({bought}) GROUP BY customer_id",
    }


def _partitioned() -> dict[str, str]:
    query = "SELECT customer_id, count(*) FROM transactions WHERE amount >= 0 GROUP BY customer_id"
    off = "SET disabled_optimizers = 'partitioned_execution'"
    return {"partitioned: on (default)": query, f"partitioned: off|{off}": query}


def _checks() -> dict[str, str]:
    """The core of the usage events' checking scan (`features.loading`), three ways."""
    unknown = (
        "CREATE TEMP TABLE unknown AS SELECT customer_id FROM (SELECT DISTINCT customer_id "
        "FROM usage_events) WHERE customer_id NOT IN (SELECT customer_id FROM customers)"
    )

    def scan(cid: str, feature: str, known: str) -> str:
        rows = (
            f"SELECT *, NOT (__bad_id OR __bad_feature) AS __valid FROM (SELECT customer_id "
            f"AS __plain, feature AS __plain_feature, {cid} AS cid, {feature} AS feat, "
            f"timestamp, quantity, {cid} IS NULL AS __bad_id, {feature} IS NULL AS "
            f"__bad_feature, {known} AS __known FROM usage_events)"
        )
        return (
            "SELECT count(*), count_if(NOT __valid), count_if(cid IS DISTINCT FROM __plain), "
            "count_if(feat IS DISTINCT FROM __plain_feature), count_if(__valid AND NOT "
            "__known), min(CASE WHEN __valid AND __known THEN timestamp END), max(CASE WHEN "
            "__valid AND __known THEN timestamp END), count_if(__valid AND __known AND "
            f"quantity = 0) FROM ({rows})"
        )

    trimmed = "NULLIF(TRIM(customer_id), '')", "NULLIF(TRIM(feature), '')"
    return {
        "checks: the distinct ids": "SELECT DISTINCT customer_id FROM usage_events",
        "checks: trimmed, every customer probed": scan(
            *trimmed, "customer_id IN (SELECT customer_id FROM customers)"
        ),
        f"checks: as read, unknown ids probed|{unknown}": scan(
            "customer_id", "feature", "customer_id NOT IN (SELECT customer_id FROM unknown)"
        ),
        "checks: as read, no probe": scan("customer_id", "feature", "true"),
    }


PROBES = {
    "usage": _usage, "purchases": _purchases, "partitioned": _partitioned, "checks": _checks,
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="a bench base (Parquet files)")
    parser.add_argument("--only", choices=sorted(PROBES), action="append")
    args = parser.parse_args()
    with duckdb.connect() as con:  # the files into the page cache: no probe pays the disk
        for table in ("usage_events", "transactions"):
            path = args.base / f"{table}.parquet"
            con.execute(f"SELECT sum(hash(COLUMNS(*))) FROM read_parquet('{path}')").fetchall()
    for name in args.only or PROBES:
        for label, sql in PROBES[name]().items():
            con = duckdb.connect()  # a fresh connection per query: settings do not leak
            con.execute("SET TimeZone = 'UTC'")
            for table in ("customers", "usage_events", "transactions"):
                path = args.base / f"{table}.parquet"
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
            label, *setting = label.split("|")
            for statement in setting:
                con.execute(statement)
            start = time.perf_counter()
            rows = con.execute(f"SELECT count(*), sum(hash(COLUMNS(*))) FROM ({sql})").fetchone()[0]
            seconds = time.perf_counter() - start
            sys.stdout.write(f"{label:40s} {seconds:6.2f} s  ({rows:,} rows)\n")
            sys.stdout.flush()
            con.close()


if __name__ == "__main__":
    main()
