"""K-means refined in the pooled within-persona metric (`models.pooled`)."""

import pickle

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from models.clustering import AutoKMeans
from models.pooled import whitener


def _tilted(seed: int, n: int = 600):
    """Three personas side by side across a shared, strongly correlated spread."""
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.95], [0.95, 1.0]])
    truth = np.repeat([0, 1, 2], n)
    means = np.array([[0.0, 0.0], [-1.2, 1.2], [1.2, -1.2]])
    X = rng.multivariate_normal([0, 0], cov, size=3 * n) + means[truth]
    return np.hstack([X, rng.normal(size=(3 * n, 3)) * 0.3]), truth


@pytest.mark.parametrize("seed", [0, 1])
def test_pooled_metric_follows_the_spread_inside_personas(seed):
    X, truth = _tilted(seed)
    fit = {"k_min": 3, "k_max": 3, "criterion": "silhouette", "random_state": 0}
    euclidean = AutoKMeans(metric="euclidean", **fit).fit(X)
    pooled = AutoKMeans(metric="pooled", **fit).fit(X)
    assert adjusted_rand_score(truth, euclidean.labels_) < 0.6  # k-means cuts across them
    assert adjusted_rand_score(truth, pooled.labels_) > 0.95
    assert pooled.pooled_ is not None and euclidean.pooled_ is None
    # the served model places the rows it was fitted on where the fit placed them
    np.testing.assert_array_equal(pooled.predict(X), pooled.labels_)
    again = pickle.loads(pickle.dumps(pooled))
    np.testing.assert_array_equal(again.predict(X), pooled.labels_)


def test_whitened_rows_have_identity_pooled_covariance():
    X, truth = _tilted(0)
    W = whitener(X, truth, 3, shrinkage=0.0)
    Z = X @ W
    R = Z - np.array([Z[truth == c].mean(axis=0) for c in range(3)])[truth]
    np.testing.assert_allclose(R.T @ R / len(Z), np.eye(X.shape[1]), atol=1e-5)


def test_a_model_served_before_the_pooled_metric_still_places_customers():
    X, _ = _tilted(0, n=100)
    model = AutoKMeans(k_min=3, k_max=3, criterion="silhouette", random_state=0).fit(X)
    del model.pooled_  # as unpickled from a champion logged by an earlier version
    np.testing.assert_array_equal(model.predict(X), model.labels_)
