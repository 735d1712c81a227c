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
from pipelines.compare import lineage_names
from pipelines.config import load_config
from pipelines.engines import data_source, feature_engine, place_on_cluster, require
from pipelines.publish import publish_scores
from pipelines.run import load, stage
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
        written to a temporary file first, then moved.
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
        The assignments.
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
    with data_source(data, cfg) as (source, names):
        loaded = load(source, cfg, names)
        try:
            if cfg["as_of"] is None and loaded.as_of < definition.as_of:
                logger.info(
                    "as_of is the model's, %s: the batch's latest event (%s) is earlier.",
                    definition.as_of,
                    loaded.as_of,
                )
                loaded.as_of = definition.as_of
            with feature_engine(loaded, cfg) as engine:
                built = build_table(loaded, engine, cfg, definition)
                frame = built.table.frame
                with stage("Assign"):
                    if cfg["engine"] == "spark":  # on the executors, with MLflow's spark_udf
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
