"""Does the model stage find the planted personas? Held-out bases, chosen vs forced.

For every design of `benchmarks/generators.py` and every seed, the script writes the
base (once; ``--work``), then runs ``personas train`` (``python -m pipelines train``, the
real recipe with the default config; a throw-away MLflow store) three times:

- **chosen**: the default config;
- **forced**: ``model.force: kmeans_k<planted>``, the same pipeline told the planted
  number (structured designs only);
- **silhouette**: ``criterion: silhouette`` (the old rule) with the same ``k_max``, for
  comparison.

It compares each run's ``assignments.csv`` with ``planted_personas.csv`` (adjusted Rand
index over the customers who belong to a persona; noise customers left out) and reads the
selection (chosen model, number of personas, structure, stability) from the run's
``segmentation.json``, or, until the recipe writes one, from ``Segmentation.summary()``
captured as the recipe calls `select_segmentation`. Then it writes ``selection.md`` (the
table) and ``selection.json`` here.

``--density`` adds a fourth run per base, **density**: HDBSCAN candidates on
(``density_shares: [0.02, 0.05, 0.1]`` on a UMAP embedding), to see which family the
comparison picks on round, overlapping personas; and the same comparison, in process, on
non-round groups (`generators.non_convex`: half-moons in 12 dimensions, rings in 2), in
the UMAP and in the scaled space.

``--euclidean`` adds a run per structured base with ``model.metric: euclidean`` (k-means'
own borders, without `models.pooled`'s refinement); with ``--reuse`` it runs only those
and adds them to ``selection.json``'s runs.

``--cost N`` also times the model stage (`pipelines.segment.segment`: scaling, the search, the
stability resamples, the final fit) on N customers: the features of the first base's
chosen run, drawn with replacement under new ids.

Usage::

    PYTHONPATH=. python benchmarks/selection.py                 # every design, seeds 0 and 1
    PYTHONPATH=. python benchmarks/selection.py --designs continuum --seeds 0 --no-silhouette
    PYTHONPATH=. python benchmarks/selection.py --density --cost 1000000 --density-cost 200000
    PYTHONPATH=. python benchmarks/selection.py --reuse --euclidean --cost 1000000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from generators import DESIGNS, non_convex, write_base  # noqa: E402

log = logging.getLogger("selection")

#: settings the recipe may not pass to `select_segmentation` yet (it passes them once it
#: reads them from the config)
EXTRA = ("criterion", "max_valley", "min_valley_z", "min_distance", "min_share")


def _capture_and_train(data: str, out: str, config: str, extra: str) -> None:
    """Run ``personas train`` in this process, keeping `Segmentation.summary()` beside ``out``.

    ``extra`` (JSON) names `select_segmentation` settings to pass if the recipe does not.
    """
    import models
    import models.selection as selection

    original = selection.select_segmentation
    settings = json.loads(extra)

    def spy(X, **kwargs):
        for key, value in settings.items():
            kwargs.setdefault(key, value)
        seg = original(X, **kwargs)
        summary = seg.summary()
        summary["stability_ari"] = seg.stability.get("ari")
        Path(f"{out}.selection.json").write_text(json.dumps(summary, default=str))
        return seg

    selection.select_segmentation = spy
    models.select_segmentation = spy
    import pipelines.segment

    pipelines.segment.select_segmentation = spy
    from pipelines.cli import app

    sys.argv = ["personas", "train", "--data", data, "--config", config, "--output", out]
    app()


def _run(data: Path, out: Path, model: dict, extra: dict, work: Path) -> dict:
    """One train run in a fresh process; the selection summary and the wall time."""
    config = out.with_suffix(".yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    store = work / "mlflow.db"
    config.write_text(
        json.dumps({"tracking": {"uri": f"sqlite:///{store}", "model_name": None}, "model": model})
    )
    call = ", ".join(repr(str(a)) for a in (data, out, config, json.dumps(extra)))
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import selection; "
        f"selection._capture_and_train({call})"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"train failed on {data}:\n{proc.stderr[-3000:]}")
    model_s = [
        float(line.rsplit("done in", 1)[1].strip().rstrip("s"))
        for line in proc.stderr.splitlines()
        if "Model done in" in line
    ]
    written, spied = out / "segmentation.json", Path(f"{out}.selection.json")
    summary = json.loads((written if written.exists() else spied).read_text())
    if spied.exists():  # segmentation.json holds no overall stability: the spy's summary does
        summary.setdefault("stability_ari", json.loads(spied.read_text()).get("stability_ari"))
    return {"summary": summary, "wall_s": wall, "model_s": model_s[0] if model_s else None}


def _ari(out: Path, planted: pd.Series) -> tuple[float, int]:
    found = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
    found = found.set_index("customer_id")["persona_id"]
    truth = planted[planted != "noise"]
    found = found.reindex(truth.index)
    return float(adjusted_rand_score(truth, found)), int(found[found >= 0].nunique())


DENSITY = {"density_shares": [0.02, 0.05, 0.1], "density_space": "umap"}


def bench(
    designs, seeds, customers, work: Path, kinds: set[str], previous: list[dict] | None = None
) -> list[dict]:
    """Run the ``kinds`` of train run on every base; add them to ``previous`` rows if given."""
    done = {(r["design"], r["seed"]): r for r in previous or []}
    rows = []
    for name in designs:
        design = DESIGNS[name]
        for seed in seeds:
            data = work / "data" / f"{name}_{seed}"
            if not (data / "planted_personas.csv").exists():
                write_base(data, design, customers, seed)
            planted = pd.read_csv(data / "planted_personas.csv", dtype=str)
            planted = planted.set_index("customer_id")["persona"]
            row = done.get((name, seed), {"design": name, "seed": seed, "planted": design.k})
            runs = {
                "chosen": ({}, {}),
                "forced": ({"force": f"kmeans_k{design.k}"}, {}),
                "silhouette": ({"criterion": "silhouette"}, {"criterion": "silhouette"}),
                "density": (DENSITY, {}),
                "euclidean": ({"metric": "euclidean"}, {}),
            }
            structured_only = {"forced", "euclidean"}
            runs = {
                k: v
                for k, v in runs.items()
                if k in kinds and (design.k > 1 or k not in structured_only)
            }
            for run, (model, extra) in runs.items():
                out = work / "runs" / f"{name}_{seed}_{run}"
                result = _run(data, out, model, extra, work)
                ari, k = _ari(out, planted)
                s = result["summary"]
                row[run] = {
                    "name": s["chosen"],
                    "k": k,
                    "ari": ari,
                    "structure": s["structure"],
                    "stability": s.get("stability_ari"),
                    "model_s": result["model_s"],
                }
                if run == "chosen":
                    row["reason"] = s["reason"]
                    row["structure_reason"] = s.get("structure_reason", "")
                log.info(
                    "%s seed %d %s: %s (%d personas) ARI %.3f %s, model %ss",
                    *(name, seed, run, s["chosen"], k, ari, s["structure"], result["model_s"]),
                )
            rows.append(row)
    return rows


def shapes(seeds) -> list[dict]:
    """The family comparison on non-round groups, in the UMAP and in the scaled space."""
    from models.selection import select_segmentation

    rows = []
    for kind in ("moons", "rings"):
        for seed in seeds:
            X, y = non_convex(kind, seed)
            planted = y != "noise"
            for space in ("umap", "scaled"):
                t0 = time.perf_counter()
                seg = select_segmentation(
                    X,
                    density_shares=DENSITY["density_shares"],
                    density_space=space,
                    umap_params={"n_components": 5, "n_neighbors": 30, "min_dist": 0.0},
                    random_state=42,
                )
                kmeans = seg.candidates[
                    (seg.candidates["family"] == "kmeans") & seg.candidates["finalist"]
                ].index[0]
                rows.append(
                    {
                        "data": kind,
                        "seed": seed,
                        "space": space,
                        "planted": len(set(y[planted])),
                        "winner": seg.name,
                        "k": seg.n_personas,
                        "ari": float(adjusted_rand_score(y[planted], seg.nearest[planted])),
                        "kmeans": kmeans,
                        "outliers_caught": float(seg.outlier[~planted].mean()),
                        "seconds": time.perf_counter() - t0,
                    }
                )
                log.info("%s seed %d %s: %s ARI %.3f", kind, seed, space, seg.name, rows[-1]["ari"])
    return rows


def cost(n: int, work: Path, model: dict | None = None) -> dict:
    """Time the model stage (`pipelines.segment.segment`) on ``n`` customers."""
    import pyarrow.parquet as pq

    from features.table import Feature, FeatureTable
    from pipelines.config import load_config
    from pipelines.segment import segment

    # the base with the most personas: the search costs most there
    runs = sorted(
        (work / "runs").glob("*_chosen"), key=lambda p: ("fourteen" not in p.name, p.name)
    )
    if not runs:
        raise SystemExit("--cost needs a chosen run in --work: run the benchmark first.")
    path = runs[0] / "features.parquet"
    meta = json.loads(pq.read_schema(path).metadata[b"personas"])
    frame = pd.read_parquet(path).set_index("customer_id")
    rng = np.random.default_rng(0)
    big = frame.iloc[rng.integers(len(frame), size=n)].copy()
    big.index = pd.Index([f"X{i:07d}" for i in range(n)], name="customer_id")
    table = FeatureTable(
        frame=big,
        features=[Feature(**f) for f in meta["features"]],
        as_of=pd.Timestamp(meta["as_of"]),
    )
    cfg = load_config(None)
    cfg["model"].update(model or {})
    t0, c0 = time.perf_counter(), time.process_time()
    seg = segment(table, cfg).selection
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    log.info("model stage on %d customers: %.1f s wall, %.1f s CPU (%s)", n, wall, cpu, seg.name)
    return {"customers": n, "wall_s": wall, "cpu_s": cpu, "chosen": seg.name, "model": model}


def write(rows: list[dict], costs: list[dict], shaped: list[dict], command: str) -> None:
    structured = [r for r in rows if r["planted"] > 1]
    right = sum(r["chosen"]["k"] == r["planted"] for r in structured)
    close = sum(r["chosen"]["ari"] >= r["forced"]["ari"] - 0.03 for r in structured)
    flat = [r for r in rows if r["planted"] == 1]
    honest = sum(r["chosen"]["structure"] in ("none", "weak") for r in flat)
    distinct = sum(r["chosen"]["structure"] == "distinct" for r in structured)
    sil = [r for r in structured if "silhouette" in r]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}); `{command}`.",
        "",
        "Held-out bases from `benchmarks/generators.py` (5,000 customers each, through the "
        "real recipe: tables -> features -> scaling -> selection). ARI: adjusted Rand index "
        "of the run's personas with the planted ones, over the customers who belong to a "
        "planted persona. *forced*: the same pipeline with `model.force: kmeans_k<planted>`. "
        "*silhouette*: the previous rule (`criterion: silhouette`), same `k_max`. "
        "*euclidean*: the same run with `model.metric: euclidean` (k-means' own borders, "
        "without the pooled within-persona metric).",
        "",
        "| design | seed | planted k | chosen k | ARI | forced ARI | euclidean ARI | structure "
        "| stability | silhouette k | silhouette ARI | model s |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        c, f, s = r["chosen"], r.get("forced", {}), r.get("silhouette", {})
        e = r.get("euclidean", {})
        fmt = lambda v, p=3: "" if v is None else f"{v:.{p}f}"  # noqa: E731
        lines.append(
            f"| {r['design']} | {r['seed']} | {r['planted'] if r['planted'] > 1 else 'none'} "
            f"| {c['k']} | {fmt(c['ari']) if r['planted'] > 1 else ''} | {fmt(f.get('ari'))} "
            f"| {fmt(e.get('ari'))} | {c['structure']} | {fmt(c['stability'], 2)} "
            f"| {s.get('k', '')} "
            f"| {fmt(s.get('ari')) if r['planted'] > 1 else ''} | {fmt(c['model_s'], 1)} |"
        )
    lines += [
        "",
        f"Structured runs: chosen k = planted in **{right} of {len(structured)}**; ARI within "
        f"0.03 of forced (or better) in **{close} of {len(structured)}**; structure "
        f"`distinct` in {distinct} of {len(structured)}. Structureless runs `none` or `weak`: "
        f"**{honest} of {len(flat)}**.",
    ]
    if sil:
        sright = sum(r["silhouette"]["k"] == r["planted"] for r in sil)
        lines.append(f"The silhouette rule found the planted k in {sright} of {len(sil)}.")
    dense = [r for r in rows if "density" in r]
    if dense:
        lines += [
            "",
            "**Model family** on the same bases, HDBSCAN candidates on (`density_shares: "
            "[0.02, 0.05, 0.1]`, UMAP space): the winner and its ARI (structureless: its "
            "number of personas).",
            "",
            "| design | seed | winner | ARI | k-means ARI (default run) |",
            "|---|---:|---|---:|---:|",
        ]
        lines += [
            f"| {r['design']} | {r['seed']} | {r['density']['name']} | "
            f"{r['density']['ari']:.3f} | {r['chosen']['ari']:.3f} |"
            if r["planted"] > 1
            else f"| {r['design']} | {r['seed']} | {r['density']['name']} "
            f"({r['density']['k']} personas) | | |"
            for r in dense
        ]
    if shaped:
        lines += [
            "",
            "Non-round groups (`generators.non_convex`, matrices through `select_segmentation`, "
            "HDBSCAN candidates on): ARI of each customer's nearest persona, planted points.",
            "",
            "| data | seed | space | planted | winner | personas | ARI | k-means finalist "
            "| noise caught | seconds |",
            "|---|---:|---|---:|---|---:|---:|---|---:|---:|",
        ]
        lines += [
            f"| {r['data']} | {r['seed']} | {r['space']} | {r['planted']} | {r['winner']} "
            f"| {r['k']} | {r['ari']:.3f} | {r['kmeans']} | {r['outliers_caught']:.2f} "
            f"| {r['seconds']:.1f} |"
            for r in shaped
        ]
    if costs:
        stage = "Model stage (`pipelines.segment.segment`)"
        lines += ["", f"{stage}, features drawn with replacement:", ""]
        lines += [
            f"- {c['customers']:,} customers"
            + (f", {json.dumps(c['model'])}" if c.get("model") else ", default config")
            + f": {c['wall_s']:.1f} s wall, {c['cpu_s']:.1f} s CPU (chosen {c['chosen']})"
            for c in costs
        ]
    lines += ["", "Why each chosen run chose what it did:", ""]
    lines += [f"- {r['design']} {r['seed']}: {r['reason']} {r['structure_reason']}" for r in rows]
    (HERE / "selection.md").write_text("\n".join(lines) + "\n")
    results = {"command": command, "runs": rows, "cost": costs, "non_convex": shaped}
    (HERE / "selection.json").write_text(json.dumps(results, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench_selection")
    parser.add_argument("--no-silhouette", action="store_true")
    parser.add_argument("--density", action="store_true", help="also compare model families")
    parser.add_argument("--euclidean", action="store_true", help="also run model.metric: euclidean")
    parser.add_argument("--cost", type=int, default=0, help="also time the model stage on N")
    parser.add_argument(
        "--reuse", action="store_true", help="take the runs from selection.json, only time"
    )
    parser.add_argument(
        "--density-cost", type=int, default=0, help="also time it on N with HDBSCAN candidates"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.reuse:  # the runs of selection.json, plus the euclidean ones if asked for
        previous = json.loads((HERE / "selection.json").read_text())
        rows, shaped = previous["runs"], previous["non_convex"]
        if args.euclidean:
            designs = list(dict.fromkeys(r["design"] for r in rows))
            reused = sorted({r["seed"] for r in rows})
            rows = bench(designs, reused, args.customers, work, {"euclidean"}, rows)
    else:
        kinds = {"chosen", "forced"}
        kinds |= {"silhouette"} if not args.no_silhouette else set()
        kinds |= {"density"} if args.density else set()
        kinds |= {"euclidean"} if args.euclidean else set()
        rows = bench(args.designs.split(","), seeds, args.customers, work, kinds)
        shaped = shapes(seeds) if args.density else []
    costs = [cost(args.cost, work)] if args.cost else []
    if args.density_cost:
        costs.append(cost(args.density_cost, work, DENSITY))
    command = "python benchmarks/selection.py " + " ".join(sys.argv[1:])
    if args.reuse:
        command = previous["command"] + f"`, timed again with `{command}"
    write(rows, costs, shaped, command)


if __name__ == "__main__":
    main()
