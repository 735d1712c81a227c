"""Reducer stages: the space a clusterer works in (identity, PCA or UMAP).

Every reducer follows the scikit-learn transformer contract, so a stage is swapped by
passing another object, and skipped with `IdentityReducer` rather than a flag.
"""

from __future__ import annotations

import os
import sys
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "DENSITY_SPACES",
    "density_reducer",
    "IdentityReducer",
    "PCAReducer",
    "UMAPReducer",
    "import_umap",
    "numba_cache_dir",
]


def numba_cache_dir() -> Path:
    """Return the folder where numba keeps compiled UMAP code between processes.

    ``$PERSONAS_CACHE_DIR/numba`` when set, else ``.cache/numba`` in the checkout (beside
    ``pyproject.toml``), else ``~/.cache/personas/numba``.
    """
    if os.environ.get("PERSONAS_CACHE_DIR"):
        return Path(os.environ["PERSONAS_CACHE_DIR"]) / "numba"
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").exists():
        return root / ".cache" / "numba"
    return Path.home() / ".cache" / "personas" / "numba"


def import_umap():
    """Import umap with numba's on-disk cache on, so its compilation is paid once.

    UMAP and pynndescent compile dozens of numba functions on first use: 20-60 s in every
    fresh process on two cores, more than fitting small data. Few of them ask numba to
    cache the result (``cache=True``), so while umap is imported for the first time every
    ``numba.njit`` / ``numba.jit`` defaults to ``cache=True``, with the cache in
    `numba_cache_dir` (unless ``NUMBA_CACHE_DIR`` is set). Functions numba cannot cache
    (pynndescent's search, which holds dynamic globals) are not used: `UMAPReducer` finds
    neighbours with scikit-learn. ``make setup`` compiles them once per environment.
    """
    if "umap" in sys.modules:
        return sys.modules["umap"]
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = str(numba_cache_dir())
    import numba
    import numba.core.config

    numba.core.config.reload_config()  # numba may have been imported before the variable was set

    def cached(decorator):
        def wrapper(*args, **kwargs):
            kwargs.setdefault("cache", True)
            return decorator(*args, **kwargs)

        return wrapper

    njit, jit = numba.njit, numba.jit
    numba.njit, numba.jit = cached(njit), cached(jit)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=numba.NumbaWarning)
            import umap
    finally:
        numba.njit, numba.jit = njit, jit
    return umap


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
    linearly), on their exact nearest neighbours (scikit-learn). Every other customer, in
    `fit` and `transform`, is placed at the membership-weighted mean of its exact nearest
    sample customers' coordinates (UMAP's own initialisation of new points, without the
    stochastic refinement): so a customer's coordinates never depend on who else is in the
    batch. A fixed ``random_state`` makes UMAP single-threaded and reproducible.

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
    neighbors_ : sklearn.neighbors.NearestNeighbors
        Exact search over the sample customers (their scaled features).
    sample_features_ : ndarray of shape (n_sample, n_features)
        The sample customers' scaled features.
    sample_embedding_ : ndarray of shape (n_sample, n_components)
        The sample customers' coordinates.
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
        umap = import_umap()
        X = validate_data(self, X, dtype=np.float64)
        rng = check_random_state(self.random_state)
        n = X.shape[0]
        sample = (
            np.sort(rng.choice(n, self.sample_size, replace=False))
            if n > self.sample_size
            else np.arange(n)
        )
        seed = int(rng.randint(np.iinfo(np.int32).max))
        k = min(self.n_neighbors, max(2, len(sample) - 1))
        self.sample_features_ = X[sample]
        self.neighbors_ = NearestNeighbors(n_neighbors=k).fit(self.sample_features_)
        dist, idx = self.neighbors_.kneighbors(X[sample])  # each row is its own first neighbour
        self.umap_ = umap.UMAP(
            n_components=self.n_components,
            n_neighbors=k,
            min_dist=self.min_dist,
            random_state=seed,
            n_jobs=1,
            precomputed_knn=(idx.astype(np.int32), dist.astype(np.float32), None),
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")
            warnings.filterwarnings("ignore", message=".*gradient function is not yet.*")
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            self.sample_embedding_ = np.asarray(self.umap_.fit_transform(X[sample]), float)
        self.embedding_ = np.empty((n, self.n_components))
        self.embedding_[sample] = self.sample_embedding_
        rest = np.setdiff1d(np.arange(n), sample)
        if rest.size:
            self.embedding_[rest] = self._place(X[rest])
        return self

    def _place(self, X: np.ndarray) -> np.ndarray:
        """Place rows at the membership-weighted mean of their nearest sample customers.

        A row equal to a sample customer's gets that customer's fitted coordinates.
        """
        from umap.umap_ import (
            compute_membership_strengths,
            init_graph_transform,
            smooth_knn_dist,
        )

        k = self.neighbors_.n_neighbors
        dist, idx = self.neighbors_.kneighbors(X)
        dist = dist.astype(np.float32)
        sigmas, rhos = smooth_knn_dist(dist, float(k), local_connectivity=0.0)
        rows, cols, vals, _ = compute_membership_strengths(
            idx.astype(np.int32), dist, sigmas, rhos, bipartite=True
        )
        shape = (X.shape[0], self.sample_embedding_.shape[0])
        graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=shape).tocsr()
        graph.eliminate_zeros()
        placed = np.asarray(init_graph_transform(graph, self.sample_embedding_), float)
        # a sample customer again (up to the rounding of the distance): its fitted coordinates
        same = np.all(X == self.sample_features_[idx[:, 0]], axis=1)
        placed[same] = self.sample_embedding_[idx[same, 0]]
        return placed

    def fit_transform(self, X, y=None, **fit_params):
        """Fit and return the embedding of ``X`` (without embedding it twice)."""
        return self.fit(X).embedding_

    def transform(self, X):
        """Embed new rows: each at the weighted mean of its nearest sample customers.

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
        import_umap()
        return self._place(validate_data(self, X, reset=False, dtype=np.float64))


#: The spaces HDBSCAN can work in (``model.density_space``).
DENSITY_SPACES = ("umap", "pca", "scaled")


def density_reducer(space: str, umap_params: dict | None = None, random_state: int = 0):
    """Return the unfitted reducer of a density space.

    Parameters
    ----------
    space : {"umap", "pca", "scaled"}
        ``umap``: a seeded `UMAPReducer` (``umap_params``); ``pca``: a seeded `PCAReducer`
        keeping the components that explain 90% of the variance; ``scaled``: the scaled
        features as they are (`IdentityReducer`).
    umap_params : dict, optional
        Parameters of `UMAPReducer`.
    random_state : int, default=0
        Seed of the reducer.

    Returns
    -------
    object
        A scikit-learn transformer.

    Raises
    ------
    ValueError
        For another space.
    """
    if space == "umap":
        return UMAPReducer(**{"random_state": random_state, **(umap_params or {})})
    if space == "pca":
        return PCAReducer(random_state=random_state)
    if space == "scaled":
        return IdentityReducer()
    raise ValueError(f"density_space should be one of {', '.join(DENSITY_SPACES)}; got {space!r}.")
