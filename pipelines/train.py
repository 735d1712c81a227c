"""The train recipe: data -> features -> model -> personas -> outputs, as one MLflow run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sklearn.decomposition import PCA

from features import DataError, FeatureTable, LoadedData, build_features, load_data
from features.engine import Engine
from features.privacy import pseudonymize
from models import Preprocessor, order_by_size, profile_personas, select_segmentation
from models.drivers import key_drivers
from models.served import PersonaModel
from models.themes import persona_themes
from pipelines import b2b, tracking
from pipelines.compare import apply_identity, describe_changes, gate, load_previous
from pipelines.config import PROJ_ROOT, ConfigError, load_config
from pipelines.engines import assign_on_cluster, data_source, feature_engine, require
from pipelines.report import write_markdown, write_report
from pipelines.value import add_customer_value, revenue_at_risk

__all__ = ["TrainResult", "load", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a train run produced.

    Attributes
    ----------
    run_id : str
        The MLflow run id.
    output : Path
        The output folder (assignments.csv, personas.json, features.parquet, report.html).
    personas : list of dict
        The persona table.
    assignments : pandas.DataFrame
        One row per customer.
    model_uri : str
        URI of the served model (registry version, or the run's artifact).
    promoted : bool
        Whether the model became the champion.
    level : {"customer", "account"}
        Whose personas: at account level ``assignments`` has one row per account
        (``account_id`` first) and ``people`` one row per person.
    people : pandas.DataFrame or None
        Account level: every person in their account's persona (people_assignments.csv).
    """

    run_id: str
    output: Path
    personas: list[dict]
    assignments: pd.DataFrame
    model_uri: str = ""
    promoted: bool = True
    level: str = "customer"
    people: pd.DataFrame | None = None


@contextmanager
def _stage(name: str):
    """Log a stage's start and duration; on a terminal, show it running with a timer."""
    start = time.perf_counter()
    logger.info("%s ...", name)
    console = Console(stderr=True)
    if console.is_terminal:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            bar.add_task(name, total=None)
            yield
    else:
        yield
    logger.info("%s done in %.1fs", name, time.perf_counter() - start)


def _salt(cfg: dict) -> str | None:
    """Return the salt for pseudonymized ids, from $PERSONAS_ID_SALT (None when off)."""
    if not cfg["privacy"]["pseudonymize_ids"]:
        return None
    salt = os.environ.get("PERSONAS_ID_SALT")
    if not salt:
        raise ConfigError(
            "privacy.pseudonymize_ids is on but the environment variable PERSONAS_ID_SALT is "
            "empty; set it to a secret string (the same one on every run keeps ids comparable)."
        )
    return salt


def load(data: str | Path, cfg: dict, names: dict[str, str] | None = None) -> LoadedData:
    """Load and check the data source with the settings of ``cfg``.

    ``names`` says how messages name the tables' origin (see `features.load_data`).
    """
    return load_data(
        data,
        columns=cfg["columns"],
        validation=cfg["validation"],
        privacy=cfg["privacy"],
        as_of=cfg["as_of"],
        names=names,
    )


def _text(loaded: LoadedData, table: str, column: str) -> pd.DataFrame | None:
    """Return customer_id and one text column of a loaded table (None when absent)."""
    if column not in loaded.columns.get(table, []):
        return None
    return loaded.con.execute(
        f'SELECT customer_id, "{column}" FROM {table} WHERE "{column}" IS NOT NULL'
    ).df()


def _merge_small(X: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Move the customers of personas smaller than ``min_size`` to the nearest larger one.

    A persona of a handful of customers can single people out; it is merged (by the
    distance of its customers to the larger personas' centres), never reported alone.
    """
    labels = np.asarray(labels).copy()
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    small, large = ids[counts < min_size], ids[counts >= min_size]
    if not len(small) or not len(large):
        return labels
    centres = np.array([X[labels == c].mean(axis=0) for c in large])
    for c in small:
        rows = np.flatnonzero(labels == c)
        d = ((X[rows, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels[rows] = large[np.argmin(d, axis=1)]
        logger.info("Persona of %d customers merged (privacy.min_persona_size).", len(rows))
    return labels


#: Families that describe what a customer is worth: the value lens clusters on them.
VALUE_FAMILIES = ("revenue", "rfm", "clv")


def modelled_columns(table: FeatureTable, model: dict) -> list[str]:
    """Return the features that shape the personas, by ``model.families`` and ``model.lens``.

    ``both`` takes every feature of the listed families; ``needs`` only their needs
    features (what customers do and want); ``value`` the value features of the listed
    families and of the value families (revenue, RFM, CLV) whenever they were built.
    """
    lens, families = model["lens"], model["families"]
    if lens == "both":
        return table.families(families)
    if lens == "value":
        families = [*families, *VALUE_FAMILIES]
    return [f.name for f in table.features if f.family in families and f.lens == lens]


def _fit(table: FeatureTable, cfg: dict):
    """Scale the modelled families and choose the segmentation (see `select_segmentation`)."""
    m = cfg["model"]
    columns = modelled_columns(table, m)
    if not columns:
        raise DataError(
            f"None of the feature families the model uses ({', '.join(m['families'])}, lens "
            f"{m['lens']}) could be built from the tables present; add their tables or change "
            "model.families or model.lens."
        )
    meta = table.meta.loc[columns]
    lens_of = meta.groupby("family")["lens"].agg(lambda x: x.mode().iloc[0])
    weights = {
        family: m["family_weights"].get(family, 1.0) * m["lens_weights"].get(lens, 1.0)
        for family, lens in lens_of.items()
    }
    pre = Preprocessor(
        log_columns=list(meta.index[meta["transform"] == "log"]),
        categorical_columns=list(meta.index[meta["transform"] == "category"]),
        share_columns=list(meta.index[meta["family"] == "usage_mix"]),
        groups=meta["family"].to_dict(),
        balance_groups=m["balance_families"],
        group_weights=weights,
        max_categories=cfg["features"]["max_categories"],
        clip=m["clip"],
    )
    X = pre.fit_transform(table.frame[columns])
    try:
        seg = select_segmentation(
            X,
            k_min=m["k_min"],
            k_max=m["k_max"],
            n_init=m["n_init"],
            tie_tolerance=m["tie_tolerance"],
            density_shares=tuple(m["density_shares"]),
            density_space=m["density_space"],
            umap_params=m["umap"],
            sample_size=m["sample_size"],
            stability_sample=m["stability_sample"],
            n_resamples=m["stability_resamples"],
            min_stability=m["min_stability"],
            family_margin=m["family_margin"],
            outlier_score=m["outlier_score"],
            force=m["force"],
            random_state=cfg["seed"],
        )
    except ValueError as error:
        if "same features" not in str(error):
            raise
        raise DataError(
            f"{error} The model sees the families {', '.join(m['families'])}; check that the "
            "tables feeding them vary between customers, or change model.families."
        ) from error
    noise = seg.labels < 0
    raw = seg.nearest if m["noise"] == "nearest" else seg.labels
    raw = _merge_small(X, raw, cfg["privacy"]["min_persona_size"])
    labels = order_by_size(raw)
    renumber = {int(o): int(n) for o, n in zip(raw, labels, strict=True)}
    seg.stability["jaccard"] = {
        renumber[o]: v for o, v in seg.stability["jaccard"].items() if o in renumber
    }
    outlier = noise | seg.outlier | (seg.confidence < m["outlier_confidence"])
    served = PersonaModel(
        preprocessor=pre,
        columns=columns,
        clusterer=seg.model,
        reducer=seg.reducer,
        renumber=renumber,
        names={},
        noise=m["noise"],
        outlier_confidence=m["outlier_confidence"],
        outlier_score=m["outlier_score"],
    )
    return X, seg, labels, seg.confidence, outlier, served


def _write_outputs(
    folder: Path,
    table: FeatureTable,
    assignments: pd.DataFrame,
    personas: list[dict],
    quality: dict,
    quarantine: dict[str, pd.DataFrame],
    salt: str | None,
) -> None:
    if salt is not None:  # privacy.pseudonymize_ids: no customer id leaves the run
        key = assignments.columns[0]  # customer_id, or account_id at level: account
        assignments = assignments.assign(**{key: pseudonymize(assignments[key], salt)})
        frame = table.frame.copy()
        frame.index = pd.Index(pseudonymize(frame.index.to_series(), salt), name=frame.index.name)
        table = FeatureTable(frame=frame, features=table.features, as_of=table.as_of)
        quarantine = {
            k: v.assign(customer_id=pseudonymize(v["customer_id"].astype(str), salt))
            if "customer_id" in v
            else v
            for k, v in quarantine.items()
        }
    assignments.to_csv(folder / "assignments.csv", index=False)
    (folder / "personas.json").write_text(json.dumps(personas, indent=2))
    (folder / "data_quality.json").write_text(json.dumps(quality, indent=2, default=str))
    table.to_parquet(folder / "features.parquet")
    if quarantine:
        (folder / "quarantine").mkdir()
        for name, rows in quarantine.items():
            rows.to_csv(folder / "quarantine" / f"{name}.csv", index=False)


def _b2b_model(accounts: b2b.Accounts | None, cfg: dict) -> dict:
    """Return what the report says about the level: accounts, their people, the gap rule."""
    if accounts is None:
        return {}
    return {"unit": "accounts", "people": len(accounts.members), "gap_rule": b2b.gap_rule(cfg)}


def _publish(staging: Path, output: Path) -> None:
    """Move a finished output folder into place, replacing an older one whole."""
    output.parent.mkdir(parents=True, exist_ok=True)
    old = output.with_name(output.name + ".old")
    if output.exists():
        output.rename(old)
    staging.rename(output)
    shutil.rmtree(old, ignore_errors=True)


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
        metastore (``engine: spark`` only; see `pipelines.engines.data_source`: Spark
        writes them once as Parquet, before the run starts, and DuckDB checks that).
    config : str or Path, optional
        A YAML file of settings that differ from the defaults.
    output : str or Path, optional
        Output folder; default ``<output.root>/<timestamp>-<run id>``. It appears only
        when the run succeeds (outputs are written to a staging folder first).
    cfg : dict, optional
        An already loaded configuration (wins over ``config``). Its ``engine`` says where
        the features are computed (see `pipelines.engines`): with ``spark`` the served
        model is logged before the outputs are written, since the assignments come from
        it, on the cluster (and registered only once the run has succeeded).

    Returns
    -------
    TrainResult
        Run id, output folder, personas and assignments.
    """
    cfg = cfg or load_config(config)
    _salt(cfg)  # fail before any work when the salt is missing
    require(cfg)  # ... or the engine cannot start
    # metastore tables: a missing one stops here; the others are snapshot to Parquet
    with (
        data_source(data, cfg) as (source, names),
        tracking.run(cfg, run_name="train") as run_id,
    ):
        tracking.log_params(cfg)
        with _stage("Load and validate"):
            loaded = load(source, cfg, names)
        try:
            with feature_engine(loaded, cfg) as engine:
                return _train(loaded, engine, cfg, run_id, output)
        finally:
            loaded.con.close()


def _log_served(served: PersonaModel, registered_name: str | None) -> str:
    """Log (and register, when named) the served model; return its URI."""
    with _stage("Log the served model"), tempfile.TemporaryDirectory() as tmp:
        return tracking.log_served_model(served, registered_name=registered_name, workdir=Path(tmp))


def _train(loaded: LoadedData, engine: Engine, cfg: dict, run_id: str, output) -> TrainResult:
    quality = loaded.quality
    tracking.set_tags({"data_fingerprint": loaded.fingerprint, "as_of": str(loaded.as_of)})
    tracking.log_metrics({f"rows.{t}": info["rows_used"] for t, info in quality["tables"].items()})
    n, k_min = loaded.n_customers, cfg["model"]["k_min"]
    if n < k_min + 1:
        raise DataError(
            f"{quality['tables']['customers']['file']}: Only {n} customer{'s' if n != 1 else ''}"
            f": at least {k_min + 1} are needed to find {k_min} or more personas "
            f"(model.k_min = {k_min})."
        )
    with _stage("Features"):
        table = build_features(loaded, {**cfg["features"], "seed": cfg["seed"]}, engine=engine)
    with _stage("Customer lifetime value"):
        clv_model = add_customer_value(loaded, table, cfg, engine=engine)
        if clv_model:
            tracking.log_params({"clv": clv_model})
    accounts = None
    if cfg["level"] == "account":
        with _stage("Roll up to accounts"):
            accounts = b2b.to_accounts(loaded, table, cfg)
            b2b.require_accounts(accounts, k_min, quality["tables"]["customers"]["file"])
            table = accounts.table
    with _stage("Model"):
        X, seg, labels, confidence, outlier, served = _fit(table, cfg)
        logger.info("Chosen: %s. %s", seg.name, seg.reason)
    with _stage("Drivers and themes"):
        drivers = key_drivers(
            table.frame,
            labels,
            table.meta,
            kind=cfg["drivers"]["kind"],
            n_splits=cfg["drivers"]["n_splits"],
            n_repeats=cfg["drivers"]["n_repeats"],
            sample_size=cfg["drivers"]["sample_size"],
            min_respondents=cfg["profile"]["min_respondents"],
            random_state=cfg["seed"],
        )
        units = pd.Series(labels, index=table.frame.index.astype(str))
        themes = persona_themes(
            units if accounts is None else b2b.person_labels(accounts, units),
            comments=_text(loaded, "feedback", "comment"),
            topics=_text(loaded, "support_tickets", "topic"),
            **cfg["themes"],
            random_state=cfg["seed"],
        )
    with _stage("Profile"):
        meta = table.meta
        traits = [f for f in meta.index if meta.loc[f, "family"] != "feedback"]
        personas = profile_personas(
            table.frame,
            labels,
            meta,
            trait_features=traits,
            value_column=cfg["naming"]["value_feature"],
            top_traits=cfg["profile"]["top_traits"],
            min_trait_effect=cfg["profile"]["min_trait_effect"],
            ci_level=cfg["profile"]["ci_level"],
            naming=cfg["naming"],
            min_respondents=cfg["profile"]["min_respondents"],
            alpha=cfg["profile"]["alpha"],
            top_drivers=cfg["profile"]["top_drivers"],
            overrides=cfg["overrides"],
            focus_rule=cfg["focus"],
            actions=cfg["actions"],
            drivers=drivers,
            themes=themes,
            clv_column="clv_value",
            p_alive_column="clv_p_alive",
        )
    threshold = cfg["model"]["unstable_below"]
    at_risk = revenue_at_risk(table.frame, labels, "revenue_12m")
    for p in personas:
        if at_risk:
            p["revenue_at_risk"] = at_risk.get(p["persona_id"], 0.0)
        jaccard = seg.stability["jaccard"].get(p["persona_id"])
        p["stability"] = None if jaccard is None else round(jaccard, 3)
        p["unstable"] = jaccard is not None and jaccard < threshold
    if accounts is not None:
        b2b.add_influence(personas, accounts, labels, cfg)
    names = {p["persona_id"]: p["custom_name"] or p["name"] for p in personas}
    served.names = names
    assignments = pd.DataFrame(
        {
            "customer_id": table.frame.index.astype(str),
            "persona_id": labels,
            "persona_name": [names[x] for x in labels],
            "confidence": np.round(confidence, 4),
            "is_outlier": outlier,
        }
    )
    with _stage("Compare with the champion"), tempfile.TemporaryDirectory() as tmp:
        previous = load_previous(*tracking.champion_outputs(cfg, Path(tmp)))
        if previous is not None and previous.level != cfg["level"]:
            logger.info("The champion has personas of another level; no comparison.")
            previous = None
        final, migration, match_quality = apply_identity(
            previous, personas, assignments, cfg["resegment"]["min_similarity"]
        )
    labels = np.array([final[x] for x in labels])
    served.renumber = {old: final[new] for old, new in served.renumber.items()}
    served.names = {p["persona_id"]: p.get("custom_name") or p["name"] for p in personas}
    uri = None
    if cfg["engine"] == "spark":
        uri = _log_served(served, None)  # registered once the run has succeeded
        with _stage("Assign every customer on the cluster (spark_udf)"):
            assignments, agreement = assign_on_cluster(
                engine, table.frame, served.columns, uri, assignments
            )
            tracking.log_metrics({"spark.assignment_agreement": agreement})
    changes = None
    if previous is not None:
        numeric = [f.name for f in table.features if f.transform != "category"]
        changes = describe_changes(
            previous, personas, migration, table.frame, numeric, alpha=cfg["profile"]["alpha"]
        )
        changes["match_quality"] = match_quality
    promoted, failed = gate(
        stability=seg.stability["ari"],
        outlier_share=float(assignments["is_outlier"].mean()),
        match_quality=match_quality,
        gates=cfg["resegment"]["gates"],
    )
    promotion = {
        "promoted": promoted,
        "failed_gates": failed,
        "previous_run": previous.run_id if previous else None,
    }
    silhouette = float(seg.candidates.loc[seg.name, "silhouette"])
    people = None
    if accounts is not None:
        assignments = assignments.rename(columns={"customer_id": "account_id"})
        people = b2b.people_assignments(accounts, assignments)
    output = (
        Path(output)
        if output
        else (PROJ_ROOT / cfg["output"]["root"] / f"{time.strftime('%Y%m%d-%H%M%S')}-{run_id[:8]}")
    )
    staging = output.with_name(f".{output.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with _stage("Write outputs and report"):
            _write_outputs(
                staging, table, assignments, personas, quality, loaded.quarantine, _salt(cfg)
            )
            if people is not None:
                b2b.write_people(staging, people, _salt(cfg))
            if clv_model:
                (staging / "clv_model.json").write_text(json.dumps(clv_model, indent=2))
            if changes is not None:
                (staging / "changes.json").write_text(json.dumps(changes, indent=2, default=str))
                migration.to_csv(staging / "migration.csv", index=False)
            rng = np.random.default_rng(cfg["seed"])
            n_map = min(cfg["report"]["map_sample"], len(X))
            sample = np.sort(rng.choice(len(X), n_map, replace=False))
            embedding = PCA(n_components=2, random_state=cfg["seed"]).fit_transform(X[sample])
            write_report(
                staging / "report.html",
                personas=personas,
                quality=quality,
                model={
                    "n_customers": len(assignments),
                    "as_of": str(loaded.as_of.date()),
                    "silhouette": silhouette,
                    "families": cfg["model"]["families"],
                    **_b2b_model(accounts, cfg),
                },
                embedding=embedding,
                labels=labels[sample],
                run_id=run_id,
                drivers=drivers,
                focus_rule=cfg["focus"],
                min_respondents=cfg["profile"]["min_respondents"],
                alpha=cfg["profile"]["alpha"],
                map_sample=cfg["report"]["map_sample"],
                changes=changes,
                promotion=promotion,
            )
            write_markdown(
                staging / "report.md",
                personas=personas,
                model={
                    "n_customers": len(assignments),
                    "as_of": str(loaded.as_of.date()),
                    **_b2b_model(accounts, cfg),
                },
                run_id=run_id,
                focus_rule=cfg["focus"],
                min_respondents=cfg["profile"]["min_respondents"],
                alpha=cfg["profile"]["alpha"],
            )
        _publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with _stage("Log to MLflow"):
        metrics = {
            "n_personas": len(personas),
            "silhouette": silhouette,
            "outlier_share": float(assignments["is_outlier"].mean()),
            "stability_ari": seg.stability["ari"],
            "noise_share": float((seg.labels < 0).mean()),
        }
        for p in personas:
            metrics[f"persona.{p['persona_id']}.size"] = p["size"]
            metrics[f"persona.{p['persona_id']}.nps"] = p["nps"]
        if accounts is not None:
            metrics.update(b2b.metrics(personas, accounts))
        tracking.log_metrics(metrics)
        tracking.set_tags({"model": seg.name, "model_reason": seg.reason, "level": cfg["level"]})
        tracking.log_candidates(seg.candidates)
        tracking.log_artifacts(output)
    name = cfg["tracking"]["model_name"]
    if uri is None:
        uri = _log_served(served, name)
    elif name:
        uri = tracking.register_served_model(uri, name)
    with _stage("Promote the served model"):
        if name:
            tracking.set_alias(name, uri, "champion" if promoted else "candidate")
        tracking.set_tags(
            {"model_uri": uri, "promoted": promoted, "failed_gates": "; ".join(failed) or "none"}
        )
        if not promoted:
            logger.warning("Not promoted to champion: %s.", "; ".join(failed))
    return TrainResult(
        run_id=run_id,
        output=output,
        personas=personas,
        assignments=assignments,
        model_uri=uri,
        promoted=promoted,
        level=cfg["level"],
        people=people,
    )
