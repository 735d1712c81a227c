"""Periodic re-segmentation: identity across runs, what changed, promotion gates."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.config import load_config
from pipelines.demo import write_demo
from pipelines.train import train


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("reseg")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    write_demo(base / "data", n_customers=2500, seed=8)
    cfg = load_config()
    cfg["model"]["stability_resamples"] = 6
    early = train(base / "data", cfg={**cfg, "as_of": "2026-06-30"}, output=base / "early")
    late = train(base / "data", cfg=cfg, output=base / "late")
    yield base, uri, early, late, cfg
    mp.undo()


def test_stable_personas_keep_their_ids_and_names(two_runs):
    base, _, early, late, _ = two_runs
    truth = pd.read_csv(base / "data" / "planted_personas.csv", dtype=str).set_index("customer_id")
    before = early.assignments.set_index("customer_id").join(truth)
    after = late.assignments.set_index("customer_id").join(truth)
    kept = 0
    for persona in ["power_users", "struggling_enterprise", "analytics_specialists"]:
        old = before.loc[before["persona"] == persona, "persona_id"].mode()[0]
        new = after.loc[after["persona"] == persona, "persona_id"].mode()[0]
        kept += old == new
        if old == new:
            names_before = {p["persona_id"]: p["name"] for p in early.personas}
            names_after = {p["persona_id"]: p["name"] for p in late.personas}
            assert names_before[old] == names_after[new]
    assert kept == 3


def test_persona_that_appears_later_is_new(two_runs):
    base, _, early, late, _ = two_runs
    truth = pd.read_csv(base / "data" / "planted_personas.csv", dtype=str).set_index("customer_id")
    after = late.assignments.set_index("customer_id").join(truth)
    fading = after.loc[after["persona"] == "fading_accounts", "persona_id"].mode()[0]
    changes = json.loads((base / "late" / "changes.json").read_text())
    assert fading in changes["appeared"]
    assert fading not in {p["persona_id"] for p in early.personas}


def test_changes_and_migration_are_written(two_runs):
    base, _, early, late, _ = two_runs
    changes = json.loads((base / "late" / "changes.json").read_text())
    migration = pd.read_csv(base / "late" / "migration.csv")
    assert changes["previous_run"] == early.run_id
    assert migration["customers"].sum() == changes["customers_compared"] == 2500
    kept = [r for r in changes["personas"] if r["status"] == "kept"]
    assert kept and all("nps_change" in r for r in kept)
    assert changes["most_drifted"]
    assert "What changed" in (base / "late" / "report.html").read_text()


def test_failed_gate_keeps_the_champion(two_runs):
    base, uri, _, late, cfg = two_runs
    strict = {
        **cfg,
        "resegment": {
            **cfg["resegment"],
            "gates": {**cfg["resegment"]["gates"], "max_outlier_share": -1.0},
        },
    }
    result = train(base / "data", cfg=strict, output=base / "strict")
    assert not result.promoted
    client = MlflowClient(tracking_uri=uri)
    champion = client.get_model_version_by_alias("personas", "champion")
    assert champion.run_id == late.run_id
    candidate = client.get_model_version_by_alias("personas", "candidate")
    assert candidate.run_id == result.run_id
    assert "kept as a candidate" in (base / "strict" / "report.html").read_text()
