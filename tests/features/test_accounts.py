"""Roll-up of people's features to accounts (`features.accounts`), influence levels
(`features.influence`) and the account step of the train recipe (`pipelines.b2b`)."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import records

from features import DataError, Feature, build_features, load_data
from features.accounts import account_scores, gini, rollup_rule
from features.influence import UNKNOWN, influence_levels
from pipelines import b2b
from pipelines.config import load_config

AS_OF = "2026-03-31"
CUSTOMERS = records(
    "customer_id account_id role region",
    ("P1", "A1", "CEO", "EMEA"),
    ("P2", "A1", "Data Analyst", "EMEA"),
    ("P3", "A1", "Team Lead", "EMEA"),
    ("P4", "A2", "VP, Sales", "NA"),
    ("P5", "A2", "", "NA"),
)
USAGE = records(
    "customer_id timestamp feature",
    ("P1", "2026-03-01", "dashboards"),
    ("P2", "2026-03-10", "reports"),
    ("P2", "2026-03-20", "reports"),
    ("P2", "2026-03-30", "reports"),
    ("P4", "2026-02-01", "dashboards"),
    ("P4", "2026-03-15", "dashboards"),
    ("P5", "2026-03-15", "reports"),
    ("P5", "2026-03-16", "reports"),
)
FEEDBACK = records(
    "customer_id timestamp nps",
    ("P1", "2026-03-01", "10"),
    ("P2", "2026-03-02", "3"),
    ("P2", "2026-03-20", "6"),
    ("P4", "2026-03-05", "8"),
    ("P5", "2026-03-05", "9"),
)


def _accounts(folder, **b2b_settings) -> b2b.Accounts:
    cfg = load_config(level="account", as_of=AS_OF)
    cfg["b2b"].update(b2b_settings)
    loaded = load_data(folder, as_of=AS_OF)
    try:
        table = build_features(loaded, {**cfg["features"], "seed": 0})
        return b2b.to_accounts(loaded, table, cfg)
    finally:
        loaded.con.close()


@pytest.fixture
def folder(write_tables):
    return write_tables({"customers": CUSTOMERS, "usage_events": USAGE, "feedback": FEEDBACK})


def test_roles_map_to_influence_levels_by_whole_words():
    influence = load_config()["b2b"]["influence"]
    roles = pd.Series(
        ["CEO", "Co-Founder", "Vice President, Operations", "Head of Sales", "Headcount Analyst",
         "Engineering Manager", "Data Analyst", "", None, "vp"],
        name="role",
    )  # fmt: skip
    assert influence_levels(roles, influence).tolist() == [
        "c_level", "c_level", "decision_maker", "decision_maker", "end_user",
        "influencer", "end_user", UNKNOWN, UNKNOWN, "decision_maker",
    ]  # fmt: skip


def test_first_level_in_order_wins_and_other_names_the_rest():
    levels = {"exec": ["chief"], "buyer": ["chief", "buyer"]}
    roles = pd.Series(["Chief Buyer", "Buyer", "Clerk"])
    assert influence_levels(roles, levels, other="staff").tolist() == ["exec", "buyer", "staff"]


def test_rollup_rules_follow_the_metadata():
    def feature(name, family="usage", unit="events", transform="log", fill="zero"):
        return Feature(name, family, "needs", "d", unit, transform, fill=fill)

    assert rollup_rule(feature("usage_events")) == "sum"
    assert rollup_rule(feature("revenue_monetary", unit="money")) == "sum"
    assert rollup_rule(feature("revenue_avg_order", unit="money")) == "mean"
    assert rollup_rule(feature("usage_recency_days", unit="days", fill="span")) == "min"
    assert rollup_rule(feature("tenure_days", unit="days")) == "max"
    assert rollup_rule(feature("mix_reports", family="usage_mix", unit="share")) == "weighted"
    assert rollup_rule(feature("attr_plan", unit="category", transform="category")) == "mode"
    assert rollup_rule(feature("csat_mean", unit="score", transform="none")) == "mean"


def test_gini_is_normalized_by_group_size():
    values = pd.Series([1.0, 3.0, 0.0, 2.0, 2.0, 7.0, 0.0, 0.0])
    groups = pd.Series(["a", "a", "a", "b", "b", "c", "d", "d"])
    assert gini(values, groups).round(6).to_dict() == {"a": 0.75, "b": 0.0, "c": 0.0, "d": 0.0}


def test_account_score_mean_rounds_halves_up_and_decision_makers_take_the_latest():
    latest = pd.DataFrame(
        {"nps": [10, 6, 8, 9], "timestamp": pd.to_datetime(["2026-03-01", "2026-03-20",
                                                             "2026-03-05", "2026-03-05"])},
        index=["P1", "P2", "P4", "P5"],
    )  # fmt: skip
    members = pd.DataFrame(
        {"account_id": ["A1", "A1", "A2", "A2"],
         "influence": ["c_level", "end_user", "decision_maker", UNKNOWN]},
        index=["P1", "P2", "P4", "P5"],
    )  # fmt: skip
    assert account_scores(latest, members).to_dict() == {"A1": 8.0, "A2": 9.0}
    deciders = account_scores(latest, members, how="decision_makers")
    assert deciders.to_dict() == {"A1": 10.0, "A2": 8.0}
    with pytest.raises(ValueError, match="how should be one of"):
        account_scores(latest, members, how="median")


def test_people_features_roll_up_to_accounts(folder):
    accounts = _accounts(folder)
    frame, meta = accounts.table.frame, accounts.table.meta
    assert frame.index.name == "account_id" and frame.index.tolist() == ["A1", "A2"]
    expected = {
        "account_people": [3, 2],
        "usage_events": [4, 4],
        "usage_active_share": [2 / 3, 1.0],
        "usage_spread": [0.75, 0.0],
        "mix_dashboards": [0.25, 0.5],
        "mix_reports": [0.75, 0.5],
        "usage_breadth": [1, 1],
        "influence_c_level": [1 / 3, 0.0],
        "influence_decision_maker": [0.0, 0.5],
        "influence_unknown": [0.0, 0.5],
        "nps_latest": [8.0, 9.0],
        "feedback_responses": [3, 2],
    }
    for column, values in expected.items():
        assert frame[column].tolist() == pytest.approx(values), column
    assert frame["usage_recency_days"].tolist() == pytest.approx([2.0, 16.0], abs=1e-3)
    assert frame["attr_region"].tolist() == ["EMEA", "NA"]
    assert frame["nps_category"].tolist() == ["passive", "promoter"]
    assert "attr_role" not in frame  # the role is the influence mix now
    assert meta.loc["attr_region", "description"] == "region (account attribute)"
    assert meta.loc["usage_events", "description"].endswith("(all its people together)")
    assert meta.loc["account_people", "family"] == "accounts"
    assert list(meta.index) == list(frame.columns)
    assert accounts.members["influence"].tolist() == [
        "c_level", "end_user", "influencer", "decision_maker", UNKNOWN,
    ]  # fmt: skip
    assert accounts.scores.fillna(-1).tolist() == [10, 6, -1, 8, 9]


def test_account_nps_of_decision_makers(folder):
    accounts = _accounts(folder, account_nps="decision_makers")
    assert accounts.table.frame["nps_latest"].tolist() == [10.0, 8.0]
    assert "decision makers" in accounts.table.meta.loc["nps_latest", "description"]


def test_no_account_column_is_a_data_error(write_tables):
    customers = [{k: v for k, v in c.items() if k != "account_id"} for c in CUSTOMERS]
    folder = write_tables({"customers": customers, "usage_events": USAGE})
    with pytest.raises(DataError, match="needs an account_id column"):
        _accounts(folder)


def test_people_without_an_account_are_a_data_error(write_tables):
    customers = [dict(c, account_id="" if c["customer_id"] == "P3" else c["account_id"])
                 for c in CUSTOMERS]  # fmt: skip
    folder = write_tables({"customers": customers, "usage_events": USAGE})
    with pytest.raises(DataError, match=r"1 of 5 people have no account_id \(e.g. 'P3'\)"):
        _accounts(folder)


def test_decision_makers_score_needs_roles(write_tables):
    customers = [{k: v for k, v in c.items() if k != "role"} for c in CUSTOMERS]
    folder = write_tables({"customers": customers, "usage_events": USAGE, "feedback": FEEDBACK})
    with pytest.raises(DataError, match="no person has a role"):
        _accounts(folder, account_nps="decision_makers")
    accounts = _accounts(folder)  # the mean needs no roles
    assert not accounts.has_roles
    assert not any(c.startswith("influence_") for c in accounts.table.frame)
