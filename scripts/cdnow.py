"""Fetch the CDNOW sample and write it as a contract data folder.

The CDNOW 1/10 sample (2,357 customers who first bought at CDNOW in the first quarter of
1997, and their purchases to June 1998; Fader, Hardie and Lee 2005) ships inside the
``Lifetimes`` wheel on PyPI as ``lifetimes/datasets/CDNOW_sample.txt``. We fetch the wheel
with pip (``pip download --no-deps lifetimes==0.11.3``), check its hash, cache it under
``data/cache/`` (git-ignored) and read the file from the zip: nothing is installed.

The file has one whitespace-separated row per transaction: the customer's index in the
full CDNOW data, their id in the sample (``0001``-``2357``), the date (``YYYYMMDD``), the
number of CDs and the dollar value. The contract folder holds ``customers.csv``
(``customer_id``, ``signup_date`` = first purchase) and ``transactions.csv``
(``customer_id``, ``timestamp``, ``amount``)::

    python scripts/cdnow.py --out data/cdnow
    make train DATA=data/cdnow
"""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import typer

__all__ = ["FetchError", "fetch_wheel", "read_transactions", "write_contract"]

logger = logging.getLogger("cdnow")

PROJ_ROOT = Path(__file__).resolve().parents[1]
CACHE = PROJ_ROOT / "data" / "cache"
PACKAGE = "lifetimes==0.11.3"
WHEEL = "Lifetimes-0.11.3-py3-none-any.whl"
WHEEL_SHA256 = "261e3dc89977c2b60767ca6728aaa29d429de0c814635070a749c36555895da8"
MEMBER = "lifetimes/datasets/CDNOW_sample.txt"
COLUMNS = ["index", "customer_id", "date", "cds", "amount"]


class FetchError(RuntimeError):
    """The wheel could not be downloaded (no network, no pip)."""


def fetch_wheel(cache: Path = CACHE, *, timeout: float = 300.0) -> Path:
    """Return the cached Lifetimes wheel, downloading it with pip the first time.

    Parameters
    ----------
    cache : Path, default=<project>/data/cache
        Folder the wheel is kept in.
    timeout : float, default=300.0
        Seconds pip may take.

    Returns
    -------
    Path
        The wheel file.

    Raises
    ------
    FetchError
        When pip is missing or the download fails.
    ValueError
        When the wheel's SHA-256 is not the one of the PyPI release.
    """
    wheel = Path(cache) / WHEEL
    if not wheel.exists():
        Path(cache).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--quiet", PACKAGE, "-d", str(cache)]
        logger.info("Downloading %s into %s", PACKAGE, cache)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise FetchError(f"pip download {PACKAGE} failed: {error}") from error
        if done.returncode != 0 or not wheel.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise FetchError(f"pip download {PACKAGE} failed (exit {done.returncode}): {tail[0]}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ValueError(
            f"{wheel} has SHA-256 {digest}, not {WHEEL_SHA256} (the PyPI release); delete it "
            "and fetch it again."
        )
    return wheel


def read_transactions(wheel: Path) -> pd.DataFrame:
    """Read the CDNOW sample transactions from the wheel.

    Parameters
    ----------
    wheel : Path
        The Lifetimes wheel (see `fetch_wheel`).

    Returns
    -------
    pandas.DataFrame
        One row per transaction: ``customer_id`` (the sample id as written, ``0001``),
        ``date`` (Timestamp), ``cds`` and ``amount`` (dollars), in file order.
    """
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(MEMBER).decode("ascii")
    frame = pd.read_csv(
        io.StringIO(text),
        sep=r"\s+",
        header=None,
        names=COLUMNS,
        dtype={"index": str, "customer_id": str, "date": str},
    )
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d")
    return frame.drop(columns="index")


def write_contract(transactions: pd.DataFrame, out: Path) -> Path:
    """Write the transactions as a contract folder (customers.csv, transactions.csv).

    Parameters
    ----------
    transactions : pandas.DataFrame
        As `read_transactions` returns.
    out : Path
        Folder to write; created if needed, its two files replaced.

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    first = transactions.groupby("customer_id", sort=True)["date"].min()
    customers = pd.DataFrame(
        {"customer_id": first.index, "signup_date": first.dt.strftime("%Y-%m-%d").to_numpy()}
    )
    customers.to_csv(out / "customers.csv", index=False)
    pd.DataFrame(
        {
            "customer_id": transactions["customer_id"],
            "timestamp": transactions["date"].dt.strftime("%Y-%m-%d"),
            "amount": transactions["amount"].map("{:.2f}".format),
        }
    ).to_csv(out / "transactions.csv", index=False)
    logger.info(
        "Wrote %d customers and %d transactions to %s", len(customers), len(transactions), out
    )
    return out


def main(
    out: Path = typer.Option(PROJ_ROOT / "data" / "cdnow", help="Contract folder to write."),
    cache: Path = typer.Option(CACHE, help="Where the Lifetimes wheel is cached."),
) -> None:
    """Fetch the CDNOW sample and write it as a contract data folder."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        wheel = fetch_wheel(cache)
    except FetchError as error:
        logger.error("%s", error)
        raise typer.Exit(1) from None
    write_contract(read_transactions(wheel), out)


if __name__ == "__main__":
    typer.run(main)
