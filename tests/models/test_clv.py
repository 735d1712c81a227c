"""Tests for the CLV models (``models.bgnbd``, ``models.gamma_gamma``, ``models.clv``).

The published check fits the CDNOW 1/10 sample (2,357 customers) calibrated to 1997-09-30
and compares with Fader, Hardie and Lee (2005): BG/NBD r = 0.2426, alpha = 4.4136,
a = 0.7929, b = 2.4259 (log-likelihood -9582.43), and Gamma-Gamma p = 6.25, q = 3.74,
v = 15.44 on the 946 repeat buyers. The sample ships in the ``Lifetimes`` wheel on PyPI:
the wheel is downloaded once by pip into ``data/cache/`` (git-ignored) and those tests
are skipped when it cannot be. Every other test runs on seeded simulations of the models'
own generative processes.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from features import load_data
from features.engine import Engine
from features.rfm import clv_summary
from models.bgnbd import BetaGeoModel, _alive_purchases, _bgnbd_loglik
from models.clv import customer_value
from models.gamma_gamma import GammaGammaModel, _gg_loglik

ROOT = Path(__file__).resolve().parents[2]
TRUE_BGNBD = (0.25, 4.0, 0.8, 2.5)  # r, alpha, a, b: close to CDNOW's
TRUE_GG = (6.0, 4.0, 15.0)  # p, q, v


# ---------------------------------------------------------------- simulations


def simulate_bgnbd(n, params, T, rng, horizon=0.0):
    """Simulate BG/NBD customers from their first purchase (time 0) to ``T + horizon``.

    While alive a customer buys at rate ``lambda ~ Gamma(r, alpha)``; after each repeat
    purchase they drop out with probability ``p ~ Beta(a, b)``. Returns frequency,
    recency and the purchases in ``(T, T + horizon]``.
    """
    r, alpha, a, b = params
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, tx, future, t = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.arange(n)
    while active.size:
        t[active] += rng.exponential(1 / lam[active])
        active = active[t[active] <= T[active] + horizon]
        calibration = active[t[active] <= T[active]]
        x[calibration] += 1
        tx[calibration] = t[calibration]
        future[active[t[active] > T[active]]] += 1
        active = active[rng.random(active.size) >= p[active]]
    return x, tx, future


def summary(x, tx, T) -> pd.DataFrame:
    return pd.DataFrame({"frequency": x, "recency": tx, "T": T})


@pytest.fixture(scope="module")
def simulated():
    """30,000 customers observed 26 to 78 weeks, with their purchases in the next 39."""
    rng = np.random.default_rng(0)
    T = rng.uniform(26, 78, 30_000)
    x, tx, future = simulate_bgnbd(T.size, TRUE_BGNBD, T, rng, horizon=39.0)
    return summary(x, tx, T), future


@pytest.fixture(scope="module")
def fitted(simulated) -> BetaGeoModel:
    return BetaGeoModel(horizon=39.0).fit(simulated[0])


@pytest.fixture(scope="module")
def spend_model(spend) -> GammaGammaModel:
    return GammaGammaModel().fit(spend)


@pytest.fixture(scope="module")
def spend() -> pd.DataFrame:
    """40,000 repeat buyers whose purchase values follow the Gamma-Gamma model."""
    rng = np.random.default_rng(1)
    p, q, v = TRUE_GG
    x = rng.integers(1, 10, 40_000).astype(float)
    nu = rng.gamma(q, 1 / v, x.size)
    return pd.DataFrame({"frequency": x, "monetary_value": rng.gamma(p * x, 1 / nu) / x})


# ---------------------------------------------------------------- published check: CDNOW


def _cdnow_script():
    spec = importlib.util.spec_from_file_location("cdnow_script", ROOT / "scripts" / "cdnow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cdnow_wheel() -> Path:
    script = _cdnow_script()
    try:
        return script.fetch_wheel(ROOT / "data" / "cache")
    except script.FetchError as error:
        pytest.skip(f"The CDNOW sample (Lifetimes wheel on PyPI) could not be fetched: {error}")


@pytest.fixture(scope="module")
def cdnow(cdnow_wheel, tmp_path_factory) -> pd.DataFrame:
    """The CDNOW calibration summary, through the contract folder and the SQL summary."""
    script = _cdnow_script()
    folder = script.write_contract(
        script.read_transactions(cdnow_wheel), tmp_path_factory.mktemp("cdnow")
    )
    data = load_data(folder, as_of="1997-09-30")
    try:
        return clv_summary(Engine(data), data.as_of, {})
    finally:
        data.con.close()


def test_cdnow_summary_matches_the_published_one(cdnow, cdnow_wheel) -> None:
    member = "lifetimes/datasets/cdnow_customers_summary_with_transactions.csv"
    with zipfile.ZipFile(cdnow_wheel) as archive:
        published = pd.read_csv(io.BytesIO(archive.read(member)))
    ours = cdnow.set_index(cdnow["customer_id"].astype(int)).loc[published["ID"]]
    assert len(cdnow) == 2357
    assert (ours["frequency"].to_numpy() == published["x"].to_numpy()).all()
    # The published file rounds to 2 decimals.
    for col, pub in [("recency", "t_x"), ("T", "T"), ("monetary_value", "zbar")]:
        np.testing.assert_allclose(ours[col], published[pub], atol=0.005 + 1e-9, err_msg=col)


def test_cdnow_bgnbd_matches_fader_hardie_lee(cdnow) -> None:
    start = time.perf_counter()
    model = BetaGeoModel().fit(cdnow)
    assert time.perf_counter() - start < 5.0
    published = {"r": 0.2426, "alpha": 4.4136, "a": 0.7929, "b": 2.4259}
    for name, value in published.items():
        assert model.params_[name] == pytest.approx(value, rel=0.005), name
    assert model.log_likelihood_ == pytest.approx(-9582.43, abs=0.01)
    assert model.n_customers_ == 2357
    # Hardie's BG/NBD spreadsheet note: customer 1 (x=2, t_x=30.43, T=38.86) is expected
    # to make 1.226 purchases in the next 39 weeks.
    first = cdnow[cdnow["customer_id"] == "0001"]
    assert model.expected_purchases(first, t=39.0)[0] == pytest.approx(1.226, abs=5e-4)


def test_cdnow_gamma_gamma_matches_fader_hardie_lee(cdnow) -> None:
    start = time.perf_counter()
    model = GammaGammaModel().fit(cdnow)
    assert time.perf_counter() - start < 5.0
    assert model.n_customers_ == 946
    for name, value in {"p": 6.25, "q": 3.74, "v": 15.44}.items():
        assert model.params_[name] == pytest.approx(value, rel=0.005), name


def test_cdnow_customer_value(cdnow) -> None:
    value = customer_value(BetaGeoModel().fit(cdnow), GammaGammaModel().fit(cdnow), cdnow)
    assert list(value.columns) == ["expected_purchases", "p_alive", "expected_order_value", "clv"]
    assert value.index.equals(cdnow.index)
    assert (value["clv"] > 0).all()
    assert value["p_alive"].between(0, 1).all()


# ---------------------------------------------------------------- BG/NBD behaviour


def test_recovers_simulated_parameters(fitted) -> None:
    got = np.array([fitted.r_, fitted.alpha_, fitted.a_, fitted.b_])
    # Standard errors at 30,000 customers are 1-4%; 15% is well beyond noise.
    np.testing.assert_allclose(got, TRUE_BGNBD, rtol=0.15)
    assert fitted.n_customers_ == 30_000
    assert fitted.log_likelihood_ < 0


def test_predictions_match_the_simulated_future(simulated, fitted) -> None:
    frame, future = simulated
    predicted = fitted.predict(frame)
    assert predicted.sum() == pytest.approx(future.sum(), rel=0.05)
    group = np.minimum(frame["frequency"].to_numpy(), 3)
    for g in range(4):
        assert predicted[group == g].mean() == pytest.approx(future[group == g].mean(), rel=0.12)


def test_new_customer_expectation_matches_simulation(fitted) -> None:
    rng = np.random.default_rng(2)
    T = np.full(100_000, 39.0)
    x, _, _ = simulate_bgnbd(T.size, (fitted.r_, fitted.alpha_, fitted.a_, fitted.b_), T, rng)
    assert fitted.expected_purchases_new(39.0) == pytest.approx(x.mean(), rel=0.02)
    assert fitted.expected_purchases_new(0.0) == 0.0


def test_probability_alive_is_one_without_repeat_purchases(fitted) -> None:
    frame = summary([0, 0, 0], [0.0, 0.0, 0.0], [0.0, 10.0, 100.0])
    np.testing.assert_array_equal(fitted.probability_alive(frame), 1.0)


def test_more_recent_buyers_are_more_likely_alive_and_buy_more(fitted) -> None:
    frame = summary([3] * 5, [5.0, 10.0, 20.0, 30.0, 40.0], [40.0] * 5)
    alive, expected = fitted.probability_alive(frame), fitted.expected_purchases(frame)
    assert np.all(np.diff(alive) > 0)
    assert np.all(np.diff(expected) > 0)
    assert np.all((alive > 0) & (alive < 1))


def test_longer_silence_lowers_probability_alive(fitted) -> None:
    frame = summary([2] * 4, [10.0] * 4, [10.0, 20.0, 40.0, 80.0])
    assert np.all(np.diff(fitted.probability_alive(frame)) < 0)


def test_more_purchases_and_longer_horizons_mean_more_expected(fitted) -> None:
    frame = summary([1, 2, 4, 8], [30.0] * 4, [32.0] * 4)
    assert np.all(np.diff(fitted.expected_purchases(frame)) > 0)
    one = frame.iloc[[1]]
    horizons = [fitted.expected_purchases(one, t)[0] for t in (0.0, 4.0, 13.0, 52.0, 104.0)]
    assert horizons[0] == 0.0
    assert np.all(np.diff(horizons) > 0)
    assert fitted.predict(one)[0] == pytest.approx(fitted.expected_purchases(one, 39.0)[0])


def test_heavy_buyers_stay_finite(fitted) -> None:
    frame = summary([300, 300], [51.9, 10.0], [52.0, 52.0])
    alive, expected = fitted.probability_alive(frame), fitted.expected_purchases(frame)
    assert np.isfinite(alive).all() and np.isfinite(expected).all()
    assert alive[0] > 0.99 and alive[1] < 1e-6
    assert expected[0] > 100


def test_identical_rows_are_weighted_not_refitted(simulated) -> None:
    frame = simulated[0].iloc[:5_000]
    once = BetaGeoModel().fit(frame)
    twice = BetaGeoModel().fit(pd.concat([frame, frame]).sample(frac=1.0, random_state=0))
    np.testing.assert_allclose(list(twice.params_.values()), list(once.params_.values()))
    assert twice.log_likelihood_ == pytest.approx(2 * once.log_likelihood_)
    assert twice.score(frame) == pytest.approx(once.log_likelihood_ / len(frame))


def test_distinct_histories_weighted_by_their_counts_fit_as_every_customer(
    simulated, spend
) -> None:
    """What a cluster sends the driver (`pipelines.cluster_value`): the fit is the same."""
    days = simulated[0].iloc[:5_000][["recency", "T"]].mul(7).round().div(7)  # as summaries
    frame = simulated[0].iloc[:5_000].assign(recency=days["recency"], T=days["T"])
    every = BetaGeoModel().fit(frame)
    counts = frame.value_counts(["frequency", "recency", "T"]).reset_index(name="n")
    assert len(counts) < len(frame)
    weighted = BetaGeoModel().fit(counts, sample_weight=counts["n"])
    assert weighted.params_ == every.params_  # the same sums: bit for bit
    assert weighted.log_likelihood_ == every.log_likelihood_
    assert weighted.n_customers_ == len(frame)
    ones = BetaGeoModel().fit(frame, sample_weight=np.ones(len(frame)))
    assert ones.params_ == every.params_
    doubled = spend.assign(monetary_value=spend["monetary_value"].round(0))
    spent = doubled.value_counts(["frequency", "monetary_value"]).reset_index(name="n")
    whole = GammaGammaModel().fit(doubled)
    grouped = GammaGammaModel().fit(spent, sample_weight=spent["n"])
    np.testing.assert_allclose(list(grouped.params_.values()), list(whole.params_.values()),
                               rtol=1e-9)  # fmt: skip
    assert grouped.n_customers_ == whole.n_customers_
    with pytest.raises(ValueError, match="sample_weight must be a finite number >= 0"):
        BetaGeoModel().fit(frame.iloc[:3], sample_weight=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="one weight per customer row"):
        BetaGeoModel().fit(frame.iloc[:3], sample_weight=[1.0])


def test_arrays_work_like_frames(simulated, fitted) -> None:
    frame = simulated[0].iloc[:100]
    np.testing.assert_allclose(
        fitted.probability_alive(frame.to_numpy()), fitted.probability_alive(frame)
    )


def test_penalizer_shrinks_parameters(simulated) -> None:
    frame = simulated[0].iloc[:5_000]
    plain, shrunk = BetaGeoModel().fit(frame), BetaGeoModel(penalizer=0.1).fit(frame)
    assert sum(v**2 for v in shrunk.params_.values()) < sum(v**2 for v in plain.params_.values())


# ---------------------------------------------------------------- Gamma-Gamma


def test_gamma_gamma_recovers_simulated_parameters(spend_model) -> None:
    model = spend_model
    np.testing.assert_allclose([model.p_, model.q_, model.v_], TRUE_GG, rtol=0.2)
    p, q, v = TRUE_GG
    # p and v trade off; the population mean spend p v / (q - 1) is pinned down tightly.
    assert model.p_ * model.v_ / (model.q_ - 1) == pytest.approx(p * v / (q - 1), rel=0.03)


def test_gamma_gamma_uses_repeat_buyers_and_shrinks(spend) -> None:
    with_new = pd.concat(
        [spend, pd.DataFrame({"frequency": [0.0] * 3, "monetary_value": [0.0, np.nan, 5.0]})]
    )
    model = GammaGammaModel().fit(with_new)
    assert model.n_customers_ == len(spend)
    value = model.expected_order_value(
        pd.DataFrame({"frequency": [0, 1, 20, 1, 20], "monetary_value": [0, 100, 100, 5, 5]})
    )
    mean = model.p_ * model.v_ / (model.q_ - 1)
    assert value[0] == pytest.approx(mean)
    # One purchase says little (close to the mean), twenty say a lot (close to their own).
    assert mean < value[1] < value[2] < 100
    assert 5 < value[4] < value[3] < mean


# ---------------------------------------------------------------- customer value


def test_customer_value_discounting(fitted, spend_model) -> None:
    frame = summary([0, 2, 5], [0.0, 20.0, 30.0], [40.0, 40.0, 35.0]).assign(
        monetary_value=[0.0, 30.0, 50.0]
    )
    flat = customer_value(fitted, spend_model, frame, discount_rate=0.0)
    np.testing.assert_allclose(
        flat["clv"], flat["expected_order_value"] * flat["expected_purchases"]
    )
    np.testing.assert_allclose(flat["expected_purchases"], fitted.expected_purchases(frame, 52.0))
    np.testing.assert_allclose(flat["p_alive"], fitted.probability_alive(frame))
    one = customer_value(fitted, spend_model, frame, n_periods=1, discount_rate=0.1)
    np.testing.assert_allclose(one["clv"], flat["clv"] / 1.1)
    monthly = customer_value(fitted, spend_model, frame, discount_rate=0.01)
    assert (monthly["clv"] < flat["clv"]).all() and (monthly["clv"] > one["clv"]).all()


# ---------------------------------------------------------------- contract and errors


def test_estimator_contract() -> None:
    model = BetaGeoModel(horizon=26.0, penalizer=0.01)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.predict(summary([1], [1.0], [2.0]))
    with pytest.raises(NotFittedError):
        GammaGammaModel().predict(pd.DataFrame({"frequency": [1], "monetary_value": [1.0]}))
    with pytest.raises(InvalidParameterError, match="horizon"):
        BetaGeoModel(horizon=-1.0).fit(summary([1], [1.0], [2.0]))


def test_fitted_model_pickles_without_customer_data(fitted, simulated) -> None:
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(
        restored.predict(simulated[0][:10]), fitted.predict(simulated[0][:10])
    )
    assert len(pickle.dumps(fitted)) < 2_000


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (summary([-1, 2], [0.0, 3.0], [5.0, 5.0]), r"frequency must be a whole number >= 0.*0: -1"),
        (summary([1.5], [3.0], [5.0]), r"frequency must be a whole number.*1\.5"),
        (summary([2, 3], [3.0, 9.0], [5.0, 8.0]), r"recency .* must be <= T.*recency=9, T=8"),
        (summary([1], [-2.0], [5.0]), r"recency must be >= 0.*-2"),
        (summary([0], [2.0], [5.0]), r"recency must be 0 .*frequency 0.*2"),
        (summary([1], [np.nan], [5.0]), r"recency must be a finite number"),
        (pd.DataFrame({"frequency": [1], "recency": [1.0]}), r"lacks the column\(s\) T"),
        (np.ones((3, 2)), r"shape \(n_customers, 3\).*\(3, 2\)"),
    ],
)
def test_bad_summaries_are_refused_with_their_values(frame, message) -> None:
    with pytest.raises(ValueError, match=message):
        BetaGeoModel().fit(frame)


def test_bad_spend_is_refused_with_its_values() -> None:
    frame = pd.DataFrame({"frequency": [1, 2], "monetary_value": [10.0, -4.0]})
    with pytest.raises(ValueError, match=r"monetary_value must be .*>= 0.*1: -4"):
        GammaGammaModel().fit(frame)
    with pytest.raises(ValueError, match=r"at least 2 repeat buyers.*has 1 of 2"):
        GammaGammaModel().fit(pd.DataFrame({"frequency": [0, 2], "monetary_value": [0.0, 4.0]}))


def test_bad_customer_value_settings_quote_the_value(fitted, spend_model) -> None:
    frame = summary([1], [1.0], [2.0]).assign(monetary_value=[5.0])
    with pytest.raises(ValueError, match="discount_rate must be a number > -1, got -2"):
        customer_value(fitted, spend_model, frame, discount_rate=-2)
    with pytest.raises(ValueError, match="n_periods must be a whole number >= 1, got 0"):
        customer_value(fitted, spend_model, frame, n_periods=0)
    with pytest.raises(ValueError, match=r"t \(weeks ahead\) must be .* got -1"):
        fitted.expected_purchases(frame, t=-1)


def test_degenerate_data_warns() -> None:
    # Nobody came back: the purchase rate is driven to zero, which the data cannot bound.
    with pytest.warns(ConvergenceWarning, match="none of the 50 customers made a repeat"):
        BetaGeoModel().fit(summary([0] * 50, [0.0] * 50, np.linspace(1, 50, 50)))


@pytest.mark.parametrize(
    ("loglik", "params", "cols"),
    [
        (
            _bgnbd_loglik,
            (0.3, 4.0, 0.8, 2.5),
            ([0.0, 1.0, 5.0], [0.0, 3.0, 20.0], [10.0, 8.0, 30.0]),
        ),
        (_gg_loglik, (6.0, 4.0, 15.0), ([1.0, 2.0, 7.0], [10.0, 35.5, 3.2])),
    ],
)
def test_analytic_gradients_match_finite_differences(loglik, params, cols) -> None:
    cols = [np.asarray(c) for c in cols]
    log_params = np.log(params)
    _, grad = loglik(np.asarray(params), *cols, gradient=True)
    for j in range(len(params)):
        step = np.zeros(len(params))
        step[j] = 1e-6
        up, down = (
            loglik(np.exp(log_params + step), *cols),
            loglik(np.exp(log_params - step), *cols),
        )
        np.testing.assert_allclose(grad[j], (up - down) / 2e-6, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("params", "x", "T", "t", "expected"),
    [
        # Reference values from the closed form evaluated with mpmath at 50 digits.
        ((0.2426, 4.4136, 0.7929, 2.4259), 2, 38.86, 39.0, 1.68717170644966),
        ((0.5, 2.0, 0.3, 0.4), 0, 20.0, 52.0, 0.793886449154481),  # a + b + x < 1
        ((1e6, 4e6, 0.5, 3.0), 10, 40.0, 52.0, 10.7982077235389),  # near-homogeneous rates
        ((0.8, 3.0, 1e-7, 2.0), 5, 30.0, 26.0, 4.5696968276719),  # almost no dropout
        ((0.3, 5.0, 0.7, 1e4), 3, 50.0, 52.0, 3.1195563424667),
        ((0.25, 4.0, 0.8, 2.5), 300, 52.0, 104.0, 351.489913865008),  # heavy buyer
        ((0.5, 0.05, 0.6, 0.3), 0, 0.0, 104.0, 11.65828163948),  # t >> alpha + T
        ((2.0, 1.0, 0.2, 0.5), 0, 1.0, 52.0, 20.9932430627075),
    ],
)
def test_expected_purchases_if_alive_in_hard_regimes(params, x, T, t, expected) -> None:
    assert _alive_purchases(*params, x, T, t) == pytest.approx(expected, rel=1e-5)


def test_steady_buyers_who_never_leave_get_finite_predictions() -> None:
    # Everyone buys every 4 weeks and nobody leaves: the MLE sits at the edge (no rate
    # heterogeneity, no dropout), which the fit warns about; predictions stay sensible.
    rng = np.random.default_rng(3)
    T = rng.integers(10, 100, 2_000).astype(float)
    x = np.floor(T / 4)
    frame = summary(x, 4 * x, T)
    with pytest.warns(ConvergenceWarning, match="BetaGeoModel"):
        model = BetaGeoModel().fit(frame)
    np.testing.assert_allclose(model.predict(frame), 13.0, rtol=0.05)
    np.testing.assert_allclose(model.probability_alive(frame), 1.0, atol=1e-6)


def test_order_value_is_nan_where_the_population_mean_is_undefined() -> None:
    rng = np.random.default_rng(4)
    # Gamma-Gamma spend with q = 0.6 < 1: the population mean spend is infinite.
    x = rng.integers(1, 5, 5_000).astype(float)
    nu = rng.gamma(0.6, 1 / 10.0, x.size)
    frame = pd.DataFrame({"frequency": x, "monetary_value": rng.gamma(5.0 * x, 1 / nu) / x})
    with pytest.warns(ConvergenceWarning, match="q = .* <= 1"):
        model = GammaGammaModel().fit(frame)
    value = model.expected_order_value(
        pd.DataFrame({"frequency": [0, 3], "monetary_value": [0, 9]})
    )
    assert np.isnan(value[0]) and value[1] > 0
