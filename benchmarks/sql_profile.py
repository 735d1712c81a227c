"""Time every SQL statement that loading and the feature builders send to DuckDB.

Where the load and features stages spend their time, statement by statement (wall and
CPU seconds, the slowest first)::

    .venv/bin/python benchmarks/sql_profile.py data/bench/1000000
    .venv/bin/python benchmarks/sql_profile.py data/bench/csv200000 --top 15

The connection `features.loading.load_data` opens is wrapped for the run; nothing else
changes. A statement's time is that of ``execute`` (DuckDB runs the query there; the
fetch that follows is not counted).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class TimedConnection:
    """A DuckDB connection that records each ``execute``'s wall and CPU seconds."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list):
        self._con, self._log = con, log

    def execute(self, sql: str, *args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        result = self._con.execute(sql, *args, **kwargs)
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        self._log.append((wall, used, " ".join(sql.split())))
        return result

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--top", type=int, default=25, help="statements shown")
    parser.add_argument("--width", type=int, default=150, help="characters of SQL shown")
    args = parser.parse_args()
    import features.loading as loading
    from features import build_features
    from pipelines.config import load_config

    log: list = []
    connect = duckdb.connect

    def timed(*a, **k) -> TimedConnection:
        return TimedConnection(connect(*a, **k), log)

    class TimedDuckDB:  # duckdb itself (its errors too), but for connect
        connect = staticmethod(timed)

        def __getattr__(self, name: str):
            return getattr(duckdb, name)

    loading.duckdb = TimedDuckDB()
    cfg = load_config()
    start = time.perf_counter()
    loaded = loading.load_data(
        args.data, columns=cfg["columns"], validation=cfg["validation"], privacy=cfg["privacy"],
        as_of=cfg["as_of"], tables=cfg["tables"],
    )  # fmt: skip
    load = time.perf_counter() - start
    n_load = len(log)
    build_features(loaded, {**cfg["features"], "seed": cfg["seed"]})
    features = time.perf_counter() - start - load
    sql = sum(x[0] for x in log[n_load:])
    out = [f"load {load:.2f} s ({n_load} statements), features {features:.2f} s "
           f"({len(log) - n_load} statements: {sql:.2f} s of SQL)", ""]  # fmt: skip
    out.append(f"{'wall s':>7} {'CPU s':>7}  statement")
    for wall, used, sql in sorted(log, reverse=True)[: args.top]:
        out.append(f"{wall:7.2f} {used:7.2f}  {sql[: args.width]}")
    walls, cpus = sum(x[0] for x in log), sum(x[1] for x in log)
    out.append(f"\nall {len(log)} statements: {walls:.2f} s wall, {cpus:.2f} CPU s")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
