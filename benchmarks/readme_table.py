"""Write the README's benchmark table from ``benchmarks/results.json`` (what `bench.py` wrote).

Run after ``make bench``: ``.venv/bin/python benchmarks/readme_table.py``. It replaces the
table under "## Benchmarks" in README.md, so the README quotes the last run, not a copy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench  # noqa: E402

HEAD = (
    "| customers | events | load | features | clv | model | profile | total | CPU s | peak "
    "| I/O floor | load + features / floor | pandas baseline | total / baseline |"
)


def table(results: dict) -> str:
    """Return the README's table of one `bench.py` run."""
    rows = [HEAD, "|---:" * HEAD.count(" | ") + "|---:|"]
    for size in results["sizes"]:
        train, floor, base = size["train"], size["floor"]["seconds"], size.get("baseline")
        c = bench._grouped(train)
        peak = max(v["peak_rss"] for v in train["stages"].values()) / bench.GIB
        cells = [
            f"{size['customers']:,}", f"{size['events'] / 1e6:.1f}M",
            *(f"{c[k]:.1f} s" for k in ("load", "features", "clv", "model", "profile")),
            f"**{train['seconds']:.0f} s**", f"{train['cpu_seconds']:.0f}", f"{peak:.1f} GiB",
            f"{floor:.2f} s", f"{(c['load'] + c['features']) / floor:.0f}x",
            f"{base['seconds']:.1f} s" if base else "-",
            f"{train['seconds'] / base['seconds']:.1f}x" if base else "-",
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    """Replace the README's benchmark table with the last run's."""
    readme = HERE.parent / "README.md"
    text = readme.read_text()
    start = text.index(HEAD, text.index("## Benchmarks"))
    end = text.index("\n\n", start)
    new = table(json.loads((HERE / "results.json").read_text()))
    readme.write_text(text[:start] + new + text[end:])


if __name__ == "__main__":
    main()
