"""What every recipe's run needs: its stages shown as they go, the data loaded, a safe output.

- `stage`: logs a stage's start and duration; on a terminal, a bar with the count its long
  loops report (tables, feature families, candidates, resamples, folds) and a timer, plain
  log lines of that count otherwise;
- `load`: loads and checks the data source with a run's settings;
- `salt`: the secret behind pseudonymized ids, checked before any work;
- `small_pages`: a run's large arrays on ordinary pages, not waiting for huge ones;
- `staged_folder`: an output folder that appears whole, or not at all;
- `TrainResult`: what a train run hands its caller.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from features import LoadedData, load_data
from pipelines.config import PROJ_ROOT, ConfigError

try:  # NumPy's switch of its huge-page advice (`small_pages`)
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # NumPy 1.26
    from numpy.core.multiarray import _set_madvise_hugepage

__all__ = [
    "TrainResult", "load", "output_folder", "salt", "small_pages", "stage", "staged_folder",
]  # fmt: skip

logger = logging.getLogger(__name__)


#: Where long loops report their count, from any package, with no import of this one:
#: ``logging.getLogger("personas.progress").info("", extra={"progress": (done, total,
#: unit)})``, ``done`` counting the item under way or just finished (1 to ``total``).
#: Only a running `stage` listens.
PROGRESS = logging.getLogger("personas.progress")
PROGRESS.propagate = False
PROGRESS.setLevel(logging.INFO)
PROGRESS.addHandler(logging.NullHandler())

#: Off a terminal, a stage logs its count at most this often (and when a loop completes).
_LOG_EVERY_S = 5.0


class _Counted(logging.Handler):
    """Show the counts reported on `PROGRESS` while one stage runs."""

    def __init__(self, name: str, bar: Progress | None = None, task=None):
        super().__init__()
        self.name, self.bar, self.task, self.logged = name, bar, task, time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        done, total, unit = getattr(record, "progress", (None, None, None))
        if done is None:
            return
        if self.bar is not None:
            self.bar.update(
                self.task, completed=done, total=total, description=f"{self.name}: {unit}"
            )
        elif done >= total or time.perf_counter() - self.logged >= _LOG_EVERY_S:
            logger.info("%s: %d/%d %s", self.name, done, total, unit)
            self.logged = time.perf_counter()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Log a stage's start and duration, and show the counts its loops report.

    On a terminal: a spinner, a bar with the count (``4/20 resamples``) and a timer.
    Otherwise: plain log lines of the count, at most every few seconds.
    """
    start = time.perf_counter()
    logger.info("%s ...", name)
    console = Console(stderr=True)
    with ExitStack() as shown:
        if console.is_terminal:
            columns = (
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            bar = shown.enter_context(Progress(*columns, console=console, transient=True))
            counted = _Counted(name, bar, bar.add_task(name, total=None))
        else:
            counted = _Counted(name)
        PROGRESS.addHandler(counted)
        shown.callback(PROGRESS.removeHandler, counted)
        yield
    logger.info("%s done in %.1fs", name, time.perf_counter() - start)


@contextmanager
def small_pages() -> Iterator[None]:
    """Run without NumPy's advice to back large arrays with huge pages (also a decorator).

    On Linux, NumPy advises the kernel (``madvise(MADV_HUGEPAGE)``) to back every array
    of 4 MB or more with 2 MB pages. Where the kernel's transparent huge page ``defrag``
    setting is ``madvise``, the default of many distributions, the first touch of such an
    array when no huge page is free waits while the kernel compacts memory; a run that
    has just read gigabytes of files into the page cache leaves few free. On the 2-CPU
    machine of the benchmarks, a million customers' train took 70 and 83 s with the
    advice and 54 and 58 s without (README, "Huge pages, measured"; `benchmarks/host.py`
    times new memory both ways). Nothing computed changes. A ``NUMPY_MADVISE_HUGEPAGE``
    set by the user wins; processes started during the run inherit the setting through
    that variable.
    """
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        yield
        return
    before = _set_madvise_hugepage(False)
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
    try:
        yield
    finally:
        del os.environ["NUMPY_MADVISE_HUGEPAGE"]
        _set_madvise_hugepage(before)


def salt(cfg: dict) -> str | None:
    """Return the salt for pseudonymized ids, from $PERSONAS_ID_SALT (None when off).

    Raises
    ------
    ConfigError
        When ``privacy.pseudonymize_ids`` is on and the variable is empty.
    """
    if not cfg["privacy"]["pseudonymize_ids"]:
        return None
    value = os.environ.get("PERSONAS_ID_SALT")
    if not value:
        raise ConfigError(
            "privacy.pseudonymize_ids is on but the environment variable PERSONAS_ID_SALT is "
            "empty; set it to a secret string (the same one on every run keeps ids comparable)."
        )
    return value


def load(data: str | Path, cfg: dict, names: dict[str, str] | None = None) -> LoadedData:
    """Load and check the data source with the settings of ``cfg``.

    ``names`` says how messages name the tables' origin (see `features.load_data`).
    """
    with stage("Load and validate"):
        return load_data(
            data,
            columns=cfg["columns"],
            validation=cfg["validation"],
            privacy=cfg["privacy"],
            as_of=cfg["as_of"],
            names=names,
            tables=cfg["tables"],
        )


def output_folder(output: str | Path | None, cfg: dict, run_id: str) -> Path:
    """Return the output folder: ``output``, else ``<output.root>/<timestamp>-<run id>``."""
    if output:
        return Path(output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return PROJ_ROOT / cfg["output"]["root"] / f"{stamp}-{run_id[:8]}"


@contextmanager
def staged_folder(output: Path) -> Iterator[Path]:
    """Yield a staging folder that replaces ``output`` whole when the block succeeds.

    On any error (or Ctrl-C) the staging folder is removed and ``output`` is untouched,
    so nothing half-written is ever in place.
    """
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        old = output.with_name(output.name + ".old")
        if output.exists():
            output.rename(old)
        staging.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@dataclass
class TrainResult:
    """What a train run produced.

    Attributes
    ----------
    run_id : str
        The MLflow run id.
    output : Path
        The output folder.
    personas : list of dict
        The persona table.
    assignments : pandas.DataFrame
        One row per customer (per account at ``level: account``, ``account_id`` first).
    model_uri : str
        URI of the served model (registry version, or the run's artifact).
    promoted : bool
        Whether the model became the champion.
    level : {"customer", "account"}
        Whose personas; at account level, ``people`` places every person (else None).
    people : pandas.DataFrame or None
    segmentation : dict
        ``segmentation.json``: the choice, every candidate, the reason, the structure.
    """

    run_id: str
    output: Path
    personas: list[dict]
    assignments: pd.DataFrame
    model_uri: str = ""
    promoted: bool = True
    level: str = "customer"
    people: pd.DataFrame | None = None
    segmentation: dict | None = None
