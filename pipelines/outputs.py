"""Stage: write the outputs — the contract's files, the report, and nothing half-written.

Everything goes to a staging folder that replaces the output folder whole when the last
file is written (`pipelines.run.staged_folder`). With ``privacy.pseudonymize_ids`` every
id leaves the run as its salted hash (`features.privacy.pseudonymize`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from features import FeatureTable, LoadedData
from features.privacy import pseudonymize
from pipelines import b2b
from pipelines.compare import Identity
from pipelines.profile import Profile
from pipelines.report import write_markdown, write_report
from pipelines.run import salt, stage, staged_folder
from pipelines.segment import Segments
from pipelines.table import Table

__all__ = ["Assignments", "assign", "write_outputs"]

_progress = logging.getLogger("personas.progress")  # shown by pipelines.run.stage


@dataclass
class Assignments:
    """Where every customer (or account, and its people) went.

    Attributes
    ----------
    units : pandas.DataFrame
        ``assignments.csv``: ``customer_id`` (``account_id`` at account level),
        ``persona_id``, ``persona_name``, ``confidence``, ``is_outlier``.
    people : pandas.DataFrame or None
        At account level, ``people_assignments.csv``.
    cluster : pipelines.cluster.ClusterOutputs or None
        On the cluster path: every customer's assignments and features, which stay on
        the cluster and are written there (``units`` and ``people`` then hold the
        sample's).
    """

    units: pd.DataFrame
    people: pd.DataFrame | None = None
    cluster: object | None = None

    @property
    def count(self) -> int:
        """How many customers (or accounts) were assigned."""
        return len(self.units) if self.cluster is None else self.cluster.n_customers

    @property
    def people_count(self) -> int:
        """How many people were placed (at account level; 0 otherwise)."""
        if self.cluster is not None:
            return self.cluster.n_people
        return 0 if self.people is None else len(self.people)

    @property
    def outlier_share(self) -> float:
        """The share of them flagged as outliers."""
        if self.cluster is None:
            return float(self.units["is_outlier"].mean())
        return self.cluster.outlier_share

    @classmethod
    def of(cls, units: pd.DataFrame, accounts: b2b.Accounts | None) -> Assignments:
        """Return the assignments of a run: at account level, keyed by account, with people."""
        if accounts is None:
            return cls(units)
        units = units.rename(columns={"customer_id": "account_id"})
        return cls(units, b2b.people_assignments(accounts, units))


def assign(table: FeatureTable, segments: Segments, personas: list[dict]) -> pd.DataFrame:
    """Return one row per customer of ``table``: their persona, confidence and outlier flag."""
    names = {p["persona_id"]: p.get("custom_name") or p["name"] for p in personas}
    return pd.DataFrame(
        {
            "customer_id": table.frame.index.astype(str),
            "persona_id": segments.labels,
            "persona_name": [names[x] for x in segments.labels],
            "confidence": np.round(segments.confidence, 4),
            "is_outlier": segments.outlier,
        }
    )


def _model_summary(built: Table, loaded: LoadedData, cfg: dict, n: int) -> dict:
    """Return what the report says about the run: its size, date and level."""
    summary = {"n_customers": n, "as_of": str(loaded.as_of.date())}
    if built.accounts is not None:
        summary.update(unit="accounts", people=loaded.n_customers, gap_rule=b2b.gap_rule(cfg))
    return summary


def table_meta_families(built: Table, segments: Segments) -> list[str]:
    """Return the feature family of each column that shaped the personas."""
    return list(built.table.meta.loc[segments.columns, "family"])


def _pseudonymized(frame: pd.DataFrame, columns: list[str], key: str | None) -> pd.DataFrame:
    """Return ``frame`` with its id columns replaced by salted hashes (as is without a key)."""
    if key is None:
        return frame
    present = [c for c in columns if c in frame]
    return frame.assign(**{c: pseudonymize(frame[c].astype(str), key) for c in present})


def write_outputs(
    output: Path,
    *,
    run_id: str,
    cfg: dict,
    loaded: LoadedData,
    built: Table,
    segments: Segments,
    profile: Profile,
    identity: Identity,
    assignments: Assignments,
) -> Path:
    """Write every output of a train run to ``output`` at once; return the folder.

    The files are written one after the other into a staging folder, each counted (the
    stage's bar: ``4/9 files``), and the folder replaces ``output`` when the last is done.
    """
    key, table, personas = salt(cfg), built.table, profile.personas
    ids = ["customer_id", "account_id"]
    writers: dict[str, Callable[[Path], None]] = {}
    if assignments.cluster is None:
        units = assignments.units
        writers["assignments.csv"] = lambda f: _pseudonymized(units, ids, key).to_csv(
            f / "assignments.csv", index=False
        )
    else:  # written by the executors
        writers["assignments.csv"] = lambda f: assignments.cluster.write(f, key)
    if assignments.people is not None and assignments.cluster is None:
        writers["people_assignments.csv"] = lambda f: b2b.write_people(f, assignments.people, key)
    writers["personas.json"] = lambda f: _json(f / "personas.json", personas)
    # which features shaped the personas, and their families (model.attributes decides)
    families = sorted({table.meta.loc[c, "family"] for c in segments.columns})
    summary = {**segments.selection.summary(), "features": segments.columns,
               "families": families}  # fmt: skip
    writers["segmentation.json"] = lambda f: _json(f / "segmentation.json", summary)
    writers["data_quality.json"] = lambda f: _json(f / "data_quality.json", loaded.quality, str)
    if assignments.cluster is None:  # else the executors wrote every customer's
        writers["features.parquet"] = lambda f: _features(f / "features.parquet", table, key)
    if loaded.quarantine:
        writers["quarantine"] = lambda f: _quarantine(f / "quarantine", loaded.quarantine, key)
    if built.clv:
        writers["clv_model.json"] = lambda f: _json(f / "clv_model.json", built.clv)
    if identity.changes is not None:
        writers["changes.json"] = lambda f: _json(f / "changes.json", identity.changes, str)
        writers["migration.csv"] = lambda f: identity.migration.to_csv(
            f / "migration.csv", index=False
        )
    n = assignments.count
    writers["report.html"] = lambda f: _write_reports(
        f, run_id, cfg, loaded, built, segments, profile, identity, n
    )  # and report.md
    with stage("Write outputs and report"), staged_folder(output) as folder:
        for done, write in enumerate(writers.values(), start=1):
            write(folder)
            _progress.info("", extra={"progress": (done, len(writers), "files")})
    return output


def _json(path: Path, content, default=None) -> None:
    path.write_text(json.dumps(content, indent=2, default=default))


def _features(path: Path, table: FeatureTable, key: str | None) -> None:
    """Write the feature table, its ids pseudonymized when ``key`` is set."""
    frame = table.frame
    if key is not None:
        index = pseudonymize(frame.index.to_series().astype(str), key)
        frame = frame.set_axis(pd.Index(index, name=frame.index.name), axis=0)
    FeatureTable(frame=frame, features=table.features, as_of=table.as_of).to_parquet(path)


def _quarantine(folder: Path, quarantine: dict[str, pd.DataFrame], key: str | None) -> None:
    """Write the rows set aside, one CSV per table, their customer ids pseudonymized."""
    folder.mkdir()
    for name, rows in quarantine.items():
        _pseudonymized(rows, ["customer_id"], key).to_csv(folder / f"{name}.csv", index=False)


def _write_reports(folder, run_id, cfg, loaded, built, segments, profile, identity, n) -> None:
    """Write ``report.html`` (with a PCA map of a sample of customers) and ``report.md``."""
    X, seed = segments.X, cfg["seed"]
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(X), min(cfg["report"]["map_sample"], len(X)), replace=False))
    embedding = PCA(n_components=2, random_state=seed).fit_transform(X[sample])
    model = _model_summary(built, loaded, cfg, n)
    seg = segments.selection
    write_report(
        folder / "report.html",
        personas=profile.personas,
        quality=loaded.quality,
        model={
            **model,
            "silhouette": float(seg.candidates.loc[seg.name, "silhouette"]),
            # the families that shaped the personas, not those the config allows
            "families": list(dict.fromkeys(table_meta_families(built, segments))),
        },
        embedding=embedding,
        labels=np.array([identity.ids[x] for x in segments.labels])[sample],
        run_id=run_id,
        drivers=profile.drivers,
        focus_rule=cfg["focus"],
        min_respondents=cfg["profile"]["min_respondents"],
        alpha=cfg["profile"]["alpha"],
        map_sample=cfg["report"]["map_sample"],
        changes=identity.changes,
        promotion=identity.promotion,
        segmentation=seg.summary(),
    )
    write_markdown(
        folder / "report.md",
        personas=profile.personas,
        model=model,
        run_id=run_id,
        focus_rule=cfg["focus"],
        min_respondents=cfg["profile"]["min_respondents"],
        alpha=cfg["profile"]["alpha"],
        segmentation=seg.summary(),
    )
