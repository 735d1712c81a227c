"""HDBSCAN as a persona clusterer: fitted on a sample, able to place new customers."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["DensityClusterer"]


class DensityClusterer(ClusterMixin, BaseEstimator):
    """HDBSCAN with a minimum cluster size set as a share of the customers.

    HDBSCAN is fitted on at most ``sample_size`` rows (with prediction data); every other
    row is placed with ``hdbscan.approximate_predict``, so the cost stays linear in the
    number of customers. Rows HDBSCAN leaves as noise get label -1 and confidence 0.

    Parameters
    ----------
    min_cluster_share : float, default=0.02
        Smallest persona, as a share of the fitted rows (at least 5 rows).
    min_samples : int or None, default=10
        HDBSCAN's ``min_samples`` (how conservative the density estimate is); None uses
        ``min_cluster_size``.
    sample_size : int, default=20000
        Rows used for the fit.
    random_state : int, RandomState instance or None, default=None
        Seed for the sample.

    Attributes
    ----------
    hdbscan_ : hdbscan.HDBSCAN
        The fitted HDBSCAN (with prediction data).
    labels_ : ndarray of shape (n_samples,)
        Cluster of each row seen in `fit`; -1 is noise.
    probabilities_ : ndarray of shape (n_samples,)
        Membership strength of each row seen in `fit` (0 for noise).
    outlier_scores_ : ndarray of shape (n_samples,)
        GLOSH outlier score of each row seen in `fit` (0 typical, near 1 an outlier).
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Mean of each cluster's members, used to place noise on request.
    n_features_in_ : int
        Number of features seen in `fit`.
    """

    _parameter_constraints: dict = {
        "min_cluster_share": [Interval(Real, 0, 1, closed="neither")],
        "min_samples": [Interval(Integral, 1, None, closed="left"), None],
        "sample_size": [Interval(Integral, 10, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self, *, min_cluster_share=0.02, min_samples=10, sample_size=20000, random_state=None
    ):
        self.min_cluster_share = min_cluster_share
        self.min_samples = min_samples
        self.sample_size = sample_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit HDBSCAN on a sample and label every row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Customer coordinates (scaled features or an embedding).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : DensityClusterer
            The fitted model.
        """
        import hdbscan

        X = validate_data(self, X, dtype=np.float64, copy=True)
        n = X.shape[0]
        rng = check_random_state(self.random_state)
        sample = (
            np.sort(rng.choice(n, self.sample_size, replace=False))
            if n > self.sample_size
            else None
        )
        Xs = X if sample is None else X[sample]
        size = max(5, int(round(self.min_cluster_share * len(Xs))))
        if len(Xs) < 2 * size:
            raise ValueError(
                f"n_samples={len(Xs)} is too few for min_cluster_size={size} "
                f"(min_cluster_share={self.min_cluster_share})."
            )
        self.hdbscan_ = hdbscan.HDBSCAN(
            min_cluster_size=size,
            min_samples=min(self.min_samples, size) if self.min_samples else None,
            prediction_data=True,
        ).fit(Xs)
        if sample is None:
            self.labels_ = self.hdbscan_.labels_.astype(int)
            self.probabilities_ = self.hdbscan_.probabilities_.astype(float)
            self.outlier_scores_ = np.nan_to_num(self.hdbscan_.outlier_scores_.astype(float))
        else:
            self.labels_, self.probabilities_ = self._predict(X)
            self.outlier_scores_ = self.outlier_scores(X)
        members = [X[self.labels_ == c].mean(axis=0) for c in range(self.labels_.max() + 1)]
        self.cluster_centers_ = np.array(members).reshape(len(members), X.shape[1])
        return self

    def _predict(self, X):
        import hdbscan

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="hdbscan")
            labels, strengths = hdbscan.approximate_predict(self.hdbscan_, X)
        return np.asarray(labels, dtype=int), np.asarray(strengths, dtype=float)

    def outlier_scores(self, X):
        """GLOSH outlier score of each row against the fitted model (higher: more unusual).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Customer coordinates in the space of `fit`.

        Returns
        -------
        ndarray of shape (n_samples,)
            Scores in [0, 1].
        """
        import hdbscan

        check_is_fitted(self, "hdbscan_")
        X = validate_data(self, X, reset=False, dtype=np.float64, copy=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="hdbscan")
            scores = hdbscan.prediction.approximate_predict_scores(self.hdbscan_, X)
        return np.clip(np.nan_to_num(np.asarray(scores, dtype=float)), 0.0, 1.0)

    def predict(self, X):
        """Place rows in the fitted clusters; -1 where HDBSCAN would call them noise.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Customer coordinates in the space of `fit`.

        Returns
        -------
        ndarray of shape (n_samples,)
            Cluster labels, -1 for noise.
        """
        check_is_fitted(self)
        return self._predict(validate_data(self, X, reset=False, dtype=np.float64, copy=True))[0]

    def confidence(self, X):
        """Membership strength of each row in its cluster (0 for noise).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Customer coordinates in the space of `fit`.

        Returns
        -------
        ndarray of shape (n_samples,)
            Values in [0, 1].
        """
        check_is_fitted(self)
        return self._predict(validate_data(self, X, reset=False, dtype=np.float64, copy=True))[1]

    def nearest(self, X):
        """Return the cluster whose member mean is nearest to each row (noise included).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Customer coordinates in the space of `fit`.

        Returns
        -------
        ndarray of shape (n_samples,)
            Cluster labels, never -1 (unless no cluster was found).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64, copy=True)
        if len(self.cluster_centers_) == 0:
            return np.full(X.shape[0], -1)
        d = ((X[:, None, :] - self.cluster_centers_[None, :, :]) ** 2).sum(axis=2)
        return np.argmin(d, axis=1)
