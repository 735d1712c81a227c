"""K-means with the number of personas chosen from the data."""

from __future__ import annotations

import copy
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
import pandas as pd
from joblib import cpu_count
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin, _fit_context
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    euclidean_distances,
    silhouette_score,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from models.clusterability import divisive_search, separation
from models.pooled import refine_pooled

__all__ = ["AutoKMeans", "lookup", "order_by_size"]

logger = logging.getLogger(__name__)
_progress = logging.getLogger("personas.progress")  # shown by pipelines.run.stage


def lookup(labels, mapping: dict, default, dtype=int) -> np.ndarray:
    """Return ``[mapping.get(x, default) for x in labels]`` as an array, without the loop.

    Labels are small integers (cluster and persona numbers), so each value is read from
    a table indexed by label; a Python loop over three million customers takes a second.

    Parameters
    ----------
    labels : array-like of int
        Cluster or persona numbers.
    mapping : dict of int to object
        What each label becomes.
    default : object
        What a label missing from ``mapping`` becomes.
    dtype : data-type, default=int
        The result's type (``object`` for names).

    Returns
    -------
    ndarray of shape (len(labels),)
    """
    labels = np.asarray(labels, dtype=np.int64)
    if not labels.size:
        return np.array([], dtype=dtype)
    low, high = int(labels.min()), int(labels.max())
    if high - low > 4 * len(mapping) + 1024:  # sparse labels: one lookup per distinct one
        distinct, inverse = np.unique(labels, return_inverse=True)
        values = [mapping.get(int(x), default) for x in distinct]
        return np.array(values, dtype=dtype)[inverse]
    table = np.full(high - low + 1, default, dtype=dtype)
    for key, value in mapping.items():
        if low <= key <= high:
            table[key - low] = value
    return table[labels - low]


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
    mapping = {int(old): new for new, old in enumerate(order)}
    return lookup(labels, mapping, -1) if len(labels) else labels


class AutoKMeans(TransformerMixin, ClusterMixin, BaseEstimator):
    """K-means that picks its number of clusters on a sample.

    Each k is fitted on a random sample of at most ``sample_size`` rows and scored there.

    With ``criterion="valley"`` the number is the number of groups that density valleys
    separate and that differ enough to be personas (`models.clusterability.divisive_search`):
    the sample is split in two while some split leaves a valley between the halves, each
    split refined by k-means, and neighbouring groups closer than ``min_distance`` times
    their customers' spread are merged back. At least ``k_min`` are kept; partitions up to
    ``k_max`` are scored so that any of them can be forced. When no split leaves a valley
    the customers form a continuum, and ``k_min`` slices are kept.

    With ``criterion="silhouette"`` each k in ``[k_min, k_max]`` is fitted ``n_init``
    times and the k with the best silhouette wins; k values within ``tie_tolerance`` of
    it are ties, broken by the mean rank of silhouette, Calinski-Harabasz (higher is
    better) and Davies-Bouldin (lower is better), smaller k first on equal ranks.

    Either way the chosen run's centres start k-means on every row. With
    ``metric="pooled"`` that partition is then refined on the sample in the metric of its
    pooled within-cluster covariance (`models.pooled.refine_pooled`: borders that follow
    the spread inside the clusters), and every row placed at the nearest refined centre
    in that metric. Silhouette is quadratic in the rows, so it is computed on at most
    3,000 of the sample.

    Parameters
    ----------
    k_min : int, default=2
        Smallest number of clusters tried.
    k_max : int, default=10
        Largest number of clusters tried.
    n_init : int, default=4
        K-means restarts per k (``silhouette``).
    sample_size : int, default=10000
        Rows used for the search and the scores.
    tie_tolerance : float, default=0.005
        Silhouette margin within which two k values count as tied (``silhouette``).
    criterion : {"silhouette", "valley"}, default="silhouette"
        How k is chosen.
    max_valley : float, default=0.6
        Valley ratio at or below which a split separates two groups (``valley``).
    min_valley_z : float, default=2.0
        Z-score the valley must reach (``valley``).
    min_distance : float, default=0.85
        Neighbours closer than this many spreads are one persona (``valley``).
    min_share : float, default=0.02
        Smallest group a split may make, as a share of the sample (``valley``).
    min_size : int, default=20
        Smallest group a split may make, in rows of the sample (``valley``; the larger of
        the two applies).
    blocks : list of list of int, optional
        Columns of one discrete attribute each, and one block of the others (``valley``):
        a split must then also beat the same customers with their attributes shuffled
        independently (see `models.clusterability.divisive_search`).
    metric : {"euclidean", "pooled"}, default="euclidean"
        Distance of the final model: k-means' own, or the pooled within-cluster
        covariance's (see above). The search is k-means' either way.
    random_state : int, RandomState instance or None, default=None
        Seed for sampling and k-means.

    Attributes
    ----------
    n_clusters_ : int
        The chosen number of clusters.
    cluster_centers_ : ndarray of shape (n_clusters_, n_features)
        Centres of the final model.
    pooled_ : models.pooled.Pooled or None
        The metric rows are placed in (``metric="pooled"``; None: Euclidean, also when the
        refinement was refused).
    labels_ : ndarray of shape (n_samples,)
        Cluster of each row seen in `fit`.
    scores_ : pandas.DataFrame
        Per k tried: silhouette, calinski_harabasz, davies_bouldin, inertia; with
        ``valley`` also the least separated neighbours' ``valley`` ratio, ``valley_z``
        and ``distance`` (see `models.clusterability.separation`).
    n_valleys_ : int or None
        Groups the density valleys separate (``valley``; 1: a continuum).
    evidence_ : {"valley", "latent"} or None
        What ``n_valleys_`` counts: groups density valleys separate, or latent classes
        of the attributes (with ``blocks``).
    n_groups_ : int or None
        Of those, the groups distinct enough to be personas (``valley``).
    sample_ : ndarray or None
        Rows of ``X`` the search ran on (None: all of them).
    search_centers_ : dict of int to ndarray
        Per k scored, the centres of its partition of the sample (see `with_k`).
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
        "criterion": [StrOptions({"silhouette", "valley"})],
        "max_valley": [Interval(Real, 0, 1, closed="both")],
        "min_valley_z": [Interval(Real, 0, None, closed="left")],
        "min_distance": [Interval(Real, 0, None, closed="left")],
        "min_share": [Interval(Real, 0, 1, closed="left")],
        "min_size": [Interval(Integral, 1, None, closed="left")],
        "blocks": [list, None],
        "metric": [StrOptions({"euclidean", "pooled"})],
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
        criterion="silhouette",
        max_valley=0.6,
        min_valley_z=2.0,
        min_distance=0.85,
        min_share=0.02,
        min_size=20,
        blocks=None,
        metric="euclidean",
        random_state=None,
    ):
        self.k_min = k_min
        self.k_max = k_max
        self.n_init = n_init
        self.sample_size = sample_size
        self.tie_tolerance = tie_tolerance
        self.criterion = criterion
        self.max_valley = max_valley
        self.min_valley_z = min_valley_z
        self.min_distance = min_distance
        self.min_share = min_share
        self.min_size = min_size
        self.blocks = blocks
        self.metric = metric
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
        self.sample_ = None if sample is None else np.sort(sample)
        Xs = X if sample is None else X[self.sample_]
        k_hi = min(self.k_max, Xs.shape[0] - 1, len(np.unique(Xs, axis=0)) - 1)
        with threadpool_limits(limits=1):  # a sample: threads cost more than they save
            if self.criterion == "valley":
                rows, centers = self._search_valley(Xs, k_hi, rng)
            else:
                rows, centers = self._search_silhouette(Xs, k_hi, seed, rng)
        if not rows:
            raise ValueError(
                "All customers have the same features, so there are no segments to find."
            )
        self.scores_ = pd.DataFrame(rows).set_index("k")
        if self.criterion == "valley":
            tried = self.scores_.index
            k = max(self.n_groups_, self.k_min)
            self.n_clusters_ = int(tried[tried <= k].max() if (tried <= k).any() else tried.min())
        else:
            self.n_valleys_ = self.n_groups_ = self.evidence_ = None
            self.n_clusters_ = self._choose(self.scores_)
        self.search_centers_ = centers
        self._seed = seed
        return self._fit_final(X)

    def _fit_final(self, X):
        """K-means on every row, from the chosen search partition's centres.

        The latent classes of the attributes (``evidence_ == "latent"``) are kept as they
        are, each customer placed at the nearest class mean: k-means iterations would pull
        the centres toward whatever continuous feature splits best, away from the classes.
        """
        self.pooled_ = None
        if self.evidence_ == "latent" and self.n_clusters_ == self.n_groups_:
            self._kmeans = None
            self.cluster_centers_ = self.search_centers_[self.n_clusters_]
            self.labels_ = self.predict(X)
            return self
        self._kmeans = KMeans(
            n_clusters=self.n_clusters_,
            init=self.search_centers_[self.n_clusters_],
            n_init=1,
            random_state=self._seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                self._kmeans.fit(X)
            except ConvergenceWarning as warning:
                warnings.warn(str(warning), ConvergenceWarning, stacklevel=3)
        self.cluster_centers_ = self._kmeans.cluster_centers_
        self.labels_ = self._kmeans.labels_
        if self.metric == "pooled":
            rows = slice(None) if self.sample_ is None else self.sample_
            _, self.pooled_ = refine_pooled(
                X[rows], self.labels_[rows], self.n_clusters_, min_size=self.min_size
            )
            if self.pooled_ is not None:
                self.cluster_centers_ = self.pooled_.centers
                self.labels_ = self.predict(X)
        return self

    def with_k(self, X, k: int) -> AutoKMeans:
        """Return a copy fitted with ``k`` clusters, from the search's own k-cluster partition.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The rows `fit` saw.
        k : int
            A number of clusters the search scored (an index of `scores_`).

        Returns
        -------
        AutoKMeans
            A fitted copy with ``n_clusters_ == k``; this estimator is left as it was.
        """
        check_is_fitted(self)
        if k not in self.search_centers_:
            raise ValueError(f"k={k} was not scored; scored: {sorted(self.search_centers_)}.")
        other = copy.copy(self)
        other.n_clusters_ = int(k)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return other._fit_final(X)

    @staticmethod
    def _indices(Xs, labels, sub) -> dict:
        """Silhouette (on the rows ``sub``, `_subsample`), Calinski-Harabasz, Davies-Bouldin."""
        if len(np.unique(labels[sub])) < 2:
            silhouette = float("nan")
        else:
            silhouette = float(silhouette_score(Xs[sub], labels[sub]))
        return {
            "silhouette": silhouette,
            "calinski_harabasz": float(calinski_harabasz_score(Xs, labels)),
            "davies_bouldin": float(davies_bouldin_score(Xs, labels)),
        }

    @staticmethod
    def _subsample(n: int, rng) -> np.ndarray:
        """Draw the rows a silhouette is computed on: at most 3,000."""
        return rng.choice(n, 3000, replace=False) if n > 3000 else np.arange(n)

    def _search_silhouette(self, Xs, k_hi, seed, rng):
        rows, centers = [], {}
        ks = range(self.k_min, max(k_hi, self.k_min) + 1)
        for k in ks:
            _progress.info("", extra={"progress": (k - ks[0] + 1, len(ks), "candidates")})
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=seed).fit(Xs)
            if len(np.unique(km.labels_)) < 2:
                continue
            indices = self._indices(Xs, km.labels_, self._subsample(len(Xs), rng))
            rows.append({"k": k, **indices, "inertia": km.inertia_})
            centers[k] = km.cluster_centers_
            logger.info("k=%d silhouette=%.3f", k, rows[-1]["silhouette"])
        return rows, centers

    def _search_valley(self, Xs, k_hi, rng):
        found = divisive_search(
            Xs,
            k_max=max(k_hi, self.k_min),
            max_valley=self.max_valley,
            min_valley_z=self.min_valley_z,
            min_distance=self.min_distance,
            min_share=self.min_share,
            min_size=self.min_size,
            blocks=self.blocks,
            random_state=int(rng.randint(np.iinfo(np.int32).max)),
        )
        self.n_valleys_, self.n_groups_ = found["n_valleys"], found["n_groups"]
        self.evidence_ = found["evidence"]
        partitions = [(k, labels) for k, labels in sorted(found["partitions"].items()) if k >= 2]
        # each silhouette's rows drawn first, in order, so the candidates score on every core
        subs = [self._subsample(len(Xs), rng) for _ in partitions]

        def score(k: int, labels: np.ndarray, sub: np.ndarray) -> tuple[dict, np.ndarray]:
            centers = np.array([Xs[labels == c].mean(axis=0) for c in range(k)])
            inertia = float(((Xs - centers[labels]) ** 2).sum())
            indices = self._indices(Xs, labels, sub)
            return {"k": k, **indices, "inertia": inertia, **separation(Xs, labels)}, centers

        rows, centers = [], {}
        with ThreadPoolExecutor(cpu_count()) as pool:
            scored = pool.map(score, *zip(*partitions, strict=True), subs) if partitions else []
            for i, (row, center) in enumerate(scored):
                _progress.info("", extra={"progress": (i + 1, len(partitions), "candidates")})
                rows.append(row)
                centers[row["k"]] = center
                logger.info(
                    "k=%d valley=%.2f distance=%.2f", row["k"], row["valley"], row["distance"]
                )
        return rows, centers

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
            Euclidean distances, or whitened ones (``pooled_``).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        if getattr(self, "pooled_", None) is not None:  # models served before it have none
            return self.pooled_.transform(X)
        if self._kmeans is None:
            return euclidean_distances(X, self.cluster_centers_)
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
