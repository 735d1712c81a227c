"""Time the Model stage alone: after the features in one process, as `train` runs it, or not.

The Model stage (`pipelines.segment.segment`: scaling, the model search, stability) on a
base's feature table, with its wall, user and system CPU seconds and minor page faults
(new 4 kB pages)::

    .venv/bin/python benchmarks/model_stage.py /work/bench-data/3000000            # as in train
    .venv/bin/python benchmarks/model_stage.py /work/bench-data/3000000 --alone    # table cached
    .venv/bin/python benchmarks/model_stage.py /work/bench-data/1000000 --top 25   # + cProfile
    .venv/bin/python benchmarks/model_stage.py /work/bench-data/3000000 --alone --scaling 3

As in `train`, the process first loads the base and builds its features; with ``--alone``
it reads the feature table that an earlier run kept (``data/cache/model_stage/<base>.pkl``,
git-ignored, written by every run without it) in a fresh process instead. Both run
without NumPy's huge-page advice, as `train` does (`pipelines.run.small_pages`).
``--scaling N`` times only the stage's first step, the `models.Preprocessor`'s
``fit_transform`` of the table, N times.
"""

from __future__ import annotations

import argparse
import cProfile
import pickle
import pstats
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEPT = ROOT / "data" / "cache" / "model_stage"


def feature_table(base: Path, cfg: dict):
    """Load ``base``, build its feature table as `train` does, and keep a copy beside it."""
    from features import load_data
    from features.engine import Engine
    from pipelines.table import build_table

    loaded = load_data(
        base, columns=cfg["columns"], validation=cfg["validation"], privacy=cfg["privacy"],
        as_of=cfg["as_of"], tables=cfg["tables"],
    )  # fmt: skip
    table = build_table(loaded, Engine(loaded), cfg).table
    KEPT.mkdir(parents=True, exist_ok=True)
    (KEPT / f"{base.resolve().name}.pkl").write_bytes(pickle.dumps(table, protocol=5))
    return table


def _used(wall: float, before, after) -> str:
    """Wall seconds, and the user and system CPU and minor page faults between two rusages."""
    return (
        f"{wall:.1f} s (user {after.ru_utime - before.ru_utime:.1f} s, system "
        f"{after.ru_stime - before.ru_stime:.1f} s, {after.ru_minflt - before.ru_minflt:,} "
        "minor page faults)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="a data folder (a bench base)")
    parser.add_argument("--alone", action="store_true", help="the kept table, fresh process")
    parser.add_argument("--top", type=int, default=0, help="cProfile's slowest functions")
    parser.add_argument("--scaling", type=int, default=0, help="rounds of the scaling alone")
    args = parser.parse_args()
    from pipelines.config import load_config
    from pipelines.run import small_pages
    from pipelines.segment import _preprocessor, modelled_columns, segment

    cfg = load_config()
    with small_pages():
        kept = KEPT / f"{args.base.resolve().name}.pkl"
        if args.alone and kept.exists():
            table = pickle.loads(kept.read_bytes())
        else:
            table = feature_table(args.base, cfg)
        if args.scaling:
            columns = modelled_columns(table, cfg["model"])
            for _ in range(args.scaling):
                before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                scaled = _preprocessor(table, columns, cfg).fit_transform(table.frame[columns])
                wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
                sys.stdout.write(f"Scaling, {scaled.shape}: {_used(wall, before, after)}\n")
                del scaled
            return
        profile = cProfile.Profile() if args.top else None
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if profile:
            profile.enable()
        chosen = segment(table, cfg).selection.name
        if profile:
            profile.disable()
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    how = "alone" if args.alone else "after the features, in one process"
    sys.stdout.write(
        f"Model stage, {len(table.frame):,} customers, {how}: {_used(wall, before, after)}; "
        f"chosen {chosen}\n"
    )
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
