"""What one scan of the usage events would save: the checks and the features, apart and fused.

Load and checks plus features take about 19x one scan of the input files at 1M customers,
against a goal of 8x (issue 17). The usage events (three events in four) are read by the
scan that checks them and again by the usage features' aggregation. This times, in one
process and alternately (this machine's timings drift between runs)::

    .venv/bin/python benchmarks/usage_scans.py data/bench/1000000 --repeat 3

- ``floor``: DuckDB reads every column of the usage file once (the I/O floor's share);
- ``checks``: the checking scan `features.loading.load_data` sends;
- ``features``: the usage features' aggregation `features.build_features` sends;
- ``fused``: a prototype of one scan doing both: the features' aggregation over the
  file's columns as they are (when every row passes, as here, that is what the features
  read, but without the filter of the unknown customers' ids), grouped by the customer
  id, with the checks' counts and the staging extremes added per id (the id checks, the
  known customers and as_of then work on one row per id). Each result is kept in a
  DuckDB table. It is not what a run does: a run needs as_of, which the checks infer,
  before the features' windows, and it drops invalid rows before aggregating.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CHECKS_PER_ID = """count(*) AS __rows,
  count_if("timestamp" IS NULL) AS __no_time,
  count_if(feature IS NULL OR trim(feature) = '') AS __no_feature,
  count_if(quantity IS NOT NULL AND NOT (quantity >= 0)) AS __negative,
  count_if(feature IS DISTINCT FROM nullif(trim(feature), '')) AS __untrimmed,
  min("timestamp") AS __first, max("timestamp") AS __last,
  max(abs(quantity)) AS __largest, count_if(quantity = 0) AS __zero,"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from sql_profile import TimedConnection

    import features.loading as loading
    from features import build_features
    from pipelines.config import load_config

    log: list = []
    connect = duckdb.connect
    loading.duckdb = type(
        "TimedDuckDB",
        (),
        {"connect": staticmethod(lambda *a, **k: TimedConnection(connect(*a, **k), log))},
    )
    cfg = load_config()
    loaded = loading.load_data(args.data)
    n_load = len(log)
    build_features(loaded, {**cfg["features"], "seed": cfg["seed"]})
    checks = next(s for _, _, s in log[:n_load] if "FROM staged_usage_events" in s)
    feats = next(s for _, _, s in log[n_load:] if "AS usage_active_days" in s)
    # the file's columns as the contract's types, as the features read a clean file
    source, typed = "FROM usage_events)", "FROM valid_usage_events)"
    assert feats.count(source) == 1 and feats.startswith("SELECT customer_id,"), feats[:200]
    fused = feats.replace(source, typed).replace(
        "SELECT customer_id,", f"SELECT customer_id, {CHECKS_PER_ID}", 1
    )
    fused = fused.replace(
        "SELECT customer_id, timestamp,", "SELECT customer_id, timestamp, feature, quantity,", 1
    )
    per_id = (
        "SELECT sum(__rows), count_if(nullif(trim(customer_id), '') IS DISTINCT FROM "
        "customer_id), sum(__rows) FILTER (WHERE NOT __known), max(__last) FILTER (WHERE "
        "__known) FROM (SELECT *, customer_id IN (SELECT customer_id FROM customers) AS "
        "__known FROM __fused)"
    )
    con = loaded.con
    queries = {
        "floor": "SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM raw_usage_events",
        "checks": checks,
        "features": feats,
        "fused": fused,
        "fused, per id": per_id,
    }
    times: dict[str, list[float]] = {k: [] for k in queries}
    for _ in range(args.repeat):
        for name, sql in queries.items():
            start = time.perf_counter()  # kept in DuckDB: no Python object per value
            table = "__fused" if name == "fused" else "__result"
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}")
            times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    lines = []
    for name, runs in times.items():
        shown = ", ".join(f"{t:.2f}" for t in runs)
        lines.append(f"{name:>14}: {shown} s ({best[name] / best['floor']:.1f}x the floor)")
    apart, together = best["checks"] + best["features"], best["fused"] + best["fused, per id"]
    lines.append(f"checks + features {apart:.2f} s, fused {together:.2f} s (best of {args.repeat})")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
