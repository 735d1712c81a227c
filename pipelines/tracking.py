"""Every MLflow call of the project lives here; the pipeline owns the run.

The store is chosen in one place (`tracking_uri`): the config's ``tracking.uri``, else
``$MLFLOW_TRACKING_URI``, else a SQLite store at ``<project>/mlruns/mlflow.db`` with the
artifacts beside it under ``mlruns/artifacts`` (recent MLflow refuses a bare ``./mlruns``
folder store).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pipelines.config import PROJ_ROOT

__all__ = [
    "log_artifacts",
    "log_candidates",
    "log_metrics",
    "log_params",
    "run",
    "set_tags",
    "tracking_uri",
]

logger = logging.getLogger(__name__)

_LIBRARIES = (
    "personas",
    "scikit-learn",
    "pandas",
    "duckdb",
    "numpy",
    "mlflow",
    "umap-learn",
    "hdbscan",
)


def tracking_uri(cfg: dict) -> str:
    """Return the tracking store for this run (see the module docstring)."""
    uri = cfg["tracking"]["uri"] or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = PROJ_ROOT / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def _experiment(uri: str, name: str) -> str:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJ_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    out = {}
    for lib in _LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[f"version.{lib}"] = metadata.version(lib)
    return out


@contextlib.contextmanager
def run(cfg: dict, run_name: str | None = None) -> Iterator[str]:
    """Open the MLflow run of one pipeline execution and yield its id.

    The run records the git commit and library versions. If the body raises (or the
    process is interrupted), the run ends FAILED (KILLED on Ctrl-C) with the error's
    type and first line as tags.

    Parameters
    ----------
    cfg : dict
        The run configuration (``tracking`` section).
    run_name : str, optional
        Display name of the run.

    Yields
    ------
    str
        The run id.
    """
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    experiment_id = _experiment(uri, cfg["tracking"]["experiment"])
    tags = {"git_sha": _git_sha() or "unknown", **_versions()}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as active:
        try:
            yield active.info.run_id
        except BaseException as err:
            first = (str(err).splitlines() or [""])[0][:500]
            mlflow.set_tags({"error_type": type(err).__name__, "error": first})
            raise


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


def log_params(params: dict) -> None:
    """Log a (nested) mapping as flat params: ``model.k_max = 10``."""
    flat = _flatten(params)
    keys = list(flat)
    for i in range(0, len(keys), 100):
        mlflow.log_params({k: flat[k] for k in keys[i : i + 100]})


def log_metrics(metrics: dict[str, float]) -> None:
    """Log metrics, dropping missing values and cleaning names MLflow would reject."""
    clean = {}
    for key, value in metrics.items():
        if value is None:
            continue
        name = "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)
        clean[name] = float(value)
    mlflow.log_metrics(clean)


def set_tags(tags: dict[str, str]) -> None:
    """Set run tags."""
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_candidates(candidates) -> None:
    """Log each candidate model as a nested child run of the active run.

    Parameters
    ----------
    candidates : pandas.DataFrame
        One row per candidate (index: its name) with its family, parameter and metrics.
    """
    parent = mlflow.active_run().info.run_id
    for name, row in candidates.iterrows():
        with mlflow.start_run(run_name=str(name), nested=True, parent_run_id=parent):
            mlflow.log_params(
                {"family": row["family"], "space": row["space"], "param": row["param"]}
            )
            mlflow.set_tags(
                {"finalist": str(bool(row["finalist"])), "winner": str(bool(row["winner"]))}
            )
            log_metrics(
                {
                    k: row[k]
                    for k in (
                        "silhouette",
                        "calinski_harabasz",
                        "davies_bouldin",
                        "noise_share",
                        "n_clusters",
                        "quality",
                        "stability",
                        "dbcv",
                    )
                    if k in row and row[k] == row[k]
                }
            )


def log_artifacts(folder: str | Path) -> None:
    """Log every file of an output folder to the run."""
    mlflow.log_artifacts(str(folder))
