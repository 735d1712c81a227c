"""Shared test helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd
import pytest

Tables = Mapping[str, pd.DataFrame | list[dict]]


def records(columns: str, *rows: tuple) -> list[dict]:
    """Turn a header and tuples into row dicts, e.g. ``records("customer_id nps", ("A", "9"))``.

    Keeps hand-made tables compact: one header string, one tuple per row.
    """
    names = columns.split()
    return [dict(zip(names, row, strict=True)) for row in rows]


def write_csv_tables(folder: Path, tables: Tables) -> Path:
    """Write one ``<table>.csv`` per entry of ``tables`` into ``folder``; return ``folder``.

    Values are written as given: pass strings (``"7"``, ``""``) to control the exact CSV text.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


@pytest.fixture
def write_tables(tmp_path: Path) -> Callable[..., Path]:
    """Return ``write(tables, folder="data") -> Path`` writing CSV tables under ``tmp_path``."""

    def write(tables: Tables, folder: str = "data") -> Path:
        return write_csv_tables(tmp_path / folder, tables)

    return write
