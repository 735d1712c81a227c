"""Check the machine before timing anything: its CPU speed and how fast new memory comes.

New memory comes at about 2 GB/s on 4 kB pages. NumPy advises Linux to back each array of
4 MB or more with 2 MB huge pages; where the kernel's transparent huge page ``defrag``
setting is ``madvise``, a fault in such an array waits while the kernel compacts memory
when no huge page is free, and after a bench has read gigabytes of files few are: a
gigabyte can then take seconds while the CPU is as fast as ever. The train and score
recipes run without that advice (`pipelines.run.small_pages`), and ``bench.py`` runs every
measurement without it, the pandas baseline too (see ``benchmarks/README.md``)::

    .venv/bin/python benchmarks/host.py    # sort 10M values; 1, 2, 4 GB with and without

Each size is touched in a fresh process, as a benchmark's worker would. It also says when
the kernel's DAMON pages out memory that was not used for a while (a ``pageout`` scheme
of a running kdamond; on this machine it takes page cache, not processes' memory): files
left cold for a minute, such as a bench's inputs between two measurements, are then read
from disk again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def sort_seconds() -> float:
    """Best of three sorts of 10M random doubles."""
    values = np.random.default_rng(0).random(10_000_000)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        np.sort(values)
        runs.append(time.perf_counter() - start)
    return min(runs)


def touch_seconds(gigabytes: float, advised: bool) -> float:
    """Seconds to allocate and touch ``gigabytes`` of new memory in a fresh process.

    ``advised``: with NumPy's huge-page advice (its default) or without (the recipes').
    """
    code = (
        "import time, numpy as np; s = time.perf_counter(); "
        f"a = np.ones({int(gigabytes * 1e9) // 8}); print(time.perf_counter() - s)"
    )
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "1" if advised else "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout)


def huge_pages() -> str:
    """The kernel's transparent huge page settings (``enabled``, ``defrag``), as chosen."""
    root = Path("/sys/kernel/mm/transparent_hugepage")
    if not root.exists():
        return "transparent huge pages: not on this system"
    chosen = {}
    for name in ("enabled", "defrag"):
        words = (root / name).read_text().split()
        chosen[name] = next((w.strip("[]") for w in words if w.startswith("[")), "?")
    return f"transparent huge pages: enabled {chosen['enabled']}, defrag {chosen['defrag']}"


def damon_pageout() -> list[str]:
    """Describe each running DAMON scheme that pages memory out (none: an empty list)."""
    found = []
    for kdamond in sorted(Path("/sys/kernel/mm/damon/admin/kdamonds").glob("[0-9]*")):
        if (kdamond / "state").read_text().strip() != "on":
            continue
        for scheme in sorted(kdamond.glob("contexts/*/schemes/[0-9]*")):
            if (scheme / "action").read_text().strip() != "pageout":
                continue
            intervals = scheme.parents[1] / "monitoring_attrs/intervals"
            aggregation = int((intervals / "aggr_us").read_text())
            age = int((scheme / "access_pattern/age/min").read_text()) * aggregation / 1e6
            quota = int((scheme / "quotas/bytes").read_text()) / 2**20
            reset = int((scheme / "quotas/reset_interval_ms").read_text()) / 1000
            found.append(
                f"DAMON ({kdamond.name}) pages out memory unused for {age:g} s, up to "
                f"{quota:.0f} MiB per {reset:g} s: a bench's files may be read from disk again"
            )
    return found


def main() -> None:
    lines = [f"sort of 10M doubles: {sort_seconds():.2f} s (best of 3)", huge_pages()]
    slowest = 0.0
    for gb in (1, 2, 4):
        times = {advised: touch_seconds(gb, advised) for advised in (True, False)}
        slowest = max(slowest, times[True] / times[False])
        lines.append(
            f"{gb} GB of new memory: {times[True]:.2f} s with NumPy's huge-page advice, "
            f"{times[False]:.2f} s without (the recipes')"
        )
    if slowest > 2:
        lines.append(
            f"with the advice up to {slowest:.0f}x slower: the kernel compacts memory for huge "
            "pages; bench.py runs every measurement, the baseline too, without it"
        )
    lines += damon_pageout()
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
