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


#: The reference time of `monthly_and_annual_subscribers`.
SUBSCRIBERS_AS_OF = "2026-06-30"


def _subscriptions(rng, n: int, cycle_days: int, price: float, churn: float, start, end):
    """Customers billed every ``cycle_days`` until they churn (``churn`` per cycle)."""
    rows, status = [], {}
    for i in range(n):
        cid = f"{'M' if cycle_days < 60 else 'A'}{i:04d}"
        day = start + pd.Timedelta(days=int(rng.integers(0, 365)))
        while day <= end:
            rows.append((cid, day, price))
            if rng.random() < churn:
                break
            day += pd.Timedelta(days=cycle_days)
        status[cid] = rows[-1][1] > end - pd.Timedelta(days=cycle_days)  # still billed
    return rows, status


def monthly_and_annual_subscribers() -> tuple[dict[str, pd.DataFrame], pd.Series]:
    """A base of 400 monthly subscribers (``M...``) and 150 annual ones (``A...``).

    Returns the tables (customers, transactions) and whether each is still billed.
    """
    import numpy as np

    rng = np.random.default_rng(3)
    start, end = pd.Timestamp("2023-01-01"), pd.Timestamp(SUBSCRIBERS_AS_OF)
    monthly, m_active = _subscriptions(rng, 400, 30, 12.0, 0.03, start, end)
    annual, a_active = _subscriptions(rng, 150, 365, 120.0, 0.25, start, end)
    frame = pd.DataFrame(monthly + annual, columns=["customer_id", "timestamp", "amount"])
    tables = {
        "customers": pd.DataFrame({"customer_id": sorted({*m_active, *a_active})}),
        "transactions": frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y-%m-%d")),
    }
    return tables, pd.Series({**m_active, **a_active})


@pytest.fixture
def write_tables(tmp_path: Path) -> Callable[..., Path]:
    """Return ``write(tables, folder="data") -> Path`` writing CSV tables under ``tmp_path``."""

    def write(tables: Tables, folder: str = "data") -> Path:
        return write_csv_tables(tmp_path / folder, tables)

    return write


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the session (see `pgserver`); skipped if none.

    Its superuser's password is only in ``server.password``: give it as ``PGPASSWORD``.
    """
    import pgserver

    if pgserver.bin_dir() is None:
        pytest.skip(
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): `make test` "
            "installs Debian's postgresql package as root, or run apt-get install postgresql"
        )
    try:
        server = pgserver.start()
    except RuntimeError as error:
        pytest.skip(f"the throwaway PostgreSQL server did not start: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_demo(pg_server, tmp_path_factory):
    """The 800-customer demo (seed 1) as Parquet, and the same tables in schema ``sales``.

    Returns ``(folder, url)``; the URL names database ``shop``, schema ``sales``, no password.
    """
    import subprocess
    import sys

    import pgserver

    folder = tmp_path_factory.mktemp("pg-demo") / "data"
    subprocess.run(
        [sys.executable, "-m", "pipelines", "demo", "--out", str(folder), "--customers", "800"]
        + ["--seed", "1", "--format", "parquet"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    pgserver.create_database(pg_server, "shop")
    pgserver.load_folder(pg_server, "shop", folder, "sales")
    return folder, pg_server.url("shop", schema="sales")
