"""Tests for ``models.drivers``: permutation importance of NPS drivers."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from models.drivers import key_drivers


def _data(n: int = 1200, seed: int = 0):
    """Score = 5 + 3 x_loud (everyone) + 2 x_inside in persona 1 only + noise; 3 noise columns."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    frame = pd.DataFrame(
        {
            "x_loud": rng.normal(size=n),
            "x_inside": rng.normal(size=n),
            "noise_a": rng.normal(size=n),
            "noise_b": rng.uniform(size=n),
            "plan": rng.choice(["Starter", "Pro", "Enterprise"], n),
            "csat": rng.normal(size=n),
        }
    )
    score = (
        5 + 1.5 * frame["x_loud"] + 2.0 * frame["x_inside"] * (labels == 1) + rng.normal(0, 0.7, n)
    )
    frame["nps_latest"] = np.clip(np.round(score), 0, 10)
    frame.loc[rng.random(n) < 0.3, "nps_latest"] = np.nan  # non-respondents
    meta = pd.DataFrame(
        {
            "family": ["usage", "usage", "usage", "revenue", "attributes", "feedback", "feedback"],
            "label": ["loud", "inside", "noise a", "noise b", "plan", "CSAT", "NPS"],
            "description": ["x loud", "x inside", "noise a", "noise b", "plan", "CSAT", "NPS"],
            "transform": ["none", "none", "none", "none", "category", "none", "none"],
        },
        index=["x_loud", "x_inside", "noise_a", "noise_b", "plan", "csat", "nps_latest"],
    )
    return frame, labels, meta


@pytest.fixture(scope="module")
def found():
    frame, labels, meta = _data()
    return key_drivers(frame, labels, meta, random_state=0)


def test_overall_drivers_find_the_planted_feature(found):
    top = found["overall"][0]
    assert top["feature"] == "x_loud" and top["clear"] and top["ci_low"] > 0
    assert top["direction"] == 1 and top["label"] == "loud"
    noise = {d["feature"]: d for d in found["overall"]}
    assert not noise["noise_a"]["clear"] and not noise["noise_b"]["clear"]
    assert not noise["plan"]["clear"]
    assert 0.5 < found["model_quality"] < 1  # held-out R²


def test_feedback_family_is_no_driver(found):
    assert "csat" not in {d["feature"] for d in found["overall"]}
    assert found["unit"] == "score points" and found["respondents"] == pytest.approx(840, abs=60)


def test_drivers_within_a_persona_are_its_own(found):
    inside = {pid: {d["feature"]: d for d in rows} for pid, rows in found["by_persona"].items()}
    assert inside[1]["x_inside"]["clear"]
    assert not inside[0]["x_inside"]["clear"] and not inside[2]["x_inside"]["clear"]
    assert all(not d["clear"] for pid in (0, 2) for f, d in inside[pid].items() if "noise" in f)


def test_seeded_and_deterministic():
    frame, labels, meta = _data(600)
    assert key_drivers(frame, labels, meta, random_state=3) == key_drivers(
        frame, labels, meta, random_state=3
    )


@pytest.mark.parametrize("kind", ["score", "promoter"])
def test_features_shuffled_on_every_core_give_the_one_core_numbers(kind, monkeypatch):
    from models import drivers

    frame, labels, meta = _data(900, seed=4)
    monkeypatch.setattr(drivers, "cpu_count", lambda: 4)
    many = key_drivers(frame, labels, meta, kind=kind, random_state=1)
    monkeypatch.setattr(drivers, "cpu_count", lambda: 1)
    assert many == key_drivers(frame, labels, meta, kind=kind, random_state=1)


def test_promoter_kind_and_small_personas_left_out():
    frame, labels, meta = _data()
    out = key_drivers(frame, labels, meta, kind="promoter", min_respondents=10_000, random_state=0)
    assert out["overall"][0]["feature"] == "x_loud"
    assert out["by_persona"] == {} and out["unit"] == "Brier points"
    assert 0.5 < out["model_quality"] <= 1  # held-out ROC AUC


def test_no_target_or_too_few_respondents_give_empty_drivers():
    frame, labels, meta = _data(200)
    assert key_drivers(frame.drop(columns="nps_latest"), labels, meta)["overall"] == []
    few = key_drivers(frame.head(20), labels[:20], meta)
    assert few["overall"] == [] and few["respondents"] < 30
    with pytest.raises(ValueError, match="kind='nps'"):
        key_drivers(frame, labels, meta, kind="nps")


def test_sample_keeps_large_runs_fast():
    frame, labels, meta = _data(60_000, seed=1)
    start = time.perf_counter()
    out = key_drivers(frame, labels, meta, sample_size=5000, random_state=0)
    assert out["respondents"] == 5000
    assert time.perf_counter() - start < 60


def test_shuffled_copies_are_predicted_as_the_model_predicts_them():
    """The copies' preprocessed rows are the held-out rows' with one column reordered: the
    predictions equal the model's own on the preprocessed copies, categorical features
    (encoded and moved first by scikit-learn) included; a constant column and one that
    reads the same backwards (the probe cannot single it out) too."""
    from models.drivers import _design, _model, _predict, _Trees

    frame, _, _ = _data(n=600)
    frame["constant"] = 1.0
    frame["mirror"] = np.r_[np.arange(400), np.arange(100), np.arange(100)[::-1]].astype(float)
    y = frame.pop("nps_latest").fillna(5).to_numpy()
    X, mask = _design(frame, list(frame), {"plan"}, 10)
    model = _model("score", mask, 0).fit(X[:400], y[:400])
    Xt = X[400:]
    trees = _Trees.of(model, "score", Xt, _predict(model, Xt, "score"))
    assert trees is not None
    columns = list(frame.columns)
    assert trees._column(Xt, columns.index("x_loud")) is not None
    for probed_alike in ("constant", "mirror"):  # copies preprocessed as they come
        assert trees._column(Xt, columns.index(probed_alike)) is None
    rng = np.random.default_rng(0)
    for j, name in enumerate(frame.columns):
        orders = [rng.permutation(len(Xt)) for _ in range(4)]
        stacked = np.tile(Xt, (4, 1))
        for r, order in enumerate(orders):
            stacked[r * len(Xt) : (r + 1) * len(Xt), j] = Xt[order, j]
        expected = _predict(model, stacked, "score")
        assert np.array_equal(trees.shuffled(Xt, j, orders), expected), name
