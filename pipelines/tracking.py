"""Every MLflow call of the project lives here; the pipeline owns the run.

The store is chosen in one place (`tracking_uri`): the config's ``tracking.uri``, else
``$MLFLOW_TRACKING_URI``, else a SQLite store at ``<project>/mlruns/mlflow.db`` with the
artifacts beside it under ``mlruns/artifacts`` (recent MLflow refuses a bare ``./mlruns``
folder store). A team shares one store on PostgreSQL (``tracking.uri:
postgresql://user@host:5432/mlflow``, the password in ``$PGPASSWORD`` or ``~/.pgpass``).

Several runs may start at once on a store nobody has used yet: MLflow creates its tables
and migrates them when it first opens a store, and two processes doing that together fail
(``Online migration expected to match one row ... alembic_version``). `run` therefore opens
the store and finds or creates the experiment under a lock (`store_lock`): a file lock
beside a SQLite store, an advisory lock in a PostgreSQL one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import subprocess
import urllib.parse
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.exceptions
import mlflow.pyfunc
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema

from pipelines.config import PROJ_ROOT

__all__ = [
    "ASSIGNMENT_TYPE",
    "assign_on_spark",
    "log_artifacts",
    "register_served_model",
    "resolve_model_uri",
    "log_candidates",
    "log_inputs",
    "log_served_model",
    "champion_outputs",
    "is_registered",
    "load_served_model",
    "set_alias",
    "log_metrics",
    "log_params",
    "run",
    "set_tags",
    "store_lock",
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


def _artifact_location(uri: str, configured: str | None) -> str | None:
    """Return where a new experiment keeps its artifacts (None: MLflow's default)."""
    if configured:
        return configured if "://" in configured else Path(configured).resolve().as_uri()
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    if uri.startswith(("postgresql", "mysql", "mssql")):  # not MLflow's ./mlruns of the cwd
        return (PROJ_ROOT / "mlruns" / "artifacts").as_uri()
    return None


def _experiment(uri: str, name: str, artifact_location: str | None = None) -> str:
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(name)  # opens the store: creates or migrates it
    if found is not None:
        return found.experiment_id
    location = _artifact_location(uri, artifact_location)
    return client.create_experiment(name, artifact_location=location)


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold a lock that serialises the set-up of a tracking store between processes.

    A SQLite store (``sqlite:///path/mlflow.db``) is locked with a file beside it
    (``mlflow.db.lock``); a PostgreSQL store with a session advisory lock of its database.
    Other stores are not locked.

    Parameters
    ----------
    uri : str
        The tracking URI.

    Yields
    ------
    None
        While the lock is held.
    """
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        from filelock import FileLock

        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=600):
            yield
        return
    if uri.startswith(("postgresql://", "postgresql+", "postgres://")):
        import sqlalchemy

        url = uri.replace("postgres://", "postgresql://", 1)
        engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                key = int.from_bytes(hashlib.sha256(b"personas-mlflow-setup").digest()[:7])
                conn.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({key})"))
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({key})"))
        finally:
            engine.dispose()
        return
    yield


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
    with store_lock(uri):
        experiment_id = _experiment(
            uri, cfg["tracking"]["experiment"], cfg["tracking"].get("artifact_location")
        )
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


class TableSource(DatasetSource):
    """Where an input table came from, as MLflow records it: never with a password.

    Parameters
    ----------
    source : str
        The data source as shown (a folder, a DuckDB file, ``spark:<database>``, a
        ``postgresql://`` URL without its password).
    table : str
        The table's name there (a file, ``sales.transactions``).
    """

    def __init__(self, source: str, table: str):
        self.source = source
        self.table = table

    @staticmethod
    def _get_source_type() -> str:
        return "personas_table"

    def load(self, **kwargs):
        """Not supported: the pipeline reads its sources itself (`features.load_data`)."""
        raise NotImplementedError("read the source with features.load_data")

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source) -> TableSource:
        raise NotImplementedError

    def to_dict(self) -> dict:
        """Return the source and the table."""
        return {"source": self.source, "table": self.table}

    @classmethod
    def from_dict(cls, source_dict: dict) -> TableSource:
        """Rebuild the source from `to_dict`'s output."""
        return cls(source_dict["source"], source_dict["table"])


class _TableDataset(MetaDataset):
    """A `MetaDataset` with a profile (row counts) and a digest of its own."""

    def __init__(self, source, name, digest, schema, profile):
        self._profile = profile
        super().__init__(source=source, name=name, digest=digest, schema=schema)

    @property
    def profile(self) -> dict:
        """Rows read, invalid, used."""
        return self._profile

    def to_dict(self) -> dict:
        """Add the profile to `MetaDataset.to_dict`."""
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def _mlflow_type(duckdb_type: str) -> DataType:
    """Return the MLflow type of a DuckDB column type."""
    t = duckdb_type.upper()
    if t.startswith(("TIMESTAMP", "DATE")):
        return DataType.datetime
    if t in ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"):
        return DataType.integer
    if t in ("BIGINT", "HUGEINT", "UINTEGER", "UBIGINT"):
        return DataType.long
    if t == "FLOAT":
        return DataType.float
    if t == "DOUBLE" or t.startswith("DECIMAL"):
        return DataType.double
    if t == "BOOLEAN":
        return DataType.boolean
    if t == "BLOB":
        return DataType.binary
    return DataType.string


def _safe(text: str) -> str:
    """Return a source name without any password (``scheme://user:secret@host``)."""
    parts = urllib.parse.urlsplit(text)
    if "://" not in text or parts.password is None:
        return text
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def log_inputs(loaded, context: str = "training") -> None:
    """Log each input table of the run as an MLflow dataset (lineage).

    Each table becomes a dataset named after the contract table, whose source is the data
    source and the table's name there (a PostgreSQL URL without its password), whose
    digest hashes its rows, columns and content (`features.LoadedData.digests`), whose
    schema is its columns as the source holds them, and whose profile counts its rows
    (read, invalid, used). The whole input's fingerprint is a tag of each.

    Parameters
    ----------
    loaded : features.LoadedData
        The checked tables (their ``quality`` summary, ``schemas``, ``digests`` and
        ``fingerprint``).
    context : str
        The datasets' context tag (``training``, ``scoring``).
    """
    quality = loaded.quality
    source = _safe(str(quality.get("source", "")))
    datasets, tags = [], []
    for name, info in quality["tables"].items():
        specs = [ColSpec(_mlflow_type(t), c) for c, t in loaded.schemas.get(name, {}).items()]
        schema = Schema(specs) if specs else None
        digest = loaded.digests.get(name) or loaded.fingerprint
        profile = {
            "num_rows": int(info["rows"]),
            "rows_invalid": int(info.get("rows_invalid", 0)),
            "rows_used": int(info.get("rows_used", info["rows"])),
        }
        table = _safe(str(info.get("file", name)))
        datasets.append(
            _TableDataset(
                TableSource(source, table),
                name=name,
                digest=digest,
                schema=schema,
                profile=profile,
            )
        )
        tags.append({"data_fingerprint": loaded.fingerprint, "as_of": str(loaded.as_of)})
    mlflow.log_inputs(datasets=datasets, contexts=[context] * len(datasets), tags_list=tags)


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
    """Load the `PersonaModel` behind a model URI (registry alias, version or run)."""
    mlflow.set_tracking_uri(tracking_uri(cfg))
    loaded = mlflow.pyfunc.load_model(uri)
    return loaded.unwrap_python_model().model


def log_artifacts(folder: str | Path) -> None:
    """Log every file of an output folder to the run."""
    mlflow.log_artifacts(str(folder))
