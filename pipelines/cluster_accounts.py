"""Personas of accounts on a Spark cluster: every account's table is built there.

`pipelines.cluster.train_on_cluster` runs ``level: account`` as it runs the customer
level, the accounts standing in for the customers:

1. **The sample is of accounts**: the ``spark.sample_size`` accounts with the smallest
   seeded hash of their id, with all their people (`pipelines.cluster.draw_sample`). The
   driver builds their table as the DuckDB engine builds everyone's (each person's
   features, rolled up by `features.accounts.roll_up`) and fits on it.
2. **Every person's features are built on the executors** with the people's part of the
   fitted definition (`pipelines.table.TableDefinition.of_people`,
   `pipelines.cluster_table.build_on_cluster`; the buckets are the customers', which a
   roll-up grouped by account does not need).
3. **`roll_up_on_cluster` rolls them up to every account as one Spark aggregation**
   grouped by ``account_id``, by the rules of `features.accounts.rollup_rule` (sum, mean,
   max, min, usage-weighted mean, the most common level, the highest ordered level),
   with the account-only features: people, the share of active people, the normalized
   Gini of usage, the share of each influence level and the account's NPS score
   (``b2b.account_nps``). Each person's influence level is mapped on the executors by
   `features.influence.influence_levels` itself (`people_on_cluster`).
4. **The people's assignments** (``people_assignments``) are their account's persona,
   joined on the cluster (`people_assignments_on_cluster`) and written by the executors;
   each persona's people, their NPS by influence level and the gap between decision
   makers and end users are counted over every person (`influence_on_cluster`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features import FeatureTable
from features.accounts import _ORDERED, _SCORE, rollup_rule
from features.engine import slug
from features.influence import UNKNOWN
from pipelines.cluster_table import arrow_schema

__all__ = [
    "influence_on_cluster",
    "people_assignments_on_cluster",
    "people_on_cluster",
    "roll_up_on_cluster",
    "write_accounts",
]


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _num(name: str):
    """Return a numeric column, NaN read as missing (as pandas skips it)."""
    from pyspark.sql import functions as sf

    return sf.nanvl(sf.col(_q(name)), sf.lit(None).cast("double"))


def people_on_cluster(engine, cfg: dict):
    """Return each person's account and influence level, mapped on the executors.

    Parameters
    ----------
    engine : features.spark.SparkEngine
        The run's engine (its ``customers`` view, whole).
    cfg : dict
        The run configuration (``b2b``).

    Returns
    -------
    pyspark.sql.DataFrame
        ``customer_id``, ``account_id`` (as text) and ``influence`` (`UNKNOWN` without a
        role), as `pipelines.b2b.to_accounts` gives them.
    """
    from pyspark.sql import functions as sf
    from pyspark.sql.functions import pandas_udf

    from features.spark import pandas_warnings_silenced

    b = cfg["b2b"]
    levels, other, column = dict(b["influence"]), b["other_roles"], b["role_column"]
    has_role = bool(column) and engine.has("customers", column)
    role = sf.col(_q(column)).cast("string") if has_role else sf.lit(None).cast("string")

    def influence(roles: pd.Series) -> pd.Series:
        from features.influence import influence_levels

        return influence_levels(roles.astype("string"), levels, other=other).astype(object)

    with pandas_warnings_silenced():
        mapped = pandas_udf(influence, "string")
    return engine.spark.table("customers").select(
        sf.col("customer_id").cast("string").alias("customer_id"),
        sf.col("account_id").cast("string").alias("account_id"),
        mapped(role).alias("influence"),
    )


def _latest(spark):
    """Each respondent's latest score (ties: the lower score), as `latest_scores`."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    order = Window.partitionBy("customer_id").orderBy(sf.desc("timestamp"), sf.asc("nps"))
    return (
        spark.table("feedback")
        .where("nps IS NOT NULL")
        .select(
            sf.col("customer_id").cast("string").alias("customer_id"),
            sf.col("nps").cast("double").alias("nps"),
            "timestamp",
        )
        .withColumn("_rn", sf.row_number().over(order))
        .where("_rn = 1")
        .drop("_rn")
    )


def _account_scores(spark, people, b2b: dict):
    """Each responding account's score, as `features.accounts.account_scores` counts it."""
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    scored = _latest(spark).join(people, "customer_id")
    if b2b["account_nps"] == "mean":
        mean = sf.avg("nps")
        return scored.groupBy("account_id").agg(sf.floor(mean + 0.5).cast("double").alias(_SCORE))
    deciders = scored.where(sf.col("influence").isin(list(b2b["decision_makers"])))
    order = Window.partitionBy("account_id").orderBy(sf.desc("timestamp"), sf.asc("nps"))
    return (
        deciders.withColumn("_rn", sf.row_number().over(order))
        .where("_rn = 1")
        .select("account_id", sf.col("nps").alias(_SCORE))
    )


def _rolled(f, weighted: bool):
    """Return the aggregate of one person-level feature over an account's people."""
    from pyspark.sql import functions as sf

    rule = rollup_rule(f)
    if rule == "mode":
        return sf.mode(sf.col(_q(f.name)), True)  # ties: the lowest level, as `_mode`
    if f.name in _ORDERED:  # the highest level of its people
        levels = _ORDERED[f.name]
        rank = sf.array_position(sf.array(*map(sf.lit, levels)), sf.col(_q(f.name)))
        best = sf.max(sf.when(rank > 0, rank))
        return sf.element_at(sf.array(*map(sf.lit, levels)), best.cast("int"))
    x = _num(f.name)
    if rule == "weighted":
        w = sf.col("_w") if weighted else sf.lit(1.0)
        total = sf.sum(w)
        share = sf.try_divide(sf.sum(sf.coalesce(x, sf.lit(0.0)) * w), total)
        return sf.when(total > 0, share).otherwise(sf.lit(0.0))
    return {"sum": sf.sum, "mean": sf.avg, "max": sf.max, "min": sf.min}[rule](x)


def _spread():
    """Return the normalized Gini of usage within an account (`features.accounts.gini`)."""
    from pyspark.sql import functions as sf

    n, total, ix = sf.count(sf.lit(1)).cast("double"), sf.sum("_x"), sf.sum("_ix")
    plain = sf.try_divide(2 * ix, n * total) - (n + 1) / n
    value = sf.least(sf.greatest(sf.try_divide(plain * n, n - 1), sf.lit(0.0)), sf.lit(1.0))
    return sf.when((total > 0) & (n > 1), value).otherwise(sf.lit(0.0))


def roll_up_on_cluster(engine, features, definition, cfg: dict):
    """Roll every person's features up to their account, as Spark aggregations.

    The same numbers as `features.accounts.roll_up` on the driver (see the module
    docstring), for the columns the fitted definition holds: an influence level no
    person holds is a share of 0, a level the sample did not hold is left out.

    Parameters
    ----------
    engine : features.spark.SparkEngine
        The run's engine (its whole views).
    features : pyspark.sql.DataFrame
        Every person's features (``customer_id`` and the people's columns).
    definition : pipelines.table.TableDefinition
        The fitted definition of the account table.
    cfg : dict
        The run configuration (``b2b``).

    Returns
    -------
    pyspark.sql.DataFrame
        One row per account: ``customer_id`` (the account's id, the key the served model
        reads) and the definition's columns, numbers as doubles.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as sf

    people = people_on_cluster(engine, cfg)
    rows = features.join(people, "customer_id")
    weighted = "usage_events" in features.columns
    if weighted:  # usage weighs the mix; its order within the account gives the Gini
        order = Window.partitionBy("account_id").orderBy("_x")
        rows = (
            rows.withColumn("_w", sf.coalesce(_num("usage_events"), sf.lit(0.0)))
            .withColumn("_x", sf.greatest(sf.col("_w"), sf.lit(0.0)))
            .withColumn("_ix", sf.row_number().over(order) * sf.col("_x"))
        )
    levels = [*cfg["b2b"]["influence"], cfg["b2b"]["other_roles"], UNKNOWN]
    influence = {f"influence_{slug(level)}": level for level in levels}
    scored = engine.has("feedback", "nps")
    aggs = []
    for f in definition.columns:
        name = f.name
        if name == "account_people":
            aggs.append(sf.count(sf.lit(1)).cast("double").alias(name))
        elif name == "usage_active_share" and weighted:
            aggs.append(sf.avg((sf.col("_w") > 0).cast("double")).alias(name))
        elif name == "usage_spread" and weighted:
            aggs.append(_spread().alias(name))
        elif f.family == "accounts" and name in influence:
            share = sf.avg((sf.col("influence") == influence[name]).cast("double"))
            aggs.append(share.alias(name))
        elif not (scored and name in (_SCORE, "nps_category")):  # those follow the score
            aggs.append(_rolled(f, weighted).alias(name))
    accounts = rows.groupBy("account_id").agg(*aggs)
    if scored:
        scores = _account_scores(engine.spark, people, cfg["b2b"])
        accounts = accounts.join(scores, "account_id", "left")
        s = sf.col(_SCORE)
        category = sf.when(s <= 6, "detractor").when(s <= 8, "passive").when(s <= 10, "promoter")
        accounts = accounts.withColumn("nps_category", category)
    out = []
    for f in definition.columns:
        c = sf.col(_q(f.name))
        if f.transform == "category":
            out.append(c.cast("string").alias(f.name))
            continue
        c = c.cast("double")
        out.append((sf.coalesce(c, sf.lit(0.0)) if f.fill == "zero" else c).alias(f.name))
    return accounts.select(sf.col("account_id").alias("customer_id"), *out)


class _Stamp:
    """An executor task: rewrite one Parquet file with a feature table's schema and metadata."""

    def __init__(self, dest: str, schema, metadata: dict[bytes, bytes]):
        self.dest, self.schema, self.metadata = dest, schema, metadata

    def __call__(self, path: str) -> None:
        import pyarrow.parquet as pq

        table = pq.read_table(path).select(self.schema.names).cast(self.schema)
        table = table.replace_schema_metadata(self.metadata)
        Path(self.dest).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, Path(self.dest) / Path(path).name)


def write_accounts(engine, accounts, definition, out: Path):
    """Have the executors write every account's table, as the customer level's buckets are.

    Each file has the table's fixed schema and the features' metadata (as
    ``features.parquet``), so the run's ``features/`` dataset reads as the DuckDB
    engine's table.

    Returns
    -------
    pyspark.sql.DataFrame
        The written table, read back.
    """
    from pipelines.cluster import _on_executors
    from pipelines.cluster_table import _spark_schema

    raw = out.with_name(out.name + "-raw")
    accounts.write.parquet(str(raw))
    files = sorted(str(p) for p in raw.glob("*.parquet"))
    empty = FeatureTable(frame=pd.DataFrame(), features=definition.columns, as_of=definition.as_of)
    stamp = _Stamp(str(out), arrow_schema(definition.columns), empty.parquet_metadata())
    _on_executors(engine.spark, files, stamp)
    return engine.spark.read.schema(_spark_schema(definition.columns)).parquet(str(out))


def people_assignments_on_cluster(engine, cfg: dict, placed, out: Path) -> int:
    """Place every person in their account's persona; the executors write the rows.

    Parameters
    ----------
    engine : features.spark.SparkEngine
        The run's engine.
    cfg : dict
        The run configuration (``b2b``).
    placed : pyspark.sql.DataFrame
        Every account's assignment (``customer_id`` the account's id, ``persona_id``,
        ``persona_name``).
    out : Path
        The Parquet dataset written: ``customer_id``, ``account_id``, ``influence``,
        ``persona_id``, ``persona_name``, ordered by ``customer_id``.

    Returns
    -------
    int
        How many people were placed.
    """
    from pyspark.sql import functions as sf

    units = placed.select(sf.col("customer_id").alias("account_id"), "persona_id", "persona_name")
    rows = people_on_cluster(engine, cfg).join(units, "account_id", "left")
    columns = ["customer_id", "account_id", "influence", "persona_id", "persona_name"]
    rows.select(*columns).orderBy("customer_id").write.parquet(str(out))
    written = engine.spark.read.parquet(str(out))
    counts = written.agg(
        sf.count(sf.lit(1)).alias("n"), sf.count("persona_id").alias("placed")
    ).collect()[0]
    if counts["placed"] != counts["n"]:  # a bug, never the user's data
        raise RuntimeError("Some people's accounts have no persona.")
    return int(counts["n"])


def influence_on_cluster(engine, cfg: dict, people: Path) -> tuple[dict, bool]:
    """Count each persona's people, NPS by influence level and gap over every person.

    The counts per persona and level are one Spark aggregation; each tested gap's
    cluster-robust variance is a sum over its accounts (`models.influence.gap_from_sums`),
    one more. Only those rows reach the driver, where
    `models.influence.influence_from_counts` builds what `models.influence.influence_nps`
    builds from every person.

    Parameters
    ----------
    engine : features.spark.SparkEngine
        The run's engine.
    cfg : dict
        The run configuration (``b2b``, ``profile``, ``privacy``).
    people : Path
        Every person's assignment (`people_assignments_on_cluster`).

    Returns
    -------
    found : dict
        As `models.influence.influence_nps`.
    has_roles : bool
        Whether any person has a role.
    """
    from pyspark.sql import functions as sf

    from models.influence import gap_from_sums, influence_from_counts
    from pipelines.b2b import influence_settings

    spark, b = engine.spark, cfg["b2b"]
    rows = spark.read.parquet(str(people)).join(
        _latest(spark).select("customer_id", "nps") if engine.has("feedback", "nps") else
        spark.range(0).select(sf.lit("").alias("customer_id"), sf.lit(0.0).alias("nps")),
        "customer_id", "left",
    ).cache()  # fmt: skip
    s = sf.col("nps")
    counted = rows.groupBy(
        sf.col("persona_id").alias("persona"), sf.col("influence").alias("level")
    )
    counts = engine.collect(
        counted.agg(
            sf.count(sf.lit(1)).alias("people"),
            sf.count(sf.when(s >= 9, 1)).alias("promoters"),
            sf.count(sf.when(s <= 6, 1)).alias("detractors"),
            sf.count(s).alias("respondents"),
        )
    )
    settings = influence_settings(cfg)
    side_levels = list(settings["sides"].values())

    def gap(pid: int, totals: list, ci_level: float) -> dict:
        (y_a, n_a), (y_b, n_b) = totals
        y = (s >= 9).cast("double") - (s <= 6).cast("double")
        on = [sf.col("influence").isin(list(levels)) for levels in side_levels]
        per_account = (
            rows.where((sf.col("persona_id") == pid) & s.isNotNull() & (on[0] | on[1]))
            .groupBy("account_id")
            .agg(*[sf.sum(sf.when(x, y).otherwise(0.0)).alias(f"y{i}") for i, x in enumerate(on)],
                 *[sf.sum(sf.when(x, 1.0).otherwise(0.0)).alias(f"n{i}") for i, x in enumerate(on)])
        )  # fmt: skip
        r_a, r_b = y_a / n_a, y_b / n_b
        u = (sf.col("y0") - r_a * sf.col("n0")) / n_a - (sf.col("y1") - r_b * sf.col("n1")) / n_b
        row = per_account.agg(sf.sum(u * u).alias("sq"), sf.count(sf.lit(1)).alias("m")).first()
        return gap_from_sums(r_a, r_b, float(row["sq"] or 0.0), int(row["m"]), ci_level=ci_level)

    found = influence_from_counts(counts, gap, **settings)
    rows.unpersist()
    column = b["role_column"]
    has_roles = bool(column) and engine.has("customers", column)
    if has_roles:
        has_roles = bool(spark.table("customers").where(sf.col(_q(column)).isNotNull()).take(1))
    return found, has_roles
