"""Time ``personas train --engine spark`` on a real cluster master against DuckDB.

Each run goes in a fresh subprocess, so that its peak memory is its own. For Spark the
session is Spark's ``local-cluster`` master (executor JVMs apart from the driver's), and
the driver's memory is reported as two numbers: the Python process (peak RSS, per stage
too) and the driver JVM (peak RSS at the end of the run; in ``local-cluster`` it also
hosts the master and the workers, whose executor JVMs are its children: their peaks are
reported too). Only this run's JVMs are read, by parentage: other Spark sessions on the
machine are left out. ``spark.driver.maxResultSize`` is kept small, so a run that
brought every customer to the driver would fail::

    .venv/bin/python benchmarks/spark.py --data data/bench/1000000
    .venv/bin/python benchmarks/spark.py --data data/bench/100000 --engines spark

The bases are `benchmarks/bench.py`'s (``data/bench/<N>/``). Results go to
``benchmarks/spark.json`` (one entry per data folder and engine, appended).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
log = logging.getLogger("bench.spark")


def _peak(pid: str = "self", reset: bool = False) -> int:
    """Return a process's peak RSS in bytes (VmHWM); optionally start a new peak."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
    if reset:
        with contextlib.suppress(OSError):  # "5" resets VmHWM to the current RSS
            Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak


def _processes(marker: str, parents: set[str]) -> list[str]:
    """Return the ids of the processes whose command line holds ``marker``, children of
    one of ``parents`` (another run's JVMs on the machine are not this run's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                status = (entry / "status").read_text()
                if status.split("PPid:")[1].split()[0] not in parents:
                    continue
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(entry.name)
    return found


class _Stages(logging.Handler):
    """Wall time and the Python driver's peak RSS per stage, from the recipe's log lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.stages, self._start = {}, {}

    def emit(self, record: logging.LogRecord) -> None:
        """Start or end a stage."""
        msg = record.getMessage()
        if msg.endswith(" ..."):
            _peak(reset=True)
            self._start[msg[:-4]] = record.created
        elif " done in " in msg and (name := msg.split(" done in ")[0]) in self._start:
            wall = record.created - self._start.pop(name)
            self.stages[name] = {"wall": round(wall, 1), "peak_gib": _peak(reset=True) / GIB}


def _customers(data: Path) -> int:
    """Return the base's customers: its ``rows.json`` (`benchmarks/bench.py`'s stamp), else
    the row count in ``customers.parquet``'s footer."""
    stamp = data / "rows.json"
    if stamp.exists():
        return json.loads(stamp.read_text())["customers"]
    import pyarrow.parquet as pq

    return pq.ParquetFile(data / "customers.parquet").metadata.num_rows


def child(args) -> dict:
    """Run one train in this process and return what it measured."""
    from pipelines.config import load_config
    from pipelines.train import train

    cfg = load_config(engine=args.engine)
    tmp = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    cfg["tracking"]["uri"] = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg["spark"]["sample_size"] = args.sample_size
    cfg["spark"]["staging_dir"] = str(tmp)
    stages = _Stages()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger().addHandler(stages)
    spark = None
    if args.engine == "spark":
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master(args.master)
            .appName("personas-bench")
            .config("spark.driver.maxResultSize", args.max_result_size)
            .config("spark.executor.memory", args.executor_memory)
            .config("spark.executorEnv.PYTHONPATH", str(ROOT))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
    _peak(reset=True)
    start = time.perf_counter()
    result = train(args.data, cfg=cfg, output=tmp / "out")
    wall = time.perf_counter() - start
    out = {
        "data": str(args.data),
        "engine": args.engine,
        "customers": _customers(Path(args.data)),
        "wall": round(wall, 1),
        "python_peak_gib": max([s["peak_gib"] for s in stages.stages.values()] + [0.0]),
        "stages": stages.stages,
        "personas": len(result.personas),
    }
    if spark is not None:
        jvm = _processes("SparkSubmit", {str(os.getpid())})  # the driver JVM: our child
        out["driver_jvm_peak_gib"] = max((_peak(p) / GIB for p in jvm), default=None)
        executors = _processes("CoarseGrainedExecutorBackend", set(jvm))  # its workers'
        out["executor_jvm_peak_gib"] = [round(_peak(p) / GIB, 2) for p in executors]
        out.update(
            master=args.master,
            sample_size=args.sample_size,
            max_result_size=args.max_result_size,
            executor_memory=args.executor_memory,
        )
        spark.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    """Run each engine in a fresh subprocess and append the results to spark.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--engines", default="spark,duckdb")
    parser.add_argument("--engine", help=argparse.SUPPRESS)  # the child's
    parser.add_argument("--master", default="local-cluster[2,1,1024]")
    parser.add_argument("--executor-memory", default="1g")
    parser.add_argument("--max-result-size", default="64m")
    parser.add_argument("--sample-size", type=int, default=50_000)
    args = parser.parse_args()
    if args.engine:
        sys.stdout.write("RESULT " + json.dumps(child(args)) + "\n")
        return
    results_file = Path(__file__).with_name("spark.json")
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    for engine in args.engines.split(","):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--engine", engine]
        log.warning("Running %s", " ".join(cmd))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        lines = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
        if run.returncode or not lines:
            sys.exit(f"{engine} failed:\n{run.stderr[-4000:]}")
        result = json.loads(lines[-1][len("RESULT ") :])
        result["measured"] = dt.datetime.now().isoformat(timespec="seconds")
        result["load_average"] = os.getloadavg()[0]
        results.append(result)
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        results_file.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
