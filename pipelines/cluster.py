"""The train recipe on a Spark cluster: only a sample and aggregates reach the driver.

`pipelines.train` runs this for ``engine: spark``; at ``level: account`` the accounts
stand in for the customers (`pipelines.cluster_accounts`: a sample of accounts, every
person's features built on the executors and rolled up to their account by Spark):

1. **A sample is drawn on the cluster**: the ``spark.sample_size`` customers with the
   smallest seeded hash of their id (``xxhash64(customer_id, seed)``, ties by id), the
   same sample for the same data and seed. The Spark views are restricted to them, so the
   feature SQL runs on the cluster and only the sample's rows come back; with no more
   customers than the sample size, the sample is every customer.
2. **The driver fits on the sample, as the DuckDB engine fits on everyone**: the table's
   definition (categories, themes, quintile edges, value model), the scaling, the model
   search, stability, drivers, themes, profile, re-identification and the served model.
3. **Every customer is built and assigned on the executors**:
   `pipelines.cluster_table.build_on_cluster` builds each bucket's features with the
   fitted definition, and MLflow's ``spark_udf`` places them with the served model
   (`pipelines.serving.assign_on_spark`); both are written to Parquet by the executors.
4. **The persona table's numbers are Spark aggregations** over every customer
   (`pipelines.cluster_profile.aggregate_personas`).
5. **The executors write the outputs** (`ClusterOutputs`): ``assignments/`` and
   ``features/`` as Parquet datasets, and ``assignments.csv`` and ``features.parquet`` as
   single files when there are at most ``spark.single_file_rows`` customers; optionally
   the metastore table ``spark.assignments_table``.

`score_on_cluster` is ``personas score --engine spark``: steps 3 and 5 with a registered
model, writing a metastore table, a Parquet dataset or one CSV file.

What the driver holds is therefore set by ``spark.sample_size`` (its feature table, the
model search's matrices), one row per persona, the distinct purchase histories the value
model is fitted on (at most ``spark.max_histories`` per model,
`features.spark.SparkEngine.histories`) or the subscription model's medians and counts
(`pipelines.billing.SparkBilling`), and the checked data in DuckDB, which reads it from
disk. The comparison with the champion is recomputed over every customer
(`pipelines.cluster_compare`: migration, match quality, drift, gates); left on the
sample: which champion persona each persona is matched to, and the report's map.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features import LoadedData
from features.accounts import check_people
from features.engine import Engine
from pipelines import b2b, serving, tracking
from pipelines.cluster_accounts import (
    influence_on_cluster,
    people_assignments_on_cluster,
    roll_up_on_cluster,
    write_accounts,
)
from pipelines.cluster_compare import compare_on_cluster
from pipelines.cluster_profile import aggregate_personas
from pipelines.cluster_table import build_on_cluster
from pipelines.compare import reidentify
from pipelines.config import ConfigError
from pipelines.outputs import Assignments, assign
from pipelines.profile import business_model, profile
from pipelines.record import conclude, log_inputs, log_model, persona_model
from pipelines.run import stage
from pipelines.segment import segment
from pipelines.table import build_table

__all__ = ["ClusterOutputs", "draw_sample", "score_on_cluster", "train_on_cluster"]

logger = logging.getLogger(__name__)


def draw_sample(engine, size: int, seed: int, key: str = "customer_id"):
    """Return the sample's people on the cluster: the ``size`` smallest seeded hashes.

    Parameters
    ----------
    engine : features.spark.SparkEngine
        The run's engine (its ``customers`` view).
    size : int
        Customers (or accounts) in the sample (``spark.sample_size``).
    seed : int
        The run's seed.
    key : {"customer_id", "account_id"}, default="customer_id"
        What is sampled: customers, or accounts with all their people.

    Returns
    -------
    pyspark.sql.DataFrame
        One ``customer_id`` column, written to the staging folder and read back, so
        every use sees the same rows.
    """
    from pyspark.sql import functions as sf

    spark, path = engine.spark, str(engine.folder / "run" / "sample")
    customers = spark.table("customers")
    units = customers.select(key).distinct() if key != "customer_id" else customers.select(key)
    hashed = units.select(key, sf.xxhash64(sf.col(key), sf.lit(int(seed))).alias("_h"))
    chosen = hashed.orderBy("_h", key).limit(int(size)).select(key)
    if key != "customer_id":  # every person of the sampled accounts
        chosen = customers.join(chosen, key, "left_semi").select("customer_id")
    chosen.write.parquet(path)
    return spark.read.parquet(path)


@dataclass
class ClusterOutputs:
    """Every customer's assignments and features, on the cluster, and how they are written.

    Attributes
    ----------
    spark : pyspark.sql.SparkSession
    assignments, features : Path
        The Parquet datasets the executors wrote in the staging folder.
    n_customers : int
        How many customers they hold.
    outlier_share : float
        The share flagged as outliers.
    single_file_rows : int
        Up to this many customers, single files are written too.
    table : str or None
        A metastore table to save the assignments as.
    unit : str
        The id column of the assignments and features written: ``customer_id``, or
        ``account_id`` at ``level: account`` (the datasets hold it as ``customer_id``).
    people : Path or None
        At ``level: account``: every person's assignment (``people_assignments``).
    n_people : int
        How many people it holds.
    """

    spark: object
    assignments: Path
    features: Path
    n_customers: int
    outlier_share: float
    single_file_rows: int
    table: str | None = None
    unit: str = "customer_id"
    people: Path | None = None
    n_people: int = 0

    def write(self, folder: Path, key: str | None) -> None:
        """Have the executors write the outputs into ``folder`` (ids hashed with ``key``).

        ``assignments/`` and ``features/`` (Parquet datasets), and when the count allows,
        ``assignments.csv`` and ``features.parquet`` (at ``level: account``, likewise
        ``people_assignments/`` and ``people_assignments.csv``); then the metastore table.
        """
        single = self.n_customers <= self.single_file_rows
        outputs = [(self.assignments, "assignments", "csv", single, self.unit),
                   (self.features, "features", "parquet", single, self.unit)]  # fmt: skip
        if self.people is not None:
            few = self.n_people <= self.single_file_rows
            outputs.append((self.people, "people_assignments", "csv", few, "customer_id"))
        for source, name, kind, one, unit in outputs:
            files = sorted(str(p) for p in source.glob("*.parquet"))
            _on_executors(self.spark, files, _Copy(str(folder / name), key, unit))
            if one:
                target = folder / f"{name}.{kind}"
                _on_executors(self.spark, [str(folder / name)], _Merge(str(target), kind))
        if self.table:
            frame = self.spark.read.parquet(str(folder / "assignments"))
            frame.write.mode("overwrite").saveAsTable(self.table)
            logger.info("Assignments saved as the metastore table %s.", self.table)


class _Copy:
    """An executor task: copy one Parquet file into ``dest``, its ids hashed.

    ``customer_id`` is renamed ``unit``; ``customer_id`` and ``account_id`` are hashed
    with ``key`` (as they are without it).
    """

    def __init__(self, dest: str, key: str | None, unit: str = "customer_id"):
        self.dest, self.key, self.unit = dest, key, unit

    def __call__(self, path: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from features.privacy import pseudonymize

        Path(self.dest).mkdir(parents=True, exist_ok=True)
        table = pq.read_table(path)
        names = [self.unit if n == "customer_id" else n for n in table.column_names]
        table = table.rename_columns(names).replace_schema_metadata(table.schema.metadata)
        for name in ("customer_id", "account_id"):
            if self.key is None or name not in names:
                continue
            ids = pseudonymize(pd.Series(table[name].to_pylist(), dtype=str), self.key)
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, pa.array(ids.tolist(), pa.string()))
        pq.write_table(table, Path(self.dest) / Path(path).name)


class _Merge:
    """An executor task: append every file of a Parquet dataset into one file."""

    def __init__(self, target: str, kind: str):
        self.target, self.kind = target, kind

    def __call__(self, folder: str) -> None:
        import pyarrow.parquet as pq

        files = sorted(Path(folder).glob("*.parquet"))
        partial = Path(self.target).with_name(f".{Path(self.target).name}.partial")
        if self.kind == "csv":  # the pandas writer of the single-machine path, in pieces
            for i, path in enumerate(files):
                frame = pq.read_table(path).to_pandas()
                frame.to_csv(partial, index=False, mode="w" if i == 0 else "a", header=i == 0)
        else:
            schema = pq.read_schema(files[0])
            with pq.ParquetWriter(partial, schema) as writer:
                for path in files:
                    writer.write_table(pq.read_table(path).cast(schema))
        partial.replace(self.target)


def _on_executors(spark, items: list[str], task) -> None:
    """Run ``task(item)`` for each item, one Spark task per item, on the executors."""
    if not items:
        return
    from features.spark import pandas_warnings_silenced

    def run(batches):
        for batch in batches:
            for item in batch["item"]:
                task(item)
            yield pd.DataFrame({"done": [len(batch)]})

    with pandas_warnings_silenced():
        frame = spark.createDataFrame(pd.DataFrame({"item": items}))
        frame.repartition(len(items)).mapInPandas(run, "done long").collect()  # tiny rows


def _sample_data(loaded: LoadedData, ids: pd.Index) -> LoadedData:
    """Return ``loaded`` seen through the sample: its tables hold the sample's rows only.

    The driver's DuckDB still holds every checked row, and a copy of the sample's; the
    profile stage (themes of comments and tickets) then reads the sample's, as does the
    roll-up of a sample of accounts.
    """
    import dataclasses

    import pyarrow as pa

    con = loaded.con
    con.execute("CREATE SCHEMA IF NOT EXISTS personas_sample")
    con.register("_personas_sample_ids", pa.table({"customer_id": ids.astype(str).tolist()}))
    con.execute(
        "CREATE OR REPLACE TABLE personas_sample._ids AS SELECT * FROM _personas_sample_ids"
    )
    con.unregister("_personas_sample_ids")
    for name in loaded.tables:  # copies: a cursor cannot read the checks' temporary tables
        con.execute(
            f"CREATE OR REPLACE TABLE personas_sample.{name} AS SELECT * FROM main.{name} "
            "WHERE customer_id IN (SELECT customer_id FROM personas_sample._ids)"
        )
    cursor = con.cursor()
    cursor.execute("SET search_path = 'personas_sample,main'")
    return dataclasses.replace(loaded, con=cursor)


def _agreement(engine, placed, units: pd.DataFrame) -> float:
    """Share of the sample placed in the same persona by the executors as by the driver."""
    from pyspark.sql import functions as sf

    driver = engine.to_spark(units[["customer_id", "persona_id"]], "driver_units")
    row = (
        placed.join(sf.broadcast(driver.withColumnRenamed("persona_id", "_driver")), "customer_id")
        .agg(sf.avg((sf.col("persona_id") == sf.col("_driver")).cast("double")).alias("a"))
        .collect()[0]
    )
    return float(row["a"])


def _accounts(loaded: LoadedData) -> int:
    """Return how many accounts the checked people belong to (stopping if one has none)."""
    check_people(Engine(loaded))
    query = "SELECT count(DISTINCT account_id) FROM customers"
    return int(loaded.con.execute(query).fetchall()[0][0])


def accounts_on_cluster(engine, loaded: LoadedData, cfg: dict, definition, work: Path):
    """Build every account's table on the cluster (`pipelines.cluster_accounts`).

    The executors build every person's features, Spark rolls them up by account, and the
    executors write the result to ``work/features``; the table is returned read back.
    """
    people = {**cfg, "level": "customer"}
    rows = build_on_cluster(engine, loaded, people, definition.of_people(), work / "people-rows")
    rolled = roll_up_on_cluster(engine, rows, definition, cfg)
    return write_accounts(engine, rolled, definition, work / "features")


def train_on_cluster(data, loaded: LoadedData, engine, cfg: dict, run_id: str, output: Path):
    """Run the train recipe with the customers on the cluster (see the module docstring).

    Parameters
    ----------
    data : str or Path
        The data source as the user named it (for the lineage).
    loaded : LoadedData
        The checked tables.
    engine : features.spark.SparkEngine
        The run's Spark engine.
    cfg : dict
        The run configuration.
    run_id : str
        The MLflow run.
    output : Path
        The output folder.

    Returns
    -------
    TrainResult
        As `pipelines.train.train`; its ``assignments`` are the sample's (every
        customer's are in the output folder).
    """
    from pyspark.sql import functions as sf

    settings, work = cfg["spark"], engine.folder / "run"
    if cfg.get("publish") and loaded.n_customers > settings["single_file_rows"]:
        raise ConfigError(
            f"Publishing reads the run's assignments.csv, which a run of "
            f"{loaded.n_customers:,} customers does not write (more than "
            f"spark.single_file_rows, {settings['single_file_rows']:,}): raise "
            "spark.single_file_rows, or publish the assignments/ Parquet dataset yourself."
        )
    log_inputs(loaded)
    accounts = cfg["level"] == "account"
    n, unit = (_accounts(loaded), "accounts") if accounts else (loaded.n_customers, "customers")
    sampled = n > settings["sample_size"]
    with stage(f"Sample the {unit} on the cluster"):
        seen = loaded
        if sampled:
            sample = draw_sample(engine, settings["sample_size"], cfg["seed"],
                                 "account_id" if accounts else "customer_id")  # fmt: skip
            engine.restrict(sample)
            if accounts:  # the driver's DuckDB sees the sample's people too
                seen = _sample_data(loaded, pd.Index(engine.collect(sample)["customer_id"]))
        logger.info(
            "Fitting on %s of %d %s.",
            f"a sample of {settings['sample_size']}" if sampled else "all",
            n,
            unit,
        )
    try:
        built = build_table(seen, engine, cfg)
    finally:
        if sampled:
            engine.unrestrict()
    if sampled and not accounts:
        seen = _sample_data(loaded, built.table.frame.index)
    segments = segment(built.table, cfg)
    found = profile(seen, built.table, segments, built.accounts, cfg)
    units = assign(built.table, segments, found.personas)
    (work / "champion").mkdir(parents=True, exist_ok=True)  # read again on the cluster
    identity = reidentify(
        found.personas,
        units,
        built.table,
        segments.selection.stability["ari"],
        cfg,
        data,
        sample=sampled,
        folder=work / "champion",
    )
    model = persona_model(built, segments, found.personas, identity, cfg)
    uri = log_model(model, built)
    with stage(f"Build every {unit[:-1]}'s features on the executors"):
        if accounts:
            features = accounts_on_cluster(engine, loaded, cfg, built.definition, work)
        else:
            features = build_on_cluster(engine, loaded, cfg, built.definition, work / "features")
    with stage(f"Assign every {unit[:-1]} on the executors (spark_udf)"):
        placed = serving.assign_on_spark(engine.spark, uri, features, model.columns)
        placed = placed.withColumn("confidence", sf.bround("confidence", 4))
        placed.write.parquet(str(work / "assignments"))
        placed = engine.spark.read.parquet(str(work / "assignments"))
        agreement = _agreement(engine, placed, units)
        tracking.log_metrics({"spark.assignment_agreement": agreement})
        logger.info("Sample placed alike by the executors and the driver: %.4f.", agreement)
    with stage("Profile every customer (Spark aggregations)"):
        summary = aggregate_personas(
            found.personas,
            placed.select("customer_id", "persona_id", "is_outlier").join(features, "customer_id"),
            built.table.meta,
            cfg,
            business_model(loaded, cfg),
        )
    with stage("Compare with the champion over every customer (Spark aggregations)"):
        compare_on_cluster(
            engine.spark,
            identity,
            placed,
            features,
            found.personas,
            [f.name for f in built.table.features if f.transform != "category"],
            cfg,
            stability=segments.selection.stability["ari"],
            outlier_share=summary["outlier_share"],
        )
    n_people = 0
    if accounts:
        with stage("Place every person in their account's persona"):
            n_people = people_assignments_on_cluster(engine, cfg, placed, work / "people")
        with stage("NPS by influence over every person (Spark aggregations)"):
            found_people, has_roles = influence_on_cluster(engine, cfg, work / "people")
            b2b.update_influence(found.personas, found_people, has_roles, cfg)
    outputs = ClusterOutputs(
        spark=engine.spark,
        assignments=work / "assignments",
        features=work / "features",
        n_customers=summary["n_customers"],
        outlier_share=summary["outlier_share"],
        single_file_rows=settings["single_file_rows"],
        table=settings["assignments_table"],
        unit="account_id" if accounts else "customer_id",
        people=work / "people" if accounts else None,
        n_people=n_people,
    )
    assignments = Assignments.of(units, built.accounts)
    assignments.cluster = outputs
    result = conclude(
        output, run_id, cfg, loaded, built, segments, found, identity, assignments, model, uri
    )
    shutil.rmtree(work, ignore_errors=True)
    return result


def score_on_cluster(
    engine, loaded: LoadedData, cfg: dict, model, uri: str, output
) -> pd.DataFrame:
    """Place every customer of a batch on the executors and have them write the result.

    Parameters
    ----------
    engine : features.spark.SparkEngine
        The score run's engine (the batch staged in buckets).
    loaded : LoadedData
        The checked batch.
    cfg : dict
        The score configuration (with the model's settings).
    model : models.served.PersonaModel
        The served model (its definition and columns).
    uri : str
        Its MLflow URI, for ``spark_udf``.
    output : str or Path
        ``spark:<database>.<table>`` (a metastore table, replaced), a file ending in
        ``.csv`` (one file, written by one executor: at most ``spark.single_file_rows``
        customers), or any other path (a Parquet dataset, replaced).

    Returns
    -------
    pandas.DataFrame
        One row per persona: ``persona_id``, ``persona_name``, ``customers``.
    """
    from pyspark.sql import functions as sf

    spark, work = engine.spark, engine.folder / "run"
    features = build_on_cluster(engine, loaded, cfg, model.definition, work / "features")
    placed = serving.assign_on_spark(spark, uri, features, model.columns)
    target = str(output)
    if target.startswith("spark:"):
        placed.write.mode("overwrite").saveAsTable(target.removeprefix("spark:"))
        written = spark.table(target.removeprefix("spark:"))
    elif target.endswith(".csv"):
        placed.write.parquet(str(work / "assignments"))
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        _on_executors(spark, [str(work / "assignments")], _Merge(target, "csv"))
        written = spark.read.parquet(str(work / "assignments"))
    else:
        placed.write.mode("overwrite").parquet(target)
        written = spark.read.parquet(target)
    counts = written.groupBy("persona_id", "persona_name").agg(sf.count("*").alias("customers"))
    rows = counts.orderBy("persona_id").collect()  # one row per persona
    shutil.rmtree(work, ignore_errors=True)
    return pd.DataFrame(
        [r.asDict() for r in rows], columns=["persona_id", "persona_name", "customers"]
    )
