"""When the customers' attributes shape the personas (``model.attributes``).

A subscription base with no usage or engagement log: what customers hold (a plan, add-ons,
a contract) is their needs, and they are billed monthly for it. Three groups are planted in
what they hold; a train run must let the attributes shape the personas (``auto``) and say
so in ``segmentation.json``, and must not with ``never``. With a usage log (the demo) the
attributes only describe the personas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from features import build_features
from pipelines.config import load_config
from pipelines.demo import write_demo
from pipelines.segment import shaping_families
from pipelines.train import load

#: group -> (plan, add-on share, contract, monthly price)
GROUPS = {
    "starter_monthly": ("starter", 0.05, "monthly", 15.0),
    "family_yearly": ("family", 0.9, "yearly", 45.0),
    "premium_two_year": ("premium", 0.5, "two-year", 90.0),
}


def _subscription_base(folder: Path, n: int = 600, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    names = list(GROUPS)
    group = np.array(names)[rng.choice(3, size=n, p=[0.5, 0.3, 0.2])]
    ids = [f"U{i:04d}" for i in range(n)]
    customers, bills = [], []
    for cid, g in zip(ids, group, strict=True):
        plan, addon, contract, price = GROUPS[g]
        months = int(rng.integers(4, 13))
        customers.append({
            "customer_id": cid, "plan": plan, "contract": contract,
            "sports_addon": "yes" if rng.random() < addon else "no",
            "signup_date": pd.Timestamp("2025-12-31") - pd.DateOffset(months=months),
        })  # fmt: skip
        for m in range(months):
            bills.append((cid, pd.Timestamp("2025-12-28") - pd.DateOffset(months=m),
                          round(price * rng.uniform(0.95, 1.05), 2)))  # fmt: skip
    folder.mkdir(parents=True)
    pd.DataFrame(customers).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame(bills, columns=["customer_id", "timestamp", "amount"]).to_csv(
        folder / "transactions.csv", index=False
    )
    return pd.Series(group, index=ids)


def _train(tmp_path: Path, data: Path, rule: str) -> Path:
    out, config = tmp_path / f"out_{rule}", tmp_path / f"{rule}.yaml"
    config.write_text(f"model:\n  attributes: {rule}\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "train", "--data", str(data), "--config",
         str(config), "--output", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def subscription(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("subscription")
    planted = _subscription_base(tmp / "data")
    return tmp, planted


def test_attributes_shape_personas_without_a_usage_log(subscription) -> None:
    tmp, planted = subscription
    out = _train(tmp, tmp / "data", "auto")  # the default, written out
    seg = json.loads((out / "segmentation.json").read_text())
    assert "attributes" in seg["families"]
    assert {"attr_plan", "attr_contract"} <= set(seg["features"])
    assert "feedback" not in seg["families"]
    # the number is the latent classes' of what customers hold, not density valleys'
    assert seg["n_personas"] == len(GROUPS)
    assert "latent classes" in seg["reason"] and "latent classes" in seg["structure_reason"]
    found = pd.read_csv(out / "assignments.csv", dtype={"customer_id": str})
    assert sorted(found["customer_id"]) == sorted(planted.index)  # every customer once
    truth = planted.loc[found["customer_id"]]
    assert adjusted_rand_score(truth, found["persona_id"]) >= 0.8
    # what they hold shaped them, so what they hold names them
    names = [p["name"] for p in json.loads((out / "personas.json").read_text())]
    assert all(any(a in n for a in ("plan", "contract", "sports addon")) for n in names), names
    # the served model keeps the latent classes: scoring the same batch places everyone alike
    scored = tmp / "scored.csv"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "score", "--data", str(tmp / "data"), "--output",
         str(scored)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    again = pd.read_csv(scored, dtype={"customer_id": str}).set_index("customer_id")["persona_id"]
    assert again.reindex(found["customer_id"]).tolist() == found["persona_id"].tolist()


def test_attributes_never_leaves_them_describing(subscription) -> None:
    tmp, _ = subscription
    cfg = load_config()
    table = build_features(load(tmp / "data", cfg), {**cfg["features"], "seed": cfg["seed"]})
    assert "attributes" in shaping_families(table, cfg["model"])
    assert "attributes" not in shaping_families(table, {**cfg["model"], "attributes": "never"})


def test_with_a_usage_log_attributes_only_describe(tmp_path) -> None:
    write_demo(tmp_path, n_customers=400, seed=2)
    cfg = load_config()
    table = build_features(load(tmp_path, cfg), {**cfg["features"], "seed": cfg["seed"]})
    assert "attributes" in {f.family for f in table.features}  # built: they describe
    assert "attributes" not in shaping_families(table, cfg["model"])
    assert "attributes" in shaping_families(table, {**cfg["model"], "attributes": "always"})
