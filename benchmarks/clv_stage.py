"""Time the Customer lifetime value stage, after the load and the features, as `train` runs it.

The stage (`pipelines.value.add_customer_value`: the billing history or purchase summary,
the fit, each customer's value joined onto the table) on a bench base, with its wall, user
and system CPU seconds and minor page faults, and optionally cProfile's slowest
functions::

    .venv/bin/python benchmarks/clv_stage.py /work/bench-data/1000000 --top 20
    .venv/bin/python benchmarks/clv_stage.py /work/bench-data/3000000 --top 20

Where the stage grows faster than the customers (README "Benchmarks"), this says which
part does. Runs without NumPy's huge-page advice, as `train` does.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model_stage import _used  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="a data folder (a bench base)")
    parser.add_argument("--top", type=int, default=0, help="cProfile's slowest functions")
    args = parser.parse_args()
    import pipelines.table
    from features import load_data
    from features.engine import Engine
    from pipelines.config import load_config
    from pipelines.run import small_pages

    cfg, measured = load_config(), {}
    stage = pipelines.table.add_customer_value

    def timed(*positional, **named):
        profile = cProfile.Profile() if args.top else None
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if profile:
            profile.enable()
        out = stage(*positional, **named)
        if profile:
            profile.disable()
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        measured.update(line=_used(wall, before, after), profile=profile)
        return out

    pipelines.table.add_customer_value = timed
    with small_pages():
        loaded = load_data(
            args.base, columns=cfg["columns"], validation=cfg["validation"],
            privacy=cfg["privacy"], as_of=cfg["as_of"], tables=cfg["tables"],
        )  # fmt: skip
        table = pipelines.table.build_table(loaded, Engine(loaded), cfg).table
    sys.stdout.write(
        f"Customer lifetime value, {len(table.frame):,} customers: {measured['line']}\n"
    )
    if measured["profile"]:
        pstats.Stats(measured["profile"]).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
