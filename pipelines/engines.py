"""Where a run computes its features: the engine the config names, and Spark's share of it.

``engine: duckdb`` (the default) runs the feature SQL in the DuckDB connection that checked
the data. ``engine: spark`` (``personas train --engine spark``) does this:

1. DuckDB still reads and checks the data on the driver (`features.load_data`), so the
   contract's rules, the quarantine and ``as_of`` are the same on both engines;
2. a Spark session starts from the ``spark:`` settings (or the one already running in the
   process is used), and `features.spark.SparkEngine` stages the checked tables as Parquet
   for it;
3. `pipelines.cluster` takes over: Spark computes the feature families and the CLV
   summary of a sample drawn on the cluster, the driver fits on it, and the executors
   build, assign and write every customer (the tables are staged in buckets of
   ``spark.bucket_size`` customers for that); at ``level: account`` the sample is of
   accounts, and Spark rolls every person's features up to their account
   (`pipelines.cluster_accounts`). ``personas score`` of a model of accounts builds the
   batch's table on the driver and assigns it on the cluster (`place_on_cluster`).

The free-text themes (comments, ticket topics) are read from DuckDB on the driver.

A data source may also be tables of the Spark metastore (``--data spark:<database>``,
``spark.tables`` for other names; `features.metastore`). `data_source` then starts the
session first, finds the tables (a missing one stops the run before any work) and has
Spark write each once as Parquet to a staging folder: one extra write of the raw tables.
Step 1 checks that snapshot exactly as it checks a Parquet folder, so the tables go
Spark -> Parquet -> DuckDB (checks) -> Parquet -> Spark (features).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from features import LoadedData, metastore, postgres
from features.engine import Engine
from pipelines import serving
from pipelines.config import ConfigError

__all__ = ["data_source", "feature_engine", "place_on_cluster", "require"]

logger = logging.getLogger(__name__)

#: Settings every session we start gets (a user's ``spark.conf`` wins): the data's time
#: zone, Arrow for the results that come back to the driver, no progress bars in the log.
_SESSION_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}


def require(cfg: dict) -> None:
    """Stop before any work when the configured engine cannot start.

    Parameters
    ----------
    cfg : dict
        The run configuration (``engine``).

    Raises
    ------
    ConfigError
        When ``engine: spark`` but PySpark is not installed, or Java cannot be found.
    """
    if cfg["engine"] != "spark":
        return
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError(
            "engine: spark needs PySpark, which is not installed in this environment "
            f'({sys.executable}). Install the Spark extra with `pip install "personas[spark]"` '
            "(`make test` does), or set engine: duckdb (the default) to compute the features "
            "in DuckDB."
        )
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ConfigError(
            "engine: spark needs Java 17 or later to start Spark, and neither `java` on the "
            "PATH nor $JAVA_HOME was found. Install a JDK (Debian: apt-get install "
            "default-jre-headless) or set JAVA_HOME."
        )


@contextmanager
def _session(settings: dict) -> Iterator:
    """Yield the running Spark session, else one started from ``settings`` (stopped after)."""
    from pyspark.sql import SparkSession

    from features.spark import pandas_warnings_silenced

    active = SparkSession.getActiveSession()
    if active is not None:
        logger.info("Spark: using the running session (master %s).", active.sparkContext.master)
        yield active
        return
    if settings["master"].startswith("local"):  # the Python workers run this interpreter
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = dict(_SESSION_DEFAULTS)
    conf.update(
        {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in settings["conf"].items()}
    )
    builder = SparkSession.builder.master(settings["master"]).appName(settings["app_name"])
    for key, value in conf.items():
        builder = builder.config(key, value)
    start = time.perf_counter()
    with pandas_warnings_silenced():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")  # the run's own log says what happens
    logger.info(
        "Spark %s session on %s started in %.1fs.",
        spark.version,
        settings["master"],
        time.perf_counter() - start,
    )
    try:
        yield spark
    finally:
        spark.stop()


@contextmanager
def data_source(data: str | Path, cfg: dict) -> Iterator[tuple[str | Path, dict[str, str]]]:
    """Yield the source `features.load_data` reads, snapshotting metastore tables first.

    A folder or DuckDB file is yielded as it is; a PostgreSQL URL too, once its server,
    schema and tables are found (`features.postgres.check`: a wrong host, user, schema or
    a missing table stops here, before the run starts). For ``spark:<database>`` (see
    `features.metastore`) this starts the Spark session (or uses the running one; it stays
    up for `feature_engine`, and is stopped on exit if this started it), finds the tables
    before any work, and has Spark write each once as Parquet to a folder under
    ``spark.staging_dir`` (a temporary folder by default), removed on exit: DuckDB then
    checks that snapshot as it checks any Parquet folder.

    Parameters
    ----------
    data : str or Path
        A data folder, a DuckDB file, ``postgresql://...`` or ``spark:<database>``.
    cfg : dict
        The run configuration (``engine``, ``spark``).

    Yields
    ------
    source : str or Path
        The folder, file or URL to load.
    names : dict of str to str
        How messages name the tables' origin (``load_data(names=...)``): empty for files,
        ``metastore table <db>.<table>`` per table and ``source`` for metastore tables.

    Raises
    ------
    ConfigError
        When metastore tables are named but the engine is not spark, or Spark cannot start.
    DataError
        When the database or a table is missing (naming it, and listing what exists).
    """
    if postgres.is_postgres(data):
        postgres.check(data, cfg["tables"])
        yield data, {}
        return
    if not metastore.is_metastore(data):
        yield Path(data), {}
        return
    if cfg["engine"] != "spark":
        raise ConfigError(
            f"The data source {data} names tables of a Spark metastore, which only the Spark "
            "engine reads: run `personas train --engine spark` (or set engine: spark)."
        )
    require(cfg)
    settings = cfg["spark"]
    with _session(settings) as spark:
        tables = metastore.resolve_tables(spark, metastore.database_of(data), settings["tables"])
        folder = _staging_folder(settings["staging_dir"], "snapshot")
        try:
            metastore.snapshot(spark, tables, folder)
            names = {t: f"metastore table {name}" for t, name in tables.items()}
            yield folder, {**names, "source": str(data)}
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _staging_folder(staging_dir: str | None, kind: str) -> Path:
    """Return a new folder for Spark's files: under ``staging_dir``, else a temporary one."""
    if staging_dir is None:
        return Path(tempfile.mkdtemp(prefix=f"personas-{kind}-"))
    folder = Path(staging_dir) / f"personas-{kind}-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    return folder


@contextmanager
def feature_engine(loaded: LoadedData, cfg: dict) -> Iterator[Engine]:
    """Yield the engine the features are computed on (see the module docstring).

    Parameters
    ----------
    loaded : LoadedData
        The checked tables.
    cfg : dict
        The run configuration (``engine`` and ``spark``).

    Yields
    ------
    features.engine.Engine
        DuckDB's `Engine`, or a `features.spark.SparkEngine` (closed, and its session
        stopped if this started it, on exit).
    """
    if cfg["engine"] == "duckdb":
        yield Engine(loaded)
        return
    require(cfg)
    from features.spark import SparkEngine  # pyspark is an optional extra

    settings = cfg["spark"]
    buckets = max(1, -(-loaded.n_customers // settings["bucket_size"]))
    with (
        _session(settings) as spark,
        SparkEngine.stage(loaded, spark, settings["staging_dir"], buckets) as engine,
    ):
        yield engine


def place_on_cluster(
    engine, frame: pd.DataFrame, columns: list[str], model_uri: str
) -> pd.DataFrame:
    """Place every customer of a feature table with the served model, on the executors.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` and the columns of `pipelines.serving.ASSIGNMENT_TYPE`, one row
        per customer of ``frame``, in its order.
    """
    # the served model's input is keyed customer_id, whoever the rows are (accounts too)
    features = engine.to_spark(frame[columns].rename_axis("customer_id"), "features")
    result = engine.collect(serving.assign_on_spark(engine.spark, model_uri, features, columns))
    result = result.assign(customer_id=result["customer_id"].astype(str)).set_index("customer_id")
    ids = frame.index.astype(str)
    missing = ids[~ids.isin(result.index)]
    if len(missing):  # a bug, never the user's data
        raise RuntimeError(
            f"spark_udf returned no persona for {len(missing):,} customers "
            f"(e.g. {', '.join(missing[:3])})."
        )
    result = result.loc[ids]
    return pd.DataFrame(
        {
            frame.index.name or "customer_id": frame.index.to_numpy(),
            "persona_id": result["persona_id"].to_numpy(dtype=np.int64),
            "persona_name": result["persona_name"].to_numpy(),
            "confidence": result["confidence"].to_numpy(dtype=float),
            "is_outlier": result["is_outlier"].to_numpy(dtype=bool),
        }
    )
