"""The served model in MLflow: logged with its signature, registered, promoted, loaded.

`log_served_model` logs `models.served.PersonaModel` as a pyfunc (`PersonaPyfunc`) with
the project's code, so any MLflow consumer (``personas score``, MLflow serving,
``spark_udf``) places customers with it; the registry holds one lineage per registered
name, its ``@champion`` the model a scheduler's next run compares against.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import warnings
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.exceptions
import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema

from pipelines.config import PROJ_ROOT, ConfigError
from pipelines.tracking import tracking_uri

__all__ = [
    "ASSIGNMENT_TYPE",
    "assign_on_spark",
    "champion_outputs",
    "is_registered",
    "load_served_model",
    "log_served_model",
    "register_served_model",
    "resolve_model_uri",
    "set_alias",
]

logger = logging.getLogger(__name__)

#: What the served model returns per customer, as the Spark type of `assign_on_spark`.
ASSIGNMENT_TYPE = "persona_id long, persona_name string, confidence double, is_outlier boolean"


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


#: What the served model returns per customer (its signature's outputs).
_OUTPUTS = Schema(
    [
        ColSpec(DataType.long, "persona_id"),
        ColSpec(DataType.string, "persona_name"),
        ColSpec(DataType.double, "confidence"),
        ColSpec(DataType.boolean, "is_outlier"),
    ]
)


def served_signature(
    model, *, input_example: pd.DataFrame | None = None, columns=None
) -> ModelSignature:
    """Return the served model's signature: its feature columns in, a persona out.

    Numeric features are ``double`` (MLflow then accepts whole numbers too, and a column
    that is whole in one batch and has a NaN in the next), text features ``string``.

    Parameters
    ----------
    model : models.served.PersonaModel
        The fitted model; its ``columns`` (and its preprocessor's categorical columns)
        are used when neither of the next two is given.
    input_example : pandas.DataFrame, optional
        Feature rows; the types of their columns (those of ``columns`` or the model's).
    columns : list of str or dict of str to str, optional
        The feature columns, or column -> ``"double"`` / ``"string"``.

    Returns
    -------
    mlflow.models.ModelSignature
        Inputs (one column per feature) and outputs (`ASSIGNMENT_TYPE`'s columns).
    """
    if isinstance(columns, dict):
        kinds = dict(columns)
    else:
        names = list(columns) if columns is not None else list(model.columns)
        text = set(getattr(getattr(model, "preprocessor", None), "categorical_columns", ()) or ())
        if input_example is not None:
            text |= {
                c
                for c in names
                if c in input_example and not pd.api.types.is_numeric_dtype(input_example[c])
            }
        kinds = {c: "string" if c in text else "double" for c in names}
    inputs = Schema([ColSpec(DataType[kind], name) for name, kind in kinds.items()])
    return ModelSignature(inputs=inputs, outputs=_OUTPUTS)


def _typical_row(frame: pd.DataFrame, signature: ModelSignature) -> pd.DataFrame:
    """Return one made-up row: each numeric column's median, each text column's commonest."""
    row = {}
    for spec in signature.inputs.inputs:
        values = frame[spec.name] if spec.name in frame else pd.Series(dtype=float)
        if spec.type == DataType.string:
            common = values.dropna().astype(str).mode()
            row[spec.name] = [common.iloc[0] if len(common) else "missing"]
        else:
            median = pd.to_numeric(values, errors="coerce").median()
            row[spec.name] = [float(median) if pd.notna(median) else 0.0]
    return pd.DataFrame(row)


def _quiet():
    """Silence MLflow's own prints (registration notices) unless the run logs at DEBUG.

    MLflow writes them to ``sys.stderr`` at call time; our log handler holds the stream it
    was given, so the run's own messages still show.
    """
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return contextlib.nullcontext()
    return contextlib.redirect_stderr(io.StringIO())


def log_served_model(
    model,
    *,
    registered_name: str | None,
    workdir: Path,
    input_example: pd.DataFrame | None = None,
    columns=None,
) -> str:
    """Log the persona model as a pyfunc and register it; return its model URI.

    The model is logged with its signature (`served_signature`): the feature columns in,
    the persona out.

    Parameters
    ----------
    model : models.served.PersonaModel
        The fitted model (fitted parameters only, no customer rows).
    registered_name : str or None
        Registry name; None logs without registering.
    workdir : Path
        A scratch folder for the pickle.
    input_example : pandas.DataFrame, optional
        Feature rows (the training table will do): they type the signature's columns, and
        one made-up row of their medians (commonest values for text) is logged as the
        model's example, never a customer's own row.
    columns : list of str or dict of str to str, optional
        The feature columns (default ``model.columns``), see `served_signature`.

    Returns
    -------
    str
        ``models:/NAME/VERSION`` when registered, else ``runs:/RUN/persona_model``.
    """
    path = Path(workdir) / "persona_model.pkl"
    with path.open("wb") as fh:
        pickle.dump(model, fh)
    signature = served_signature(model, input_example=input_example, columns=columns)
    example = None if input_example is None else _typical_row(input_example, signature)
    with warnings.catch_warnings(), _quiet():
        # no example unless given: the logged model holds no customer's row, on purpose
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        info = mlflow.pyfunc.log_model(
            name="persona_model",
            python_model=PersonaPyfunc(),
            artifacts={"persona_model": str(path)},
            pip_requirements=_requirements(),
            code_paths=[str(PROJ_ROOT / pkg) for pkg in ("features", "models", "pipelines")],
            registered_model_name=registered_name,
            signature=signature,
            input_example=example,
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
    with _quiet():
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
    cfg: dict, dest: Path, name: str | None = None, datasets: bool = False
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
    datasets : bool, default=False
        Where the champion wrote no ``assignments.csv`` / ``features.parquet`` (a Spark
        run beyond ``spark.single_file_rows``), download its ``assignments/`` and
        ``features/`` Parquet datasets instead.

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
            dataset = artifact.split(".")[0]
            if (
                datasets
                and artifact != "personas.json"
                and _download(client, version, dataset, folder)
            ):
                continue
            logger.warning("Champion artifact %s could not be read: %s", artifact, error)
            return None, None
    return version.run_id, folder


def _download(client, version, artifact: str, folder: Path) -> bool:
    """Download one more artifact of the champion's run; whether it could be."""
    try:
        client.download_artifacts(version.run_id, artifact, str(folder))
    except (mlflow.exceptions.MlflowException, OSError):
        return False
    return True


def resolve_model_uri(uri: str, cfg: dict) -> str:
    """Return the model version a registry alias points at; any other URI as it is.

    ``models:/personas@champion`` becomes ``models:/personas/3``.

    Parameters
    ----------
    uri : str
        A model URI.
    cfg : dict
        The configuration (the tracking store).

    Returns
    -------
    str
        A URI naming one model version.
    """
    if not uri.startswith("models:/") or "@" not in uri:
        return uri
    name, alias = uri.removeprefix("models:/").split("@", 1)
    version = MlflowClient(tracking_uri=tracking_uri(cfg)).get_model_version_by_alias(name, alias)
    return f"models:/{name}/{version.version}"


def load_served_model(uri: str, cfg: dict):
    """Load the `PersonaModel` behind a model URI (registry alias, version or run).

    Raises
    ------
    ConfigError
        When the URI is malformed or names no model of the tracking store (a registered
        model without a champion yet, a run id that does not exist): MLflow's reason in
        one paragraph, with the forms a URI takes. The store's URI is not quoted (a
        PostgreSQL store's may hold a password).
    """
    mlflow.set_tracking_uri(tracking_uri(cfg))
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ConfigError(
            f"The model {uri} cannot be loaded: {reason.rstrip('.')}. A model URI reads "
            "models:/<name>@champion, models:/<name>/<version> or runs:/<run id>/persona_model "
            "(make ui lists the runs and registered models of the tracking store)."
        ) from error
    return loaded.unwrap_python_model().model
