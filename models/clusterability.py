"""Do customers form distinct groups, and how many? Density valleys, then effect size.

Two personas are distinct when fewer customers sit between them than at their centres: on
the line that joins their means, the density of customers has a *valley*
(`pair_valley`). The search (`divisive_search`) starts from all customers as one group and
splits a group in two while some split leaves a valley between the halves: each group is
cut by 2-means, the cut moved to the lowest density between the two centres (so a small
persona beside a large one is cut where they meet, not halfway), and the split is kept
when the valley is deep (ratio at most ``max_valley``) and more than the noise of a few
customers (z-score at least ``min_valley_z``); then k-means refines every group from the
current centres. A group that is one persona has no valley inside it, so the search stops
at the number of groups separated by valleys: a continuum is never split, many small
personas are found one by one (k-means++ alone often cuts a large persona in two and
merges two small ones instead), and the number needs no upper bound but ``k_max``. This
is the logic of dip-means (Kalogeratos & Likas 2012), which splits a cluster while its
projection is not unimodal, and of Hartigan's (1975) clusters as high-density regions
separated by low density.

A valley is necessary but not sufficient: one yes/no behaviour (a ticket in the window or
not, a plan tier) also leaves a valley, inside what is one persona in every other
respect. So neighbouring groups whose centres are closer than ``min_distance`` times
their customers' typical spread (root mean squared distance to their centre, in all the
features) are merged back, the least distinct first: the merging step of Hennig (2010),
with a size-free effect size as its criterion.

The valley search cannot tell slices of one cloud from faint groups with valleys that
noise made, so the partition is also compared with customers drawn from one Gaussian
with the same principal variances, which has no groups (the gap statistic of Tibshirani,
Walther & Hastie 2001, with a Gaussian reference; `gap_statistic`). `structure_verdict`
reads the three: distinct, weak or none.

References
----------
Hartigan, J. A. (1975). *Clustering Algorithms*. Wiley.
Hennig, C. (2010). Methods for merging Gaussian mixture components. *Advances in Data
Analysis and Classification*, 4, 3-34.
Kalogeratos, A., & Likas, A. (2012). Dip-means: an incremental clustering method for
estimating the number of clusters. *Advances in Neural Information Processing Systems* 25.
Tibshirani, R., Walther, G., & Hastie, T. (2001). Estimating the number of clusters in a
data set via the gap statistic. *Journal of the Royal Statistical Society B*, 63(2),
411-423.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from models.latent_class import attribute_codes, latent_classes

__all__ = [
    "FOUND",
    "distance",
    "divisive_search",
    "gap_statistic",
    "pair_valley",
    "separation",
    "structure_verdict",
]

_GRID = 64


def _valley(t: np.ndarray, spread: float) -> tuple[float, float]:
    """Valley between 0 and 1 of a 1-D sample: (lowest density / smaller peak, z-score)."""
    h = max(1.06 * spread * len(t) ** -0.2, 1e-3)  # Silverman's rule on the within-group spread
    lo, hi = max(t.min(), -2.0), min(t.max(), 3.0)
    if hi <= lo:
        return 1.0, 0.0
    grid = np.linspace(lo, hi, _GRID)
    counts, edges = np.histogram(t, bins=4 * _GRID, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    # kernel-weighted counts: about the number of customers within a bandwidth of each point
    density = np.exp(-0.5 * ((grid[:, None] - centres[None, :]) / h) ** 2) @ counts
    between = np.flatnonzero((grid >= 0) & (grid <= 1))
    if not len(between):
        return 1.0, 0.0
    v = between[np.argmin(density[between])]
    peak = min(density[: v + 1].max(), density[v:].max())
    if peak <= 0:
        return 1.0, 0.0
    valley = density[v]
    return float(valley / peak), float((peak - valley) / np.sqrt(peak + valley))


def _position(X: np.ndarray, origin: np.ndarray, direction: np.ndarray):
    """Position of each row on the line ``origin + t * direction`` and squared distance off it."""
    length2 = max(float(direction @ direction), 1e-12)
    t = (X - origin) @ direction / length2
    off = ((X - origin) ** 2).sum(axis=1) - t**2 * length2
    return t, off


def pair_valley(X: np.ndarray, in_a: np.ndarray, in_b: np.ndarray) -> tuple[float, float]:
    """Measure the density valley between two groups, along the line through their means.

    Every customer near the line (within the median distance of the two groups' own
    customers from it, whatever their group) is projected on it, one mean at 0 and the
    other at 1, and the density of the projections is estimated with a Gaussian kernel
    (Silverman's bandwidth on the within-group spread). Taking every customer near the
    line, not only the pair's, keeps the borders of other groups from carving a valley
    that is not there.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The customers.
    in_a, in_b : ndarray of bool of shape (n_samples,)
        The two groups.

    Returns
    -------
    ratio : float
        Lowest density between the means over the smaller of the peaks on either side:
        1 when there is no valley (one group cut in two), near 0 when few customers sit
        between the groups.
    z : float
        ``(peak - valley) / sqrt(peak + valley)`` on kernel-weighted counts: whether the
        valley is more than the noise of a few customers.
    """
    ma, mb = X[in_a].mean(axis=0), X[in_b].mean(axis=0)
    t, off = _position(X, ma, mb - ma)
    near = off <= np.quantile(off[in_a | in_b], 0.5)
    ta, tb = t[near & in_a], t[near & in_b]
    if len(ta) < 2 or len(tb) < 2:
        return 1.0, 0.0
    spread = np.sqrt((((ta - ta.mean()) ** 2).sum() + ((tb - tb.mean()) ** 2).sum()) / len(t[near]))
    return _valley(t[near], spread)


def _neighbours(centers: np.ndarray, n_neighbors: int = 3) -> list[tuple[int, int]]:
    """Pairs of each cluster and its nearest centres."""
    k = len(centers)
    d = ((centers[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d, np.inf)
    return sorted(
        {
            (min(a, int(b)), max(a, int(b)))
            for a in range(k)
            for b in np.argsort(d[a], kind="stable")[: min(n_neighbors, k - 1)]
        }
    )


def distance(X: np.ndarray, in_a: np.ndarray, in_b: np.ndarray) -> float:
    """Distance between two groups' centres over their customers' typical spread.

    The spread is the root mean squared distance of the two groups' customers to their own
    centre, in all the features: a size-free effect size (two halves of one Gaussian cut
    through its middle are 1.6 spreads apart on its axis, far less in many dimensions).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The customers.
    in_a, in_b : ndarray of bool of shape (n_samples,)
        The two groups.

    Returns
    -------
    float
        The standardised distance.
    """
    a, b = X[in_a], X[in_b]
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    within = (((a - ma) ** 2).sum() + ((b - mb) ** 2).sum()) / (len(a) + len(b))
    return float(np.sqrt(((ma - mb) ** 2).sum() / max(within, 1e-12)))


def separation(X: np.ndarray, labels: np.ndarray, n_neighbors: int = 3) -> dict:
    """Score the least separated neighbours of a partition: valley, z-score, distance.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The customers.
    labels : ndarray of shape (n_samples,)
        Cluster of each customer (any integer ids).
    n_neighbors : int, default=3
        Each cluster is compared with its ``n_neighbors`` nearest clusters.

    Returns
    -------
    dict
        ``valley`` (highest valley ratio over the pairs; 1 for a single cluster),
        ``valley_z`` (lowest z-score) and ``distance`` (lowest `distance`; 0 for a single
        cluster).
    """
    labels = np.unique(labels, return_inverse=True)[1].ravel()  # 0 .. k-1, none empty
    k = int(labels.max()) + 1 if len(labels) else 0
    if k < 2:
        return {"valley": 1.0, "valley_z": 0.0, "distance": 0.0}
    centers = np.array([X[labels == c].mean(axis=0) for c in range(k)])
    out = {"valley": 0.0, "valley_z": np.inf, "distance": np.inf}
    for a, b in _neighbours(centers, n_neighbors):
        ratio, z = pair_valley(X, labels == a, labels == b)
        out["valley"] = max(out["valley"], ratio)
        out["valley_z"] = min(out["valley_z"], z)
        out["distance"] = min(out["distance"], distance(X, labels == a, labels == b))
    return {key: float(v) for key, v in out.items()}


def _cut(X: np.ndarray, rows: np.ndarray, seed: int) -> np.ndarray | None:
    """Split ``rows`` in two: 2-means, with the cut moved to the lowest density between."""
    km = KMeans(n_clusters=2, n_init=1, random_state=seed).fit(X[rows])
    c0, c1 = km.cluster_centers_
    t, _ = _position(X[rows], c0, c1 - c0)
    side = km.labels_ == 1
    if side.all() or not side.any():
        return None
    spread = np.sqrt(
        (((t[side] - t[side].mean()) ** 2).sum() + ((t[~side] - t[~side].mean()) ** 2).sum())
        / len(t)
    )
    h = max(1.06 * spread * len(t) ** -0.2, 1e-3)
    lo, hi = max(t.min(), -2.0), min(t.max(), 3.0)
    counts, edges = np.histogram(t, bins=4 * _GRID, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    grid = np.linspace(0.0, 1.0, 41)
    density = np.exp(-0.5 * ((grid[:, None] - centres[None, :]) / h) ** 2) @ counts
    return t > grid[np.argmin(density)]


def _refine(X: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    k = int(labels.max()) + 1
    centers = np.array([X[labels == c].mean(axis=0) for c in range(k)])
    return KMeans(n_clusters=k, init=centers, n_init=1, random_state=seed).fit(X).labels_


def _sizes_ok(labels: np.ndarray, k: int, min_size: int) -> bool:
    return bool(np.bincount(labels, minlength=k).min() >= min_size)


# One thread: the 2-means cuts run on a few thousand customers, where OpenMP threads cost far
# more than they save (see models.selection).
@threadpool_limits.wrap(limits=1)
def divisive_search(
    X: np.ndarray,
    *,
    k_max: int = 15,
    max_valley: float = 0.6,
    min_valley_z: float = 2.0,
    min_distance: float = 0.85,
    min_share: float = 0.02,
    min_size: int = 20,
    n_cuts: int = 4,
    blocks: list | None = None,
    random_state: int = 0,
) -> dict:
    """Split the customers while a split leaves a density valley; merge back faint pairs.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The customers (a sample: nothing here is quadratic, but k-means is refitted once
        per split).
    k_max : int, default=15
        Most groups; partitions up to ``k_max`` are returned even past the last valley
        (by the split that explains most spread), so every number can be scored or forced.
    max_valley : float, default=0.6
        Valley ratio (`pair_valley`) at or below which a split separates two groups.
    min_valley_z : float, default=2.0
        Z-score the valley must reach.
    min_distance : float, default=0.85
        Neighbours closer than this (`distance`) are merged back after the search.
    min_share : float, default=0.02
        Smallest group, as a share of the customers.
    min_size : int, default=20
        Smallest group, in customers (the larger of the two applies): a group the privacy
        rule (``privacy.min_persona_size``) would merge away is not a persona.
    n_cuts : int, default=4
        2-means runs (seeds) tried on each group; the split with the most convincing valley
        (highest z-score) is kept.
    blocks : list of array-like of int, optional
        Columns that hold one discrete attribute each (a categorical's one-hot columns),
        when attributes are what shapes the personas. Discrete attributes leave a valley
        between any two of their combinations, so valleys say nothing about them: the
        number is then the latent classes' (`models.latent_class.latent_classes`, by
        BIC), their partition is kept as it is (k-means would pull it toward whatever
        continuous feature splits best), and nothing is merged back.
    random_state : int, default=0
        Seed of the 2-means cuts and the refits.

    Returns
    -------
    dict
        ``partitions`` (k -> labels of the k-group partition, for k = 1 .. k_max; at the
        chosen number, the merged partition), ``n_valleys`` (groups the valleys
        separate, or latent classes with ``blocks``), ``n_groups`` (after merging faint
        pairs), ``merged`` (how many pairs were merged back) and ``evidence``
        (``"valley"`` or ``"latent"``).
    """
    n = len(X)
    min_size = max(2, min_size, int(np.ceil(min_share * n)))
    labels = np.zeros(n, dtype=int)
    partitions = {1: labels}
    seeds = np.random.default_rng(random_state).integers(2**31 - 1, size=n_cuts)
    n_valleys, classes = None, None
    if blocks is not None:
        classes = latent_classes(
            *attribute_codes(X, blocks), k_max=k_max, random_state=random_state
        )
        n_valleys = classes["n_classes"]
    # splits past the last valley (to score or force any k) may make groups of any size
    for k in range(1, min(k_max, n)):
        best, forced = None, None
        for c in range(k):
            rows = np.flatnonzero(labels == c)
            if len(rows) < 2:
                continue
            total = max(((X[rows] - X[rows].mean(axis=0)) ** 2).sum(), 1e-12)
            tried = []
            for seed in seeds:
                side = _cut(X, rows, int(seed))
                if side is None:
                    continue
                if any((side == other).all() or (side != other).all() for other in tried):
                    continue  # the same cut from another seed
                tried.append(side)
                candidate = labels.copy()
                candidate[rows[side]] = k
                in_a, in_b = candidate == c, candidate == k
                within = ((X[in_a] - X[in_a].mean(axis=0)) ** 2).sum() + (
                    (X[in_b] - X[in_b].mean(axis=0)) ** 2
                ).sum()
                if forced is None or 1 - within / total > forced[0]:
                    forced = (1 - within / total, candidate)
                if n_valleys is None and min(side.sum(), (~side).sum()) >= min_size:
                    ratio, z = pair_valley(X, in_a, in_b)
                    if ratio <= max_valley and z >= min_valley_z and (best is None or z > best[0]):
                        best = (z, candidate)
        if best is None and n_valleys is None:
            n_valleys = k
        chosen = best or forced
        if chosen is None:
            break
        labels = chosen[1]
        refined = _refine(X, labels, random_state)
        if best is None:
            labels = refined if _sizes_ok(refined, k + 1, 1) else labels
        elif _sizes_ok(refined, k + 1, min_size):
            sep = separation(X, refined)
            if sep["valley"] <= max_valley and sep["valley_z"] >= min_valley_z:
                labels = refined
        partitions[k + 1] = labels
    if n_valleys is None:
        n_valleys = max(partitions)
    labels, merged = partitions.get(n_valleys, labels), 0  # (the search may stop early)
    if classes is not None and n_valleys >= 2:  # the latent classes, as they are
        labels = np.unique(classes["labels"], return_inverse=True)[1].ravel()
    while classes is None and int(labels.max()) >= 1:
        k = int(labels.max()) + 1
        centers = np.array([X[labels == c].mean(axis=0) for c in range(k)])
        pairs = [(distance(X, labels == a, labels == b), a, b) for a, b in _neighbours(centers)]
        gap, a, b = min(pairs)
        if gap >= min_distance:
            break
        labels = np.where(labels == b, a, labels)
        labels = np.unique(labels, return_inverse=True)[1]
        labels = _refine(X, labels, random_state) if labels.max() >= 1 else labels
        merged += 1
    n_groups = int(labels.max()) + 1
    partitions[n_groups] = labels
    return {
        "partitions": partitions,
        "n_valleys": int(n_valleys),
        "n_groups": n_groups,
        "merged": merged,
        "evidence": "valley" if classes is None else "latent",
    }


@threadpool_limits.wrap(limits=1)
def gap_statistic(
    X: np.ndarray, inertia: float, k: int, *, n_refs: int = 10, random_state: int = 0
) -> tuple[float, float]:
    """Gap statistic of a k-cluster partition against a structureless Gaussian reference.

    ``gap = E*[log W*_k] - log W_k`` where ``W_k`` is the within-cluster sum of squares per
    customer and ``W*_k`` the same for k-means on customers drawn from one Gaussian with
    the principal variances of ``X`` (so a reference has the spread of the customers and
    no groups). At k = 1 both are the total variance, so the gap measures what the
    partition explains beyond what slicing a cloud of the same shape would.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The customers the partition was fitted on.
    inertia : float
        Within-cluster sum of squares of the partition on ``X``.
    k : int
        Number of clusters.
    n_refs : int, default=10
        Reference samples.
    random_state : int, default=0
        Seed of the references and their k-means.

    Returns
    -------
    gap : float
        The gap.
    sd : float
        Its standard error, ``sd(log W*_k) * sqrt(1 + 1 / n_refs)``.
    """
    n = len(X)
    rng = np.random.default_rng(random_state)
    centred = X - X.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    scale = sv / np.sqrt(n)  # standard deviations along the principal axes
    refs = []
    for _ in range(n_refs):
        Z = rng.standard_normal((n, len(scale))) * scale
        if k == 1:
            w = float(((Z - Z.mean(axis=0)) ** 2).sum())
        else:
            seed = int(rng.integers(2**31 - 1))
            w = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(Z).inertia_
        refs.append(np.log(w / n))
    refs = np.asarray(refs)
    gap = float(refs.mean() - np.log(max(inertia, 1e-12) / n))
    return gap, float(refs.std() * np.sqrt(1 + 1 / n_refs))


#: How the groups were found, in words: (``n`` groups found, no group found).
FOUND = {
    "valley": (
        "Density valleys separate {} groups",
        "No split of the customers leaves a density valley between two groups",
    ),
    "latent": (
        "What customers hold falls into {} latent classes (BIC)",
        "What customers hold falls into no latent classes (BIC prefers one)",
    ),
}


def structure_verdict(
    *,
    n_valleys: int,
    n_groups: int,
    valley: float | None,
    distance: float | None,
    gap_z: float,
    k_tested: int,
    stability: float | None,
    min_stability: float = 0.6,
    min_gap_z: float = 2.0,
    evidence: str = "valley",
) -> tuple[str, str]:
    """Whether customers form distinct groups: ``distinct``, ``weak`` or ``none``, and why.

    Parameters
    ----------
    n_valleys : int
        Groups that density valleys separate (1: no split leaves a valley).
    n_groups : int
        Of those, the groups distinct enough to be personas.
    valley, distance : float or None
        The least separated neighbours of the ``n_groups`` partition: valley ratio and
        distance in spreads (None with fewer than two groups).
    gap_z : float
        Gap statistic of the tested partition over its standard error.
    k_tested : int
        Number of personas of the tested partition.
    stability : float or None
        Mean adjusted Rand index of the chosen model over resamples.
    min_stability : float, default=0.6
        Resampling ARI below which groups count as weak.
    min_gap_z : float, default=2.0
        Gap, in standard errors, by which groups must beat slices of a structureless cloud.
    evidence : {"valley", "latent"}, default="valley"
        What ``n_valleys`` counts: groups density valleys separate, or latent classes of
        the attributes (`divisive_search` with ``blocks``); only the wording changes.

    Returns
    -------
    structure : str
        ``distinct``, ``weak`` or ``none``.
    reason : str
        One sentence.
    """
    gap = (
        f"{k_tested} personas explain {{}} spread than slices of a structureless cloud of "
        f"the same shape (gap {gap_z:.1f} standard errors)"
    )
    many, none = FOUND[evidence]
    if n_valleys <= 1:
        if gap_z < min_gap_z:
            return "none", (
                f"{none}, and "
                + gap.format("no more")
                + ": customers form a continuum, and the personas are slices of it."
            )
        return "weak", (
            f"{none}, though "
            + gap.format("more")
            + ": the personas are regions of a continuum, not distinct groups."
        )
    if n_groups <= 1:
        return "weak", (
            f"{many.format(n_valleys)}, but they differ too little to be "
            "personas (one behaviour, such as a yes/no habit, tells them apart): the personas "
            "are regions of a continuum, not distinct groups."
        )
    if gap_z < min_gap_z:
        return "weak", (
            f"{many.format(n_groups)}, but " + gap.format("little more") + ": the groups are faint."
        )
    if stability is not None and np.isfinite(stability) and stability < min_stability:
        return "weak", (
            f"{many.format(n_groups)}, but they do not come back when "
            f"customers are resampled (ARI {stability:.2f} < {min_stability:g})."
        )
    detail = ""
    if valley is not None and distance is not None:
        detail = (
            f" (least separated neighbours: valley ratio {valley:.2f}, "
            f"{distance:.2f} spreads apart)"
        )
    stable = (
        f" and come back when customers are resampled (ARI {stability:.2f})"
        if stability is not None and np.isfinite(stability)
        else ""
    )
    return "distinct", (
        f"{many.format(f'{n_groups} distinct')}{detail}; " + gap.format("far more") + stable + "."
    )
