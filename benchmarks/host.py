"""Check the machine before timing anything: its CPU speed and how fast new memory comes.

On a virtual machine whose host takes back the memory the guest frees, a process's first
new gigabytes can cost seconds each while the CPU is as fast as ever; every benchmark
that needs several GiB then measures the host (see ``benchmarks/README.md``)::

    .venv/bin/python benchmarks/host.py          # sort 10M values; 1, 2, 4 GB of new memory

Each size is touched in a fresh process, as a benchmark's worker would. It also says when
the kernel's DAMON pages out memory that was not used for a while (a ``pageout`` scheme
of a running kdamond; on this machine it takes page cache, not processes' memory): files
left cold for a minute, such as a bench's inputs between two measurements, are then read
from disk again.
"""

from __future__ import annotations

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


def touch_seconds(gigabytes: float) -> float:
    """Seconds to allocate and touch ``gigabytes`` of new memory in a fresh process."""
    code = (
        "import time, numpy as np; s = time.perf_counter(); "
        f"a = np.ones({int(gigabytes * 1e9) // 8}); print(time.perf_counter() - s)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


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
    lines = [f"sort of 10M doubles: {sort_seconds():.2f} s (best of 3)"]
    for gb in (1, 2, 4):
        seconds = touch_seconds(gb)
        lines.append(f"{gb} GB of new memory: {seconds:.2f} s ({gb / seconds:.2f} GB/s)")
    lines.append("new memory far below ~2 GB/s: the host is slow to give memory; timings vary")
    lines += damon_pageout()
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
