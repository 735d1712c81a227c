"""A killed run leaves nothing half-written; pseudonymized ids; tiny personas merged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.privacy import pseudonymize
from pipelines.config import load_config
from pipelines.demo import write_demo
from pipelines.segment import merge_small
from pipelines.train import train


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("rel") / "data"
    write_demo(path, n_customers=800, seed=6)
    return path


def test_sigterm_leaves_no_output_and_a_failed_run(demo, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "train", "--data", str(demo), "--output", str(out)],
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    for line in proc.stderr:  # wait until the run is halfway: the model stage
        if "Model ..." in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    assert not out.exists()
    assert not list(tmp_path.glob(".out*"))  # no staging folder left behind
    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("personas").experiment_id])[0]
    assert run.info.status in ("FAILED", "KILLED")
    assert run.data.tags["error_type"] == "KeyboardInterrupt"


def test_pseudonymized_ids_in_every_output(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PERSONAS_ID_SALT", "s3cret")
    cfg = load_config()
    cfg["privacy"]["pseudonymize_ids"] = True
    cfg["model"]["stability_resamples"] = 4
    train(demo, cfg=cfg, output=tmp_path / "out")
    ids = pd.read_csv(demo / "customers.csv", dtype=str)["customer_id"]
    written = pd.read_csv(tmp_path / "out" / "assignments.csv", dtype=str)["customer_id"]
    assert set(written) == set(pseudonymize(ids, "s3cret"))
    features = pd.read_parquet(tmp_path / "out" / "features.parquet")
    assert set(features["customer_id"]) == set(written)
    text = (tmp_path / "out" / "assignments.csv").read_text()
    assert not any(i in text for i in ids.head(100))


def test_pseudonymize_without_salt_fails_before_work(demo, tmp_path, monkeypatch):
    monkeypatch.delenv("PERSONAS_ID_SALT", raising=False)
    cfg = load_config()
    cfg["privacy"]["pseudonymize_ids"] = True
    with pytest.raises(ValueError, match="PERSONAS_ID_SALT"):
        train(demo, cfg=cfg, output=tmp_path / "out")


def test_small_personas_are_merged_into_the_nearest():
    X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2], [0.3]])
    labels = np.array([0, 0, 0, 1, 1, 1, 2])
    merged = merge_small(X, labels, min_size=2)
    assert merged.tolist() == [0, 0, 0, 1, 1, 1, 0]
    assert merge_small(X, labels, min_size=0).tolist() == labels.tolist()
