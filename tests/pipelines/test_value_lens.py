"""Tests for the value lens: subscription retention (sBG), the CLV model choice and ``lens``.

The published check fits the two cohorts of Fader & Hardie, "How to project customer
retention" (Journal of Interactive Marketing, 2007), table 1, years 0-7: "regular"
customers a = 0.704, b = 1.182 and "high end" customers a = 0.668, b = 3.806.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SUBSCRIBERS_AS_OF, monthly_and_annual_subscribers
from scipy.optimize import check_grad
from scipy.stats import spearmanr

from features import build_features
from models.retention import ShiftedBetaGeometric, _sbg_loglik, billing_cycle, subscription_value
from pipelines.config import ConfigError, load_config
from pipelines.demo import PERSONAS, write_demo
from pipelines.train import load, modelled_columns
from pipelines.value import add_customer_value

COHORTS = {  # customers still active at the start of years 0..7, and the published fit
    "regular": ([1000, 631, 468, 382, 326, 289, 262, 241], (0.704, 1.182)),
    "high end": ([1000, 869, 743, 653, 593, 551, 517, 491], (0.668, 3.806)),
}


def _cohort(alive: list[int]) -> tuple[np.ndarray, np.ndarray]:
    lost = -np.diff(alive)
    periods = np.r_[np.repeat(np.arange(1, len(alive)), lost), np.full(alive[-1], len(alive))]
    churned = np.r_[np.ones(lost.sum(), bool), np.zeros(alive[-1], bool)]
    return periods, churned


@pytest.mark.parametrize("cohort", COHORTS)
def test_sbg_matches_fader_hardie_2007(cohort) -> None:
    alive, (a, b) = COHORTS[cohort]
    model = ShiftedBetaGeometric().fit(*_cohort(alive))
    assert model.a_ == pytest.approx(a, rel=0.005)
    assert model.b_ == pytest.approx(b, rel=0.005)
    # the fitted survival curve reproduces the cohort it was fitted on
    fitted = 1000 * model.survival(np.arange(len(alive)))
    assert np.abs(fitted - alive).max() < 25


def test_sbg_gradient_is_the_derivative_of_the_likelihood() -> None:
    t = np.array([1.0, 2, 3, 5, 8, 13])
    c = np.array([True, False, True, True, False, False])
    f = lambda lp: _sbg_loglik(np.exp(lp), t, c).sum()  # noqa: E731
    g = lambda lp: _sbg_loglik(np.exp(lp), t, c, gradient=True)[1].sum(axis=1)  # noqa: E731
    for point in ([0.7, 1.2], [3.0, 40.0], [0.1, 0.5]):
        assert check_grad(f, g, np.log(point)) < 1e-5


def test_sbg_recovers_simulated_retention() -> None:
    rng = np.random.default_rng(3)
    theta = rng.beta(1.5, 12.0, 20_000)
    lifetime = rng.geometric(theta)  # period of churn
    observed = rng.integers(1, 30, theta.size)  # periods seen so far
    churned = lifetime <= observed
    model = ShiftedBetaGeometric().fit(np.minimum(lifetime, observed + 1), churned)
    assert model.a_ / (model.a_ + model.b_) == pytest.approx(1.5 / 13.5, rel=0.05)
    assert model.a_ == pytest.approx(1.5, rel=0.15)
    counted = pd.DataFrame({"t": np.minimum(lifetime, observed + 1), "c": churned}).value_counts()
    rows = counted.reset_index()  # the distinct rows a cluster sends, with their counts
    weighted = ShiftedBetaGeometric().fit(rows["t"], rows["c"], sample_weight=rows["count"])
    assert (weighted.a_, weighted.b_) == (model.a_, model.b_)  # the same fit, to the bit
    assert weighted.log_likelihood_ == model.log_likelihood_


def test_sbg_needs_a_churn_and_valid_periods() -> None:
    with pytest.raises(ValueError, match="None of the 3 customers churned"):
        ShiftedBetaGeometric().fit([1, 2, 3], [False, False, False])
    with pytest.raises(ValueError, match="periods must be"):
        ShiftedBetaGeometric().fit([0, 2], [True, False])


def test_subscription_value_discounts_renewals_and_zeroes_churned() -> None:
    model = ShiftedBetaGeometric().fit(*_cohort(COHORTS["regular"][0]))
    history = pd.DataFrame(
        {"periods": [1, 8, 8], "churned": [False, False, True], "cycle_revenue": [10.0] * 3}
    )
    flat = subscription_value(
        model, history, cycle_days=30, horizon_days=360, period_days=30, discount_rate=0.0
    )
    assert flat.loc[2].tolist() == [0.0, 0.0, 10.0, 0.0]
    # retention rises with tenure (the sBG's sorting effect): the 8-period customer is safer
    assert flat.loc[1, "p_alive"] > flat.loc[0, "p_alive"]
    assert flat.loc[1, "clv"] == pytest.approx(10 * flat.loc[1, "expected_purchases"])
    discounted = subscription_value(
        model, history, cycle_days=30, horizon_days=360, period_days=30, discount_rate=0.05
    )
    assert (discounted["clv"] <= flat["clv"]).all()
    assert discounted.loc[1, "clv"] < flat.loc[1, "clv"]


def test_billing_cycle_tells_invoices_from_free_buying() -> None:
    rng = np.random.default_rng(0)
    monthly = pd.DataFrame(
        {"gap_mean": rng.normal(30.4, 0.5, 500), "gap_cv": rng.gamma(2, 0.02, 500)}
    )
    assert billing_cycle(monthly) == pytest.approx(30.4, abs=0.2)
    # Poisson buying: exponential gaps have a CV near 1
    gaps = rng.exponential(40, (500, 6))
    free = pd.DataFrame({"gap_mean": gaps.mean(1), "gap_cv": gaps.std(1, ddof=1) / gaps.mean(1)})
    assert billing_cycle(free) is None
    assert billing_cycle(monthly.head(10)) is None  # too few repeat buyers to tell


@pytest.fixture(scope="module")
def demo_value(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    write_demo(folder, n_customers=2000, seed=4)
    cfg = load_config()
    loaded = load(folder, cfg)
    table = build_features(loaded, {**cfg["features"], "seed": cfg["seed"]})
    params, _ = add_customer_value(loaded, table, cfg)
    planted = pd.read_csv(folder / "planted_personas.csv", dtype={"customer_id": "string"})
    frame = table.frame.join(planted.set_index("customer_id"))
    return params, frame.groupby("persona")[["clv_p_alive", "clv_value"]].mean(), table, cfg


def test_demo_subscriptions_get_the_retention_model(demo_value) -> None:
    params, *_ = demo_value
    assert params["kind"] == "subscription"
    assert params["cycle_days"] == pytest.approx(30.4, abs=1.5)  # monthly invoices


def test_demo_personas_differ_in_p_alive_and_clv_as_planted(demo_value) -> None:
    _, means, *_ = demo_value
    churn = pd.Series({name: p["churn"] for name, p in PERSONAS.items()})
    rho = spearmanr(churn[means.index], means["clv_p_alive"]).statistic
    assert rho <= -0.8, means
    assert means["clv_p_alive"].idxmin() == "fading_accounts"  # planted churn 55%
    assert means["clv_value"].idxmax() == "struggling_enterprise"  # enterprise plans
    assert means["clv_value"].idxmin() == "bargain_hunters"  # basic plans, discounts


def test_lens_picks_the_features_that_shape_personas(demo_value) -> None:
    *_, table, cfg = demo_value
    meta = table.meta
    both = modelled_columns(table, cfg["model"])
    value = modelled_columns(table, {**cfg["model"], "lens": "value"})
    needs = modelled_columns(table, {**cfg["model"], "lens": "needs"})
    assert set(meta.loc[value, "lens"]) == {"value"}
    assert {"clv", "rfm", "revenue"} <= set(meta.loc[value, "family"])
    assert set(meta.loc[needs, "lens"]) == {"needs"}
    assert set(needs) < set(both) and not set(needs) & set(value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model": {"lens": "wants"}}, "model.lens should be one of both, needs, value"),
        ({"model": {"lens_weights": {"value": -1}}}, "lens_weights"),
        ({"clv": {"model": "pareto"}}, "clv.model should be one of"),
    ],
)
def test_lens_and_clv_settings_are_checked(tmp_path, override, message) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(override))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_forced_subscription_without_a_cycle_turns_clv_off(write_tables, caplog) -> None:
    folder = write_tables(
        {
            "customers": [{"customer_id": c, "signup_date": "2025-01-01"} for c in "abc"],
            "transactions": [
                {"customer_id": c, "timestamp": "2025-02-01 10:00:00", "amount": 10.0}
                for c in "abc"
            ],
        }
    )
    cfg = load_config()
    cfg["clv"]["model"] = "subscription"
    loaded = load(folder, cfg)
    table = build_features(loaded, {**cfg["features"], "seed": cfg["seed"]})
    assert add_customer_value(loaded, table, cfg) == (None, None)
    assert "no customer has two gaps" in caplog.text
    assert not any(c.startswith("clv_") for c in table.frame.columns)


def test_annual_subscribers_in_a_monthly_base_are_judged_by_their_own_cycle(write_tables):
    tables, active = monthly_and_annual_subscribers()
    folder = write_tables(tables)
    cfg = load_config(as_of=SUBSCRIBERS_AS_OF)
    loaded = load(folder, cfg)
    table = build_features(loaded, {**cfg["features"], "seed": cfg["seed"]})
    params, _ = add_customer_value(loaded, table, cfg)
    assert params["kind"] == "subscription"
    assert sorted(round(c["cycle_days"] / 30) for c in params["cycles"]) == [1, 12]
    alive = table.frame["clv_p_alive"]
    annual_ids = [c for c in active.index if c.startswith("A")]
    monthly_ids = [c for c in active.index if c.startswith("M")]
    assert alive[[c for c in annual_ids if active[c]]].mean() >= 0.8
    assert alive[[c for c in annual_ids if not active[c]]].mean() <= 0.2
    assert alive[[c for c in monthly_ids if active[c]]].mean() >= 0.8
    assert alive[[c for c in monthly_ids if not active[c]]].mean() <= 0.2
