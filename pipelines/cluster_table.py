"""Every customer's features, built on the executors: one task per bucket of customers.

`features.spark.SparkEngine.stage` writes the checked tables partitioned by the bucket of
each row's customer, so all of one customer's rows, whatever the table, are in one
bucket. `build_on_cluster` runs one Spark task per bucket; each reads its bucket's rows
with DuckDB and applies the fitted `pipelines.table.TableDefinition` with
`pipelines.table.build_table`, exactly as ``personas score`` does on any batch (a
customer's features never depend on who else is in the batch). Each task writes its
bucket's table as one Parquet file (with the features' metadata, as ``features.parquet``)
and hands back only its row count: the features never pass through the driver.

The executors therefore need this project installed (its Python and DuckDB), as MLflow's
``spark_udf`` does, and the staging folder must be one they can read and write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features import FeatureTable, LoadedData
from features.sql import sql_text

__all__ = ["BucketTables", "arrow_schema", "build_on_cluster"]


def arrow_schema(features) -> pa.Schema:
    """Return the fixed Parquet schema of a feature table: ``customer_id`` then each feature.

    Fixed, so that every bucket's file has the same types (a category no customer of a
    bucket holds would otherwise be typed null).
    """
    return pa.schema(
        [("customer_id", pa.string())]
        + [(f.name, pa.string() if f.transform == "category" else pa.float64()) for f in features]
    )


@dataclass
class BucketTables:
    """What an executor needs to build one bucket's features (shipped with each task).

    Attributes
    ----------
    staged : str
        The staging folder (one partitioned Parquet dataset per table).
    tables, columns, attributes, as_of, source
        The checked data's metadata (`features.LoadedData`): which tables, their
        columns, the customers' attributes, the reference time, how messages name it.
    cfg : dict
        The run configuration (with the definition's settings).
    definition : pipelines.table.TableDefinition
        The fitted definition applied to every bucket.
    out : str
        The folder each bucket's file is written to (``part-<bucket>.parquet``).
    """

    staged: str
    tables: list[str]
    columns: dict[str, list[str]]
    attributes: list[str]
    as_of: pd.Timestamp
    source: str
    cfg: dict
    definition: object
    out: str

    def load(self, bucket: int) -> LoadedData:
        """Return the bucket's checked rows as `features.LoadedData`, in a new DuckDB."""
        import duckdb

        from features.spark import BUCKET

        con = duckdb.connect()
        for name in self.tables:
            files = sql_text(str(Path(self.staged) / name / "*" / "*.parquet"))
            con.execute(
                f"CREATE VIEW {name} AS SELECT * EXCLUDE ({BUCKET}) FROM read_parquet({files}, "
                f"hive_partitioning = true) WHERE {BUCKET} = {int(bucket)}"
            )
        n = con.execute("SELECT count(*) FROM customers").fetchone()[0]
        quality = {"tables": {"customers": {"file": self.source, "rows_used": n}}}
        return LoadedData(
            con=con,
            tables=list(self.tables),
            columns=self.columns,
            attributes=list(self.attributes),
            as_of=self.as_of,
            quality=quality,
        )

    def build(self, bucket: int) -> int:
        """Build and write one bucket's feature table; return its number of customers."""
        import pyarrow.parquet as pq

        from features.engine import Engine
        from pipelines.table import build_table

        loaded = self.load(bucket)
        try:
            if loaded.quality["tables"]["customers"]["rows_used"] == 0:
                return 0
            table = build_table(loaded, Engine(loaded), self.cfg, self.definition).table
        finally:
            loaded.con.close()
        schema = arrow_schema(table.features)
        frame = table.frame.reset_index()
        arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        meta = FeatureTable(frame=table.frame, features=table.features, as_of=table.as_of)
        arrow = arrow.replace_schema_metadata(
            {**(arrow.schema.metadata or {}), **meta.parquet_metadata()}
        )
        Path(self.out).mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow, Path(self.out) / f"part-{bucket:05d}.parquet")
        return len(frame)


def build_on_cluster(engine, loaded: LoadedData, cfg: dict, definition, out: Path):
    """Build every customer's features on the executors, one task per bucket.

    Parameters
    ----------
    engine : features.spark.SparkEngine
        The run's engine (its staging folder and number of buckets).
    loaded : LoadedData
        The checked data (only its metadata is shipped to the executors).
    cfg : dict
        The run configuration.
    definition : pipelines.table.TableDefinition
        The fitted definition.
    out : Path
        A folder every executor can write: one ``part-<bucket>.parquet`` per bucket.

    Returns
    -------
    pyspark.sql.DataFrame
        The feature table of every customer, read from ``out`` (``customer_id`` and the
        definition's columns).
    """
    from features.spark import pandas_warnings_silenced

    job = BucketTables(
        staged=str(engine.folder),
        tables=list(loaded.tables),
        columns=loaded.columns,
        attributes=list(loaded.attributes),
        as_of=loaded.as_of,
        source=str(loaded.quality["tables"]["customers"]["file"]),
        cfg=cfg,
        definition=definition,
        out=str(out),
    )

    def run(batches):
        for batch in batches:
            rows = [job.build(int(b)) for b in batch["id"]]
            yield pd.DataFrame({"bucket": batch["id"], "rows": rows})

    buckets = engine.spark.range(0, engine.buckets, numPartitions=engine.buckets)
    with pandas_warnings_silenced():
        done = buckets.mapInPandas(run, "bucket long, rows long").collect()  # B small rows
    total = sum(r["rows"] for r in done)
    if total != loaded.n_customers:  # a bug, never the user's data
        raise RuntimeError(
            f"The executors built features for {total:,} customers of {loaded.n_customers:,}."
        )
    return engine.spark.read.schema(_spark_schema(definition.columns)).parquet(str(out))


def _spark_schema(features) -> str:
    """Return the Spark DDL of `arrow_schema`."""
    quoted = ["customer_id string"]
    for f in features:
        kind = "string" if f.transform == "category" else "double"
        quoted.append("`" + f.name.replace("`", "``") + "` " + kind)
    return ", ".join(quoted)
