"""The MLflow run of a pipeline execution: its store, params, metrics, inputs and outputs.

The served model (logging, registry, aliases, loading) is `pipelines.serving`; these two
modules are the only ones that import MLflow.

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
import json
import logging
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import mlflow
import mlflow.exceptions
import mlflow.pyfunc
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema

from pipelines.config import PROJ_ROOT

__all__ = [
    "log_artifacts",
    "log_candidates",
    "log_inputs",
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


def log_artifacts(folder: str | Path) -> None:
    """Log every file of an output folder to the run."""
    mlflow.log_artifacts(str(folder))
