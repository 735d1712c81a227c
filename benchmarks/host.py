"""Check the machine before timing anything: its CPU speed and how fast new memory comes.

On a virtual machine whose host takes back the memory the guest frees, a process's first
new gigabytes can cost seconds each while the CPU is as fast as ever; every benchmark
that needs several GiB then measures the host (see ``benchmarks/README.md``)::

    .venv/bin/python benchmarks/host.py          # sort 10M values; 1, 2, 4 GB of new memory

Each size is touched in a fresh process, as a benchmark's worker would.
"""

from __future__ import annotations

import subprocess
import sys
import time

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


def main() -> None:
    lines = [f"sort of 10M doubles: {sort_seconds():.2f} s (best of 3)"]
    for gb in (1, 2, 4):
        seconds = touch_seconds(gb)
        lines.append(f"{gb} GB of new memory: {seconds:.2f} s ({gb / seconds:.2f} GB/s)")
    lines.append("new memory far below ~2 GB/s: the host is slow to give memory; timings vary")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
