"""Compare a cluster run with the champion over every customer, as Spark aggregations.

On the cluster path (`pipelines.cluster`) the driver matches this run's personas to the
champion's on its sample (`pipelines.compare.reidentify`: the Hungarian assignment needs
each pair's overlap, which the sample's migration estimates). Once the executors have
placed every customer, `compare_on_cluster` recomputes what ``migration.csv`` and
``changes.json`` report from every customer, reading the champion's outputs on the
cluster (its ``assignments.csv`` or ``assignments/``, its ``features.parquet`` or
``features/``):

- **the migration matrix**: the champion's assignments joined to this run's on the
  customer id (hashed first with the run's salt, as the champion wrote them) and counted
  per (old, new) persona; one row per pair reaches the driver, and the match quality
  (who stayed in the matched persona) follows from it;
- **the feature drift**: each numeric feature's population stability index
  (`models.matching.population_stability`). The champion's decile edges are exact order
  statistics at the integer ranks of `models.matching.edge_ranks` (bracketed by
  ``percentile_approx``, then counted exactly in the bracket,
  `pipelines.cluster_quantiles.order_statistics`: no executor holds a column's values),
  interpolated on the driver as the single-machine path does; then both runs' counts per
  bin. Per feature, a count, the few values inside each bracket and two rows of counts
  reach the driver;
- **the promotion gates**, with every customer's outlier share and match quality.

Which champion persona each persona is matched to stays the sample's decision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.privacy import pseudonymize
from models.matching import edge_ranks, quantile_edges, stability_index
from pipelines.cluster_profile import _num
from pipelines.cluster_quantiles import cell_counts, order_statistics
from pipelines.compare import Identity, describe_changes, gate, match_quality
from pipelines.run import salt

__all__ = ["champion_table", "compare_on_cluster", "drift_on_cluster", "migration_on_cluster"]


def champion_table(spark, folder, name: str):
    """Return one of the champion's outputs as a Spark DataFrame (None when it has none).

    ``<name>.csv``, else ``<name>.parquet``, else the ``<name>/`` Parquet dataset; its
    first column (``customer_id``, or ``account_id`` at ``level: account``) is renamed
    ``customer_id``. A CSV's columns are read as text.
    """
    csv, single, dataset = folder / f"{name}.csv", folder / f"{name}.parquet", folder / name
    if csv.exists():
        frame = spark.read.option("header", True).csv(str(csv))
    elif single.exists() or dataset.is_dir():
        frame = spark.read.parquet(str(single if single.exists() else dataset))
    else:
        return None
    return frame.withColumnRenamed(frame.columns[0], "customer_id")


def migration_on_cluster(before, placed, key: str | None) -> pd.DataFrame:
    """Count the customers of both runs per (champion persona, this run's persona).

    Parameters
    ----------
    before : pyspark.sql.DataFrame
        The champion's assignments (`champion_table`).
    placed : pyspark.sql.DataFrame
        This run's assignments (``customer_id`` as the data has it, ``persona_id`` final).
    key : str or None
        The salt the champion's ids were hashed with (`pipelines.run.salt`).

    Returns
    -------
    pandas.DataFrame
        ``from_persona``, ``to_persona``, ``customers``, sorted by the pair: the
        single-machine path's ``migration.csv``.
    """
    from pyspark.sql import functions as sf

    after = placed.select("customer_id", sf.col("persona_id").alias("to_persona"))
    if key is not None:

        @sf.pandas_udf("string")
        def hashed(ids: pd.Series) -> pd.Series:
            return pseudonymize(ids.astype(str), key).astype(object)

        after = after.withColumn("customer_id", hashed("customer_id"))
    old = before.select("customer_id", sf.col("persona_id").cast("long").alias("from_persona"))
    rows = (
        old.join(after, "customer_id")
        .groupBy("from_persona", "to_persona")
        .agg(sf.count(sf.lit(1)).alias("customers"))
        .orderBy("from_persona", "to_persona")
        .collect()  # one row per pair of personas
    )
    columns = ["from_persona", "to_persona", "customers"]
    return pd.DataFrame([[int(r[c]) for c in columns] for r in rows], columns=columns)


def drift_on_cluster(before, after, numeric: list[str], bins: int = 10) -> dict:
    """Return each numeric feature's population stability index, champion -> this run.

    The same index as `models.matching.population_stability` on the whole columns, in
    six Spark aggregations: both runs' counts, minima and maxima; the champion's values
    at the ranks of the decile edges (a bracket, then an exact count in it); both runs'
    counts per cell of the edges (`pipelines.cluster_quantiles.cell_counts`).

    Parameters
    ----------
    before, after : pyspark.sql.DataFrame
        The champion's and this run's feature tables.
    numeric : list of str
        The features to compare (those both tables have).
    bins : int, default=10
        Number of quantile bins.

    Returns
    -------
    dict of str to float
        Feature -> index (NaN without values, infinite when the champion's values are
        one value and this run's are not).
    """
    from pyspark.sql import functions as sf

    cols = [c for c in numeric if c in before.columns and c in after.columns]
    if not cols:
        return {}
    k = len(cols)
    stats = [sf.count(_num(c)) for c in cols] + [sf.min(_num(c)) for c in cols]
    stats += [sf.max(_num(c)) for c in cols]
    old, new = before.agg(*stats).collect()[0], after.agg(*stats).collect()[0]
    drift = {c: float("nan") for c in cols}  # without values on either side
    ranks = {c: edge_ranks(old[i], bins) for i, c in enumerate(cols) if old[i] and new[i]}
    if not ranks:
        return drift
    wanted = {
        c: sorted({*map(int, lower), *map(int, upper)}) for c, (lower, upper, _) in ranks.items()
    }
    counts = dict(zip(cols, old[:k], strict=True))
    at = order_statistics(before, {c: _num(c) for c in ranks}, wanted, counts)
    edges = {}
    for c, (lower, upper, t) in ranks.items():
        value = at[c]
        found = quantile_edges(
            np.array([value[r] for r in lower]), np.array([value[r] for r in upper]), t
        )
        if len(found) >= 2:
            edges[c] = found
            continue
        i, a0 = cols.index(c), found[0]  # one value throughout: numpy's allclose
        far = max(abs(new[k + i] - a0), abs(new[2 * k + i] - a0))
        drift[c] = 0.0 if far <= 1e-8 + 1e-5 * abs(a0) else float("inf")
    if edges:  # both runs' counts per cell of the inner edges: one job each
        inner = {c: [float(e) for e in found[1:-1]] for c, found in edges.items()}
        values = {c: _num(c) for c in edges}
        old_cells, new_cells = (cell_counts(frame, values, inner) for frame in (before, after))
        for c, ends in inner.items():
            i = cols.index(c)
            drift[c] = stability_index(
                _bin_counts(old[i], _at_or_above(old_cells[c], len(ends))),
                _bin_counts(new[i], _at_or_above(new_cells[c], len(ends))),
            )
    return drift


def _at_or_above(cells: dict, n_ends: int) -> list[int]:
    """Return the counts at or above each end from `cell_counts`' cells of one column."""
    return [sum(n for cell, (n, _) in cells.items() if cell > 2 * j) for j in range(n_ends)]


def _bin_counts(n: int, above: list[int]) -> np.ndarray:
    """Return the counts per bin from the total and the counts at or above each inner edge."""
    cumulative = np.array([n, *above, 0], dtype=np.int64)
    return cumulative[:-1] - cumulative[1:]


def compare_on_cluster(
    spark, identity: Identity, placed, features, personas: list[dict], numeric: list[str],
    cfg: dict, *, stability: float, outlier_share: float,
) -> None:  # fmt: skip
    """Recompute the migration, match quality, drift and promotion from every customer.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
    identity : Identity
        The sample's comparison (`pipelines.compare.reidentify` with a ``folder`` holding
        the champion's outputs); its ``migration``, ``changes`` and ``promotion`` are
        replaced, in place. Nothing is done without a champion.
    placed, features : pyspark.sql.DataFrame
        Every customer's assignments (final ids) and features.
    personas : list of dict
        This run's personas, counted over every customer.
    numeric : list of str
        The numeric features whose drift is described.
    cfg : dict
        The run configuration (``profile.alpha``, ``resegment.gates``, ``privacy``).
    stability : float
        The model's stability, for the gates.
    outlier_share : float
        Every customer's share of outliers, for the gates.
    """
    previous = identity.previous
    if previous is None:
        return
    before = champion_table(spark, previous.folder, "assignments")
    migration = migration_on_cluster(before, placed, salt(cfg))
    champion = champion_table(spark, previous.folder, "features")
    drift = {} if champion is None else drift_on_cluster(champion, features, numeric)
    quality = match_quality(migration)
    changes = describe_changes(previous, personas, migration, drift, alpha=cfg["profile"]["alpha"])
    changes["match_quality"] = quality
    promoted, failed = gate(
        stability=stability,
        outlier_share=outlier_share,
        match_quality=quality,
        gates=cfg["resegment"]["gates"],
    )
    identity.migration, identity.changes = migration, changes
    identity.promotion.update(promoted=promoted, failed_gates=failed)
