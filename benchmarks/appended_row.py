"""Write a copy of a CSV base whose usage events end with one row written another way.

As when another tool appends rows to an export: the last row repeats the file's last
event with its time written ``2026-09-28T07:38:27Z`` (a ``T`` and a zone), which DuckDB's
typed CSV reader refuses. The other tables are linked, not copied::

    .venv/bin/python benchmarks/appended_row.py <bench data>/csv200000 <bench data>/csv200000_late
    PYTHONPATH=. .venv/bin/python benchmarks/sql_profile.py <bench data>/csv200000_late
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="a folder of CSV tables")
    parser.add_argument("out", type=Path, help="the copy to write")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.base.glob("*.csv"):
        target = args.out / path.name
        target.unlink(missing_ok=True)
        if path.stem == "usage_events":
            shutil.copyfile(path, target)
        else:
            target.symlink_to(path.resolve())
    usage = args.out / "usage_events.csv"
    with usage.open("rb") as fh:
        fh.seek(max(usage.stat().st_size - 4096, 0))
        last = fh.read().decode().splitlines()[-1]
    late = re.sub(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)", r"\1T\2Z", last, count=1)
    if late == last:
        raise SystemExit(f"{usage}: no 'YYYY-MM-DD HH:MM:SS' time in its last row: {last!r}")
    with usage.open("a") as fh:
        fh.write(late + "\n")
    sys.stdout.write(f"{usage}: appended {late!r}\n")


if __name__ == "__main__":
    main()
