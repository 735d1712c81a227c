"""The served model is the whole recipe: any batch is placed exactly as training placed it.

Trained once on a base with more product features than ``features.mix_max_features``
(so the usage mix is reduced to NMF themes) and more channels and attribute levels than
``features.max_categories``, for every lens; then scored with the served model and no
config on one customer, a random tenth, one region and the whole base.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import TABLES
from features.engine import Engine
from pipelines import serving
from pipelines.config import load_config
from pipelines.demo import write_demo
from pipelines.run import load
from pipelines.score import score
from pipelines.table import build_table
from pipelines.train import train

LIMITS = {"mix_max_features": 4, "max_categories": 2}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    write_demo(root / "data", n_customers=900, seed=5)
    yield root
    mp.undo()


@pytest.fixture(scope="module", params=["both", "value"])
def trained(request, base):
    cfg = load_config()
    cfg["features"].update(LIMITS)
    cfg["model"].update(lens=request.param, stability_resamples=4)
    cfg["tracking"]["model_name"] = f"serve_{request.param}"
    result = train(base / "data", cfg=cfg, output=base / f"out_{request.param}")
    return result


def _subset(base, name: str, ids: set[str]):
    """Write the data folder restricted to ``ids`` (every table, every row of theirs)."""
    folder = base / "subsets" / name
    folder.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        path = base / "data" / f"{table}.csv"
        if path.exists():
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame[frame["customer_id"].isin(ids)].to_csv(folder / f"{table}.csv", index=False)
    return folder


def _batches(base) -> dict[str, set[str]]:
    customers = pd.read_csv(base / "data" / "customers.csv", dtype=str)
    rng = np.random.default_rng(0)
    ids = customers["customer_id"]
    return {
        "one": {ids.iloc[17]},
        "tenth": set(rng.choice(ids, len(ids) // 10, replace=False)),
        "region": set(ids[customers["region"] == customers["region"].mode()[0]]),
        "whole": set(ids),
    }


def test_the_fitted_definition_exceeds_the_limits(trained):
    columns = pd.read_parquet(trained.output / "features.parquet").columns
    assert any(c.startswith("theme_") for c in columns)  # NMF themes, not one mix per feature
    assert not any(c.startswith("mix_") for c in columns)
    channels = [c for c in columns if c.startswith("engagement_")]
    assert len(channels) == 2 + 3  # the 2 channels kept, events, recency, silent


@pytest.mark.parametrize("batch", ["one", "tenth", "region", "whole"])
def test_any_batch_is_placed_as_training_placed_it(trained, base, batch, tmp_path):
    ids = _batches(base)[batch]
    folder = _subset(base, f"{trained.model_uri.replace('/', '_')}_{batch}", ids)
    scored = score(folder, model=trained.model_uri, output=tmp_path / "scored.csv")
    written = pd.read_csv(tmp_path / "scored.csv", dtype={"customer_id": str})
    assert set(written["customer_id"]) == ids  # every customer once
    assert len(written) == len(ids)
    truth = trained.assignments.set_index("customer_id").loc[written["customer_id"]]
    assert (written["persona_id"].to_numpy() == truth["persona_id"].to_numpy()).all()
    assert (written["persona_name"].to_numpy() == truth["persona_name"].to_numpy()).all()
    assert np.allclose(written["confidence"], truth["confidence"], atol=1e-4)
    assert scored["persona_id"].tolist() == written["persona_id"].tolist()


@pytest.mark.parametrize("batch", ["one", "region"])
def test_a_batch_gets_the_training_features(trained, base, batch):
    ids = _batches(base)[batch]
    folder = _subset(base, f"features_{batch}", ids)
    model = serving.load_served_model(trained.model_uri, load_config())
    definition = model.definition
    cfg = {**load_config(), **definition.settings}
    loaded = load(folder, cfg)
    loaded.as_of = max(loaded.as_of, definition.as_of)
    try:
        table = build_table(loaded, Engine(loaded), cfg, definition).table
    finally:
        loaded.con.close()
    trained_features = pd.read_parquet(trained.output / "features.parquet")
    trained_features = trained_features.set_index("customer_id").loc[table.frame.index]
    pd.testing.assert_frame_equal(
        table.frame, trained_features, check_dtype=False, check_exact=False, rtol=1e-12
    )
