"""NPS by influence level inside personas and the decision makers vs end users gap."""

from __future__ import annotations

import numpy as np
import pytest

from models.influence import gap_rule_text, gap_test, influence_nps

SIDES = {"decision_makers": ["c_level", "decision_maker"], "end_users": ["end_user"]}


def _people(rng, n_accounts, dm_centre, eu_centre, account_sd=0.8):
    """People of accounts of 2-9 people, a quarter of them decision makers, half answering."""
    k = rng.integers(2, 10, n_accounts)
    acc = np.repeat(np.arange(n_accounts), k)
    dm = rng.random(acc.size) < 0.25
    centre = np.where(dm, dm_centre, eu_centre) + rng.normal(0, account_sd, n_accounts)[acc]
    score = np.clip(np.round(rng.normal(centre, 1.5)), 0, 10)
    score[rng.random(acc.size) < 0.5] = np.nan
    return score, np.where(dm, "decision_maker", "end_user"), acc


def test_gap_test_counts_the_gap_in_nps_points():
    out = gap_test([10, 9, 10, 9], ["x", "y", "z", "w"], [2, 9, 9, 8], ["x", "y", "z", "w"])
    assert out["gap"] == 75.0  # +100 vs +25
    assert out["clusters"] == 4
    assert out["ci_low"] < 75.0 < out["ci_high"]
    one = gap_test([10], ["x"], [0], ["x"])
    assert one["gap"] == 200.0 and np.isnan(one["p_value"])


def test_gap_test_keeps_its_size_with_accounts_as_clusters():
    """No true gap, people of one account answer alike: about 5% rejections at 5%."""
    rng = np.random.default_rng(3)
    rejected = []
    for _ in range(300):
        score, level, acc = _people(rng, 100, 7.5, 7.5)
        a, b = (
            (level == "decision_maker") & ~np.isnan(score),
            (level == "end_user") & ~np.isnan(score),
        )
        rejected.append(gap_test(score[a], acc[a], score[b], acc[b])["p_value"] < 0.05)
    assert 0.02 <= np.mean(rejected) <= 0.09


def test_planted_gap_is_called_out_with_its_interval():
    rng = np.random.default_rng(0)
    s1, l1, a1 = _people(rng, 120, 9.0, 4.0)
    s2, l2, a2 = _people(rng, 120, 7.5, 7.5)
    scores, levels = np.concatenate([s1, s2]), np.concatenate([l1, l2])
    accounts = np.concatenate([a1, a2 + 1000])
    labels = np.repeat([0, 1], [len(s1), len(s2)])
    out = influence_nps(scores, levels, accounts, labels, sides=SIDES, order=list(SIDES))
    gap = out[0]["influence_gap"]
    assert gap["tested"] and gap["significant"] and gap["called_out"]
    assert gap["gap"] > 60 and gap["gap_ci_low"] < gap["gap"] < gap["gap_ci_high"]
    assert gap["text"].startswith("Decision makers' NPS is ")
    assert "above their end users'" in gap["text"]
    assert not out[1]["influence_gap"]["called_out"]
    rows = {r["level"]: r for r in out[0]["nps_by_influence"]}
    assert set(rows) == {"decision_maker", "end_user"}
    assert rows["decision_maker"]["nps"] > rows["end_user"]["nps"]
    assert out[0]["people"] == len(s1)
    assert out[0]["people_nps"]["respondents"] == int((~np.isnan(s1)).sum())


def test_small_levels_are_greyed_or_hidden_and_not_tested():
    scores = np.array([10, 9, 10, 3, 2, 9, 8, 7] * 3, dtype=float)
    levels = np.array(["c_level"] * 3 + ["end_user"] * 21)
    accounts = np.arange(24) // 3
    out = influence_nps(
        scores, levels, accounts, np.zeros(24, dtype=int),
        sides=SIDES, min_respondents=10, min_shown=5,
    )[0]  # fmt: skip
    rows = {r["level"]: r for r in out["nps_by_influence"]}
    assert rows["c_level"]["respondents"] == 3 and not rows["c_level"]["shown"]
    assert rows["c_level"]["nps"] is None and rows["c_level"]["promoters"] is None
    assert rows["end_user"]["shown"] and rows["end_user"]["reliable"]
    assert not out["influence_gap"]["tested"] and not out["influence_gap"]["called_out"]


def test_a_significant_gap_smaller_than_min_gap_is_not_called_out():
    rng = np.random.default_rng(1)
    score, level, acc = _people(rng, 400, 8.2, 7.6, account_sd=0.2)
    labels = np.zeros(len(score), dtype=int)
    out = influence_nps(score, level, acc, labels, sides=SIDES, min_gap=60)[0]["influence_gap"]
    assert out["significant"] and not out["called_out"] and out["text"] is None


def test_sides_must_be_two():
    with pytest.raises(ValueError, match="exactly two sides"):
        influence_nps([9.0], ["end_user"], [0], [0], sides={"a": ["end_user"]})


def test_the_rule_in_words():
    text = gap_rule_text(SIDES, min_respondents=30, alpha=0.05, min_gap=10)
    assert text.startswith("A gap between decision makers and end users is called out when")
    assert "30 respondents" in text and "10 NPS points" in text and "5% level" in text
