"""The train recipe: tables -> features -> personas -> outputs, as one MLflow run.

Each stage is a function of its own module with typed inputs and outputs (README: "Where
things go"); `score` shares load and build-the-table, applying what train fitted.
"""

from __future__ import annotations

from pathlib import Path

from features import LoadedData
from features.engine import Engine
from pipelines import tracking
from pipelines.cluster import train_on_cluster
from pipelines.compare import reidentify
from pipelines.config import load_config
from pipelines.engines import data_source, feature_engine, require
from pipelines.outputs import Assignments, assign
from pipelines.profile import profile
from pipelines.publish import publish_outputs
from pipelines.record import conclude, log_inputs, persona_model
from pipelines.run import TrainResult, load, output_folder, salt, small_pages, stage
from pipelines.segment import modelled_columns, segment
from pipelines.table import build_table

__all__ = ["TrainResult", "load", "modelled_columns", "train"]


@small_pages()
def train(
    data: str | Path,
    *,
    config: str | Path | None = None,
    output: str | Path | None = None,
    cfg: dict | None = None,
) -> TrainResult:
    """Run the whole pipeline on one data source, tracked as one MLflow run.

    Parameters
    ----------
    data : str or Path
        The data folder (or DuckDB file), or ``spark:<database>`` for tables of the Spark
        metastore (``engine: spark``; see `pipelines.engines.data_source`).
    config : str or Path, optional
        A YAML file of settings that differ from the defaults.
    output : str or Path, optional
        Output folder; default ``<output.root>/<timestamp>-<run id>``. It appears only
        when the run succeeds.
    cfg : dict, optional
        An already loaded configuration (wins over ``config``).

    Returns
    -------
    TrainResult
        Run id, output folder, personas and assignments.
    """
    cfg = cfg or load_config(config)
    salt(cfg)  # fail before any work when the salt is missing...
    require(cfg)  # ... or the engine cannot start
    with data_source(data, cfg) as (source, names), tracking.run(cfg, "train") as run_id:
        tracking.log_params(cfg)
        loaded = load(source, cfg, names)
        try:
            with feature_engine(loaded, cfg) as engine:
                folder = output_folder(output, cfg, run_id)
                if cfg["engine"] == "spark":
                    result = train_on_cluster(data, loaded, engine, cfg, run_id, folder)
                else:
                    result = _train(data, loaded, engine, cfg, run_id, folder)
        finally:
            loaded.con.close()
    with stage("Publish"):  # after the run: a failed publish leaves the run whole, to retry
        publish_outputs(cfg, output=folder, run_id=run_id, model_uri=result.model_uri)
    return result


def _train(data, loaded: LoadedData, engine: Engine, cfg: dict, run_id: str, output: Path):
    log_inputs(loaded)
    built = build_table(loaded, engine, cfg)
    segments = segment(built.table, cfg)
    found = profile(loaded, built.table, segments, built.accounts, cfg)
    units = assign(built.table, segments, found.personas)
    identity = reidentify(
        found.personas, units, built.table, segments.selection.stability["ari"], cfg, data
    )
    model = persona_model(built, segments, found.personas, identity, cfg)
    assignments = Assignments.of(units, built.accounts)
    return conclude(
        output, run_id, cfg, loaded, built, segments, found, identity, assignments, model, None
    )
