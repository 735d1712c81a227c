"""Compare this checkout with an earlier commit: the same outputs, and the time, back to back.

A speed change must not change what a run produces, and this machine's timings drift by
a fifth between runs of the same code, so both are measured against the earlier code in
the same session::

    # train each data folder with both codes; compare the outputs byte for byte
    .venv/bin/python benchmarks/ab.py --against 88858bc --data data/demo data/b2b
    # then `make bench`'s train, old and new interleaved, twice
    .venv/bin/python benchmarks/ab.py --against 88858bc --bench 1000000 --csv 200000 \\
        --data-root /work/bench-data --repeat 2

The earlier commit is checked out in a temporary git worktree. Each train gets its own
MLflow store (no champion from an earlier run). Exit status 1 when an output differs.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("assignments.csv", "personas.json", "segmentation.json", "clv_model.json",
           "features.parquet", "data_quality.json")  # fmt: skip


def train(tree: Path, data: Path, folder: Path) -> Path:
    """Run ``personas train`` with the code of ``tree``; return its output folder."""
    folder.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(tree),
           "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}  # fmt: skip
    cmd = [sys.executable, "-m", "pipelines", "train", "--data", str(data.resolve()),
           "--output", str(folder / "out")]  # fmt: skip
    with (folder / "log.txt").open("w") as log:
        subprocess.run(cmd, cwd=folder, env=env, stdout=log, stderr=log, check=True)
    return folder / "out"


def compare(old: Path, new: Path, data: Path, tmp: Path) -> bool:
    """Train ``data`` with both codes; print and return whether every output is the same."""
    same = True
    a, b = train(old, data, tmp / "old" / data.name), train(new, data, tmp / "new" / data.name)
    for name in OUTPUTS:
        if not (a / name).exists() and not (b / name).exists():
            continue
        equal = (
            (a / name).exists()
            and (b / name).exists()
            and filecmp.cmp(a / name, b / name, shallow=False)
        )
        same &= equal
        _say(f"{data.name:>24} {name:<18} {'same' if equal else 'DIFFERS'}")
    return same


def bench(tree: Path, args: argparse.Namespace, out: Path) -> dict:
    """Run ``benchmarks/bench.py`` of ``tree`` (train only, no baseline); return its JSON."""
    cmd = [sys.executable, "benchmarks/bench.py", "--sizes", args.bench, "--csv", str(args.csv),
           "--scale", "0", "--baseline-max", "0", "--out", str(out)]  # fmt: skip
    if args.data_root:
        cmd += ["--data-root", str(args.data_root)]
    # the tree's own packages, not the editable install's (which is this checkout's)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with (out.parent / f"{out.name}.log").open("w") as log:
        subprocess.run(cmd, cwd=tree, env=env, stdout=log, stderr=log, check=True)
    return json.loads((out / "results.json").read_text())


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _line(side: str, what: str, run: dict) -> str:
    """One train's total and its stages over 0.3 s, on one line."""
    stages = " ".join(
        f"{k.split()[0][:7]}={v['seconds']:.1f}" for k, v in run["stages"].items()
        if v["seconds"] >= 0.3
    )  # fmt: skip
    total = f"{run['seconds']:6.1f} s ({run['cpu_seconds']:.0f} CPU s)"
    return f"{side:>4} {what:>9}: {total}  {stages}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the earlier commit")
    parser.add_argument("--data", type=Path, nargs="*", default=[], help="data folders to train")
    parser.add_argument("--bench", help="customers for bench.py's train (comma-separated)")
    parser.add_argument("--csv", type=int, default=0, help="customers of the CSV run (0: none)")
    parser.add_argument("--data-root", type=Path, help="bench.py's --data-root")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved bench rounds")
    args = parser.parse_args()
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), args.against],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            for data in args.data:
                same &= compare(old, ROOT, data, Path(tmp))
            for i in range(args.repeat if args.bench else 0):
                for side, tree in (("old", old), ("new", ROOT)):
                    result = bench(tree, args, Path(tmp) / f"bench_{side}{i}")
                    for size in result["sizes"]:
                        _say(_line(side, f"{size['customers']:,}", size["train"]))
                    if "csv" in result:
                        floor = result["csv"]["csv_floor"]["seconds"]
                        run = result["csv"]["train"]
                        ratio = f"  ({run['seconds'] / floor:.1f}x read_csv, {floor:.2f} s)"
                        _say(_line(side, "CSV", run) + ratio)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
