"""The score recipe: place the customers of a data source in a trained model's personas."""

from __future__ import annotations

import logging
from pathlib import Path

from features import build_features
from pipelines import b2b, tracking
from pipelines.config import load_config
from pipelines.train import load

__all__ = ["score"]

logger = logging.getLogger(__name__)


def score(data: str | Path, *, model: str | None, output: str | Path, config=None):
    """Build the same features as training and assign every customer a persona.

    Parameters
    ----------
    data : str or Path
        The data folder (or DuckDB file), in the contract's format.
    model : str or None
        An MLflow model URI (``models:/personas@champion``, ``models:/personas/3``,
        ``runs:/<run id>/persona_model``); default the champion of ``tracking.model_name``.
    output : str or Path
        The CSV to write (``customer_id``, ``persona_id``, ``persona_name``,
        ``confidence``, ``is_outlier``); written to a temporary file first, then moved.
    config : str or Path, optional
        Settings file; must match training for the features (window, columns) and the
        level: with ``level: account`` each account is placed (rows keyed by ``account_id``).

    Returns
    -------
    pandas.DataFrame
        The assignments.
    """
    cfg = load_config(config)
    uri = model or f"models:/{cfg['tracking']['model_name']}@champion"
    persona_model = tracking.load_served_model(uri, cfg)
    loaded = load(data, cfg)
    try:
        table = build_features(loaded, {**cfg["features"], "seed": cfg["seed"]})
        if cfg["level"] == "account":
            table = b2b.to_accounts(loaded, table, cfg).table
    finally:
        loaded.con.close()
    result = persona_model.predict(table.frame).reset_index()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    result.to_csv(partial, index=False)
    partial.replace(output)
    logger.info("Scored %d customers with %s", len(result), uri)
    return result
