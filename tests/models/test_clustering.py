"""Tests for ``models.clustering``: AutoKMeans, order_by_size and lookup."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from models.clustering import AutoKMeans, lookup, order_by_size

CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=400, centers=CENTRES, cluster_std=1.0, random_state=42)


@pytest.fixture(scope="module")
def fitted(blobs) -> AutoKMeans:
    return AutoKMeans(k_min=2, k_max=8, random_state=0).fit(blobs[0])


# --------------------------------------------------------------------------- order_by_size


def test_order_by_size_renumbers_largest_first_keeping_noise():
    labels = np.array([0, 2, 2, 2, 0, 1, -1, 1, 2])
    # sizes: 2 -> 4, 0 -> 2, 1 -> 2 (tie, broken by the old label: 0 before 1)
    np.testing.assert_array_equal(order_by_size(labels), [1, 0, 0, 0, 1, 2, -1, 2, 0])
    # tie between the largest: 1 and 2 both of size 3
    labels = np.array([2, 2, 2, 0, 1, 1, -1, 0, 1])
    np.testing.assert_array_equal(order_by_size(labels), [1, 1, 1, 2, 0, 0, -1, 2, 0])


def test_order_by_size_ties_and_gaps_are_deterministic():
    labels = np.array([7, 3, 3, 7, 5, -1])
    # 3 and 7 tie at size 2: the smaller old label (3) gets the smaller new id
    np.testing.assert_array_equal(order_by_size(labels), [1, 0, 0, 1, 2, -1])
    assert order_by_size(labels).dtype.kind == "i"


def test_order_by_size_edge_cases():
    np.testing.assert_array_equal(order_by_size(np.array([-1, -1])), [-1, -1])
    assert order_by_size(np.array([], dtype=int)).size == 0
    assert order_by_size([4, 4, 9]).tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    "mapping",
    [{0: 3, 1: 0, 2: 1, 5: 2}, {-1: -1, 3: 0}, {}, {10**9: 1, 0: 2}],
    ids=["dense", "noise", "empty", "sparse"],
)
def test_lookup_is_the_loop_it_replaces(mapping):
    rng = np.random.default_rng(0)
    for labels in (rng.integers(-1, 7, 500), np.array([10**9, 0, -1, 5]), np.array([], int)):
        expected = np.array([mapping.get(int(x), -1) for x in labels], dtype=int)
        got = lookup(labels, mapping, -1)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    names = {0: "Power users", 2: "Dormant"}
    ids = rng.integers(-1, 4, 200)
    got = lookup(ids, names, "Unassigned", dtype=object)
    assert got.tolist() == [names.get(i, "Unassigned") for i in ids]


# --------------------------------------------------------------------------- AutoKMeans


def test_finds_four_blobs(blobs, fitted):
    _, y = blobs
    assert fitted.n_clusters_ == 4
    assert adjusted_rand_score(y, fitted.labels_) == 1.0
    assert fitted.cluster_centers_.shape == (4, 2)
    assert fitted.n_features_in_ == 2


def test_scores_has_one_row_per_k(fitted):
    assert fitted.scores_.index.tolist() == list(range(2, 9))
    assert list(fitted.scores_.columns) == [
        "silhouette",
        "calinski_harabasz",
        "davies_bouldin",
        "inertia",
    ]
    assert fitted.scores_["silhouette"].idxmax() == 4


def test_k_range_capped_by_distinct_rows():
    X = np.arange(12, dtype=float).reshape(6, 2)
    model = AutoKMeans(k_min=2, k_max=10, random_state=0).fit(X)
    # at most n_distinct - 1 = 5 clusters, so silhouette is defined
    assert model.scores_.index.tolist() == [2, 3, 4, 5]


def test_sample_size_is_deterministic(blobs):
    X, y = blobs
    first = AutoKMeans(k_max=6, sample_size=60, random_state=3).fit(X)
    second = AutoKMeans(k_max=6, sample_size=60, random_state=3).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    pd.testing.assert_frame_equal(first.scores_, second.scores_)
    assert first.n_clusters_ == 4
    assert first.labels_.shape == (400,)
    assert adjusted_rand_score(y, first.labels_) == 1.0


def test_candidates_scored_on_every_core_give_the_one_core_scores(monkeypatch):
    from models import clustering

    X, _ = make_blobs(n_samples=4000, centers=6, n_features=5, random_state=7)
    monkeypatch.setattr(clustering, "cpu_count", lambda: 4)
    many = AutoKMeans(k_max=9, random_state=2).fit(X)
    monkeypatch.setattr(clustering, "cpu_count", lambda: 1)
    one = AutoKMeans(k_max=9, random_state=2).fit(X)
    assert len(many.scores_) > 3  # silhouettes on a drawn 3,000 of the 4,000 rows
    pd.testing.assert_frame_equal(many.scores_, one.scores_, check_exact=True)
    np.testing.assert_array_equal(many.labels_, one.labels_)


def test_transform_gives_distances_to_the_centres_and_predict_the_nearest(blobs, fitted):
    X, _ = blobs
    distances = fitted.transform(X)
    expected = np.linalg.norm(X[:, None, :] - fitted.cluster_centers_[None, :, :], axis=2)
    np.testing.assert_allclose(distances, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(fitted.predict(X), distances.argmin(axis=1))
    np.testing.assert_array_equal(fitted.predict(X), fitted.labels_)
    # one customer at a time: the same distances as in the batch
    np.testing.assert_allclose(fitted.transform(X[7:8])[0], distances[7])


def test_confidence_high_at_centres_low_on_borders(blobs, fitted):
    X, _ = blobs
    conf = fitted.confidence(X)
    assert conf.shape == (400,)
    assert np.all((conf >= 0) & (conf <= 1))
    at_centres = fitted.confidence(CENTRES)
    # halfway between two neighbouring centres: equidistant from both
    borders = fitted.confidence(np.array([[5.0, 0.0], [0.0, 5.0], [5.0, 10.0], [5.0, 5.0]]))
    assert np.all(at_centres > 0.8)
    assert np.all(borders < 0.15)
    assert fitted.confidence(fitted.cluster_centers_) == pytest.approx(np.ones(4))


def test_choose_breaks_silhouette_ties_by_mean_rank():
    model = AutoKMeans(tie_tolerance=0.005)
    scores = pd.DataFrame(
        {
            "silhouette": [0.600, 0.598, 0.50],
            "calinski_harabasz": [100.0, 200.0, 300.0],
            "davies_bouldin": [0.5, 0.4, 0.3],
        },
        index=pd.Index([2, 3, 4], name="k"),
    )
    # k=4 is outside the tolerance; k=3 ranks 2+1+1 = 4 against k=2's 1+2+2 = 5
    assert model._choose(scores) == 3
    # equal mean ranks (1.5+2+1 vs 1.5+1+2): the smaller k wins
    scores = pd.DataFrame(
        {
            "silhouette": [0.6, 0.6],
            "calinski_harabasz": [100.0, 200.0],
            "davies_bouldin": [0.4, 0.5],
        },
        index=pd.Index([2, 3], name="k"),
    )
    assert model._choose(scores) == 2


def test_error_k_min_above_k_max(blobs):
    with pytest.raises(ValueError, match=r"k_min=5 should be <= k_max=3"):
        AutoKMeans(k_min=5, k_max=3).fit(blobs[0])


def test_error_too_few_samples():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    with pytest.raises(ValueError, match=r"n_samples=3 should be > k_min=3"):
        AutoKMeans(k_min=3, k_max=4).fit(X)


@pytest.mark.filterwarnings(
    "ignore:Number of distinct clusters:sklearn.exceptions.ConvergenceWarning"
)
def test_error_constant_data():
    X = np.ones((30, 3))
    with pytest.raises(ValueError, match="same features"):
        AutoKMeans(random_state=0).fit(X)


def test_error_nan_and_not_fitted(blobs):
    X = blobs[0].copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        AutoKMeans().fit(X)
    with pytest.raises(NotFittedError):
        AutoKMeans().predict(blobs[0])


def test_error_wrong_number_of_features(fitted):
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.zeros((2, 3)))


SKLEARN_PARAMS = {"k_min": 2, "k_max": 3, "sample_size": 50, "random_state": 0}


def test_autokmeans_works_as_a_transformer_in_a_pipeline():
    X, y = make_blobs(n_samples=60, centers=[[0.0, 0.0], [8.0, 8.0]], random_state=0)
    assert AutoKMeans().__sklearn_tags__().transformer_tags is not None
    pipeline = make_pipeline(StandardScaler(), AutoKMeans(**SKLEARN_PARAMS))
    distances = pipeline.fit_transform(X)
    model = pipeline[-1]
    assert model.n_clusters_ == 2 and distances.shape == (60, 2)
    scaled = pipeline[0].transform(X)
    np.testing.assert_allclose(distances, model.transform(scaled))
    np.testing.assert_allclose(
        distances.min(axis=1),
        np.linalg.norm(scaled - model.cluster_centers_[model.labels_], axis=1),
    )
    assert adjusted_rand_score(y, distances.argmin(axis=1)) == 1.0


@parametrize_with_checks([AutoKMeans(**SKLEARN_PARAMS)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
