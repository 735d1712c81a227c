"""K-means with the number of personas chosen from the data."""

from __future__ import annotations

import logging
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin, _fit_context
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["AutoKMeans", "order_by_size"]

logger = logging.getLogger(__name__)


def order_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber cluster labels so that 0 is the largest cluster; -1 (noise) stays -1.

    Ties in size are broken by the old label, so the result is deterministic.

    Parameters
    ----------
    labels : ndarray of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    ndarray of shape (n_samples,)
        The same partition, renumbered by decreasing size.
    """
    labels = np.asarray(labels)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(x, -1) for x in labels], dtype=int) if len(labels) else labels


class AutoKMeans(TransformerMixin, ClusterMixin, BaseEstimator):
    """K-means that picks its number of clusters by silhouette on a sample.

    Each k in ``[k_min, k_max]`` is fitted on a random sample of at most ``sample_size``
    rows and scored there (silhouette is quadratic in the rows, so it never sees them
    all). The k with the best silhouette wins; k values within ``tie_tolerance`` of it
    are ties, broken by the mean rank of silhouette, Calinski-Harabasz (higher is
    better) and Davies-Bouldin (lower is better), smaller k first on equal ranks. The
    chosen k is then refitted on every row.

    Parameters
    ----------
    k_min : int, default=2
        Smallest number of clusters tried.
    k_max : int, default=10
        Largest number of clusters tried.
    n_init : int, default=4
        K-means restarts per k.
    sample_size : int, default=10000
        Rows used for the search and the scores.
    tie_tolerance : float, default=0.005
        Silhouette margin within which two k values count as tied.
    random_state : int, RandomState instance or None, default=None
        Seed for sampling and k-means.

    Attributes
    ----------
    n_clusters_ : int
        The chosen number of clusters.
    cluster_centers_ : ndarray of shape (n_clusters_, n_features)
        Centres of the final model.
    labels_ : ndarray of shape (n_samples,)
        Cluster of each row seen in `fit`.
    scores_ : pandas.DataFrame
        Per k tried: silhouette, calinski_harabasz, davies_bouldin, inertia.
    n_features_in_ : int
        Number of features seen in `fit`.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, _ = make_blobs(n_samples=300, centers=4, random_state=0)
    >>> AutoKMeans(k_max=6, random_state=0).fit(X).n_clusters_
    4
    """

    _parameter_constraints: dict = {
        "k_min": [Interval(Integral, 2, None, closed="left")],
        "k_max": [Interval(Integral, 2, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "sample_size": [Interval(Integral, 10, None, closed="left")],
        "tie_tolerance": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        k_min=2,
        k_max=10,
        n_init=4,
        sample_size=10000,
        tie_tolerance=0.005,
        random_state=None,
    ):
        self.k_min = k_min
        self.k_max = k_max
        self.n_init = n_init
        self.sample_size = sample_size
        self.tie_tolerance = tie_tolerance
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Choose k and fit k-means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : AutoKMeans
            The fitted model.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        n = X.shape[0]
        if self.k_min > self.k_max:
            raise ValueError(f"k_min={self.k_min} should be <= k_max={self.k_max}.")
        if n < self.k_min + 1:
            raise ValueError(f"n_samples={n} should be > k_min={self.k_min}.")
        rng = check_random_state(self.random_state)
        seed = rng.randint(np.iinfo(np.int32).max)
        sample = rng.choice(n, self.sample_size, replace=False) if n > self.sample_size else None
        Xs = X if sample is None else X[sample]
        k_hi = min(self.k_max, Xs.shape[0] - 1, len(np.unique(Xs, axis=0)) - 1)
        rows = []
        for k in range(self.k_min, max(k_hi, self.k_min) + 1):
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=seed).fit(Xs)
            if len(np.unique(km.labels_)) < 2:
                continue
            rows.append(
                {
                    "k": k,
                    "silhouette": silhouette_score(Xs, km.labels_),
                    "calinski_harabasz": calinski_harabasz_score(Xs, km.labels_),
                    "davies_bouldin": davies_bouldin_score(Xs, km.labels_),
                    "inertia": km.inertia_,
                }
            )
            logger.info("k=%d silhouette=%.3f", k, rows[-1]["silhouette"])
        if not rows:
            raise ValueError(
                "All customers have the same features, so there are no segments to find."
            )
        self.scores_ = pd.DataFrame(rows).set_index("k")
        self.n_clusters_ = self._choose(self.scores_)
        self._kmeans = KMeans(n_clusters=self.n_clusters_, n_init=self.n_init, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                self._kmeans.fit(X)
            except ConvergenceWarning as warning:
                warnings.warn(str(warning), ConvergenceWarning, stacklevel=2)
        self.cluster_centers_ = self._kmeans.cluster_centers_
        self.labels_ = self._kmeans.labels_
        return self

    def _choose(self, scores: pd.DataFrame) -> int:
        best = scores["silhouette"].max()
        tied = scores[scores["silhouette"] >= best - self.tie_tolerance]
        rank = (
            tied["silhouette"].rank(ascending=False)
            + tied["calinski_harabasz"].rank(ascending=False)
            + tied["davies_bouldin"].rank()
        )
        return int(rank.sort_values(kind="stable").index[0])

    def transform(self, X) -> np.ndarray:
        """Distance of each row to each cluster centre.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.

        Returns
        -------
        ndarray of shape (n_samples, n_clusters_)
            Euclidean distances.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._kmeans.transform(X)

    def predict(self, X) -> np.ndarray:
        """Nearest cluster of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.

        Returns
        -------
        ndarray of shape (n_samples,)
            Cluster labels.
        """
        return np.argmin(self.transform(X), axis=1)

    def confidence(self, X) -> np.ndarray:
        """How firmly each row sits in its cluster: ``1 - d1 / d2``.

        ``d1`` and ``d2`` are the distances to the nearest and second-nearest centres, so
        a customer at a centre scores 1 and one on the border between two clusters 0.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.

        Returns
        -------
        ndarray of shape (n_samples,)
            Confidence in [0, 1].
        """
        d = np.sort(self.transform(X), axis=1)
        if d.shape[1] < 2:
            return np.ones(d.shape[0])
        return np.clip(1.0 - d[:, 0] / np.maximum(d[:, 1], 1e-12), 0.0, 1.0)

    def nearest(self, X) -> np.ndarray:
        """Nearest cluster of each row: k-means places everyone (the clusterer contract)."""
        return self.predict(X)

    def outlier_scores(self, X) -> np.ndarray:
        """Zero for every row: k-means calls nobody an outlier; low confidence flags them."""
        return np.zeros(len(X))
