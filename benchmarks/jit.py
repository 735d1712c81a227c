"""What numba's on-disk cache saves: UMAP fits in fresh processes, cold and warm.

Each measurement is a fresh Python process fitting `models.reducers.UMAPReducer` on the
same 5,000 x 30 blobs: first with an empty cache folder (every numba function compiles),
then again with the folder the first run filled, and, as the floor, a second fit in the
same process (nothing left to compile)::

    .venv/bin/python benchmarks/jit.py            # writes benchmarks/jit.md
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fit_twice() -> dict:
    """Import the reducer, fit it twice on the same data; return the three timings."""
    start = time.perf_counter()
    from sklearn.datasets import make_blobs

    from models.reducers import UMAPReducer, import_umap

    import_umap()
    imported = time.perf_counter()
    X, _ = make_blobs(n_samples=5000, centers=6, n_features=30, random_state=0)
    UMAPReducer(random_state=0).fit(X)
    first = time.perf_counter()
    UMAPReducer(random_state=1).fit(X)
    return {
        "import": imported - start,
        "first_fit": first - imported,
        "second_fit": time.perf_counter() - first,
    }


def run(cache: Path) -> dict:
    """Run `fit_twice` in a fresh process with numba's cache in ``cache``."""
    env = {**os.environ, "PERSONAS_CACHE_DIR": str(cache)}
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, __file__, "--worker"], env=env, cwd=ROOT, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Measure cold and warm, print and write ``benchmarks/jit.md``."""
    if sys.argv[1:] == ["--worker"]:
        sys.stdout.write(json.dumps(fit_twice()) + "\n")
        return
    with tempfile.TemporaryDirectory() as tmp:
        cold, warm = run(Path(tmp)), run(Path(tmp))
    load = os.getloadavg()[0]
    lines = [
        f"UMAP fit on 5,000 x 30 in a fresh process ({len(os.sched_getaffinity(0))} CPUs, load "
        f"average {load:.1f}); `.venv/bin/python benchmarks/jit.py`:\n",
        "| numba cache | import umap (s) | first fit (s) | second fit, same process (s) |",
        "|---|---:|---:|---:|",
    ]
    for name, r in (("empty (first run)", cold), ("filled (every later run)", warm)):
        lines.append(
            f"| {name} | {r['import']:.1f} | {r['first_fit']:.1f} | {r['second_fit']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "jit.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
