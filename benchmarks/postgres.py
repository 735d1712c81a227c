"""Time reading the demo from PostgreSQL against reading it from Parquet, and publishing.

In one run, on one machine, with the same tables:

1. the demo base of ``--customers`` customers is written as Parquet (``personas demo``,
   seed 0, cached in ``data/bench/<N>/`` as `bench.py` caches it) and loaded into a
   schema of a throwaway PostgreSQL server (``tests/pgserver.py``: Debian's binaries, a
   temporary folder, a local port; ``fsync`` off, as for the tests);
2. **read**: the six tables are copied into DuckDB, from the Parquet files
   (``CREATE TABLE AS SELECT * FROM read_parquet``) and from PostgreSQL (ADBC's Arrow
   stream, `features.postgres.read_tables`), best of ``--repeat``; the ratio is
   PostgreSQL / Parquet;
3. **load**: the whole of `features.load_data` (read, check, stage), from each source;
4. **publish**: `pipelines.publish.publish` of N assignments to a fresh schema (everyone
   enters), of a re-segmentation where 10% of the customers move (a later ``as_of``), and
   of the same run again (nothing changes).

::

    .venv/bin/python benchmarks/postgres.py --customers 100000
    make bench-postgres PG_CUSTOMERS=100000

It prints a Markdown table and writes ``benchmarks/results_postgres.json`` (one entry per
``--customers``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from features import load_data  # noqa: E402
from features.postgres import read_tables  # noqa: E402
from pipelines.publish import publish  # noqa: E402

TABLES = (
    "customers",
    "transactions",
    "usage_events",
    "engagement_events",
    "feedback",
    "support_tickets",
)


def _demo(n: int) -> Path:
    folder = ROOT / "data" / "bench" / str(n)
    if not (folder / "customers.parquet").exists():
        subprocess.run(
            [sys.executable, "-m", "pipelines", "demo", "--out", str(folder), "--customers", str(n)]
            + ["--seed", "0", "--format", "parquet"],
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    return folder


def _best(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def _read_parquet(folder: Path) -> None:
    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{folder / t}.parquet')")
    con.close()


def _read_postgres(url: str) -> None:
    con = duckdb.connect()
    read_tables(con, url)
    con.close()


def _load(source) -> None:
    load_data(source).con.close()


def _assignments(ids: np.ndarray, rng: np.random.Generator, k: int = 6) -> pd.DataFrame:
    persona = rng.integers(0, k, len(ids))
    return pd.DataFrame(
        {
            "customer_id": ids,
            "persona_id": persona,
            "persona_name": [f"Persona {p}" for p in persona],
            "confidence": rng.random(len(ids)).round(4),
            "is_outlier": rng.random(len(ids)) < 0.05,
        }
    )


def _personas(frame: pd.DataFrame) -> list[dict]:
    sizes = frame["persona_id"].value_counts()
    return [
        {"persona_id": int(p), "name": f"Persona {p}", "size": int(n), "share": n / len(frame)}
        for p, n in sizes.items()
    ]


def _publish(url: str, n: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    ids = np.array([f"C{i:07d}" for i in range(n)])
    first = _assignments(ids, rng)
    second = first.copy()
    moved = rng.random(n) < 0.10
    second.loc[moved, "persona_id"] = (second.loc[moved, "persona_id"] + 1) % 6
    second["persona_name"] = [f"Persona {p}" for p in second["persona_id"]]
    out = {}
    for label, run, frame, as_of in (
        ("publish: all enter", "bench-1", first, "2026-01-31"),
        ("publish: 10% move", "bench-2", second, "2026-02-28"),
        ("publish: same run again", "bench-2", second, "2026-02-28"),
    ):
        start = time.perf_counter()
        publish(
            url, run_id=run, personas=_personas(frame), assignments=frame, as_of=as_of, kind="train"
        )
        out[label] = time.perf_counter() - start
    return out


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import pgserver

    folder = _demo(args.customers)
    server = pgserver.start()
    os.environ["PGPASSWORD"] = server.password
    try:
        pgserver.create_database(server, "bench")
        start = time.perf_counter()
        rows = pgserver.load_folder(server, "bench", folder, "sales")
        ingest = time.perf_counter() - start
        url = server.url("bench", schema="sales")
        results = {
            "read: Parquet -> DuckDB": _best(args.repeat, lambda: _read_parquet(folder)),
            "read: PostgreSQL -> DuckDB (ADBC)": _best(args.repeat, lambda: _read_postgres(url)),
        }
        results["load_data: Parquet folder"] = _best(args.repeat, lambda: _load(folder))
        results["load_data: PostgreSQL"] = _best(args.repeat, lambda: _load(url))
        results.update(_publish(server.url("bench", schema="crm"), args.customers))
    finally:
        server.stop()
    read_ratio = results["read: PostgreSQL -> DuckDB (ADBC)"] / results["read: Parquet -> DuckDB"]
    load_ratio = results["load_data: PostgreSQL"] / results["load_data: Parquet folder"]
    report = {
        "customers": args.customers,
        "rows": rows,
        "ingest_seconds": ingest,
        "seconds": results,
        "read_ratio": read_ratio,
        "load_ratio": load_ratio,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    # one entry per base size: a 1M run keeps the 100k one beside it
    path = ROOT / "benchmarks" / "results_postgres.json"
    kept = json.loads(path.read_text()) if path.exists() else {}
    kept = {str(kept["customers"]): kept} if "customers" in kept else kept
    kept[str(args.customers)] = report
    path.write_text(json.dumps(kept, indent=2))
    lines = [
        f"{args.customers:,} customers ({sum(rows.values()):,} rows; loaded into PostgreSQL "
        f"in {ingest:.1f}s), best of {args.repeat}:",
        "",
        "| step | seconds |",
        "|---|---:|",
        *[f"| {k} | {v:.2f} |" for k, v in results.items()],
        "",
        f"PostgreSQL / Parquet: read x{read_ratio:.2f}, load_data x{load_ratio:.2f}",
    ]
    print("\n".join(lines))  # noqa: T201


if __name__ == "__main__":
    main()
