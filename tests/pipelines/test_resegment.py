"""Periodic re-segmentation: identity across runs, what changed, promotion gates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines.config import load_config
from pipelines.demo import write_demo
from pipelines.score import score
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


def _shop(folder, n=400, seed=1):
    """An unrelated base: a shop's buyers (other ids, only transactions and feedback)."""
    rng = np.random.default_rng(seed)
    ids = [f"U{i:05d}" for i in range(n)]
    group = rng.integers(0, 3, n)
    rows = []
    for cid, g in zip(ids, group, strict=True):
        for _ in range(rng.poisson([2, 8, 20][g]) + 1):
            day = pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(rng.integers(0, 500)))
            rows.append((cid, day.strftime("%Y-%m-%d"), round(rng.gamma(2, [80, 30, 10][g]), 2)))
    folder.mkdir(parents=True)
    pd.DataFrame({"customer_id": ids}).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"]).to_csv(
        folder / "transactions.csv", index=False
    )
    feedback = [
        (c, "2026-05-01", int(rng.integers([0, 5, 8][g], 11)))
        for c, g in zip(ids, group, strict=True)
    ]
    pd.DataFrame(feedback, columns=["customer_id", "timestamp", "nps"]).to_csv(
        folder / "feedback.csv", index=False
    )
    return folder


def test_an_unrelated_base_starts_its_own_lineage(two_runs, tmp_path):
    base, uri, _, late, cfg = two_runs
    client = MlflowClient(tracking_uri=uri)
    champion = client.get_model_version_by_alias("personas", "champion").version
    shop = _shop(tmp_path / "shop")
    result = train(shop, cfg=cfg, output=tmp_path / "out")
    assert sorted(p["persona_id"] for p in result.personas) == list(range(len(result.personas)))
    assert not (tmp_path / "out" / "changes.json").exists()  # nothing vanished
    words = (tmp_path / "out" / "personas.json").read_text()  # a shop's buyers: B2C words
    assert "loyalty" in words and "customer success" not in words
    assert result.model_uri.startswith("models:/personas_shop/")
    assert client.get_model_version_by_alias("personas", "champion").version == champion
    # score finds each base's own champion
    scored = score(shop, model=None, output=tmp_path / "shop.csv")
    assert (scored["persona_id"].to_numpy() == result.assignments["persona_id"].to_numpy()).all()
    demo = score(base / "data", model=None, output=tmp_path / "demo.csv")
    assert (demo["persona_id"].to_numpy() == late.assignments["persona_id"].to_numpy()).all()
    # a second run on the shop continues the shop's lineage
    again = train(shop, cfg=cfg, output=tmp_path / "again")
    assert again.model_uri.startswith("models:/personas_shop/")
    assert (tmp_path / "again" / "changes.json").exists()
