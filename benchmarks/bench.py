"""Time the train recipe stage by stage at several sizes, beside two references.

Per size, the demo base is written once as Parquet (cached in ``data/bench/<N>/``), then
the I/O floor, a pandas + scikit-learn baseline and the train recipe (then scoring) each run
in a fresh subprocess, so that each peak RSS is its own (see ``benchmarks/README.md``)::

    .venv/bin/python benchmarks/bench.py                          # 10k and 100k customers
    .venv/bin/python benchmarks/bench.py --sizes 10000,100000,1000000
    .venv/bin/python benchmarks/bench.py --sizes 1000000,3000000 --repeat 3 --out benchmarks/repeat

With ``--repeat N`` the floor and the train of every size, and the CSV demo's ``read_csv``
and train, run N rounds (every size once per round, so a slow spell of the machine falls
on all of them): the table shows the first round; below it, the exponents of each stage's
median CPU time and the CSV train's ratio to the ``read_csv`` of its own round, round by
round. One round moves a stage's exponent by about 0.1 on the machine of the README.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import resource
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
sys.path.insert(0, str(ROOT))  # this checkout's packages, whichever one is installed
CHUNK = 100_000  # bigger bases are generated this many customers at a time (~2.3 GiB each)
GIB = 2**30
#: Every measurement runs without NumPy's huge-page advice, as the recipes do
#: (`pipelines.run.small_pages`), the baseline too: the ratios compare the code, not the
#: kernel's memory compaction (`host.py`). A ``NUMPY_MADVISE_HUGEPAGE`` already set wins.
SMALL_PAGES = {"NUMPY_MADVISE_HUGEPAGE": "0", **os.environ}
STAGES = dict(  # table column -> the recipe's stages (as `pipelines.run.stage` logs them)
    load=("Load and validate",), features=("Features",), clv=("Customer lifetime value",),
    model=("Model",),
    profile=("Drivers and themes", "Profile", "Compare with the champion"),
    report=("Write outputs and report",), mlflow=("Log to MLflow", "Log the served model"),
)  # fmt: skip
TRUE_CLV = dict(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44)  # CDNOW
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
    """Wall and CPU time, peak RSS and page faults of each stage, from the recipe's log lines.

    The system CPU seconds and minor page faults (new 4 kB pages) say how much of a
    stage's CPU time is the kernel handing it memory.
    """

    def __init__(self, peak: Peak):
        super().__init__(logging.INFO)
        self.peak, self.stages, self._start = peak, {}, {}

    def emit(self, record: logging.LogRecord) -> None:
        """Start or end a stage."""
        msg = record.getMessage()
        if msg.endswith(" ..."):
            self.peak.reset()
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self._start[msg[:-4]] = (record.created, time.process_time(), usage)
        elif " done in " in msg:
            wall, used, usage = self._start.pop(name := msg.split(" done in ")[0])
            used, peak = time.process_time() - used, self.peak.reset()  # user + system CPU
            now = resource.getrusage(resource.RUSAGE_SELF)
            self.stages[name] = dict(
                seconds=record.created - wall, cpu_seconds=used, peak_rss=peak,
                system_seconds=now.ru_stime - usage.ru_stime,
                minor_faults=now.ru_minflt - usage.ru_minflt,
            )  # fmt: skip


def generate(n: int, folder: Path) -> dict[str, int]:
    """Write the demo base of ``n`` customers as Parquet; return the rows per table.

    Up to `CHUNK` customers this is `pipelines.demo.write_demo` (seed 0). The generator
    holds every event in memory, so bigger bases are written as independent chunks (seeds
    0, 1, ...) whose customer ids are prefixed with the chunk number.
    """
    from pipelines.demo.customers import TABLES, _to_arrow, make_demo, write_demo

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


def generate_csv(n: int, folder: Path) -> dict[str, int]:
    """Write the demo base of ``n`` customers as CSV, as `personas demo` does (seed 0)."""
    from pipelines.demo.customers import write_demo

    return write_demo(folder, n_customers=n, seed=0, file_format="csv")


def csv_floor(folder: Path) -> dict:
    """Time DuckDB's own ``read_csv`` of every CSV table, every column once (best of two)."""
    con, tables = duckdb.connect(), {}
    for path in sorted(folder.glob("*.csv")):
        if path.stem == "planted_personas":  # the ground truth, not an input table
            continue
        sql = f"SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM read_csv('{path}')"
        stmt, env = f"con.sql({sql!r}).fetchall()", {"con": con}
        tables[path.stem] = min(timeit.repeat(stmt, globals=env, number=1, repeat=2))
    return {"seconds": sum(tables.values()), "tables": tables}


def csv_load(folder: Path) -> dict:
    """Time `load_data` (checks included) and `build_features` on the CSV demo."""
    from features import build_features, load_data
    from pipelines.config import load_config

    cfg = load_config()
    start, used = time.perf_counter(), time.process_time()
    loaded = load_data(
        folder, columns=cfg["columns"], validation=cfg["validation"], privacy=cfg["privacy"],
        as_of=cfg["as_of"], tables=cfg["tables"],
    )  # fmt: skip
    load = time.perf_counter() - start
    build_features(loaded, {**cfg["features"], "seed": cfg["seed"]})
    return dict(
        load_seconds=load, features_seconds=time.perf_counter() - start - load,
        seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - used,
    )  # fmt: skip


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

    from pipelines import serving
    from pipelines.config import load_config
    from pipelines.train import train as run_train

    stages = StageLog(peak)
    logging.getLogger("pipelines.run").addHandler(stages)  # where `pipelines.run.stage` logs
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config()
        cfg["tracking"]["uri"] = f"sqlite:///{tmp}/mlflow.db"
        mlflow.MlflowClient(cfg["tracking"]["uri"]).search_experiments()  # store exists, as in use
        start, used = time.perf_counter(), time.process_time()
        result = run_train(folder, cfg=cfg, output=Path(tmp) / "out")
        out = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - used}
        peak.reset()
        start = time.perf_counter()
        model = serving.load_served_model(result.model_uri, cfg)
        features = pd.read_parquet(result.output / "features.parquet").set_index("customer_id")
        loaded = time.perf_counter() - start
        scored = model.predict(features)
        score = {"seconds": time.perf_counter() - start, "load_seconds": loaded}
        score.update(customers=len(scored), peak_rss=peak.reset())
    return {**out, "stages": stages.stages, "score": score, "customers": len(result.assignments)}


def simulate_clv(n: int, seed: int = 0) -> pd.DataFrame:
    """Simulate ``n`` purchase histories from BG/NBD and Gamma-Gamma (CDNOW's parameters).

    Each customer buys at a Gamma(r, alpha) rate and drops out after a purchase with a
    Beta(a, b) probability, over 20-80 weeks; spend per purchase is Gamma(p, nu) with
    nu ~ Gamma(q, v). Returns the summary `models.clv` fits (frequency, recency, T, monetary_value).
    """
    rng = np.random.default_rng(seed)
    r, alpha, a, b, p, q, v = TRUE_CLV.values()
    rate, drop = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    T = rng.uniform(20, 80, n).round(1)
    t, x, tx, alive = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n, bool)
    while alive.any():  # the first purchase, at 0, starts the clock; these are repeats
        t = t + rng.exponential(1 / np.maximum(rate, 1e-12))
        alive &= t < T
        x, tx = x + alive, np.where(alive, t, tx)
        alive &= rng.random(n) >= drop  # dropout after a repeat purchase
    nu = rng.gamma(q, 1 / v, n)
    spend = np.where(x > 0, rng.gamma(p * np.maximum(x, 1), 1 / (nu * np.maximum(x, 1))), 0.0)
    return pd.DataFrame({"frequency": x, "recency": tx.round(1), "T": T, "monetary_value": spend})


def clv_at_scale(n: int) -> dict:
    """Time the CLV fits and predictions (`models.clv`) on ``n`` simulated customers."""
    from models import BetaGeoModel, GammaGammaModel, customer_value

    summary = simulate_clv(n)
    start = time.perf_counter()
    purchases = BetaGeoModel().fit(summary)
    spend = GammaGammaModel().fit(summary)
    fitted = time.perf_counter() - start
    value = customer_value(purchases, spend, summary)
    params = {**purchases.params_, **spend.params_}
    return dict(
        customers=n, fit_seconds=fitted, seconds=time.perf_counter() - start,
        params=params, true_params=TRUE_CLV, mean_clv=float(value["clv"].mean()),
    )  # fmt: skip


def score_at_scale(n: int, folder: Path) -> dict:
    """Score ``n`` customers with the served model of a train on ``folder``.

    The trained customers' features are repeated (new ids) up to ``n`` rows: scoring cost
    depends on the rows, not on where they came from.
    """
    import mlflow

    from pipelines import serving
    from pipelines.config import load_config
    from pipelines.train import train as run_train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config()
        cfg["tracking"]["uri"] = f"sqlite:///{tmp}/mlflow.db"
        mlflow.MlflowClient(cfg["tracking"]["uri"]).search_experiments()
        result = run_train(folder, cfg=cfg, output=Path(tmp) / "out")
        features = pd.read_parquet(result.output / "features.parquet").reset_index(drop=True)
        rows = features.sample(n, replace=True, random_state=0, ignore_index=True)
        rows.index = pd.Index([f"c{i:07d}" for i in range(n)], name="customer_id")
        start = time.perf_counter()
        model = serving.load_served_model(result.model_uri, cfg)
        loaded = time.perf_counter() - start
        scored = model.predict(rows)
        seconds = time.perf_counter() - start
    return dict(customers=len(scored), seconds=seconds, load_seconds=loaded)


def worker(kind: str, n: int, folder: Path, out: Path) -> None:
    """Run one measurement in this (fresh) process and write it as JSON to ``out``."""
    peak, start = Peak(), time.perf_counter()
    result = dict(
        generate=lambda: {"rows": generate(n, folder)}, floor=lambda: io_floor(folder),
        baseline=lambda: baseline(folder), train=lambda: train(folder, peak),
        clv=lambda: clv_at_scale(n), score=lambda: score_at_scale(n, folder),
        generate_csv=lambda: {"rows": generate_csv(n, folder)}, csv_floor=lambda: csv_floor(folder),
        csv_load=lambda: csv_load(folder),
    )[kind]()  # fmt: skip
    peak.reset()
    result.update(wall_seconds=time.perf_counter() - start, peak_rss=peak.overall)
    out.write_text(json.dumps(result, indent=2, default=float))


def spawn(kind: str, n: int, folder: Path) -> dict:
    """Run one measurement in a fresh Python process and return its result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        log.info("%s, %d customers ...", kind, n)
        cmd = [sys.executable, __file__, "--worker", kind, str(n), str(folder), out.name]
        subprocess.run(cmd, check=True, cwd=ROOT, env=SMALL_PAGES)
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
    "| {ratio:.0f}x | {ratio_load:.0f}x | {baseline} | {baseline_peak} | {vs_baseline} |"
)  # fmt: skip


def table_md(results: dict) -> str:
    """Render the results as a markdown table (seconds of wall time unless stated)."""
    m, sizes = results["machine"], results["sizes"]
    head = ["customers", "events", *STAGES, "other", "**total**", "CPU s", "peak GiB", "score"]
    head += ["I/O floor", "features / floor", "load + features / floor", "baseline"]
    head += ["baseline GiB", "total / baseline"]
    lines = [
        f"Measured {m['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, "
        f"load average {m['load_average'][0]:.1f} at start; `{results['command']}`.\n",
        "| " + " | ".join(head) + " |",
        "|" + "---:|" * len(head),
    ]
    for r in sizes:
        tr, cols, floor, base = r["train"], _grouped(r["train"]), r["floor"], r.get("baseline")
        values = dict(
            cols, customers=r["customers"], events=r["events"] / 1e6, total=tr["seconds"],
            other=tr["seconds"] - sum(cols.values()), cpu=tr["cpu_seconds"],
            peak=max(v["peak_rss"] for v in tr["stages"].values()) / GIB,
            score=tr["score"]["seconds"], floor=floor["seconds"],
            ratio=cols["features"] / floor["seconds"],
            ratio_load=(cols["load"] + cols["features"]) / floor["seconds"],
            baseline=f"{base['seconds']:.1f}" if base else "-",
            baseline_peak=f"{base['peak_rss'] / GIB:.2f}" if base else "-",
            vs_baseline=f"{tr['seconds'] / base['seconds']:.2f}x" if base else "-",
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
    lines.append(
        "\n`peak GiB`: the train's own (the largest of its stages' peak resident memory); "
        "`score` then places every customer with the served model in the same process, "
        + ", ".join(
            f"{r['customers']:,}: peak {r['train']['peak_rss'] / GIB:.2f} GiB" for r in sizes
        )
        + "."
    )
    faults = []  # the longest three stages of each size (results of older runs lack them)
    for r in sizes:
        stages = r["train"]["stages"]
        if all("system_seconds" in st for st in stages.values()):
            longest = sorted(stages, key=lambda name: -stages[name]["seconds"])[:3]
            faults.append(f"{r['customers']:,}: " + ", ".join(
                f"{name.lower()} {stages[name]['system_seconds']:.1f} s, "
                f"{stages[name]['minor_faults'] / 1e6:.2f}M" for name in longest
            ))  # fmt: skip
    if faults:
        lines.append(
            "\nSystem CPU seconds and minor page faults of the longest stages (the kernel "
            f"handing them new memory): {'; '.join(faults)}."
        )
    if any(r.get("baseline") is None for r in sizes):
        lines.append(
            f"\nNo baseline above {results.get('baseline_max', 0):,} customers "
            "(`--baseline-max`): the pandas notebook holds every event in memory."
        )
    lines += _rounds_md(results)
    if "csv" in results:
        c = results["csv"]
        floor, ours = c["csv_floor"]["seconds"], c["csv_load"]
        lines.append(
            f"\nThe {c['customers']:,}-customer demo as CSV "
            f"({(c['rows']['usage_events'] + c['rows']['engagement_events']) / 1e6:.1f}M "
            f"events): DuckDB's own `read_csv` of every file {floor:.1f} s; our load and checks "
            f"{ours['load_seconds']:.1f} s, features {ours['features_seconds']:.1f} s: "
            f"**{ours['seconds'] / floor:.1f}x** `read_csv` ({ours['cpu_seconds']:.0f} CPU s)."
        )
        if "train" in c:
            whole, peak = c["train"]["seconds"], c["train"]["peak_rss"] / GIB
            lines.append(
                f"The whole train run on those CSV files: {whole:.1f} s, "
                f"**{whole / floor:.1f}x** `read_csv` (peak {peak:.2f} GiB)."
            )
    if "scale" in results:
        clv, score = results["scale"]["clv"], results["scale"]["score"]
        fitted = ", ".join(
            f"{k} {v:.3g} ({clv['true_params'][k]:g})" for k, v in clv["params"].items()
        )
        lines += [
            f"\nAt {clv['customers']:,} customers (`--scale`): CLV (BG/NBD + Gamma-Gamma fit and "
            f"predict, simulated histories) {clv['seconds']:.1f} s "
            f"(fit {clv['fit_seconds']:.1f} s), "
            f"peak {clv['peak_rss'] / GIB:.2f} GiB; fitted (true) {fitted}.",
            f"Scoring {score['customers']:,} customers with the served model: "
            f"{score['seconds']:.1f} s (model load {score['load_seconds']:.1f} s), whole "
            f"process peak {score['peak_rss'] / GIB:.2f} GiB (includes the train that made "
            "the model).",
        ]
    return "\n".join(lines) + "\n"


def _rounds_md(results: dict) -> list[str]:
    """Lines on the repeated rounds (`--repeat`): median exponents, each round's CSV ratio."""
    sizes, lines = results["sizes"], []
    rounds = [r.get("rounds", []) for r in sizes]
    if len(sizes) > 1 and all(len(r) > 1 for r in rounds):

        def median_cpu(size_rounds: list) -> dict[str, float]:
            per = [_grouped(r["train"], "cpu_seconds") for r in size_rounds]
            return {k: float(np.median([p[k] for p in per])) for k in STAGES}

        medians = [median_cpu(r) for r in rounds]
        for i in range(len(sizes) - 1):
            a, b, ma, mb = sizes[i], sizes[i + 1], medians[i], medians[i + 1]
            ratio = math.log(b["customers"] / a["customers"])
            x = [f"{k} {math.log(max(mb[k], 0.05) / max(ma[k], 0.05)) / ratio:.2f}" for k in ma]
            lines.append(
                f"\nMedian CPU time of {len(rounds[0])} rounds ~ n^x, {a['customers']:,} -> "
                f"{b['customers']:,}: " + ", ".join(x)
            )
        totals = "; ".join(
            f"{s['customers']:,}: " + ", ".join(f"{r['train']['seconds']:.1f}" for r in rr)
            for s, rr in zip(sizes, rounds, strict=True)
        )
        lines.append(f"\nThe train's wall seconds, round by round: {totals}.")
    csv_rounds = results.get("csv", {}).get("rounds", [])
    if len(csv_rounds) > 1:
        ratios = [r["train"]["seconds"] / r["csv_floor"]["seconds"] for r in csv_rounds]
        each = ", ".join(
            f"{r['train']['seconds']:.1f} s / {r['csv_floor']['seconds']:.1f} s = {x:.1f}x"
            for r, x in zip(csv_rounds, ratios, strict=True)
        )
        lines.append(
            f"\nThe CSV train against the `read_csv` of its own round, {len(ratios)} rounds: "
            f"{each} (median {np.median(ratios):.1f}x)."
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the benchmark (or one worker)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="customers, comma-separated")
    parser.add_argument("--data-root", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks", help="results folder")
    parser.add_argument(
        "--scale", type=int, default=1_000_000,
        help="customers for the CLV and scoring benchmarks (0: skip them)",
    )  # fmt: skip
    parser.add_argument(
        "--csv", type=int, default=200_000,
        help="customers of the CSV demo whose load is timed against read_csv (0: skip it)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline-max", type=int, default=1_000_000,
        help="largest base the pandas baseline runs on (it holds every event in memory)",
    )  # fmt: skip
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="rounds of every size's floor and train and of the CSV read_csv and train",
    )  # fmt: skip
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)  # KIND N DATA RESULT
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("mlflow", "alembic", "numba", "matplotlib", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.worker:
        kind, n, data, result = args.worker
        return worker(kind, int(n), Path(data), Path(result))
    results = {"machine": machine(), "command": " ".join(sys.argv), "sizes": [],
               "baseline_max": args.baseline_max}  # fmt: skip
    for n in sorted(int(s) for s in args.sizes.split(",")):
        folder = args.data_root / str(n)
        stamp = folder / "rows.json"  # written last: the cached base is complete
        if not stamp.exists():
            folder.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps(spawn("generate", n, folder)["rows"]))
        rows = json.loads(stamp.read_text())
        size = dict(customers=n, rows=rows, events=rows["usage_events"] + rows["engagement_events"])
        kinds = ("floor", "baseline", "train") if n <= args.baseline_max else ("floor", "train")
        size.update({kind: spawn(kind, n, folder) for kind in kinds})
        results["sizes"].append(size)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        (args.out / "results.md").write_text(table_md(results))
    if args.csv:  # the demo as CSV: our load (checks, parsing) and features vs DuckDB's read_csv
        folder = args.data_root / f"csv{args.csv}"
        stamp = folder / "rows.json"
        if not stamp.exists():
            folder.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps(spawn("generate_csv", args.csv, folder)["rows"]))
        results["csv"] = dict(customers=args.csv, rows=json.loads(stamp.read_text()))
        kinds = ("csv_floor", "csv_load", "train")
        results["csv"].update({k: spawn(k, args.csv, folder) for k in kinds})
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        (args.out / "results.md").write_text(table_md(results))
    for _ in range(args.repeat - 1):  # more rounds: every size, then the CSV demo, again
        for size in results["sizes"]:
            folder = args.data_root / str(size["customers"])
            first = {"floor": size["floor"], "train": size["train"]}
            rounds = size.setdefault("rounds", [first])
            rounds.append({k: spawn(k, size["customers"], folder) for k in ("floor", "train")})
        if args.csv:
            c, folder = results["csv"], args.data_root / f"csv{args.csv}"
            first = {"csv_floor": c["csv_floor"], "train": c["train"]}
            rounds = c.setdefault("rounds", [first])
            rounds.append({k: spawn(k, args.csv, folder) for k in ("csv_floor", "train")})
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        (args.out / "results.md").write_text(table_md(results))
    if args.scale:  # scoring uses the smallest base's train; its features repeat to --scale rows
        folder = args.data_root / str(results["sizes"][0]["customers"])
        results["scale"] = {k: spawn(k, args.scale, folder) for k in ("clv", "score")}
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        (args.out / "results.md").write_text(table_md(results))
    sys.stdout.write(table_md(results))


if __name__ == "__main__":
    main()
