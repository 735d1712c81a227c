"""How many personas, when what customers hold shapes them: latent classes of attributes.

With no usage or engagement log, the personas are combinations of what customers hold
(products, plan, contract, payment). Density valleys say nothing there: between any two
combinations of discrete attributes there is no customer at all, so the valley search
(`models.clusterability.divisive_search`) would split the base into its most common
combinations (14 personas for 5 planted ones on `benchmarks/attributes.py`). The model
of such data is latent class analysis (Lazarsfeld & Henry 1968; in marketing
segmentation, Wedel & Kamakura 2000): customers fall into ``k`` classes, and inside a
class what they hold is independent from one attribute to the next. It is fitted by EM
for each ``k`` and ``k`` is chosen by BIC, which on those bases finds the planted number
(`benchmarks/attributes.md`).

References
----------
Lazarsfeld, P. F., & Henry, N. W. (1968). *Latent Structure Analysis*. Houghton Mifflin.
Wedel, M., & Kamakura, W. A. (2000). *Market Segmentation: Conceptual and Methodological
Foundations* (2nd ed.). Kluwer.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

__all__ = ["attribute_codes", "class_labels", "latent_classes"]

#: A numeric attribute with more distinct values is cut into this many quantile bins.
_MAX_LEVELS = 12


def attribute_codes(X: np.ndarray, blocks: list) -> tuple[np.ndarray, list[int]]:
    """Decode each attribute's columns of the scaled matrix into level codes.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The scaled customers.
    blocks : list of array-like of int
        The columns of each attribute: its one-hot columns, or its one scaled column.

    Returns
    -------
    codes : ndarray of int of shape (n_samples, n_attributes)
        Each customer's level of each attribute, from 0.
    levels : list of int
        Number of levels of each attribute.
    """
    codes, levels = [], []
    for block in blocks:
        Z = X[:, list(block)]
        if Z.shape[1] > 1:  # one-hot: the level is the hot column
            code = Z.argmax(axis=1)
        else:
            values, code = np.unique(Z[:, 0], return_inverse=True)
            if len(values) > _MAX_LEVELS:
                edges = np.quantile(Z[:, 0], np.linspace(0, 1, _MAX_LEVELS + 1)[1:-1])
                code = np.unique(np.searchsorted(edges, Z[:, 0]), return_inverse=True)[1]
        code = np.unique(code, return_inverse=True)[1].ravel()
        codes.append(code)
        levels.append(int(code.max()) + 1)
    return np.column_stack(codes), levels


def _fit(onehots: list, levels: list[int], k: int, rng, max_iter: int) -> tuple[float, np.ndarray]:
    """One EM run from random responsibilities: log-likelihood and responsibilities."""
    n = onehots[0].shape[0]
    resp = rng.dirichlet(np.ones(k), size=n)
    previous = -np.inf
    for _ in range(max_iter):
        weight = resp.sum(axis=0) + 1e-9
        log_p = np.log(weight / n)[None, :].repeat(n, axis=0)
        for onehot, m in zip(onehots, levels, strict=True):
            # class-conditional level probabilities, with a small symmetric prior
            theta = (resp.T @ onehot + 1e-3) / (weight[:, None] + 1e-3 * m)
            log_p += onehot @ np.log(theta).T
        norm = logsumexp(log_p, axis=1)
        resp = np.exp(log_p - norm[:, None])
        likelihood = float(norm.sum())
        if likelihood - previous <= 1e-7 * abs(likelihood):
            break
        previous = likelihood
    return likelihood, resp


def _onehots(codes: np.ndarray, levels: list[int]) -> list[np.ndarray]:
    return [np.eye(m)[codes[:, j]] for j, m in enumerate(levels)]


def _best(onehots, levels, k, rng, n_init, max_iter) -> tuple[float, np.ndarray]:
    """Return the most likely of ``n_init`` EM runs with ``k`` classes."""
    runs = [_fit(onehots, levels, k, rng, max_iter) for _ in range(n_init if k > 1 else 1)]
    return max(runs, key=lambda run: run[0])


def class_labels(
    X: np.ndarray, blocks: list, k: int, *, n_init: int = 4, random_state: int = 0
) -> np.ndarray:
    """Fit ``k`` latent classes to the attributes of ``X`` and return each row's class.

    The refit of the stability resamples (`models.stability.clusterboot`): the same model,
    with the number found on all customers.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The scaled customers.
    blocks : list of array-like of int
        The columns of each attribute (`attribute_codes`).
    k : int
        Number of classes.
    n_init : int, default=4
        EM runs, from random responsibilities; the most likely is kept.
    random_state : int, default=0
        Seed of the EM starts.

    Returns
    -------
    ndarray of int of shape (n_samples,)
        Each row's most likely class.
    """
    codes, levels = attribute_codes(X, blocks)
    rng = np.random.default_rng(random_state)
    return _best(_onehots(codes, levels), levels, k, rng, n_init, 300)[1].argmax(axis=1)


def latent_classes(
    codes: np.ndarray,
    levels: list[int],
    *,
    k_max: int = 15,
    n_init: int = 4,
    max_iter: int = 300,
    patience: int = 2,
    random_state: int = 0,
) -> dict:
    """Fit latent class models for k = 1, 2, ... and choose k by BIC.

    Parameters
    ----------
    codes : ndarray of int of shape (n_samples, n_attributes)
        Each customer's level of each attribute (`attribute_codes`).
    levels : list of int
        Number of levels of each attribute.
    k_max : int, default=15
        Most classes fitted.
    n_init : int, default=4
        EM runs per k, from random responsibilities; the most likely is kept.
    max_iter : int, default=300
        EM iterations per run at most.
    patience : int, default=2
        The search stops once BIC has not improved for this many k in a row.
    random_state : int, default=0
        Seed of the EM starts.

    Returns
    -------
    dict
        ``n_classes`` (k of lowest BIC), ``bic`` (k -> BIC), ``labels`` (each customer's
        most likely class at ``n_classes``).
    """
    n = len(codes)
    onehots = _onehots(codes, levels)
    free = sum(m - 1 for m in levels)
    rng = np.random.default_rng(random_state)
    bic, labels, best_k = {}, {1: np.zeros(n, dtype=int)}, 1
    for k in range(1, max(1, min(k_max, n - 1)) + 1):
        likelihood, resp = _best(onehots, levels, k, rng, n_init, max_iter)
        bic[k] = -2 * likelihood + ((k - 1) + k * free) * np.log(n)
        labels[k] = resp.argmax(axis=1)
        if bic[k] < bic[best_k]:
            best_k = k
        elif k - best_k >= patience:
            break
    return {"n_classes": best_k, "bic": bic, "labels": labels[best_k]}
