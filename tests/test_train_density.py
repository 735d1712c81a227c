"""The train recipe with density candidates on and the 'unassigned' noise policy."""

from __future__ import annotations

import json

import pandas as pd

from pipelines.config import load_config
from pipelines.demo import write_demo
from pipelines.train import train


def test_density_candidates_and_unassigned_noise(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_demo(tmp_path / "data", n_customers=1200, seed=4)
    cfg = load_config()
    cfg["model"].update(
        density_shares=[0.05],
        density_space="pca",
        noise="unassigned",
        force="hdbscan_pca_0.05",
        stability_resamples=4,
    )
    result = train(tmp_path / "data", cfg=cfg, output=tmp_path / "out")
    assignments = pd.read_csv(tmp_path / "out" / "assignments.csv")
    assert len(assignments) == 1200 and assignments["customer_id"].is_unique
    personas = json.loads((tmp_path / "out" / "personas.json").read_text())
    assert all("stability" in p and "unstable" in p for p in personas)
    noise = assignments["persona_id"] == -1
    assert noise.any()  # HDBSCAN leaves part of the demo as noise
    assert (assignments.loc[noise, "persona_name"] == "Unassigned").all()
    assert assignments.loc[noise, "is_outlier"].all()
    assert result.run_id
