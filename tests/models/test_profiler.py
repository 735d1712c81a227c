"""Tests for ``models.nps`` and ``models.profiler``: NPS with its interval, personas, names.

Expected values are computed by hand; comments show the arithmetic.
"""

from __future__ import annotations

import copy
import math
import statistics

import numpy as np
import pandas as pd
import pytest
import yaml

from models.nps import nps_summary
from models.profiler import name_personas, profile_personas
from pipelines.config import DEFAULT_CONFIG

CONF = yaml.safe_load(DEFAULT_CONFIG.read_text())
NAMING = CONF["naming"]
Z95 = 1.959963984540054  # norm.ppf(0.975)

ORDER = [
    "persona_id",
    "name",
    "description",
    "size",
    "share",
    "nps",
    "nps_ci_low",
    "nps_ci_high",
    "respondents",
    "promoters",
    "passives",
    "detractors",
    "revenue_share",
    "value_effect",
    "traits",
]


# --------------------------------------------------------------------------- nps_summary


def test_nps_counts_use_standard_cut_offs():
    # promoters 9-10, passives 7-8, detractors 0-6
    out = nps_summary([10, 9, 8, 7, 6, 0])
    assert (out["promoters"], out["passives"], out["detractors"]) == (2, 2, 2)
    assert out["respondents"] == 6
    assert out["nps"] == 0.0


def test_nps_interval_matches_hand_computed_adjusted_wald():
    # 10 respondents: P=5 (10,10,9,9,9), passives 2 (8,7), D=3 (5,3,0)
    # NPS = 100 (5 - 3) / 10 = 20
    # adjusted Wald (Rocks 2016): pa = 5.75/13, da = 3.75/13, centred on 100 (pa - da)
    out = nps_summary([10, 10, 9, 9, 9, 8, 7, 5, 3, 0])
    assert out == {
        "respondents": 10,
        "promoters": 5,
        "passives": 2,
        "detractors": 3,
        "nps": 20.0,
        "nps_ci_low": -30.33,
        "nps_ci_high": 61.1,
    }


def test_nps_ci_level_changes_width():
    out = nps_summary([10, 10, 9, 9, 9, 8, 7, 5, 3, 0], ci_level=0.90)
    assert (out["nps_ci_low"], out["nps_ci_high"]) == (-22.98, 53.75)


def test_nps_ignores_nan_non_respondents():
    with_nan = nps_summary([10, np.nan, 8, np.nan, 3, np.nan])
    assert with_nan == nps_summary([10, 8, 3])
    assert with_nan["respondents"] == 3
    assert with_nan["nps"] == 0.0


def test_nps_accepts_nullable_pandas_series():
    out = nps_summary(pd.Series([9, None, 3], dtype="Float64"))
    assert (out["respondents"], out["promoters"], out["detractors"]) == (2, 1, 1)


@pytest.mark.parametrize("scores", [[], [np.nan, np.nan]])
def test_nps_without_respondents_gives_none(scores):
    assert nps_summary(scores) == {
        "respondents": 0,
        "promoters": 0,
        "passives": 0,
        "detractors": 0,
        "nps": None,
        "nps_ci_low": None,
        "nps_ci_high": None,
    }


def test_nps_all_promoters_has_non_zero_width_clipped_at_100():
    # P=10, n=10: pa = 11/13, da = 1/13, var = (12/13 - (10/13)^2) / 10 = 56/1690
    # se = 18.20332; 100 - 1.959964 * 18.20332 = 64.32; upper 135.68 clipped to 100
    out = nps_summary([10] * 6 + [9] * 4)
    assert out["nps"] == 100.0
    assert out["nps_ci_low"] == 47.5
    assert out["nps_ci_high"] == 100.0


def test_nps_all_detractors_clipped_at_minus_100():
    out = nps_summary([0, 1, 2, 3, 4, 5, 6, 6, 6, 6])
    assert out["nps"] == -100.0
    assert (out["nps_ci_low"], out["nps_ci_high"]) == (-100.0, -47.5)


def test_nps_single_respondent_interval_stays_in_bounds():
    out = nps_summary([7])
    assert out["nps"] == 0.0
    assert -100.0 <= out["nps_ci_low"] < 0.0 < out["nps_ci_high"] <= 100.0


@pytest.mark.parametrize(
    ("shares", "seed"),
    [((0.5, 0.3, 0.2), 0), ((0.3, 0.4, 0.3), 1), ((0.8, 0.15, 0.05), 2)],
)
def test_nps_interval_coverage_is_close_to_nominal(shares, seed):
    # 4000 seeded samples of n=200 respondents; the 95% interval should cover the true
    # NPS 93-97% of the time (Monte Carlo sd of the coverage is about 0.35 points).
    true_nps = 100 * (shares[0] - shares[2])
    counts = np.random.default_rng(seed).multinomial(200, shares, size=4000)
    covered = 0
    for c in counts:
        out = nps_summary(np.repeat([10.0, 8.0, 3.0], c))
        covered += out["nps_ci_low"] <= true_nps <= out["nps_ci_high"]
    assert 0.93 <= covered / len(counts) <= 0.97


# --------------------------------------------------------------------------- profile_personas


def _meta(*rows: tuple) -> pd.DataFrame:
    cols = ["name", "family", "lens", "description", "unit", "transform", "label", "fill"]
    return pd.DataFrame([dict(zip(cols, r, strict=True)) for r in rows]).set_index("name")


META = _meta(
    ("usage_events", "usage", "needs", "product events", "events", "none", "events", "zero"),
    ("revenue_monetary", "revenue", "value", "revenue", "USD", "log", "revenue", "zero"),
    ("region", "attributes", "needs", "region", "category", "category", "region", "nan"),
)
#                 persona:  0    0    0      0    1   1    1     -1
FRAME = pd.DataFrame(
    {
        "usage_events": [10, 12, 14, 16, 2, 4, 6, 8],
        "revenue_monetary": [100, 100, 100, 100, 10, 20, -20, 30],
        "region": ["EU", "EU", "EU", "US", "US", "US", None, "EU"],
        "nps_latest": [10, 9, 8, np.nan, 3, 5, np.nan, 10],
    },
    index=[f"C{i}" for i in range(8)],
)
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, -1])


def _by_id(personas: list[dict]) -> dict[int, dict]:
    return {p["persona_id"]: p for p in personas}


def _trait(profile: dict, feature: str) -> dict:
    return next(t for t in profile["traits"] if t["feature"] == feature)


def _log_effect(values: list[float], mask: list[bool]) -> float:
    t = [math.copysign(math.log1p(abs(v)), v) for v in values]
    inside = [x for x, m in zip(t, mask, strict=True) if m]
    return (statistics.mean(inside) - statistics.mean(t)) / statistics.stdev(t)


@pytest.fixture(scope="module")
def profiles() -> dict[int, dict]:
    return _by_id(profile_personas(FRAME, LABELS, META, min_trait_effect=0.0, top_traits=10))


def test_profile_output_keys_and_order():
    personas = profile_personas(FRAME, LABELS, META)
    assert [p["persona_id"] for p in personas] == [-1, 0, 1]
    for p in personas:
        assert list(p)[: len(ORDER)] == ORDER


def test_profile_sizes_and_shares(profiles):
    assert {k: (p["size"], p["share"]) for k, p in profiles.items()} == {
        -1: (1, 0.125),
        0: (4, 0.5),
        1: (3, 0.375),
    }


def test_profile_revenue_share_clips_refunds(profiles):
    # revenue clipped at 0: 400 + (10 + 20 + 0) + 30 = 460
    assert profiles[0]["revenue_share"] == 0.8696  # 400 / 460
    assert profiles[1]["revenue_share"] == 0.0652  # 30 / 460
    assert profiles[-1]["revenue_share"] == 0.0652  # 30 / 460


def test_profile_nps_per_persona(profiles):
    p0, p1, noise = profiles[0], profiles[1], profiles[-1]
    # persona 0: 10, 9, 8 (one NaN) -> 2 promoters, 1 passive: NPS 66.67
    assert (p0["respondents"], p0["promoters"], p0["passives"], p0["detractors"]) == (3, 2, 1, 0)
    assert p0["nps"] == 66.67
    assert p0["nps_ci_low"] < 66.67 < p0["nps_ci_high"]
    # persona 1: 3, 5 -> two detractors
    assert (p1["respondents"], p1["nps"], p1["nps_ci_low"]) == (2, -100.0, -100.0)
    assert (noise["respondents"], noise["nps"]) == (1, 100.0)


def test_profile_without_nps_column_gives_none():
    out = profile_personas(FRAME.drop(columns="nps_latest"), LABELS, META)
    assert all(p["nps"] is None and p["respondents"] == 0 for p in out)


def test_profile_numeric_trait_standardized_difference(profiles):
    # usage_events: mean 72/8 = 9; squared deviations 1+9+25+49+49+25+9+1 = 168,
    # sd = sqrt(168/7) = sqrt(24) = 4.898979
    # persona 0 mean 13: (13 - 9) / 4.898979 = 0.816; persona 1 mean 4: -5 / 4.898979
    t0 = _trait(profiles[0], "usage_events")
    assert t0 == {
        "feature": "usage_events",
        "label": "events",
        "description": "product events",
        "unit": "events",
        "lens": "needs",
        "statistic": "mean",
        "persona_value": 13.0,
        "population_value": 9.0,
        "std_diff": 0.816,
    }
    assert _trait(profiles[1], "usage_events")["std_diff"] == -1.021
    assert _trait(profiles[-1], "usage_events")["std_diff"] == -0.204


def test_profile_log_trait_uses_log_scale_and_medians(profiles):
    t0 = _trait(profiles[0], "revenue_monetary")
    assert t0["statistic"] == "median"
    # raw medians: persona 0 -> 100; everyone: (-20, 10, 20, 30, 100 x4) -> (30 + 100) / 2
    assert (t0["persona_value"], t0["population_value"]) == (100.0, 65.0)
    mask = (LABELS == 0).tolist()
    expected = _log_effect(FRAME["revenue_monetary"].tolist(), mask)
    assert t0["std_diff"] == pytest.approx(expected, abs=5e-4)
    assert profiles[0]["value_effect"] == t0["std_diff"]


def test_profile_categorical_traits(profiles):
    # region, non-missing: EU 4/7, US 3/7; sd = sqrt(4/7 * 3/7) = 0.494872
    # persona 0: EU 3/4 -> (0.75 - 0.571429) / 0.494872 = 0.361
    eu = _trait(profiles[0], "region=EU")
    assert eu == {
        "feature": "region=EU",
        "label": "region is EU",
        "description": "region",
        "unit": "share",
        "lens": "needs",
        "statistic": "share",
        "persona_value": 0.75,
        "population_value": round(4 / 7, 4),
        "std_diff": 0.361,
    }
    assert _trait(profiles[0], "region=US")["std_diff"] == -0.361
    # persona 1: US, US and one missing -> US share 1: (1 - 3/7) / 0.494872 = 1.155
    assert _trait(profiles[1], "region=US")["persona_value"] == 1.0
    assert _trait(profiles[1], "region=US")["std_diff"] == 1.155
    assert _trait(profiles[1], "region=EU")["std_diff"] == -1.155


def test_profile_traits_sorted_and_filtered():
    out = _by_id(profile_personas(FRAME, LABELS, META, min_trait_effect=0.5, top_traits=10))
    for p in out.values():
        effects = [abs(t["std_diff"]) for t in p["traits"]]
        assert effects == sorted(effects, reverse=True)
        assert all(e >= 0.5 for e in effects)
    # |std_diff| per persona (see test_profile_categorical_traits and the numeric tests):
    # persona 0: usage 0.816, revenue 0.606 kept; region +-0.361 dropped
    # persona 1: region +-1.155 (EU first: more frequent level), usage 1.021, revenue 0.859
    # persona -1: region +-0.866 kept; usage 0.204 and revenue 0.153 dropped
    features = {k: [t["feature"] for t in p["traits"]] for k, p in out.items()}
    assert features == {
        0: ["usage_events", "revenue_monetary"],
        1: ["region=EU", "region=US", "usage_events", "revenue_monetary"],
        -1: ["region=EU", "region=US"],
    }


def test_profile_top_traits_limits_and_trait_features_select():
    out = _by_id(profile_personas(FRAME, LABELS, META, min_trait_effect=0.0, top_traits=1))
    assert all(len(p["traits"]) == 1 for p in out.values())
    only = _by_id(
        profile_personas(FRAME, LABELS, META, min_trait_effect=0.0, trait_features=["region"])
    )
    assert all(t["feature"].startswith("region=") for t in only[1]["traits"])
    # the value feature is not a candidate, so there is no value effect
    assert only[0]["value_effect"] is None


def test_profile_description_states_traits_in_units(profiles):
    assert profiles[0]["description"] == (
        "Compared with all customers, their product events is much higher (average 13 events "
        "vs 9 events), their revenue is higher (median 100 USD vs 65 USD) and region is EU for "
        "75% of them (vs 57%). They are 50% of customers (4) and bring 87% of revenue."
    )
    assert profile_personas(FRAME, LABELS, META, min_trait_effect=9.0)[1]["description"] == (
        "They are 50% of customers (4) and bring 87% of revenue."
    )


def test_profile_names_without_rules_and_unassigned():
    out = _by_id(profile_personas(FRAME, LABELS, META))
    assert {k: p["name"] for k, p in out.items()} == {
        -1: "Unassigned",
        0: "Persona 0",
        1: "Persona 1",
    }
    named = _by_id(profile_personas(FRAME, LABELS, META, naming=NAMING))
    assert named[-1]["name"] == "Unassigned"
    # persona 0: high revenue effect -> "High-value"; usage_events high -> "power users"
    assert named[0]["name"] == "High-value power users"


def test_profile_does_not_mutate_inputs():
    frame, meta = FRAME.copy(), META.copy()
    profile_personas(frame, LABELS.copy(), meta, naming=NAMING)
    pd.testing.assert_frame_equal(frame, FRAME)
    pd.testing.assert_frame_equal(meta, META)


def test_unassigned_does_not_take_a_persona_name():
    meta = META.loc[["usage_events", "revenue_monetary"]]
    frame = pd.DataFrame(
        {
            "usage_events": [10, 10, 10, 10, 1, 1, 1, 1, 10, 10],
            "revenue_monetary": [500, 500, 500, 500, 5, 5, 5, 5, 500, 500],
        }
    )
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, -1, -1])
    out = _by_id(profile_personas(frame, labels, meta, naming=NAMING))
    assert out[-1]["name"] == "Unassigned"
    assert out[0]["name"] == "High-value power users"


# --------------------------------------------------------------------------- name_personas


def _t(feature: str, effect: float, label: str = "x") -> dict:
    return {"feature": feature, "std_diff": effect, "label": label}


def _p(*traits: dict, value_effect: float | None = None) -> dict:
    return {"value_effect": value_effect, "all_traits": list(traits)}


def test_names_first_matching_rule_wins():
    # engagement_silent comes before engagement_* in the rules
    assert name_personas([_p(_t("engagement_silent", 1.0))], NAMING, 0.2) == ["Silent customers"]
    assert name_personas([_p(_t("engagement_email", 1.0, "email"))], NAMING, 0.2) == ["Email fans"]
    # engagement_silent matches first but has no "low" phrase: no fall-through to
    # engagement_* (whose low phrase is "hard-to-reach customers"): the next trait names it
    out = name_personas([_p(_t("engagement_silent", -1.0), _t("tenure_days", -0.5))], NAMING, 0.2)
    assert out == ["Newcomers"]


def test_names_prefix_wildcard_and_label():
    naming = copy.deepcopy(NAMING)
    assert name_personas([_p(_t("mix_reports", 0.9, "reports"))], naming, 0.2) == ["Reports users"]
    # plain rule names are prefixes: usage_events matches usage_events_30d
    assert name_personas([_p(_t("usage_events_30d", -0.9))], naming, 0.2) == ["Light users"]
    # categorical traits match on the feature before "="
    naming["phrases"] = [{"feature": "region", "high": "{label} locals"}]
    assert name_personas([_p(_t("region=EU", 0.9, "region is EU"))], naming, 0.2) == [
        "Region is EU locals"
    ]


def test_names_phrases_follow_trait_strength_not_rule_order():
    # tenure_days' rule comes after usage_trend's, but its trait is stronger
    out = name_personas([_p(_t("tenure_days", 1.5), _t("usage_trend", 0.9))], NAMING, 0.2)
    assert out == ["Long-time customers"]


@pytest.mark.parametrize(
    ("value_effect", "expected"),
    [
        (0.6, "High-value power users"),
        (0.5, "High-value power users"),
        (-0.7, "Low-value power users"),
        (0.49, "Power users"),
        (None, "Power users"),
    ],
)
def test_names_value_words(value_effect, expected):
    persona = _p(_t("usage_events", 1.0), value_effect=value_effect)
    assert name_personas([persona], NAMING, 0.2) == [expected]


def test_names_skip_value_feature_and_weak_traits():
    persona = _p(_t("revenue_monetary", 2.0), _t("usage_events", 0.1), value_effect=2.0)
    # revenue_monetary gives the value word, never a phrase; 0.1 < min_effect
    assert name_personas([persona], NAMING, 0.2) == ["High-value customers"]


def test_names_fallback_when_no_rule_matches():
    assert name_personas([_p(_t("unknown_feature", 3.0))], NAMING, 0.2) == ["Customers"]
    assert name_personas([_p()], NAMING, 0.2) == ["Customers"]


def test_names_unique_with_next_phrase_then_what_sets_them_apart_then_number():
    personas = [
        _p(_t("usage_events", 1.0), value_effect=1.0),
        _p(_t("usage_events", 1.0), _t("tenure_days", 0.8), value_effect=1.0),
        _p(_t("usage_events", 0.9), _t("nps_latest", -0.6, "NPS"), value_effect=1.0),
        _p(_t("usage_events", 0.9), value_effect=1.0),
    ]
    out = name_personas(personas, NAMING, 0.2)
    assert out == [
        "High-value power users",
        "High-value power users, long-time customers",
        "High-value power users, less NPS",  # no rule names it: its own strongest trait
        "High-value power users 4",  # nothing else sets it apart
    ]
    assert len(set(out)) == len(out)


def test_names_are_deterministic():
    personas = [
        _p(_t("usage_events", 1.0), _t("tenure_days", -0.4), value_effect=-0.8),
        _p(_t("support_tickets", 1.2), _t("usage_trend", 0.3)),
        _p(_t("mix_export", 0.7, "export")),
    ]
    first = name_personas(copy.deepcopy(personas), NAMING, 0.2)
    assert first == name_personas(copy.deepcopy(personas), NAMING, 0.2)
    assert first == ["Low-value power users", "Support-heavy customers", "Export users"]


def test_names_unique_without_value_word():
    personas = [_p(_t("usage_events", 1.0)), _p(_t("usage_events", 1.2)), _p(), _p()]
    out = name_personas(personas, NAMING, 0.2)
    assert len(set(out)) == len(out), out


def test_lapsed_personas_are_called_lapsed_not_light_users():
    lapsed = {**_p(_t("usage_events_30d", -0.9)), "p_alive_mean": 0.02}
    alive = {**_p(_t("usage_events_30d", -0.9), _t("tenure_days", -0.6)), "p_alive_mean": 0.9}
    assert name_personas([lapsed, alive], NAMING, 0.2) == ["Lapsed light users", "Light users"]


def test_actions_speak_to_the_business():
    from models.actions import suggest_actions

    vip = {"value_index": 2.0}
    b2c = " ".join(a["action"] for a in suggest_actions(vip, business="b2c"))
    b2b = " ".join(a["action"] for a in suggest_actions(vip, business="b2b"))
    assert "customer success manager" in b2b and "customer success" not in b2c
    assert "loyalty" in b2c
    lapsed = [a["rule"] for a in suggest_actions({"p_alive_mean": 0.05}, business="b2c")]
    assert lapsed == ["lapsed"]


def test_names_tell_personas_apart_by_the_attribute_levels_they_hold_more():
    # two personas named alike by the value rule; an attribute level held more tells them
    # apart, and a level held less ("online security is no", less often) never names one
    big = _t("revenue_avg_order", 1.0, "average order")
    first = _p(big)
    second = _p(
        big,
        _t("attr_online_security=no", -0.9, "online security is no"),
        _t("attr_online_security=yes", 0.9, "online security is yes"),
    )
    names = name_personas([first, second], NAMING, 0.2)
    assert names[0] != names[1]
    assert names[1].endswith(", with online security")
    assert "without" not in names[1]


def test_what_customers_hold_names_them_first_when_it_shaped_them():
    big = _t("revenue_avg_order", 1.2, "average order")
    fibre = _t("attr_internet=fibre", 0.9, "internet is fibre")
    tv = _t("attr_tv=yes", 0.8, "tv is yes")
    plain = name_personas([_p(big, fibre)], NAMING, 0.2)[0]
    led = name_personas([_p(big, fibre), _p(big, tv)], NAMING, 0.2, ("attr_internet", "attr_tv"))
    assert not plain.startswith("Fibre")  # a rule (the order size) names it by default
    assert led == ["Fibre internet customers", "Customers with tv"]
