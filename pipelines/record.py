"""Stage: record the run in MLflow — its metrics and outputs, and the served model.

`log_run` logs what the run found (sizes, NPS, stability, every candidate model as a
child run, the output folder); `serve` logs the served model (the whole recipe a later
batch needs: the table's fitted definition, the scaling, the model, the persona names),
registers it and, when the gates passed, makes it the champion.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from features import LoadedData
from models.served import PersonaModel
from pipelines import b2b, serving, tracking
from pipelines.compare import Identity
from pipelines.outputs import Assignments, write_outputs
from pipelines.profile import Profile
from pipelines.run import TrainResult, stage
from pipelines.segment import Segments
from pipelines.table import Table

__all__ = ["log_inputs", "log_model", "log_run", "persona_model", "serve"]

logger = logging.getLogger(__name__)


def persona_model(
    built: Table, segments: Segments, personas: list[dict], identity: Identity, cfg: dict
) -> PersonaModel:
    """Return the served model, complete: final persona ids and names, and the recipe."""
    seg, m = segments.selection, cfg["model"]
    return PersonaModel(
        preprocessor=segments.preprocessor,
        columns=segments.columns,
        clusterer=seg.model,
        reducer=seg.reducer,
        renumber={raw: identity.ids[new] for raw, new in segments.renumber.items()},
        names={p["persona_id"]: p.get("custom_name") or p["name"] for p in personas},
        noise=m["noise"],
        outlier_confidence=m["outlier_confidence"],
        outlier_score=m["outlier_score"],
        definition=built.definition,
    )


def log_inputs(loaded: LoadedData) -> None:
    """Log what the run read: the inputs as MLflow datasets, their fingerprint and rows."""
    tracking.set_tags({"data_fingerprint": loaded.fingerprint, "as_of": str(loaded.as_of)})
    tracking.log_inputs(loaded)
    tracking.log_metrics({f"rows.{t}": i["rows_used"] for t, i in loaded.quality["tables"].items()})


def log_run(
    output: Path,
    segments: Segments,
    profile: Profile,
    assignments: Assignments,
    built: Table,
    cfg: dict,
) -> None:
    """Log the run's metrics, tags, candidate models and output folder."""
    seg, personas = segments.selection, profile.personas
    with stage("Log to MLflow"):
        metrics = {
            "n_personas": len(personas),
            "silhouette": float(seg.candidates.loc[seg.name, "silhouette"]),
            "outlier_share": assignments.outlier_share,
            "stability_ari": seg.stability["ari"],
            "noise_share": float((seg.labels < 0).mean()),
        }
        for p in personas:
            metrics[f"persona.{p['persona_id']}.size"] = p["size"]
            metrics[f"persona.{p['persona_id']}.nps"] = p["nps"]
        if built.accounts is not None:
            metrics.update(b2b.metrics(personas, assignments.count, assignments.people_count))
        tracking.log_metrics(metrics)
        tracking.set_tags(
            {
                "model": seg.name,
                "model_reason": seg.reason,
                "level": cfg["level"],
                "structure": seg.structure,
                "structure_reason": seg.structure_reason,
            }
        )
        tracking.log_candidates(seg.candidates)
        tracking.log_artifacts(output)


def log_model(model: PersonaModel, table: Table, registered_name: str | None = None) -> str:
    """Log (and register, when named) the served model with its signature; return its URI."""
    with stage("Log the served model"), tempfile.TemporaryDirectory() as tmp:
        return serving.log_served_model(
            model,
            registered_name=registered_name,
            workdir=Path(tmp),
            input_example=table.table.frame[model.columns],
        )


def serve(model: PersonaModel, table: Table, identity: Identity, uri: str | None = None) -> str:
    """Log the served model (unless ``uri`` says it already is), register and promote it.

    It is registered in the run's lineage (`pipelines.compare.lineage_names`).

    Returns
    -------
    str
        The model's URI (a registry version when ``tracking.model_name`` is set).
    """
    name, promotion = identity.lineage, identity.promotion
    if uri is None:
        uri = log_model(model, table, name)
    elif name:
        uri = serving.register_served_model(uri, name)
    promoted, failed = promotion["promoted"], promotion["failed_gates"]
    with stage("Promote the served model"):
        if name:
            serving.set_alias(name, uri, "champion" if promoted else "candidate")
        tracking.set_tags(
            {"model_uri": uri, "promoted": promoted, "failed_gates": "; ".join(failed) or "none"}
        )
        if not promoted:
            logger.warning("Not promoted to champion: %s.", "; ".join(failed))
    return uri


def conclude(
    output, run_id, cfg, loaded, built, segments, found, identity, assignments, model, uri
) -> TrainResult:
    """Write the outputs, record the run and serve its model: both train recipes' last stages.

    Returns
    -------
    TrainResult
        What the run produced (``assignments`` holds the rows the driver has: every
        customer's, or on the cluster path the sample's).
    """
    write_outputs(
        output,
        run_id=run_id,
        cfg=cfg,
        loaded=loaded,
        built=built,
        segments=segments,
        profile=found,
        identity=identity,
        assignments=assignments,
    )
    log_run(output, segments, found, assignments, built, cfg)
    uri = serve(model, built, identity, uri)
    return TrainResult(
        run_id=run_id,
        output=output,
        personas=found.personas,
        assignments=assignments.units,
        model_uri=uri,
        promoted=identity.promotion["promoted"],
        level=cfg["level"],
        people=assignments.people,
        segmentation=segments.selection.summary(),
    )
