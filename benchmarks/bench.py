"""Time the train recipe stage by stage at several sizes, beside two references.

Per size, the demo base is written once as Parquet (cached in ``data/bench/<N>/``), then
the I/O floor, a pandas + scikit-learn baseline and the train recipe (then scoring) each run
in a fresh subprocess, so that each peak RSS is its own (see ``benchmarks/README.md``)::

    .venv/bin/python benchmarks/bench.py                          # 10k and 100k customers
    .venv/bin/python benchmarks/bench.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 100_000  # bigger bases are generated this many customers at a time (~2.3 GiB each)
GIB = 2**30
STAGES = dict(  # table column -> the recipe's stages (as `pipelines.train._stage` logs them)
    load=("Load and validate",), features=("Features",), clv=("Customer lifetime value",),
    model=("Model",),
    profile=("Drivers and themes", "Profile", "Compare with the champion"),
    report=("Write outputs and report",), mlflow=("Log to MLflow", "Log the served model"),
)  # fmt: skip
log = logging.getLogger("bench")


class Peak:
    """Peak resident memory of this process, restartable between stages."""

    overall = 0

    def reset(self) -> int:
        """Return the peak RSS (bytes) since the last reset, and start a new one."""
        status = Path("/proc/self/status").read_text()
        peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
        self.overall = max(self.overall, peak)
        with contextlib.suppress(OSError):  # "5" resets VmHWM to the current RSS (Linux 4.0+)
            Path("/proc/self/clear_refs").write_text("5")
        return peak


class StageLog(logging.Handler):
    """Wall and CPU time and peak RSS of each stage, from the recipe's log lines."""

    def __init__(self, peak: Peak):
        super().__init__(logging.INFO)
        self.peak, self.stages, self._start = peak, {}, {}

    def emit(self, record: logging.LogRecord) -> None:
        """Start or end a stage."""
        msg = record.getMessage()
        if msg.endswith(" ..."):
            self.peak.reset()
            self._start[msg[:-4]] = (record.created, time.process_time())
        elif " done in " in msg:
            wall, used = self._start.pop(name := msg.split(" done in ")[0])
            used, peak = time.process_time() - used, self.peak.reset()  # user + system CPU
            self.stages[name] = dict(seconds=record.created - wall, cpu_seconds=used, peak_rss=peak)


def generate(n: int, folder: Path) -> dict[str, int]:
    """Write the demo base of ``n`` customers as Parquet; return the rows per table.

    Up to `CHUNK` customers this is `pipelines.demo.write_demo` (seed 0). The generator
    holds every event in memory, so bigger bases are written as independent chunks (seeds
    0, 1, ...) whose customer ids are prefixed with the chunk number.
    """
    from pipelines.demo import TABLES, _to_arrow, make_demo, write_demo

    if n <= CHUNK:
        return write_demo(folder, n_customers=n, seed=0, file_format="parquet")
    writers, rows = {}, dict.fromkeys(TABLES, 0)
    for i in range(-(-n // CHUNK)):
        frames = make_demo(min(CHUNK, n - i * CHUNK), seed=i)
        for name in TABLES:
            table = _to_arrow(frames.pop(name), for_csv=False)
            at = table.schema.get_field_index("customer_id")
            ids = pc.binary_join_element_wise(f"{i:02d}", table.column(at).cast(pa.string()), "")
            table = table.set_column(at, "customer_id", ids)
            if name not in writers:
                writers[name] = pq.ParquetWriter(folder / f"{name}.parquet", table.schema)
            writers[name].write_table(table.cast(writers[name].schema))
            rows[name] += table.num_rows
        log.info("chunk %d written: %s", i, rows)
    for writer in writers.values():
        writer.close()
    return rows


def io_floor(folder: Path) -> dict:
    """Time one DuckDB scan of every column of every Parquet file (best of two)."""
    con, tables = duckdb.connect(), {}
    for path in sorted(folder.glob("*.parquet")):
        sql = f"SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM read_parquet('{path}')"
        stmt, env = f"con.sql({sql!r}).fetchall()", {"con": con}
        tables[path.stem] = min(timeit.repeat(stmt, globals=env, number=1, repeat=2))
    return {"seconds": sum(tables.values()), "tables": tables}


def baseline(folder: Path) -> dict:
    """Features by pandas group-bys, log + StandardScaler, k-means (k=6), silhouette on 10k."""
    laps = [("start", time.perf_counter())]

    def read(table: str, columns: list[str]) -> pd.DataFrame:
        return pd.read_parquet(folder / f"{table}.parquet", columns=columns)

    customers = read("customers", ["customer_id"]).set_index("customer_id")
    usage = read("usage_events", ["customer_id", "timestamp", "feature", "quantity"])
    engagement = read("engagement_events", ["customer_id", "timestamp"])
    tx = read("transactions", ["customer_id", "timestamp", "amount"])
    tickets = read("support_tickets", ["customer_id", "opened_at"])
    laps.append(("read", time.perf_counter()))
    as_of = max(usage["timestamp"].max(), engagement["timestamp"].max(), tx["timestamp"].max())
    since = as_of - pd.Timedelta(days=90)
    recent = usage[usage["timestamp"] > since].assign(day=lambda d: d["timestamp"].dt.floor("D"))
    by = recent.groupby("customer_id")
    mix = recent.groupby(["customer_id", "feature"])["quantity"].sum().unstack(fill_value=0)
    last_use = usage.groupby("customer_id")["timestamp"].max()
    feats = pd.DataFrame(dict(
        usage_events=by["quantity"].sum(), usage_active_days=by["day"].nunique(),
        usage_breadth=by["feature"].nunique(),
        usage_recency_days=(as_of - last_use) / pd.Timedelta(days=1),
        engagement=engagement[engagement["timestamp"] > since].groupby("customer_id").size(),
        revenue_sum=tx.groupby("customer_id")["amount"].sum(),
        revenue_count=tx.groupby("customer_id").size(),
        tickets=tickets[tickets["opened_at"] > since].groupby("customer_id").size(),
    ))  # fmt: skip
    feats = customers.join(feats).join(mix.div(mix.sum(axis=1), axis=0).add_prefix("mix_"))
    feats = feats.fillna({"usage_recency_days": 730.0}).fillna(0.0)
    laps.append(("features", time.perf_counter()))
    X = StandardScaler().fit_transform(np.sign(feats) * np.log1p(np.abs(feats)))
    labels = KMeans(n_clusters=6, n_init=4, random_state=0).fit_predict(X)
    laps.append(("kmeans", time.perf_counter()))
    silhouette = silhouette_score(X, labels, sample_size=min(10_000, len(X)), random_state=0)
    laps.append(("silhouette", time.perf_counter()))
    stages = {name: t - prev for (_, prev), (name, t) in zip(laps, laps[1:], strict=False)}
    return {"seconds": laps[-1][1] - laps[0][1], "stages": stages, "silhouette": silhouette}


def train(folder: Path, peak: Peak) -> dict:
    """Run the train recipe on ``folder``, then score every customer with its served model."""
    import mlflow

    from pipelines import tracking
    from pipelines.config import load_config
    from pipelines.train import train as run_train

    stages = StageLog(peak)
    logging.getLogger("pipelines.train").addHandler(stages)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config()
        cfg["tracking"]["uri"] = f"sqlite:///{tmp}/mlflow.db"
        mlflow.MlflowClient(cfg["tracking"]["uri"]).search_experiments()  # store exists, as in use
        start, used = time.perf_counter(), time.process_time()
        result = run_train(folder, cfg=cfg, output=Path(tmp) / "out")
        out = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - used}
        peak.reset()
        start = time.perf_counter()
        model = tracking.load_served_model(result.model_uri, cfg)
        features = pd.read_parquet(result.output / "features.parquet").set_index("customer_id")
        loaded = time.perf_counter() - start
        scored = model.predict(features)
        score = {"seconds": time.perf_counter() - start, "load_seconds": loaded}
        score.update(customers=len(scored), peak_rss=peak.reset())
    return {**out, "stages": stages.stages, "score": score, "customers": len(result.assignments)}


def worker(kind: str, n: int, folder: Path, out: Path) -> None:
    """Run one measurement in this (fresh) process and write it as JSON to ``out``."""
    peak, start = Peak(), time.perf_counter()
    result = dict(
        generate=lambda: {"rows": generate(n, folder)}, floor=lambda: io_floor(folder),
        baseline=lambda: baseline(folder), train=lambda: train(folder, peak),
    )[kind]()  # fmt: skip
    peak.reset()
    result.update(wall_seconds=time.perf_counter() - start, peak_rss=peak.overall)
    out.write_text(json.dumps(result, indent=2, default=float))


def spawn(kind: str, n: int, folder: Path) -> dict:
    """Run one measurement in a fresh Python process and return its result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        log.info("%s, %d customers ...", kind, n)
        cmd = [sys.executable, __file__, "--worker", kind, str(n), str(folder), out.name]
        subprocess.run(cmd, check=True, cwd=ROOT)
        result = json.loads(Path(out.name).read_text())
    log.info("%s, %d customers: %.1fs", kind, n, result["wall_seconds"])
    return result


def machine() -> dict:
    """Describe where the numbers were taken (and how busy the machine was)."""
    mem = Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]
    cpu = Path("/proc/cpuinfo").read_text().split("model name")[1].split("\n")[0].strip(" \t:")
    return dict(
        date=dt.datetime.now().isoformat(timespec="seconds"), load_average=os.getloadavg(),
        nproc=len(os.sched_getaffinity(0)), ram_gib=round(int(mem) * 1024 / GIB, 1), cpu=cpu,
    )  # fmt: skip


def _grouped(train_result: dict, key: str = "seconds") -> dict[str, float]:
    got = train_result["stages"]
    return {k: sum(got[s][key] for s in v if s in got) for k, v in STAGES.items()}


ROW = (
    "| {customers:,} | {events:.1f}M | " + "".join(f"{{{k}:.1f}} | " for k in STAGES)
    + "{other:.1f} | **{total:.1f}** | {cpu:.0f} | {peak:.2f} | {score:.1f} | {floor:.2f} "
    "| {ratio:.0f}x | {baseline:.1f} | {baseline_peak:.2f} |"
)  # fmt: skip


def table_md(results: dict) -> str:
    """Render the results as a markdown table (seconds of wall time unless stated)."""
    m, sizes = results["machine"], results["sizes"]
    head = ["customers", "events", *STAGES, "other", "**total**", "CPU s", "peak GiB", "score"]
    head += ["I/O floor", "features / floor", "baseline", "baseline GiB"]
    lines = [
        f"Measured {m['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"load average {m['load_average'][0]:.1f} at start; `{results['command']}`.\n",
        "| " + " | ".join(head) + " |",
        "|" + "---:|" * len(head),
    ]
    for r in sizes:
        tr, cols, floor, base = r["train"], _grouped(r["train"]), r["floor"], r["baseline"]
        values = dict(
            cols, customers=r["customers"], events=r["events"] / 1e6, total=tr["seconds"],
            other=tr["seconds"] - sum(cols.values()), cpu=tr["cpu_seconds"],
            peak=tr["peak_rss"] / GIB, score=tr["score"]["seconds"], floor=floor["seconds"],
            ratio=cols["features"] / floor["seconds"], baseline=base["seconds"],
            baseline_peak=base["peak_rss"] / GIB,
        )  # fmt: skip
        lines.append(ROW.format(**values))
    for a, b in zip(sizes, sizes[1:], strict=False):  # CPU time ~ n^x: 1 linear, 2 quadratic
        ca, cb = _grouped(a["train"], "cpu_seconds"), _grouped(b["train"], "cpu_seconds")
        ratio = math.log(b["customers"] / a["customers"])
        x = [f"{k} {math.log(max(cb[k], 0.05) / max(ca[k], 0.05)) / ratio:.2f}" for k in ca]
        lines.append(f"\nCPU time ~ n^x, {a['customers']:,} -> {b['customers']:,}: " + ", ".join(x))
    seen = {s for r in sizes for s in r["train"]["stages"]}
    extra = seen - {s for v in STAGES.values() for s in v}
    lines.append(f"\n`other`: MLflow run start, params{''.join(', ' + s for s in sorted(extra))}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the benchmark (or one worker)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="customers, comma-separated")
    parser.add_argument("--data-root", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks", help="results folder")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)  # KIND N DATA RESULT
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("mlflow", "alembic", "numba", "matplotlib", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.worker:
        kind, n, data, result = args.worker
        return worker(kind, int(n), Path(data), Path(result))
    results = {"machine": machine(), "command": " ".join(sys.argv), "sizes": []}
    for n in sorted(int(s) for s in args.sizes.split(",")):
        folder = args.data_root / str(n)
        stamp = folder / "rows.json"  # written last: the cached base is complete
        if not stamp.exists():
            folder.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps(spawn("generate", n, folder)["rows"]))
        rows = json.loads(stamp.read_text())
        size = dict(customers=n, rows=rows, events=rows["usage_events"] + rows["engagement_events"])
        size.update({kind: spawn(kind, n, folder) for kind in ("floor", "baseline", "train")})
        results["sizes"].append(size)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        (args.out / "results.md").write_text(table_md(results))
    sys.stdout.write(table_md(results))


if __name__ == "__main__":
    main()
