"""Reducer stages: the space a clusterer works in (identity, PCA or UMAP).

Every reducer follows the scikit-learn transformer contract, so a stage is swapped by
passing another object, and skipped with `IdentityReducer` rather than a flag.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.decomposition import PCA
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["IdentityReducer", "PCAReducer", "UMAPReducer"]


class IdentityReducer(TransformerMixin, BaseEstimator):
    """Keep the scaled features as they are (the null reducer).

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen in `fit`.
    """

    def fit(self, X, y=None):
        """Record the number of features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : IdentityReducer
            The fitted reducer.
        """
        validate_data(self, X)
        return self

    def transform(self, X):
        """Return ``X`` unchanged (as a float array).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            The same values.
        """
        check_is_fitted(self)
        return validate_data(self, X, reset=False)

    def __sklearn_is_fitted__(self):
        return hasattr(self, "n_features_in_")


class PCAReducer(TransformerMixin, BaseEstimator):
    """Principal components of the scaled features.

    Parameters
    ----------
    n_components : int or float, default=0.9
        Components kept, or the share of variance to keep.
    random_state : int, RandomState instance or None, default=None
        Seed of the randomized solver.

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
        The fitted PCA.
    n_features_in_ : int
        Number of features seen in `fit`.
    """

    def __init__(self, *, n_components=0.9, random_state=None):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit the components.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : PCAReducer
            The fitted reducer.
        """
        X = validate_data(self, X)
        self.pca_ = PCA(n_components=self.n_components, random_state=self.random_state).fit(X)
        return self

    def transform(self, X):
        """Project onto the components.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            Coordinates in the principal components.
        """
        check_is_fitted(self)
        return self.pca_.transform(validate_data(self, X, reset=False))


class UMAPReducer(TransformerMixin, BaseEstimator):
    """A seeded UMAP embedding, fitted on a sample and applied to everyone.

    UMAP is fitted on at most ``sample_size`` customers (its cost grows faster than
    linearly); the others are placed with ``UMAP.transform``. A fixed ``random_state``
    makes UMAP single-threaded and reproducible.

    Parameters
    ----------
    n_components : int, default=5
        Dimensions of the embedding (a few more than 2 keep density structure for
        HDBSCAN; the report draws its own 2-D map).
    n_neighbors : int, default=30
        Size of the neighbourhood UMAP preserves.
    min_dist : float, default=0.0
        Minimum distance between embedded points; 0 packs clusters tightly.
    sample_size : int, default=5000
        Customers used for the fit.
    random_state : int, default=0
        Seed for the sample and for UMAP.

    Attributes
    ----------
    umap_ : umap.UMAP
        The fitted UMAP.
    embedding_ : ndarray of shape (n_samples, n_components)
        Embedding of the rows seen in `fit`.
    n_features_in_ : int
        Number of features seen in `fit`.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "n_neighbors": [Interval(Integral, 2, None, closed="left")],
        "min_dist": [Interval(Real, 0, None, closed="left")],
        "sample_size": [Interval(Integral, 10, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self, *, n_components=5, n_neighbors=30, min_dist=0.0, sample_size=5000, random_state=0
    ):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.sample_size = sample_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit UMAP on a sample and embed every row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : UMAPReducer
            The fitted reducer.
        """
        import umap  # imported here: it costs seconds and only this stage needs it

        X = validate_data(self, X, dtype=np.float64)
        rng = check_random_state(self.random_state)
        n = X.shape[0]
        sample = (
            np.sort(rng.choice(n, self.sample_size, replace=False))
            if n > self.sample_size
            else None
        )
        seed = int(rng.randint(np.iinfo(np.int32).max))
        self.umap_ = umap.UMAP(
            n_components=self.n_components,
            n_neighbors=min(self.n_neighbors, max(2, (n if sample is None else len(sample)) - 1)),
            min_dist=self.min_dist,
            random_state=seed,
            n_jobs=1,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")
            warnings.filterwarnings(
                "ignore", message=".*gradient function is not yet implemented.*"
            )
            fitted = self.umap_.fit_transform(X if sample is None else X[sample])
        if sample is None:
            self.embedding_ = np.asarray(fitted)
        else:
            embedding = np.empty((n, self.n_components))
            rest = np.setdiff1d(np.arange(n), sample)
            embedding[sample] = fitted
            embedding[rest] = self.umap_.transform(X[rest])
            self.embedding_ = embedding
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit and return the embedding of ``X`` (without embedding it twice)."""
        return self.fit(X).embedding_

    def transform(self, X):
        """Embed new rows with the fitted UMAP.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Scaled customer features.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            UMAP coordinates.
        """
        check_is_fitted(self)
        return self.umap_.transform(validate_data(self, X, reset=False, dtype=np.float64))
