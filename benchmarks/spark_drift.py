"""Time the feature drift over every customer on Spark against the single-machine index.

A re-segmentation on the cluster compares this run's features with the champion's
(`pipelines.cluster_compare.drift_on_cluster`). This writes two synthetic feature tables
of ``--customers`` rows and ``--features`` columns (skewed, tied, with missing values and
a shift in half the columns) as Parquet, computes each column's population stability
index on Spark's ``local-cluster`` master, and again with `models.matching.population_stability`
on pandas columns read in this process (the reference, timed with the Parquet read),
then checks that both agree to 1e-12::

    .venv/bin/python benchmarks/spark_drift.py --customers 1000000
    .venv/bin/python benchmarks/spark_drift.py --customers 3000000 --executor-memory 1g

Results are appended to ``benchmarks/spark_drift.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_tables(folder: Path, n: int, k: int, seed: int = 0) -> list[str]:
    """Write ``before.parquet`` and ``after.parquet`` (n rows, k features); return the names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = [f"f{j:02d}" for j in range(k)]
    for side, shift in (("before", 0.0), ("after", 0.3)):
        with pq.ParquetWriter(folder / f"{side}.parquet", pa.schema(
            [("customer_id", pa.string())] + [(c, pa.float64()) for c in names]
        )) as writer:  # fmt: skip
            for start in range(0, n, 500_000):
                m = min(500_000, n - start)
                cols = {"customer_id": pa.array([f"C{i:08d}" for i in range(start, start + m)])}
                for j, c in enumerate(names):
                    kind = j % 3
                    if kind == 0:  # skewed, continuous
                        x = rng.lognormal(1.0, 1.0, m) * (1 + shift * (j % 2))
                    elif kind == 1:  # counts: many ties, zeros
                        x = rng.poisson(2.0 + shift * (j % 2), m).astype(float)
                    else:  # shares in [0, 1], a third missing
                        x = rng.beta(2, 5, m)
                        x[rng.random(m) < 0.33] = np.nan
                    cols[c] = pa.array(x, from_pandas=True)
                writer.write_table(pa.table(cols))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=45)
    parser.add_argument("--master", default="local-cluster[2,1,1024]")
    parser.add_argument("--executor-memory", default="1g")
    parser.add_argument("--max-result-size", default="64m")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from models.matching import population_stability
    from pipelines.cluster_compare import drift_on_cluster

    with tempfile.TemporaryDirectory(prefix="drift-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        names = write_tables(folder, args.customers, args.features)
        written = time.perf_counter() - start
        spark = (
            SparkSession.builder.master(args.master)
            .config("spark.executor.memory", args.executor_memory)
            .config("spark.driver.maxResultSize", args.max_result_size)
            .config("spark.executorEnv.PYTHONPATH", str(ROOT))
            .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        before = spark.read.parquet(str(folder / "before.parquet"))
        after = spark.read.parquet(str(folder / "after.parquet"))
        start = time.perf_counter()
        on_cluster = drift_on_cluster(before, after, names)
        cluster_s = time.perf_counter() - start
        spark.stop()
        start = time.perf_counter()
        a = pd.read_parquet(folder / "before.parquet", columns=names)
        b = pd.read_parquet(folder / "after.parquet", columns=names)
        reference = {c: population_stability(a[c], b[c]) for c in names}
        reference_s = time.perf_counter() - start
    worst = max(abs(on_cluster[c] - reference[c]) for c in names)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "code": commit,
        "customers": args.customers,
        "features": args.features,
        "master": args.master,
        "executor_memory": args.executor_memory,
        "write_seconds": round(written, 1),
        "spark_seconds": round(cluster_s, 1),
        "pandas_seconds": round(reference_s, 1),
        "max_abs_difference": worst,
        "load_average": os.getloadavg()[0],
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    out = ROOT / "benchmarks" / "spark_drift.json"
    runs = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps([*runs, result], indent=2) + "\n")
    if worst > 1e-12:
        raise SystemExit(f"Spark's drift differs from the single-machine index by {worst:g}")


if __name__ == "__main__":
    main()
