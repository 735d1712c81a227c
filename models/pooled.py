"""K-means refined in the personas' own metric: the pooled within-persona covariance.

K-means measures every direction of the scaled feature space alike, so two personas that
differ along a direction where customers also spread a lot inside each persona (usage
that fades at different speeds, say) share a border that cuts through both. A Gaussian
mixture whose personas share one covariance matrix (mclust's ``EEE``; the model behind
linear discriminant analysis) measures distance in that covariance's metric instead, and
its borders follow the spread inside the personas.

`refine_pooled` fits it the hard way (classification EM, Celeux & Govaert 1992):
starting from a k-means partition, estimate the personas' shares and their pooled
within-persona covariance, shrunk toward the identity, whiten with it, place every
customer at the most likely persona (the nearest whitened mean, a persona's squared
distance raised by ``2 log(largest share / its share)``), and repeat until no customer
moves. The borders stay straight lines, so the served model is still "nearest centre",
in a whitened space. The refinement is refused, and the k-means partition kept, when it
would shrink a persona below ``min_size`` (or below the smallest k-means persona).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import sparse
from sklearn.covariance import ledoit_wolf
from sklearn.metrics import euclidean_distances

__all__ = ["Pooled", "refine_pooled", "whitener"]

logger = logging.getLogger(__name__)


def _means(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each persona's rows (one sparse product, not one copy per persona)."""
    counts = np.bincount(labels, minlength=k)
    member = sparse.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), (k, len(labels))
    )
    return np.asarray(member @ X) / np.maximum(counts, 1)[:, None]


def whitener(
    X: np.ndarray, labels: np.ndarray, k: int, shrinkage: float | None = None
) -> np.ndarray:
    """Return ``W`` such that ``X @ W`` has an identity pooled within-persona covariance.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Scaled features.
    labels : ndarray of shape (n_samples,)
        Persona of each row, in ``0 .. k - 1``.
    k : int
        Number of personas.
    shrinkage : float, optional
        Weight in [0, 1] of the identity (scaled to the covariance's mean variance) in the
        estimate: 0 is the pooled covariance itself, 1 plain k-means' metric. None (the
        default): Ledoit & Wolf's weight, which shrinks more when there are few rows per
        feature.

    Returns
    -------
    ndarray of shape (n_features, n_features)
        The whitening matrix (the Cholesky factor of the shrunk covariance's inverse).
    """
    R = X - _means(X, labels, k)[labels]
    if shrinkage is None:  # Ledoit & Wolf (2004)'s weight, from the residuals themselves
        S = ledoit_wolf(R, assume_centered=True)[0]
    else:
        S = R.T @ R / len(R)
        S = (1 - shrinkage) * S + shrinkage * np.trace(S) / len(S) * np.eye(len(S))
    # a floor keeps features that never vary inside a persona from dividing by zero
    S += 1e-6 * max(float(np.trace(S)) / len(S), 1e-12) * np.eye(len(S))
    return np.linalg.cholesky(np.linalg.inv(S))


class Pooled:
    """The most likely persona in a whitened space: the served form of `refine_pooled`.

    Parameters
    ----------
    W : ndarray of shape (n_features, n_features)
        Whitening matrix (see `whitener`).
    centers : ndarray of shape (n_clusters, n_features)
        Persona means, in the scaled space.
    shares : ndarray of shape (n_clusters,)
        Persona shares (the mixture's weights).
    """

    def __init__(self, W: np.ndarray, centers: np.ndarray, shares: np.ndarray):
        self.W = W
        self.centers = centers
        self.penalty = 2 * (np.log(shares.max()) - np.log(np.maximum(shares, 1e-12)))
        self._white_centers = centers @ W

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Distance of each row to each persona mean, whitened, with the share's penalty.

        The squared whitened distance plus ``2 log(largest share / the persona's share)``
        (zero for the largest persona): its smallest entry is the most likely persona.
        """
        Z = np.asarray(X, dtype=float) @ self.W
        squared = euclidean_distances(Z, self._white_centers, squared=True)
        return np.sqrt(squared + self.penalty)


def refine_pooled(
    X: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    shrinkage: float | None = None,
    max_iter: int = 20,
    min_size: int = 1,
) -> tuple[np.ndarray, Pooled | None]:
    """Refine a partition in the metric of its pooled within-persona covariance.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Scaled features.
    labels : ndarray of shape (n_samples,)
        The starting partition (k-means'), in ``0 .. k - 1``.
    k : int
        Number of personas.
    shrinkage : float, optional
        See `whitener` (None: Ledoit & Wolf's weight).
    max_iter : int, default=20
        Most re-estimations of the metric; it stops earlier once no row moves.
    min_size : int, default=1
        Smallest persona the refinement may leave; below it the start is kept.

    Returns
    -------
    labels : ndarray of shape (n_samples,)
        The refined partition (or the start, when refused).
    model : Pooled or None
        What places new rows as the refined partition does; None when refused.
    """
    labels = np.asarray(labels)
    if k < 2 or len(X) <= k:
        return labels, None
    start, floor = labels, min(min_size, int(np.bincount(labels, minlength=k).min()))
    for _ in range(max_iter):
        shares = np.bincount(labels, minlength=k) / len(labels)
        model = Pooled(whitener(X, labels, k, shrinkage), _means(X, labels, k), shares)
        new = model.transform(X).argmin(axis=1)
        if np.bincount(new, minlength=k).min() < max(floor, 1):
            logger.info("Pooled refinement refused: it would shrink a persona below %d.", floor)
            return start, None
        converged = np.array_equal(new, labels)
        labels = new
        if converged:
            break
    # ``model`` places every row where ``labels`` has it: the served model agrees with training
    return labels, model
