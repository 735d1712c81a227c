"""Run the feature SQL on Apache Spark: the `SparkEngine` and its `SparkDialect`.

What runs where:

- **DuckDB, on the driver, checks the data** (`features.loading.load_data`): it reads the
  source, maps the columns, applies the contract's rules (bad values fail the run or are
  quarantined), drops personal data, rows of unknown customers and rows after ``as_of``.
  The contract's rules live in one place, so a valid row means the same thing on both
  engines.
- **The staged tables go to Parquet once.** `SparkEngine.stage` has DuckDB write each
  staged table (contract column names and types, timestamps in UTC without zone) to a
  staging folder, as a dataset partitioned by the bucket of each row's customer (so an
  executor can read one bucket's customers whole), and registers it as a Spark temporary
  view named after the table (``customers``, ``transactions``...). Spark therefore reads
  exactly the rows DuckDB would aggregate, so the two engines give the same features; on
  a cluster the folder must be one every executor can read (a shared mount), see
  ``spark.staging_dir`` in the config.
- **Spark runs every aggregation.** The feature builders' SQL (`features.families`,
  `features.rfm`) runs unchanged through `SparkEngine.query`, with the few expressions
  that differ taken from `SparkDialect`; only the per-customer result comes back to the
  driver (``toPandas``): on the cluster path (`pipelines.cluster`), that of a sample,
  the views being restricted to it (`SparkEngine.restrict`). The value model's purchase
  histories are every customer's, grouped on the cluster (`SparkEngine.histories`), as
  are the billing rows the subscription model is fitted from (`SparkEngine.whole`,
  `pipelines.billing.SparkBilling`).

This module imports pyspark; nothing else in `features` does, so the DuckDB engine works
without it (``pip install "personas[spark]"`` adds it).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.functions import broadcast, col
from pyspark.sql.types import DecimalType

from features.engine import Dialect, Engine, sql_text
from features.loading import LoadedData

__all__ = ["BUCKET", "SparkDialect", "SparkEngine", "pandas_warnings_silenced"]

logger = logging.getLogger(__name__)

#: The staged tables' partition column: the bucket of the row's customer.
BUCKET = "personas_bucket"

#: What PySpark says on every conversion under pandas 3 (it does not support pandas 3 fully
#: yet, and still passes ``copy=`` to ``astype``). The conversions we use are covered by
#: tests/features/test_spark.py, so these messages are silenced where we convert.
_PANDAS_WARNINGS = (
    "PySpark does not yet fully support pandas",
    "The copy keyword is deprecated",
)


@contextmanager
def pandas_warnings_silenced() -> Iterator[None]:
    """Silence PySpark's warnings about pandas 3 (see `_PANDAS_WARNINGS`) inside the block.

    Yields
    ------
    None
        The block that starts a session, converts a result or builds a pandas UDF.
    """
    with warnings.catch_warnings():
        for message in _PANDAS_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


class SparkDialect(Dialect):
    """Spark SQL's versions of the expressions that differ from DuckDB's.

    Spark has no ``epoch()``: a span of time is the difference of ``unix_micros``, which
    reads the timestamps in the session time zone, so `SparkEngine.stage` sets it to UTC
    (the zone the staged timestamps are in). Identifiers are quoted with backticks, since
    Spark reads ``"text"`` as a string. Spark types ``1.0`` as a decimal and keeps a fixed
    number of places when it averages or divides one (a share of ``1.0``/``0.0`` flags
    comes out to 5 places), where DuckDB uses doubles: `double` casts. Distinct counts are
    plain ``COUNT(DISTINCT ...)`` (DuckDB's bit strings are DuckDB's).
    """

    def days(self, start: str, end: str) -> str:
        """Fractional days from ``start`` to ``end`` (two timestamp expressions)."""
        return f"({self.micros(start, end)} / 8.64e10)"

    def micros(self, start: str, end: str) -> str:
        """Whole microseconds from ``start`` to ``end``: an integer, which sums exactly."""
        micros = "unix_micros(CAST({} AS TIMESTAMP))"
        return f"({micros.format(end)} - {micros.format(start)})"

    def quote(self, name: str) -> str:
        """Quote a column name as a Spark identifier."""
        return "`" + name.replace("`", "``") + "`"

    def double(self, expr: str) -> str:
        """Return a decimal expression as a double (Spark averages ``1.0`` to 5 places)."""
        return f"CAST({expr} AS DOUBLE)"

    def arg_min(self, value: str, key: str) -> str:
        """Aggregate: ``value`` of the row with the smallest ``key``."""
        return f"min_by({value}, {key})"

    def distinct_days(self, timestamp: str, start: pd.Timestamp, days: int) -> str:
        """Aggregate: the exact number of distinct calendar days of ``timestamp``."""
        return f"COUNT(DISTINCT CAST({timestamp} AS DATE))"

    def position(self, values: list[str], expr: str) -> str:
        """Return SQL of the 1-based position of ``expr`` in ``values`` (NULL for NULL)."""
        return f"array_position(array({', '.join(sql_text(v) for v in values)}), {expr})"

    def distinct_positions(self, position: str, expr: str, n: int) -> str:
        """Aggregate: the exact number of distinct values of ``expr``."""
        return f"COUNT(DISTINCT {expr})"

    def purchase_gaps(self, bought: str) -> str:
        """Return SQL of one row per customer of ``bought``: the gaps between purchase days.

        The columns of `Dialect.purchase_gaps`. Spark sums each customer's purchases per
        day (rounded to 6 places), then numbers the days with a window function.
        """
        gap = self.days("LAG(day) OVER (PARTITION BY customer_id ORDER BY day)", "day")
        return f"""
          SELECT customer_id, COUNT(*) AS purchase_days, min(day) AS first_day,
            max(day) AS last_day, ROUND(SUM(spend), 6) AS spend,
            CASE WHEN COUNT(gap) >= 2 THEN AVG(gap) END AS gap_mean,
            CASE WHEN COUNT(gap) >= 2 THEN STDDEV_SAMP(gap) / AVG(gap) END AS gap_cv
          FROM (
            SELECT customer_id, day, spend, {gap} AS gap FROM (
              SELECT customer_id, day, ROUND(SUM(amount), 6) AS spend
              FROM ({bought}) GROUP BY customer_id, day))
          GROUP BY customer_id"""


def _write_buckets(data: LoadedData, name: str, folder: Path, buckets: int) -> None:
    """Have DuckDB write one table as Parquet, partitioned by the customers' `BUCKET`."""
    rows = f"SELECT *, hash(customer_id) % {int(buckets)} AS {BUCKET} FROM {name}"
    if data.con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 0:
        (folder / f"{BUCKET}=0").mkdir(parents=True)  # keeps the columns of an empty table
        path = folder / f"{BUCKET}=0" / "data.parquet"
        data.con.execute(f"COPY (SELECT * FROM {name}) TO {sql_text(path)} (FORMAT parquet)")
        return
    data.con.execute(
        f"COPY ({rows}) TO {sql_text(folder)} (FORMAT parquet, PARTITION_BY ({BUCKET}))"
    )


class SparkEngine(Engine):
    """Runs builder SQL on Spark and hands back pandas frames.

    Build one with `SparkEngine.stage`, which writes the checked tables of a
    `features.loading.LoadedData` to Parquet and registers them as temporary views; see
    the module docstring for what runs where. Use it as a context manager (or call
    `close`) to drop the views and the staging folder.

    Parameters
    ----------
    data : LoadedData
        The checked tables (their metadata: tables, columns, attributes, as_of).
    spark : pyspark.sql.SparkSession
        The session the SQL runs on.
    folder : Path
        The staging folder holding one Parquet file per table; removed by `close`.

    See Also
    --------
    features.engine.Engine : The DuckDB engine.
    """

    dialect = SparkDialect()

    def __init__(self, data: LoadedData, spark: SparkSession, folder: Path):
        super().__init__(data)
        self.spark = spark
        self.folder = Path(folder)
        self.buckets = 1
        self._sample: DataFrame | None = None

    @classmethod
    def stage(
        cls,
        data: LoadedData,
        spark: SparkSession,
        staging_dir: str | Path | None = None,
        buckets: int = 1,
    ) -> SparkEngine:
        """Write the checked tables to Parquet and register them as Spark views.

        Parameters
        ----------
        data : LoadedData
            The checked tables, staged in DuckDB (see `features.load_data`).
        spark : pyspark.sql.SparkSession
            The session; its SQL time zone is set to UTC, the zone of the data.
        staging_dir : str or Path, optional
            Where the Parquet files go (a new subfolder of it, removed by `close`); on a
            cluster, a folder every executor can read. Default a temporary folder, which
            suits ``local`` masters.
        buckets : int, default=1
            Each table is written as a Parquet dataset partitioned by `BUCKET`, the
            bucket of its customer (``hash(customer_id) % buckets``): every row of one
            customer, whatever the table, is in the same bucket, so an executor can build
            a bucket's features alone (`pipelines.cluster_table`).

        Returns
        -------
        SparkEngine
            The engine, with one temporary view per table of ``data`` (replacing any
            temporary view of that name in the session).
        """
        if staging_dir is None:
            folder = Path(tempfile.mkdtemp(prefix="personas-spark-"))
        else:
            folder = Path(staging_dir) / f"personas-{uuid.uuid4().hex[:12]}"
            folder.mkdir(parents=True)
        engine = cls(data, spark, folder)
        try:
            if spark.conf.get("spark.sql.session.timeZone") != "UTC":
                logger.info("Spark SQL time zone set to UTC, the zone of the data.")
                spark.conf.set("spark.sql.session.timeZone", "UTC")
            for name in data.tables:
                _write_buckets(data, name, folder / name, buckets)
                view = spark.read.parquet(str(folder / name)).drop(BUCKET)
                view.createOrReplaceTempView(name)
        except BaseException:
            engine.close()
            raise
        engine.buckets = buckets
        logger.info("Spark: %d tables staged in %s (%d buckets)", len(data.tables), folder, buckets)
        return engine

    def restrict(self, customers: DataFrame) -> None:
        """Replace every table's view by its rows of ``customers`` (a ``customer_id`` frame).

        The feature SQL then runs on those customers only (a sample), on the cluster;
        `unrestrict` gives the whole tables back.
        """
        for name in self.data.tables:
            rows = self.spark.read.parquet(str(self.folder / name)).drop(BUCKET)
            rows.join(broadcast(customers), "customer_id", "left_semi").createOrReplaceTempView(
                name
            )
        self._shared, self._sample = {}, customers

    def unrestrict(self) -> None:
        """Give every view its whole table back (after `restrict`)."""
        for name in self.data.tables:
            view = self.spark.read.parquet(str(self.folder / name)).drop(BUCKET)
            view.createOrReplaceTempView(name)
        self._shared, self._sample = {}, None

    def histories(self, sql: str, limit: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
        """Return every customer's distinct purchase histories and how many share each.

        The value model's likelihoods are sums over customers, so the driver needs each
        distinct history once with its count (`models.bgnbd.BetaGeoModel.fit`'s
        ``sample_weight``), not one row per customer. ``sql`` (`features.rfm.clv_histories_sql`)
        runs on the whole tables, also while the views hold a sample (`restrict`); its
        rows are written to the staging folder, then grouped twice on the cluster.

        Parameters
        ----------
        sql : str
            One row per distinct ``(frequency, recency, T, monetary_value)`` with its
            ``customers``.
        limit : int
            The most rows either result may bring to the driver (``spark.max_histories``).

        Returns
        -------
        purchases : pandas.DataFrame or None
            ``frequency``, ``recency``, ``T``, ``customers`` (BG/NBD's histories); None
            when there are more than ``limit``.
        spend : pandas.DataFrame or None
            ``frequency``, ``monetary_value``, ``customers`` of the repeat buyers
            (Gamma-Gamma's); None when there are more than ``limit``.
        """
        rows, total = self.whole(sql, "histories"), sf.sum("customers").alias("customers")
        purchases = rows.groupBy("frequency", "recency", "T").agg(total)
        spend = rows.where("frequency > 0").groupBy("frequency", "monetary_value").agg(total)
        found = tuple(self.collect(frame.limit(limit + 1)) for frame in (purchases, spend))
        shutil.rmtree(self.folder / "histories", ignore_errors=True)
        return tuple(None if len(frame) > limit else frame for frame in found)

    def whole(self, sql: str, name: str) -> DataFrame:
        """Run ``sql`` on the whole tables, also while the views hold a sample (`restrict`).

        Its rows are written to ``name`` in the staging folder and read back from there,
        so that they stay on the cluster and every use sees the same rows.

        Parameters
        ----------
        sql : str
            A query of the staged tables.
        name : str
            The Parquet dataset written in the staging folder (replaced if present).

        Returns
        -------
        pyspark.sql.DataFrame
            Its rows.
        """
        path, sample, shared = str(self.folder / name), self._sample, self._shared
        if sample is not None:
            self.unrestrict()
        try:
            self.spark.sql(sql).write.mode("overwrite").parquet(path)
        finally:
            if sample is not None:
                self.restrict(sample)
                self._shared = shared  # the sample's results still hold
        return self.spark.read.parquet(path)

    def checked(self, table: str) -> bool:
        """No: Spark's views are the staged tables themselves (see `Engine.values`)."""
        return False

    def query(self, sql: str) -> pd.DataFrame:
        """Run a query on Spark and return its result as a DataFrame."""
        return self.collect(self.spark.sql(sql))

    def collect(self, frame: DataFrame) -> pd.DataFrame:
        """Bring a Spark result to the driver, decimals as floats (as DuckDB returns them).

        Spark types a literal such as ``1.0`` as a decimal, which pandas would hold as
        Python `decimal.Decimal` objects; every decimal column becomes a double first.

        Parameters
        ----------
        frame : pyspark.sql.DataFrame
            The result.

        Returns
        -------
        pandas.DataFrame
            The same rows and columns.
        """
        columns = [
            col(self.dialect.quote(f.name)).cast("double").alias(f.name)
            if isinstance(f.dataType, DecimalType)
            else col(self.dialect.quote(f.name))
            for f in frame.schema.fields
        ]
        with pandas_warnings_silenced():
            return frame.select(*columns).toPandas()

    def to_spark(self, frame: pd.DataFrame, name: str) -> DataFrame:
        """Hand a driver-side table to the cluster, through a Parquet file of the staging folder.

        Parameters
        ----------
        frame : pandas.DataFrame
            The table (its index is written as a column when it has a name).
        name : str
            The file's name in the staging folder (``features``).

        Returns
        -------
        pyspark.sql.DataFrame
            The table, read by Spark.
        """
        path = self.folder / f"{name}.parquet"
        table = frame.reset_index() if frame.index.name else frame
        table.to_parquet(path, index=False)
        return self.spark.read.parquet(str(path))

    def close(self) -> None:
        """Drop the temporary views and remove the staging folder."""
        for name in self.data.tables:
            self.spark.catalog.dropTempView(name)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
