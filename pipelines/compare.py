"""Re-segmentation: keep persona identity across runs, say what changed, gate promotion.

A new train is compared with the current champion (the registered model's
``@champion``): its personas are matched to the champion's (customer overlap where
customers persist, trait profiles otherwise; Hungarian assignment), matched personas keep
their ids and names, new ones get fresh ids, and ``changes.json`` / ``migration.csv``
record sizes, NPS, value, migration and feature drift. The new model becomes champion
only if it passes the gates in the config.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.engine import slug
from features.privacy import pseudonymize
from models.matching import match_personas, nps_change, population_stability
from pipelines import serving
from pipelines.run import salt, stage

__all__ = [
    "Identity",
    "Previous",
    "apply_identity",
    "describe_changes",
    "feature_drift",
    "gate",
    "lineage_names",
    "load_previous",
    "match_quality",
    "reidentify",
]

logger = logging.getLogger(__name__)


class Previous:
    """The champion run's outputs: personas, assignments and features (``folder``: the files).

    A run of personas of accounts (``level: account``) writes ``account_id`` where others
    write ``customer_id``; here both are read as ``customer_id`` (the id of what was
    segmented), and ``level`` says which it was.
    """

    def __init__(self, run_id: str, folder: Path, only: pd.Series | None = None):
        self.run_id, self.folder = run_id, Path(folder)
        self.personas = json.loads((folder / "personas.json").read_text())
        if only is None:
            ids = {"customer_id": str, "account_id": str}
            assignments = pd.read_csv(folder / "assignments.csv", dtype=ids)
        else:
            assignments = _read_only(folder, "assignments", only)
        self.level = "account" if assignments.columns[0] == "account_id" else "customer"
        key = assignments.columns[0]
        self.assignments = assignments.rename(columns={key: "customer_id"})
        path = folder / "features.parquet"
        if only is not None:
            features = _read_only(folder, "features", only)
            self.features = (
                None if features is None else features.set_index(key).rename_axis("customer_id")
            )
        else:
            self.features = (
                pd.read_parquet(path).set_index(key).rename_axis("customer_id")
                if path.exists()
                else None
            )


def _read_only(folder: Path, name: str, only: pd.Series) -> pd.DataFrame | None:
    """Return the rows of the customers (or accounts) ``only`` of a champion's output.

    The output is ``<name>.csv`` / ``<name>.parquet``, else the ``<name>/`` Parquet
    dataset a Spark run writes (None when there is neither), read in pieces: memory holds
    ``only``'s rows, whatever the file's size. The ids are its first column.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv
    import pyarrow.dataset as ds

    wanted = pa.array(only.astype(str).tolist(), pa.string())
    csv = folder / f"{name}.csv"
    if csv.exists():
        types = dict.fromkeys(("customer_id", "account_id"), pa.string())
        reader = pv.open_csv(csv, convert_options=pv.ConvertOptions(column_types=types))
        key = reader.schema.names[0]  # account_id at level: account
        batches = [b.filter(pc.is_in(b[key], wanted)) for b in reader]
        return pa.Table.from_batches(batches, schema=reader.schema).to_pandas()
    path = folder / f"{name}.parquet"
    if not path.exists() and not (folder / name).is_dir():
        return None
    dataset = ds.dataset(path if path.exists() else folder / name, format="parquet")
    key = dataset.schema.names[0]
    return dataset.to_table(filter=pc.is_in(pc.field(key), wanted)).to_pandas()


def load_previous(
    run_id: str | None, folder: Path | None, only: pd.Series | None = None
) -> Previous | None:
    """Wrap downloaded champion outputs (None when there is no champion yet).

    With ``only`` (the ids of a sample), only those customers' rows are read.
    """
    if run_id is None or folder is None:
        return None
    try:
        return Previous(run_id, folder, only)
    except (OSError, ValueError) as error:
        logger.warning("The champion's outputs could not be read (%s); no comparison.", error)
        return None


def _migration(previous: Previous, assignments: pd.DataFrame) -> pd.DataFrame:
    both = previous.assignments[["customer_id", "persona_id"]].merge(
        assignments[["customer_id", "persona_id"]], on="customer_id", suffixes=("_before", "_after")
    )
    return (
        both.groupby(["persona_id_before", "persona_id_after"])
        .size()
        .rename("customers")
        .reset_index()
        .rename(columns={"persona_id_before": "from_persona", "persona_id_after": "to_persona"})
    )


def apply_identity(
    previous: Previous | None,
    personas: list[dict],
    assignments: pd.DataFrame,
    min_similarity: float,
) -> tuple[dict[int, int], pd.DataFrame | None, float | None]:
    """Give matched personas their previous ids and names, in place.

    Parameters
    ----------
    previous : Previous or None
        The champion's outputs.
    personas : list of dict
        This run's personas; ``persona_id``, ``name`` and ``custom_name`` are updated.
    assignments : pandas.DataFrame
        This run's assignments; ``persona_id`` and ``persona_name`` are updated.
    min_similarity : float
        The least similarity that counts as the same persona.

    Returns
    -------
    dict of int to int
        Old (this run's) id -> final id.
    pandas.DataFrame or None
        The migration matrix between the champion and this run, in final ids.
    float or None
        Match quality: the share of customers present in both runs who stayed in the
        matched persona.
    """
    if previous is None:
        return {p["persona_id"]: p["persona_id"] for p in personas}, None, None
    migration = _migration(previous, assignments)
    match = match_personas(previous.personas, personas, migration, min_similarity=min_similarity)
    old = {p["persona_id"]: p for p in previous.personas}
    taken = {m for m in match.values() if m is not None}
    next_id = max([*old, *[p["persona_id"] for p in personas], -1]) + 1
    final: dict[int, int] = {-1: -1}
    for p in sorted(personas, key=lambda q: -q["size"]):
        pid = p["persona_id"]
        if pid < 0:
            continue
        if match.get(pid) is not None:
            final[pid] = match[pid]
            before = old[match[pid]]
            p["previous_name"], p["name"] = p["name"], before["name"]
            p["custom_name"] = p.get("custom_name") or before.get("custom_name")
        else:
            while next_id in taken:
                next_id += 1
            final[pid], next_id = next_id, next_id + 1
            p["is_new"] = True
    names, seen = {}, set()
    for p in sorted(personas, key=lambda q: q.get("is_new", False)):  # kept names win
        while p["name"] in seen:
            p["name"] = f"{p['name']} (new)" if p.get("is_new") else f"{p['name']} 2"
        seen.add(p["name"])
        p["persona_id"] = final[p["persona_id"]]
        names[p["persona_id"]] = p.get("custom_name") or p["name"]
    personas.sort(key=lambda q: (q["persona_id"] < 0, q["persona_id"]))
    assignments["persona_id"] = assignments["persona_id"].map(final).astype(int)
    assignments["persona_name"] = assignments["persona_id"].map(names).fillna("Unassigned")
    migration["to_persona"] = migration["to_persona"].map(final)
    return final, migration, match_quality(migration)


def match_quality(migration: pd.DataFrame) -> float | None:
    """Return the share of the customers of both runs who stayed in the matched persona.

    ``migration`` is in final ids (a matched persona has its champion's id); None when no
    customer is in both runs.
    """
    stayed = migration[migration["from_persona"] == migration["to_persona"]]["customers"].sum()
    total = migration["customers"].sum()
    return float(stayed / total) if total else None


def feature_drift(previous: Previous, features: pd.DataFrame, numeric: list[str]) -> dict:
    """Return each numeric feature's population stability index against the champion's.

    Features the champion did not write, or which either run lacks, are left out.
    """
    if previous.features is None:
        return {}
    return {
        col: population_stability(previous.features[col], features[col])
        for col in numeric
        if col in previous.features and col in features
    }


def describe_changes(
    previous: Previous,
    personas: list[dict],
    migration: pd.DataFrame,
    drift: dict,
    *,
    alpha: float,
    top_drift: int = 10,
) -> dict:
    """Build ``changes.json``: persona by persona, and the features that drifted.

    Parameters
    ----------
    previous : Previous
        The champion's outputs.
    personas : list of dict
        This run's personas, with final ids.
    migration : pandas.DataFrame
        ``from_persona``, ``to_persona``, ``customers`` in final ids.
    drift : dict of str to float
        Feature -> population stability index (`feature_drift`, or on a cluster
        `pipelines.cluster_compare.drift_on_cluster`); infinite ones are left out.
    alpha : float
        Significance level of the NPS change tests.
    top_drift : int, default=10
        Features listed as having moved most.

    Returns
    -------
    dict
        ``previous_run``, ``personas`` (before / after per id), ``appeared``, ``vanished``,
        ``drift`` (feature -> PSI, largest first).
    """
    before = {p["persona_id"]: p for p in previous.personas}
    after = {p["persona_id"]: p for p in personas}
    rows = []
    for pid in sorted(set(before) | set(after)):
        b, a = before.get(pid), after.get(pid)
        row = {
            "persona_id": pid,
            "name": (a or b)["name"],
            "status": ("kept" if a and b else "appeared" if a else "vanished"),
        }
        for key in ("size", "share", "nps", "revenue_share"):
            row[f"{key}_before"] = b.get(key) if b else None
            row[f"{key}_after"] = a.get(key) if a else None
        if a and b:
            row["nps_change"] = nps_change(b, a, alpha=alpha)
        rows.append(row)
    drift = dict(
        sorted(
            ((k, round(v, 4)) for k, v in drift.items() if np.isfinite(v)), key=lambda kv: -kv[1]
        )
    )
    return {
        "previous_run": previous.run_id,
        "personas": rows,
        "appeared": [r["persona_id"] for r in rows if r["status"] == "appeared"],
        "vanished": [r["persona_id"] for r in rows if r["status"] == "vanished"],
        "customers_compared": int(migration["customers"].sum()),
        "drift": drift,
        "most_drifted": list(drift)[:top_drift],
    }


def gate(
    *, stability: float, outlier_share: float, match_quality: float | None, gates: dict
) -> tuple[bool, list[str]]:
    """Decide whether the new model may become champion.

    Parameters
    ----------
    stability : float
        The model's mean ARI over resamples.
    outlier_share : float
        Share of customers flagged ``is_outlier``.
    match_quality : float or None
        Share of returning customers who stayed in their matched persona (None: first run).
    gates : dict
        ``min_stability``, ``max_outlier_share``, ``min_match_quality``.

    Returns
    -------
    bool
        Whether every gate passed.
    list of str
        One sentence per failed gate.
    """
    failed = []
    if stability < gates["min_stability"]:
        failed.append(f"stability {stability:.2f} < {gates['min_stability']}")
    if outlier_share > gates["max_outlier_share"]:
        failed.append(f"outlier share {outlier_share:.1%} > {gates['max_outlier_share']:.0%}")
    if match_quality is not None and match_quality < gates["min_match_quality"]:
        failed.append(
            f"only {match_quality:.0%} of returning customers stayed in their persona "
            f"(< {gates['min_match_quality']:.0%})"
        )
    return not failed, failed


@dataclass
class Identity:
    """What the re-identify stage hands on.

    Attributes
    ----------
    ids : dict of int to int
        This run's persona id -> final id (the champion's where a persona is matched).
    previous : Previous or None
        The champion's outputs (None on a first run or another level).
    changes : dict or None
        ``changes.json`` (None without a champion).
    migration : pandas.DataFrame or None
        ``migration.csv``, in final ids.
    promotion : dict
        ``promoted``, ``failed_gates`` and ``previous_run``.
    lineage : str or None
        The registered model this run belongs to (see `lineage_names`); None when
        ``tracking.model_name`` is null.
    """

    ids: dict[int, int]
    previous: Previous | None
    changes: dict | None
    migration: pd.DataFrame | None
    promotion: dict
    lineage: str | None = None


#: Below this share of customers in common, a base is unrelated to the champion's.
UNRELATED_OVERLAP = 0.01


def lineage_names(cfg: dict, data) -> tuple[str | None, str | None]:
    """Return the lineage a run on ``data`` continues, and the one it would start.

    A lineage is a registered model: ``tracking.model_name`` (default ``personas``). A
    customer base unrelated to that lineage's champion (fewer than `UNRELATED_OVERLAP` of
    its customers in common and no persona matched) starts its own, named after the data
    source: ``personas_<folder>`` (``personas_acme_export`` for ``data/acme-export``).
    """
    name = cfg["tracking"]["model_name"]
    if not name:
        return None, None
    source = Path(str(data).split("?")[0].rstrip("/")).name
    return name, f"{name}_{slug(Path(source).stem)}"


def _unrelated(previous: Previous, personas: list[dict], units: pd.DataFrame, cfg) -> bool:
    """Whether a base shares (almost) no customers and no persona with the champion's."""
    overlap = units["customer_id"].isin(previous.assignments["customer_id"]).mean()
    if overlap >= UNRELATED_OVERLAP:
        return False
    match = match_personas(
        previous.personas, personas, None, min_similarity=cfg["resegment"]["min_similarity"]
    )
    return all(m is None for m in match.values())


def reidentify(
    personas: list[dict],
    assignments: pd.DataFrame,
    table,
    stability: float,
    cfg: dict,
    data="",
    sample: bool = False,
    folder: Path | None = None,
) -> Identity:
    """Match this run's personas to the champion's, say what changed, gate promotion.

    ``personas`` and ``assignments`` take their final ids and names, in place. The
    champion is that of the run's lineage (`lineage_names`): the data source's own
    lineage when it has one, else ``tracking.model_name``'s, unless this base is unrelated
    to that one, which then starts the data source's lineage (ids from 0).

    Parameters
    ----------
    personas : list of dict
        This run's persona table.
    assignments : pandas.DataFrame
        This run's assignments (``customer_id``, ``persona_id``, ``persona_name``, ...).
    table : features.FeatureTable
        The feature table (its drift is described).
    stability : float
        The model's stability (mean ARI over resamples), for the gates.
    cfg : dict
        The run configuration (``tracking``, ``level``, ``resegment``, ``profile``).
    data : str or Path, default=""
        The data source, which names a lineage of its own (`lineage_names`).
    sample : bool, default=False
        ``assignments`` are a sample's (`pipelines.cluster`): only its customers' rows of
        the champion's outputs are read (its ``assignments/`` and ``features/`` Parquet
        datasets when it wrote no single files), and the migration counts them.
    folder : Path, optional
        Where the champion's outputs are downloaded and kept (``Previous.folder``; the
        cluster path reads them there again over every customer,
        `pipelines.cluster_compare`); default a temporary folder, removed on return.

    Returns
    -------
    Identity
        The final ids, the champion, the changes and the promotion decision.
    """
    key = salt(cfg)  # the champion's outputs hold pseudonymized ids: compare like with like
    units = (
        assignments
        if key is None
        else assignments.assign(customer_id=pseudonymize(assignments["customer_id"], key))
    )
    main, own = lineage_names(cfg, data)
    lineage = own if own and serving.is_registered(own, cfg) else main
    with stage("Compare with the champion"), tempfile.TemporaryDirectory() as tmp:
        champion = serving.champion_outputs(cfg, Path(folder or tmp), lineage, datasets=sample)
        previous = load_previous(*champion, units["customer_id"] if sample else None)
        if previous is not None and previous.level != cfg["level"]:
            logger.info("The champion has personas of another level; no comparison.")
            previous = None
        if previous is not None and lineage == main and _unrelated(previous, personas, units, cfg):
            logger.warning(
                "This customer base shares no customers and no persona with the champion of "
                "%s (run %s): it starts its own lineage, %s, and leaves that champion as it is. "
                "Score it with --model models:/%s@champion (or set tracking.model_name).",
                main, previous.run_id, own, own,
            )  # fmt: skip
            previous, lineage = None, own
        ids, migration, match_quality = apply_identity(
            previous, personas, units, cfg["resegment"]["min_similarity"]
        )
        assignments[["persona_id", "persona_name"]] = units[["persona_id", "persona_name"]]
    changes = None
    if previous is not None:
        numeric = [f.name for f in table.features if f.transform != "category"]
        drift = feature_drift(previous, table.frame, numeric)
        changes = describe_changes(
            previous, personas, migration, drift, alpha=cfg["profile"]["alpha"]
        )
        changes["match_quality"] = match_quality
    promoted, failed = gate(
        stability=stability,
        outlier_share=float(assignments["is_outlier"].mean()),
        match_quality=match_quality,
        gates=cfg["resegment"]["gates"],
    )
    promotion = {
        "promoted": promoted,
        "failed_gates": failed,
        "previous_run": previous.run_id if previous else None,
    }
    return Identity(ids, previous, changes, migration, promotion, lineage)
