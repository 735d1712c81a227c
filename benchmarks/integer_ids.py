"""Write a copy of a bench base whose customer ids are integers, as many exports have them.

The bench bases (`bench.py --worker generate`) name customers with text ids; this copy
numbers them (the same customers, events and unknown ids, each id its number in the sorted
customers table, unknown ids after them; no ``planted_personas.csv``) so that the loading
of integer ids can be timed against text ids on the same data::

    .venv/bin/python benchmarks/integer_ids.py /work/bench-data/1000000 /work/bench-data/int1000000
    .venv/bin/python benchmarks/sql_profile.py /work/bench-data/int1000000
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import duckdb

TABLES = ("customers", "transactions", "usage_events", "engagement_events", "feedback",
          "support_tickets")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    files = {t: args.base / f"{t}.parquet" for t in TABLES if (args.base / f"{t}.parquet").exists()}
    every = " UNION ".join(f"SELECT customer_id FROM read_parquet('{f}')" for f in files.values())
    con.execute(
        "CREATE TABLE ids AS SELECT customer_id, row_number() OVER (ORDER BY known DESC, "
        f"customer_id) AS n FROM (SELECT customer_id, customer_id IN (SELECT customer_id FROM "
        f"read_parquet('{files['customers']}')) AS known FROM ({every}))"
    )
    for path in files.values():
        con.execute(
            f"COPY (SELECT * REPLACE (ids.n AS customer_id) FROM read_parquet('{path}') t "
            f"LEFT JOIN ids USING (customer_id)) TO '{args.out / path.name}' (FORMAT parquet)"
        )
        sys.stdout.write(f"{args.out / path.name}\n")
    if (args.base / "rows.json").exists():  # bench.py's row counts
        shutil.copy(args.base / "rows.json", args.out / "rows.json")


if __name__ == "__main__":
    main()
