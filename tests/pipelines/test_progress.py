"""Long stages show their count: a bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging

import numpy as np
from sklearn.cluster import KMeans

from models.stability import clusterboot
from pipelines.run import stage


def _resample(n_resamples: int) -> None:
    X = np.random.default_rng(0).normal(size=(200, 3))
    labels = KMeans(3, n_init=1, random_state=0).fit_predict(X)
    clusterboot(
        lambda Z, seed: KMeans(3, n_init=1, random_state=seed).fit_predict(Z),
        X,
        labels,
        n_resamples=n_resamples,
    )


def test_off_a_terminal_a_stage_logs_its_count(caplog, monkeypatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    with caplog.at_level(logging.INFO, logger="pipelines.run"), stage("Model"):
        _resample(4)
    lines = [r.getMessage() for r in caplog.records if r.name == "pipelines.run"]
    assert "Model: 4/4 resamples" in lines  # the completed loop, whatever the pace
    assert lines[0] == "Model ..." and lines[-1].startswith("Model done in")


def test_on_a_terminal_a_stage_shows_a_bar_with_its_count(capsys, monkeypatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats stderr as a terminal
    monkeypatch.setenv("COLUMNS", "120")
    with stage("Model"):
        _resample(3)
    err = capsys.readouterr().err
    assert "Model: resamples" in err
    assert "3/3" in err


def test_outside_a_stage_nothing_is_shown(capsys, caplog) -> None:
    with caplog.at_level(logging.INFO):
        _resample(2)
    assert "resamples" not in capsys.readouterr().err
    assert not [r for r in caplog.records if "resamples" in r.getMessage()]
