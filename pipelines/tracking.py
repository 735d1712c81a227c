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
import pickle
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.exceptions
import mlflow.pyfunc
import pandas as pd
from mlflow.tracking import MlflowClient

from pipelines.config import PROJ_ROOT

__all__ = [
    "ASSIGNMENT_TYPE",
    "assign_on_spark",
    "log_artifacts",
    "register_served_model",
    "log_candidates",
    "log_served_model",
    "champion_outputs",
    "is_registered",
    "load_served_model",
    "set_alias",
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
    "pyspark",
)

#: What the served model returns per customer, as the Spark type of `assign_on_spark`.
ASSIGNMENT_TYPE = "persona_id long, persona_name string, confidence double, is_outlier boolean"


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
    active = mlflow.active_run().info
    for name, row in candidates.iterrows():
        with mlflow.start_run(
            run_name=str(name),
            nested=True,
            parent_run_id=active.run_id,
            experiment_id=active.experiment_id,
        ):
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


class PersonaPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper of `models.served.PersonaModel` (a pickle logged as an artifact).

    The input is a customer feature table (``features.parquet``'s columns, indexed or
    with a ``customer_id`` column); the output has ``persona_id``, ``persona_name``,
    ``confidence`` and ``is_outlier``.
    """

    def load_context(self, context):
        """Load the pickled persona model."""
        data = Path(context.artifacts["persona_model"]).read_bytes()
        if b"umap" in data:  # a density model: numba's cache on before unpickling imports umap
            from models.reducers import import_umap

            import_umap()
        self.model = pickle.loads(data)  # our own artifact, written by log_served_model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Place each row of ``model_input`` in a persona."""
        frame = model_input
        if "customer_id" in frame.columns:
            frame = frame.set_index("customer_id")
        return self.model.predict(frame).reset_index(drop=True)


def _requirements() -> list[str]:
    reqs = []
    for lib in ("scikit-learn", "pandas", "numpy", "scipy", "hdbscan", "umap-learn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            reqs.append(f"{lib}=={metadata.version(lib)}")
    return reqs


def log_served_model(model, *, registered_name: str | None, workdir: Path) -> str:
    """Log the persona model as a pyfunc and register it; return its model URI.

    Parameters
    ----------
    model : models.served.PersonaModel
        The fitted model (fitted parameters only, no customer rows).
    registered_name : str or None
        Registry name; None logs without registering.
    workdir : Path
        A scratch folder for the pickle.

    Returns
    -------
    str
        ``models:/NAME/VERSION`` when registered, else ``runs:/RUN/persona_model``.
    """
    path = Path(workdir) / "persona_model.pkl"
    with path.open("wb") as fh:
        pickle.dump(model, fh)
    info = mlflow.pyfunc.log_model(
        name="persona_model",
        python_model=PersonaPyfunc(),
        artifacts={"persona_model": str(path)},
        pip_requirements=_requirements(),
        code_paths=[str(PROJ_ROOT / pkg) for pkg in ("features", "models", "pipelines")],
        registered_model_name=registered_name,
    )
    if registered_name and info.registered_model_version is not None:
        return f"models:/{registered_name}/{info.registered_model_version}"
    return f"runs:/{mlflow.active_run().info.run_id}/persona_model"


def register_served_model(model_uri: str, registered_name: str) -> str:
    """Register a logged served model (``runs:/RUN/persona_model``); return its version URI.

    Parameters
    ----------
    model_uri : str
        The model as `log_served_model` logged it without a registered name.
    registered_name : str
        Registry name.

    Returns
    -------
    str
        ``models:/NAME/VERSION``.
    """
    version = mlflow.register_model(model_uri, registered_name)
    return f"models:/{registered_name}/{version.version}"


def assign_on_spark(spark, model_uri: str, features, columns: list[str]):
    """Assign every customer of a Spark feature table with the served model, on the cluster.

    The model is the pyfunc `log_served_model` logged, applied by MLflow's ``spark_udf``
    in the executors' own Python (``env_manager="local"``: the cluster must have the
    project installed, as it does in local mode; MLflow then does not build an
    environment per executor).

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        The session.
    model_uri : str
        The served model (``models:/personas/3``, ``runs:/<run id>/persona_model``).
    features : pyspark.sql.DataFrame
        One row per customer: ``customer_id`` and the model's feature columns.
    columns : list of str
        The model's feature columns (`models.served.PersonaModel.columns`), in order.

    Returns
    -------
    pyspark.sql.DataFrame
        ``customer_id`` and the columns of `ASSIGNMENT_TYPE`.
    """
    from pyspark.sql.functions import col, struct  # pyspark is an optional extra

    from features.spark import pandas_warnings_silenced

    with pandas_warnings_silenced():
        udf = mlflow.pyfunc.spark_udf(
            spark, model_uri, result_type=ASSIGNMENT_TYPE, env_manager="local"
        )
    inputs = struct(*[col("`" + c.replace("`", "``") + "`") for c in columns])
    return features.select("customer_id", udf(inputs).alias("_persona")).select(
        "customer_id", "_persona.*"
    )


def set_alias(registered_name: str, version_uri: str, alias: str) -> None:
    """Point ``alias`` (e.g. ``champion``) of a registered model at the version in a URI."""
    version = version_uri.rsplit("/", 1)[-1]
    MlflowClient().set_registered_model_alias(registered_name, alias, version)


def is_registered(name: str, cfg: dict) -> bool:
    """Whether a registered model of this name exists in the run's store."""
    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def champion_outputs(
    cfg: dict, dest: Path, name: str | None = None
) -> tuple[str | None, Path | None]:
    """Download the current champion's outputs; (None, None) when there is none yet.

    Parameters
    ----------
    cfg : dict
        The run configuration (``tracking.model_name``).
    dest : Path
        Folder to download ``personas.json``, ``assignments.csv`` and ``features.parquet`` to.
    name : str, optional
        The registered model (lineage); default ``tracking.model_name``.

    Returns
    -------
    tuple
        The champion's run id and the folder holding its outputs.
    """
    name = name or cfg["tracking"]["model_name"]
    if not name:
        return None, None
    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    try:
        version = client.get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException:
        return None, None
    folder = Path(dest)
    for artifact in ("personas.json", "assignments.csv", "features.parquet"):
        try:
            client.download_artifacts(version.run_id, artifact, str(folder))
        except (mlflow.exceptions.MlflowException, OSError) as error:
            logger.warning("Champion artifact %s could not be read: %s", artifact, error)
            return None, None
    return version.run_id, folder


def load_served_model(uri: str, cfg: dict):
    """Load the `PersonaModel` behind a model URI (registry alias, version or run)."""
    mlflow.set_tracking_uri(tracking_uri(cfg))
    loaded = mlflow.pyfunc.load_model(uri)
    return loaded.unwrap_python_model().model


def log_artifacts(folder: str | Path) -> None:
    """Log every file of an output folder to the run."""
    mlflow.log_artifacts(str(folder))
