"""Persona matching, NPS change and population stability, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.matching import match_personas, nps_change, population_stability


def test_match_by_customer_overlap_uses_hungarian_assignment():
    old = [{"persona_id": 0}, {"persona_id": 1}]
    new = [{"persona_id": 0}, {"persona_id": 1}, {"persona_id": 2}]
    migration = pd.DataFrame(
        {"from_persona": [0, 1, 1, 0], "to_persona": [1, 0, 2, 2], "customers": [90, 80, 5, 3]}
    )
    assert match_personas(old, new, migration) == {0: 1, 1: 0, 2: None}


def test_match_by_profile_when_no_customer_persists():
    trait = lambda f, d: {"feature": f, "std_diff": d}  # noqa: E731
    old = [
        {"persona_id": 0, "traits": [trait("usage", 2.0)]},
        {"persona_id": 1, "traits": [trait("tickets", 2.0)]},
    ]
    new = [
        {"persona_id": 0, "traits": [trait("tickets", 1.8)]},
        {"persona_id": 1, "traits": [trait("usage", 2.1)]},
    ]
    assert match_personas(old, new) == {0: 1, 1: 0}


def test_nps_change_by_hand():
    before = {"respondents": 100, "promoters": 50, "detractors": 20}
    after = {"respondents": 100, "promoters": 30, "detractors": 40}
    out = nps_change(before, after)
    var = (0.5 + 0.2 - 0.3**2) / 100 + (0.3 + 0.4 - 0.1**2) / 100
    assert out["change"] == -40.0
    z = -40 / (100 * math.sqrt(var))
    assert out["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert out["significant"]
    assert nps_change({"respondents": 0}, after)["change"] is None


def test_population_stability():
    rng = np.random.default_rng(0)
    a = pd.Series(rng.normal(size=5000))
    assert population_stability(a, pd.Series(rng.normal(size=5000))) < 0.02
    assert population_stability(a, pd.Series(rng.normal(1.0, 1, size=5000))) > 0.25
    assert population_stability(pd.Series([1.0] * 10), pd.Series([1.0] * 5)) == 0.0
