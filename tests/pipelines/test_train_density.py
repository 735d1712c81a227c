"""The train recipe with density candidates on (PCA and UMAP spaces) and 'unassigned' noise."""

from __future__ import annotations

import json

import pandas as pd

from models.reducers import PCAReducer
from pipelines import serving
from pipelines.config import load_config
from pipelines.demo import write_demo
from pipelines.train import train


def test_density_candidates_in_pca_space_and_unassigned_noise(tmp_path, monkeypatch):
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
    # the served model works in the principal components, and places customers as train did
    model = serving.load_served_model(result.model_uri, cfg)
    assert isinstance(model.reducer, PCAReducer)
    assert model.reducer.pca_.n_components_ < len(model.columns)
    scored = model.predict(pd.read_parquet(tmp_path / "out" / "features.parquet"))
    agree = (scored["persona_id"].to_numpy() == assignments["persona_id"].to_numpy()).mean()
    assert agree >= 0.99


def test_served_umap_density_model_places_customers_as_training_did(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    write_demo(tmp_path / "data", n_customers=1000, seed=5)
    cfg = load_config()
    umap = {"n_components": 5, "n_neighbors": 15, "min_dist": 0.0, "sample_size": 600}
    cfg["model"].update(
        density_shares=[0.05], density_space="umap", force="hdbscan_umap_0.05",
        stability_resamples=2, umap=umap,
    )  # fmt: skip
    result = train(tmp_path / "data", cfg=cfg, output=tmp_path / "out")
    model = serving.load_served_model(result.model_uri, cfg)
    features = pd.read_parquet(tmp_path / "out" / "features.parquet")
    scored = model.predict(features)
    trained = pd.read_csv(tmp_path / "out" / "assignments.csv")
    agree = (scored["persona_id"].to_numpy() == trained["persona_id"].to_numpy()).mean()
    assert agree >= 0.99  # 400 of the 1,000 were placed, not fitted, by the UMAP stage
    alone = model.predict(features.iloc[::-3]).reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, scored.iloc[::-3].reset_index(drop=True))
