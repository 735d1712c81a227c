"""Tests for ``models.preprocessing``: signed_log1p and the Preprocessor.

Expected values are computed by hand; comments show the arithmetic.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from models.preprocessing import Preprocessor, signed_log1p


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "plain": [1.0, 2.0, 3.0, 4.0, 5.0],
            "gappy": [1.0, 2.0, 3.0, np.nan, 10.0],
            "revenue": [-50.0, 0.0, 10.0, 100.0, 1000.0],
            "region": ["EU", "US", None, "EU", "EU"],
            "mix_a": [0.25, 0.64, 0.0, np.nan, 1.0],
        }
    )


def _columns(pre: Preprocessor, out: np.ndarray) -> dict[str, np.ndarray]:
    names = pre.get_feature_names_out()
    assert len(names) == out.shape[1]
    return {name: out[:, i] for i, name in enumerate(names)}


@pytest.fixture
def unbalanced() -> tuple[Preprocessor, dict[str, np.ndarray]]:
    pre = Preprocessor(
        log_columns=["revenue"],
        categorical_columns=["region"],
        share_columns=["mix_a"],
        balance_groups=False,
    )
    X = _frame()
    return pre, _columns(pre, pre.fit(X).transform(X))


def test_signed_log1p_keeps_sign():
    out = signed_log1p([-50.0, -1.0, 0.0, 1.0, 1000.0, np.nan])
    np.testing.assert_allclose(
        out[:5], [-math.log(51), -math.log(2), 0.0, math.log(2), math.log(1001)]
    )
    assert out[0] < 0
    assert np.isnan(out[5])


def test_output_columns(unbalanced):
    _, cols = unbalanced
    assert list(cols) == [
        "plain",
        "gappy",
        "missingindicator_gappy",
        "revenue",
        "region_EU",
        "region_US",
        "region_missing",
        "mix_a",
    ]


def test_robust_scaling_median_zero_iqr_one(unbalanced):
    _, cols = unbalanced
    # plain 1..5: median 3, IQR 4 - 2 = 2
    np.testing.assert_allclose(cols["plain"], [-1.0, -0.5, 0.0, 0.5, 1.0])
    q25, q50, q75 = np.percentile(cols["plain"], [25, 50, 75])
    assert (q50, q75 - q25) == (0.0, 1.0)


def test_median_imputation_indicator_and_clip(unbalanced):
    _, cols = unbalanced
    # gappy: median of (1, 2, 3, 10) = 2.5 fills the gap; then median 2.5, IQR 3 - 2 = 1;
    # 10 -> (10 - 2.5) / 1 = 7.5, clipped to 3
    np.testing.assert_allclose(cols["gappy"], [-1.5, -0.5, 0.5, 0.0, 3.0])
    np.testing.assert_array_equal(cols["missingindicator_gappy"], [0, 0, 0, 1, 0])


def test_clip_bound_is_configurable():
    X = _frame()[["plain", "gappy"]]
    out = Preprocessor(balance_groups=False, clip=0.75).fit(X).transform(X)
    assert out.max() == 0.75 and out.min() == -0.75
    np.testing.assert_allclose(out[:, 0], [-0.75, -0.5, 0.0, 0.5, 0.75])


def test_log_column_is_signed_log1p_then_scaled(unbalanced):
    _, cols = unbalanced
    t = np.array([-math.log(51), 0.0, math.log(11), math.log(101), math.log(1001)])
    # median log(11); IQR log(101) - 0
    expected = np.clip((t - math.log(11)) / math.log(101), -3, 3)
    np.testing.assert_allclose(cols["revenue"], expected)
    assert cols["revenue"][0] < cols["revenue"][1] < 0  # the refund stays below zero


def test_one_hot_with_missing_level(unbalanced):
    _, cols = unbalanced
    np.testing.assert_array_equal(cols["region_EU"], [1, 0, 0, 1, 1])
    np.testing.assert_array_equal(cols["region_US"], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(cols["region_missing"], [0, 0, 1, 0, 0])


def test_share_columns_hellinger_without_scaling(unbalanced):
    _, cols = unbalanced
    # sqrt, missing share -> 0, no centring or scaling
    np.testing.assert_allclose(cols["mix_a"], [0.5, 0.8, 0.0, 0.0, 1.0])


GROUPS = {"plain": "usage", "gappy": "usage", "revenue": "revenue", "mix_a": "mix"}


@pytest.mark.parametrize(
    "weights",
    [None, {"usage": 2.0, "mix": 0.5}],
)
def test_balance_groups_total_variance_is_weight_squared(weights):
    X = _frame()
    pre = Preprocessor(
        log_columns=["revenue"],
        categorical_columns=["region"],
        share_columns=["mix_a"],
        groups=GROUPS,
        group_weights=weights,
    ).fit(X)
    cols = _columns(pre, pre.transform(X))
    members = {
        "usage": ["plain", "gappy", "missingindicator_gappy"],
        "revenue": ["revenue"],
        "mix": ["mix_a"],
        "region": ["region_EU", "region_US", "region_missing"],  # ungrouped: its own group
    }
    assert sorted(members) == sorted(pre.weights_)
    for group, names in members.items():
        total = sum(cols[n].var() for n in names)
        weight = (weights or {}).get(group, 1.0)
        assert total == pytest.approx(weight**2), group


def test_group_weights_multiply_without_balance():
    X = _frame()
    kwargs = {
        "log_columns": ["revenue"],
        "categorical_columns": ["region"],
        "share_columns": ["mix_a"],
        "groups": GROUPS,
        "balance_groups": False,
    }
    plain = Preprocessor(**kwargs).fit(X)
    weighted = Preprocessor(**kwargs, group_weights={"usage": 2.0}).fit(X)
    a = _columns(plain, plain.transform(X))
    b = _columns(weighted, weighted.transform(X))
    for name in a:
        factor = 2.0 if name in ("plain", "gappy", "missingindicator_gappy") else 1.0
        np.testing.assert_allclose(b[name], factor * a[name], err_msg=name)


def test_transform_new_data_and_column_order():
    X = _frame()
    pre = Preprocessor(
        log_columns=["revenue"], categorical_columns=["region"], share_columns=["mix_a"]
    ).fit(X)
    new = pd.DataFrame(
        {
            "mix_a": [0.09, np.nan],
            "region": ["US", "APAC"],  # APAC was never seen: all region columns 0
            "revenue": [np.nan, 10.0],
            "gappy": [np.nan, 2.5],
            "plain": [3.0, 100.0],
            "extra": [1, 2],
        }
    )
    cols = _columns(pre, pre.transform(new))
    w = pre.weights_
    np.testing.assert_allclose(cols["plain"], [0.0, 3.0 * w["plain"]])  # 100 clipped
    np.testing.assert_allclose(cols["gappy"], [0.0, 0.0])  # imputed median, then centred
    np.testing.assert_allclose(cols["missingindicator_gappy"], [w["gappy"], 0.0])
    np.testing.assert_allclose(cols["revenue"], [0.0, 0.0])  # imputed median log(11)
    np.testing.assert_allclose(cols["region_US"], [w["region"], 0.0])
    np.testing.assert_allclose(cols["region_EU"] + cols["region_missing"], [0.0, 0.0])
    np.testing.assert_allclose(cols["mix_a"], [0.3 * w["mix_a"], 0.0])


def test_transform_missing_columns_raises():
    X = _frame()
    pre = Preprocessor(categorical_columns=["region"]).fit(X)
    with pytest.raises(ValueError, match=r"lacks the columns \['gappy', 'region'\]"):
        pre.transform(X.drop(columns=["gappy", "region"]))


def test_fit_does_not_mutate_input():
    X = _frame()
    Preprocessor(log_columns=["revenue"], categorical_columns=["region"]).fit(X)
    pd.testing.assert_frame_equal(X, _frame())


def test_pickle_round_trip():
    X = _frame()
    pre = Preprocessor(
        log_columns=["revenue"],
        categorical_columns=["region"],
        share_columns=["mix_a"],
        groups=GROUPS,
        group_weights={"mix": 2.0},
    ).fit(X)
    loaded = pickle.loads(pickle.dumps(pre))
    np.testing.assert_array_equal(loaded.transform(X), pre.transform(X))
    np.testing.assert_array_equal(loaded.get_feature_names_out(), pre.get_feature_names_out())


def test_median_imputation_learns_what_sklearns_median_learns():
    """The imputer's medians equal ``strategy="median"``'s, bit for bit, and so its output."""
    from sklearn.impute import SimpleImputer

    from models.preprocessing import _median

    rng = np.random.default_rng(7)
    for n in (1, 2, 7, 1000, 1001):
        X = np.column_stack([
            rng.lognormal(size=n), rng.normal(size=n), rng.integers(0, 3, n).astype(float),
            np.full(n, np.nan), np.where(rng.random(n) < 0.5, np.nan, rng.normal(size=n)),
            np.round(rng.normal(size=n), 1),
        ])  # fmt: skip
        X[rng.random(X.shape) < 0.1] = np.nan
        kw = {"add_indicator": True, "keep_empty_features": True}
        ours, theirs = SimpleImputer(strategy=_median, **kw), SimpleImputer(strategy="median", **kw)
        ours.fit(X)
        theirs.fit(X)
        assert ours.statistics_.tobytes() == theirs.statistics_.tobytes(), n
        assert np.array_equal(ours.transform(X), theirs.transform(X))


def test_fit_transform_is_fit_then_transform():
    """One pass gives what ``fit(X).transform(X)`` gives, bit for bit, groups weighted."""
    X = _frame()
    kw = {"log_columns": ["revenue"], "categorical_columns": ["region"],
          "share_columns": ["mix_a"], "groups": {"plain": "usage", "gappy": "usage"}}  # fmt: skip
    once = Preprocessor(**kw).fit_transform(X)
    twice = Preprocessor(**kw).fit(X).transform(X)
    assert once.shape == twice.shape and once.tobytes() == twice.tobytes()


def test_weighted_blocks_are_written_in_place_as_stacking_them_gives():
    """The groups' blocks, weighted in the output, are ``np.hstack`` of the weighted blocks."""
    X = _frame()
    pre = Preprocessor(
        log_columns=["revenue"], categorical_columns=["region"], share_columns=["mix_a"],
        groups=GROUPS, group_weights={"mix": 2.0}, balance_groups=True,
    ).fit(X)  # fmt: skip
    cats = pre._categoricals(X)
    stacked = np.hstack([
        pre.weights_[g] * np.asarray(t.transform(cats[pre._columns[g]]), dtype=float)
        for g, t in pre.transformers_.items()
    ])  # fmt: skip
    assert len(pre.transformers_) > 1 and len(set(pre.weights_.values())) > 1
    out = pre.transform(X)
    assert out.flags.c_contiguous and out.shape == stacked.shape
    assert out.tobytes() == stacked.tobytes()
    pd.testing.assert_frame_equal(X, _frame())  # the categorical columns replaced in a copy
