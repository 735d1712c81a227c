"""The score recipe: place the customers of any batch in a trained model's personas.

The served model carries its table's fitted definition (`pipelines.table`): the
settings that shaped the features (window, column mapping, level), the product features,
themes, channels, categories and quintile edges, and the value model. Score loads the
batch with the same checks as train and applies that definition unchanged, so one
customer, one region or next month is placed exactly as training would have placed them
at the same ``as_of``. No config is needed; ``--config`` sets only ``as_of``, how the data
is read and checked (``validation``, ``spark``), and where the model lives (``tracking``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from features import DataError
from pipelines import serving
from pipelines.cluster import score_on_cluster
from pipelines.compare import lineage_names
from pipelines.config import ConfigError, load_config
from pipelines.engines import data_source, feature_engine, place_on_cluster, require
from pipelines.publish import publish_scores
from pipelines.run import load, small_pages, stage
from pipelines.table import SETTINGS, build_table

__all__ = ["score"]

logger = logging.getLogger(__name__)


#: Settings of how the batch is read: the model's, unless the score config names its own.
_READING = ("columns", "tables")


def _settings(cfg: dict, definition) -> dict:
    """Return ``cfg`` with the model's own settings (a differing one is ignored, said once).

    The table and column names (`_READING`) are the model's unless the config sets them:
    a batch may come from an export that names them otherwise.
    """
    defaults = load_config(None)
    settings = dict(definition.settings)
    for key in _READING:
        if key in cfg and cfg[key] != defaults[key]:
            settings[key] = cfg[key]
    for key in SETTINGS:
        if key not in _READING and cfg[key] != defaults[key] and cfg[key] != settings[key]:
            logger.warning(
                "The config's %s is not used: the served model carries the %s it was "
                "trained with, so the features are built as in training.",
                key,
                key,
            )
    return {**cfg, **settings}


def _check_cluster_output(output, cfg: dict) -> None:
    """Stop before any work when a cluster score cannot be published (a CSV is needed)."""
    if cfg.get("publish") and not str(output).endswith(".csv"):
        raise ConfigError(
            f"Publishing a score run reads the CSV it writes, and --output {output} is not a "
            "CSV file: write to a file ending in .csv, or publish the table or folder yourself."
        )


def _check_single_file(output, n: int, cfg: dict) -> None:
    """Stop when a batch is too large for the one CSV file ``output`` names."""
    limit = cfg["spark"]["single_file_rows"]
    if n > limit:
        raise ConfigError(
            f"The batch has {n:,} customers, more than spark.single_file_rows ({limit:,}) for "
            f"the one CSV file {output}, which a single executor writes. Name a folder (a "
            "Parquet dataset the executors write) or spark:<database>.<table> as --output, or "
            "raise spark.single_file_rows."
        )


@small_pages()
def score(
    data: str | Path,
    *,
    model: str | None,
    output: str | Path,
    config=None,
    publish: str | None = None,
    engine: str | None = None,
) -> pd.DataFrame:
    """Build the training features of a batch and assign every customer a persona.

    Parameters
    ----------
    data : str or Path
        The data folder (or DuckDB file), in the contract's format.
    model : str or None
        An MLflow model URI (``models:/personas@champion``, ``models:/personas/3``,
        ``runs:/<run id>/persona_model``); default the champion of the data source's own
        lineage when it has one, else of ``tracking.model_name``.
    output : str or Path
        The CSV to write (``customer_id``, ``persona_id``, ``persona_name``,
        ``confidence``, ``is_outlier``; ``account_id`` first for a model of accounts);
        written to a temporary file first, then moved. With ``engine="spark"`` (customer
        models), the executors write it: also a folder (a Parquet dataset) or
        ``spark:<database>.<table>`` (a metastore table), both replaced (see
        `pipelines.cluster.score_on_cluster`).
    config : str or Path, optional
        Settings file: ``as_of`` (default: the batch's latest timestamp, and never
        before the model's own ``as_of``), ``validation``, ``tracking``, ``publish``.
    publish : str, optional
        A PostgreSQL URL (wins over the config's ``publish``): the assignments and the
        membership history are published there once the CSV is written.
    engine : {"duckdb", "spark"}, optional
        Where the features are computed and the customers placed (wins over the config's
        ``engine``): with ``spark``, Spark SQL builds the features and the executors place
        every customer with the registered model (MLflow ``spark_udf``); ``data`` may then
        be ``spark:<database>`` (metastore tables).

    Returns
    -------
    pandas.DataFrame
        The assignments; with ``engine="spark"`` (customer models), which never brings
        them to the driver, one row per persona: ``persona_id``, ``persona_name``,
        ``customers``.
    """
    cfg = load_config(config, publish=publish, engine=engine)
    if model is None:  # the data source's own lineage when it has one (`lineage_names`)
        main, own = lineage_names(cfg, data)
        lineage = own if own and serving.is_registered(own, cfg) else main
        model = f"models:/{lineage}@champion"
    uri = model
    with stage("Load the served model"):
        persona_model = serving.load_served_model(uri, cfg)
    definition = persona_model.definition
    if definition is None:
        raise DataError(
            f"The model {uri} was trained by an earlier version of personas that did not "
            "keep its feature definition; train it again to score with it."
        )
    cfg = _settings(cfg, definition)
    require(cfg)
    on_cluster = cfg["engine"] == "spark" and cfg["level"] == "customer"
    if on_cluster:
        _check_cluster_output(output, cfg)
    with data_source(data, cfg) as (source, names):
        loaded = load(source, cfg, names)
        try:
            if on_cluster and str(output).endswith(".csv"):
                _check_single_file(output, loaded.n_customers, cfg)
            if cfg["as_of"] is None and loaded.as_of < definition.as_of:
                logger.info(
                    "as_of is the model's, %s: the batch's latest event (%s) is earlier.",
                    definition.as_of,
                    loaded.as_of,
                )
                loaded.as_of = definition.as_of
            with feature_engine(loaded, cfg) as engine:
                if on_cluster:  # features, placement and writing on the executors
                    with stage("Build, assign and write every customer on the executors"):
                        result = score_on_cluster(engine, loaded, cfg, persona_model, uri, output)
                    logger.info("Scored %d customers with %s", result["customers"].sum(), uri)
                    return _published(result, cfg, output, uri, loaded, persona_model)
                built = build_table(loaded, engine, cfg, definition)
                frame = built.table.frame
                with stage("Assign"):
                    if cfg["engine"] == "spark":  # accounts: on the executors, with spark_udf
                        result = place_on_cluster(engine, frame, persona_model.columns, uri)
                    else:
                        result = persona_model.predict(frame).reset_index()
        finally:
            loaded.con.close()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    result.to_csv(partial, index=False)
    partial.replace(output)
    logger.info("Scored %d customers with %s", len(result), uri)
    return _published(result, cfg, output, uri, loaded, persona_model)


def _published(result: pd.DataFrame, cfg: dict, output, uri: str, loaded, persona_model):
    """Publish the written assignments when the config says where; return ``result``."""
    with stage("Publish"):
        publish_scores(
            cfg,
            output=output,
            model_uri=uri,
            as_of=loaded.as_of,
            fingerprint=loaded.fingerprint,
            names=persona_model.names,
            source=loaded.quality["source"],
        )
    return result
