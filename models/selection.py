"""Choose the segmentation: how many personas, which model family, and whether there are any.

The rule, in order:

1. How many: k-means' number is the number of groups that density valleys separate and
   that differ enough to be personas (`models.clusterability.divisive_search`, through
   `AutoKMeans` with ``criterion="valley"``), searched on a sample of ``sample_size``
   customers from 2 up to ``k_max``. Internal indices (silhouette, Calinski-Harabasz,
   Davies-Bouldin) are still computed for every k, but not used to choose: they merge
   touching personas (Arbelaitz et al. 2013), and on our held-out bases they chose too
   few personas whenever personas were many, unequal or overlapping
   (`benchmarks/selection.md`).
2. Every candidate (each k of k-means, each ``min_cluster_share`` of HDBSCAN) is scored in
   the same space (the scaled features): silhouette of the placed customers,
   Calinski-Harabasz, Davies-Bouldin, the share left as noise, and the separation of its
   least separated neighbours (valley ratio, its z-score, distance in spreads).
3. The finalists are the chosen k-means and each HDBSCAN candidate with at least ``k_min``
   personas that places at least half the customers. Silhouette rewards round clusters,
   so it cannot judge between the families: each finalist is scored by DBCV
   (density-based cluster validation, Moulavi et al. 2014) in the scaled space, which
   judges both shapes; its *quality* is
   ``(1 + DBCV) / 2 x (1 - noise share)``, in [0, 1]: a model that explains only part of the
   customers is marked down by the part it leaves out, whatever the sign of its DBCV. DBCV
   can fail on degenerate clusters; it then counts as -1.
4. Each finalist is refitted on ``n_resamples`` subsamples (`clusterboot`); its stability
   is the mean adjusted Rand index with its own labels.
5. The winner is the finalist of best quality among those whose stability reaches
   ``min_stability``; k-means keeps the win (it places everyone and is simpler to serve)
   when its quality is within ``family_margin`` of the best, or when the best density
   model finds the same personas (adjusted Rand index with k-means on the customers it
   places of at least ``min_agreement``: on round, overlapping personas HDBSCAN finds the
   same groups and loses the customers between them). If no finalist is stable enough,
   the most stable wins. A user can force a candidate by name.
6. The verdict (`models.clusterability.structure_verdict`): ``distinct`` when valleys
   separate groups that differ enough, beat slices of a structureless cloud of the same
   shape (gap statistic) and come back under resampling; ``none`` when no split leaves a
   valley and the personas explain no more spread than slices of that cloud; ``weak``
   otherwise. With ``none`` or ``weak`` everything is still fitted and written: the
   personas are then slices of a continuum, and the report says so.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)
from threadpoolctl import threadpool_limits

from models.clusterability import (
    FOUND,
    divisive_search,
    gap_statistic,
    separation,
    structure_verdict,
)
from models.clustering import AutoKMeans
from models.density import DensityClusterer
from models.latent_class import class_labels
from models.pooled import refine_pooled
from models.reducers import DENSITY_SPACES, density_reducer
from models.segmentation import Segmentation
from models.stability import clusterboot

__all__ = ["DENSITY_SPACES", "Segmentation", "density_reducer", "select_segmentation"]

logger = logging.getLogger(__name__)


def _scores(X: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    placed = labels >= 0
    k = len(np.unique(labels[placed]))
    out = {"n_clusters": k, "noise_share": float(1 - placed.mean())}
    if k < 2:
        return {**out, "silhouette": np.nan, "calinski_harabasz": np.nan, "davies_bouldin": np.nan}
    Xp, lp = X[placed], labels[placed]
    out["silhouette"] = float(
        silhouette_score(Xp, lp, sample_size=min(len(Xp), 5000), random_state=seed)
    )
    out["calinski_harabasz"] = float(calinski_harabasz_score(Xp, lp))
    out["davies_bouldin"] = float(davies_bouldin_score(Xp, lp))
    return out


def _dbcv(space: np.ndarray, labels: np.ndarray) -> float:
    """DBCV of a density model in its own space; NaN when it cannot be computed."""
    from hdbscan.validity import validity_index

    try:
        with np.errstate(all="ignore"):
            value = float(validity_index(space.astype(np.float64), labels))
    except (ValueError, ZeroDivisionError, FloatingPointError, IndexError) as error:
        logger.info("DBCV could not be computed: %s", error)
        return float("nan")
    return value if np.isfinite(value) else float("nan")


# One thread for every fit and score: on samples of a few thousand customers, OpenMP and
# BLAS threads cost more than they save (a k-means fit on the demo took 0.41 s with two
# busy threads and 0.02 s with one), and results then do not depend on the machine's cores.
@threadpool_limits.wrap(limits=1)
def select_segmentation(
    X: np.ndarray,
    *,
    k_min: int = 3,
    k_max: int = 15,
    n_init: int = 4,
    tie_tolerance: float = 0.005,
    criterion: str = "valley",
    max_valley: float = 0.6,
    min_valley_z: float = 2.0,
    min_distance: float = 0.85,
    min_share: float = 0.02,
    min_size: int = 20,
    density_shares: tuple = (0.02, 0.05, 0.1),
    density_space: str = "umap",
    umap_params: dict | None = None,
    sample_size: int = 10000,
    stability_sample: int = 3000,
    n_resamples: int = 20,
    min_stability: float = 0.6,
    family_margin: float = 0.0,
    min_agreement: float = 0.8,
    outlier_score: float = 0.5,
    force: str | None = None,
    blocks: list | None = None,
    metric: str = "pooled",
    random_state: int = 0,
) -> Segmentation:
    """Fit the candidates, score them, and return the chosen segmentation.

    Parameters
    ----------
    X : ndarray of shape (n_customers, n_features)
        Scaled customer features.
    k_min, k_max, n_init, tie_tolerance : int, int, int, float
        The k-means search (see `AutoKMeans`; ``n_init`` and ``tie_tolerance`` only for
        ``criterion="silhouette"``, ``n_init`` also for the stability refits).
    criterion : {"valley", "silhouette"}, default="valley"
        How k-means' number of personas is chosen (see `AutoKMeans`).
    max_valley, min_valley_z, min_distance, min_share : float
        The valley search (see `models.clusterability.divisive_search`): deepest valley
        ratio, its least z-score, least distance between neighbours in spreads, smallest
        persona as a share of the sample.
    min_size : int, default=20
        Smallest persona the valley search may make, in customers of the sample (the
        larger of this and ``min_share``); pass ``privacy.min_persona_size``.
    density_shares : tuple of float, default=(0.02, 0.05, 0.1)
        HDBSCAN candidates, by smallest persona as a share of customers; empty for none.
    density_space : {"umap", "pca", "scaled"}, default="umap"
        Where HDBSCAN looks for dense regions: a seeded UMAP embedding, the principal
        components keeping 90% of the variance, or the scaled features themselves (see
        `density_reducer`).
    umap_params : dict, optional
        Parameters of `UMAPReducer`.
    sample_size : int, default=10000
        Customers the candidates are fitted and scored on.
    stability_sample : int, default=3000
        Customers the stability resamples are drawn from.
    n_resamples : int, default=20
        Resamples per finalist.
    min_stability : float, default=0.6
        Mean adjusted Rand index a finalist needs to win on quality.
    family_margin : float, default=0.0
        K-means keeps the win unless a density model beats its quality by more.
    min_agreement : float, default=0.8
        K-means also keeps the win when the best density model finds the same personas:
        adjusted Rand index with k-means, on the customers it places, at least this.
    outlier_score : float, default=0.5
        GLOSH score above which a density model flags a customer as an outlier.
    force : str, optional
        Name of the candidate to use whatever the scores say.
    blocks : list of list of int, optional
        Columns of one discrete attribute each, and one block of the others: the valley
        search then also asks each split to beat the customers with their attributes
        shuffled independently (see `models.clusterability.divisive_search`).
    random_state : int, default=0
        Seed of every sample and model.

    Returns
    -------
    Segmentation
        The winner, fitted on every customer, with the candidates table and the verdict
        (``structure``, ``structure_reason``).
    """
    rng = np.random.default_rng(random_state)
    n = len(X)
    sample = np.sort(rng.choice(n, sample_size, replace=False)) if n > sample_size else np.arange(n)
    rows = []

    kmeans = AutoKMeans(
        k_min=k_min,
        k_max=k_max,
        n_init=n_init,
        sample_size=sample_size,
        tie_tolerance=tie_tolerance,
        criterion=criterion,
        max_valley=max_valley,
        min_valley_z=min_valley_z,
        min_distance=min_distance,
        min_share=min_share,
        min_size=min_size,
        blocks=blocks,
        metric=metric,
        random_state=random_state,
    ).fit(X)
    for k, s in kmeans.scores_.iterrows():
        rows.append(
            {
                "name": f"kmeans_k{k}",
                "family": "kmeans",
                "space": "scaled",
                "param": k,
                "n_clusters": k,
                "noise_share": 0.0,
                **s.drop("inertia").to_dict(),
                "finalist": k == kmeans.n_clusters_,
            }
        )

    space, reducer = None, None
    if density_shares:
        reducer = density_reducer(density_space, umap_params, random_state)
        space = reducer.fit_transform(X)
        for share in density_shares:
            name = f"hdbscan_{density_space}_{share:g}"
            try:
                model = DensityClusterer(
                    min_cluster_share=share, sample_size=sample_size, random_state=random_state
                ).fit(space[sample])
            except ValueError as error:
                logger.info("%s skipped: %s", name, error)
                continue
            scores = _scores(X[sample], model.labels_, random_state)
            placed = model.labels_ >= 0
            if scores["n_clusters"] >= 2:
                scores.update(separation(X[sample][placed], model.labels_[placed]))
            rows.append(
                {
                    "name": name,
                    "family": "hdbscan",
                    "space": density_space,
                    "param": share,
                    **scores,
                    # a model that leaves most customers out cannot describe the base
                    "finalist": scores["n_clusters"] >= k_min and scores["noise_share"] <= 0.5,
                }
            )
    table = pd.DataFrame(rows).set_index("name")

    stab_rows = (
        sample
        if len(sample) <= stability_sample
        else np.sort(rng.choice(sample, stability_sample, replace=False))
    )
    boots, finalist_labels = {}, {}
    kmeans_name = f"kmeans_k{kmeans.n_clusters_}"
    for name, row in table[table["finalist"]].iterrows():
        fit_predict, Z = _refitter(row, n_init, sample_size, X, space, kmeans)
        if name == kmeans_name:  # the search's own partition, not a fresh k-means
            labels = np.asarray(kmeans.labels_)[stab_rows]
        else:
            labels = fit_predict(Z[stab_rows], random_state)
        finalist_labels[name] = labels
        dbcv = _dbcv(X[stab_rows], labels)
        table.loc[name, "dbcv"] = dbcv
        # (1 + DBCV) / 2 in [0, 1], times the share placed: leaving customers out never helps
        table.loc[name, "quality"] = (
            (1 + (-1.0 if np.isnan(dbcv) else dbcv)) / 2 * float((labels >= 0).mean())
        )
        if name != kmeans_name and kmeans_name in finalist_labels:
            placed = labels >= 0
            table.loc[name, "agreement"] = float(
                adjusted_rand_score(finalist_labels[kmeans_name][placed], labels[placed])
            )
        boots[name] = clusterboot(
            fit_predict, Z[stab_rows], labels, n_resamples=n_resamples, random_state=random_state
        )
        table.loc[name, "stability"] = boots[name]["ari"]
        logger.info(
            "%s: quality %.3f, stability %.2f", name, table.loc[name, "quality"], boots[name]["ari"]
        )

    finalists = table[table["finalist"]]
    if force:
        if force not in table.index:
            raise ValueError(
                f"model.force={force!r} is not a candidate; candidates: {', '.join(table.index)}."
            )
        winner, reason = force, f"{force} was forced by the config (model.force)."
    else:
        stable = finalists[finalists["stability"] >= min_stability]
        if len(finalists) == 1:
            winner = finalists.index[0]
            reason = (
                f"{winner} is the only finalist (no density candidate: model.density_shares); "
                f"its ARI over {n_resamples} resamples: {table.loc[winner, 'stability']:.2f}."
            )
        elif len(stable):
            best = stable["quality"].idxmax()
            winner = best
            reason = (
                f"{best} has the best quality ((1 + DBCV) / 2 x placed share = "
                f"{table.loc[best, 'quality']:.3f}) among the finalists with stability "
                f">= {min_stability} (its ARI over {n_resamples} resamples: "
                f"{table.loc[best, 'stability']:.2f})."
            )
            if kmeans_name in stable.index and best != kmeans_name:
                agree = table.loc[best].get("agreement", np.nan)
                if table.loc[kmeans_name, "quality"] >= table.loc[best, "quality"] - family_margin:
                    winner = kmeans_name
                    within = f"is within {family_margin:g} of" if family_margin else "matches"
                    reason = (
                        f"{kmeans_name} {within} the best quality "
                        f"({best}: {table.loc[best, 'quality']:.3f}, "
                        f"{kmeans_name}: {table.loc[kmeans_name, 'quality']:.3f}) and places "
                        f"every customer (its ARI over {n_resamples} resamples: "
                        f"{table.loc[kmeans_name, 'stability']:.2f})."
                    )
                elif agree >= min_agreement:
                    winner = kmeans_name
                    reason = (
                        f"{best} finds the same personas as {kmeans_name} (ARI {agree:.2f} on "
                        f"the customers it places), so k-means keeps the win: it places "
                        f"every customer (its ARI over {n_resamples} resamples: "
                        f"{table.loc[kmeans_name, 'stability']:.2f})."
                    )
        else:
            winner = finalists["stability"].idxmax()
            reason = (
                f"No finalist reached stability {min_stability}; {winner} is the most "
                f"stable ({table.loc[winner, 'stability']:.2f})."
            )
    table["winner"] = table.index == winner
    reason = f"{_how_many(kmeans, k_min, min_distance)} {reason}"
    seg = _final(
        table.loc[winner],
        winner,
        X,
        space,
        reducer,
        kmeans,
        n_init,
        sample_size,
        random_state,
        table,
        reason,
        n_resamples,
        stab_rows,
        outlier_score,
        boots.get(winner) if winner == kmeans_name else None,
    )
    _verdict(seg, X, kmeans, min_stability, random_state)
    return seg


def _how_many(kmeans: AutoKMeans, k_min: int, min_distance: float) -> str:
    """How k-means' number of personas was chosen, in a sentence."""
    k = kmeans.n_clusters_
    if kmeans.n_groups_ is None:
        return f"K-means chose {k} personas by silhouette."
    valleys, groups = kmeans.n_valleys_, kmeans.n_groups_
    many, none = FOUND[kmeans.evidence_]
    if valleys <= 1:
        found = none
    else:
        found = many.format(f"{valleys}") + (
            " of customers" if kmeans.evidence_ == "valley" else ""
        )
        if groups < valleys:
            found += (
                f", {groups} once neighbours closer than {min_distance:g} spreads are merged "
                "(they differ in one behaviour, not as personas)"
            )
    if k > max(groups, 1):
        return f"{found}; model.k_min={k_min} asks for at least {k}, so k-means cuts {k}."
    if kmeans.evidence_ == "latent":
        return f"{found}; each customer joins the nearest class mean."
    return f"{found}, so k-means looks for {k}."


def _verdict(seg: Segmentation, X, kmeans: AutoKMeans, min_stability: float, seed: int):
    """Set ``seg.structure`` and its reason; add the gap to the k-means row it tested."""
    k = kmeans.n_clusters_
    Xs = X if kmeans.sample_ is None else X[kmeans.sample_]
    rows = np.random.default_rng(seed).permutation(len(Xs))[:3000]
    centers = kmeans.search_centers_[k]
    Z = Xs[rows]
    inertia = float(((Z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).min(axis=1).sum())
    gap, sd = gap_statistic(Z, inertia, k, random_state=seed)
    gap_z = gap / sd if sd > 0 else 0.0
    seg.candidates.loc[f"kmeans_k{k}", ["gap", "gap_z"]] = [gap, gap_z]
    if kmeans.n_valleys_ is None:  # the k came from silhouette: look for valleys all the same
        found = divisive_search(
            Xs,
            k_max=kmeans.k_max,
            max_valley=kmeans.max_valley,
            min_valley_z=kmeans.min_valley_z,
            min_distance=kmeans.min_distance,
            min_share=kmeans.min_share,
            min_size=kmeans.min_size,
            blocks=kmeans.blocks,
            random_state=seed,
        )
        n_valleys, n_groups = found["n_valleys"], found["n_groups"]
        evidence = found["evidence"]
        scores = separation(Xs, found["partitions"][n_groups]) if n_groups >= 2 else None
    else:
        n_valleys, n_groups = kmeans.n_valleys_, kmeans.n_groups_
        evidence = kmeans.evidence_
        scores = seg.candidates.loc[f"kmeans_k{n_groups}"] if n_groups >= 2 else None
    seg.structure, seg.structure_reason = structure_verdict(
        n_valleys=n_valleys,
        n_groups=n_groups,
        valley=None if scores is None else float(scores["valley"]),
        distance=None if scores is None else float(scores["distance"]),
        gap_z=gap_z,
        k_tested=k,
        stability=seg.stability.get("ari"),
        min_stability=min_stability,
        evidence=evidence,
    )


def _refitter(row, n_init, sample_size, X, space, kmeans):
    if row["family"] == "kmeans":
        k = int(row["param"])
        if kmeans.evidence_ == "latent" and k == kmeans.n_groups_:  # kept as latent classes

            def fit_predict(Z, seed):
                return class_labels(Z, kmeans.blocks, k, n_init=n_init, random_state=seed)

            return fit_predict, X

        def fit_predict(Z, seed):
            km = KMeans(n_clusters=k, n_init=max(1, n_init // 2), random_state=seed)
            labels = km.fit_predict(Z)
            if kmeans.metric == "pooled":  # refit as the final model is fitted
                labels, _ = refine_pooled(Z, labels, k, min_size=kmeans.min_size)
            return labels

        return fit_predict, X
    share = float(row["param"])

    def fit_predict(Z, seed):
        return DensityClusterer(min_cluster_share=share, sample_size=sample_size).fit(Z).labels_

    return fit_predict, space


def _final(
    row,
    name,
    X,
    space,
    reducer,
    kmeans,
    n_init,
    sample_size,
    seed,
    table,
    reason,
    n_resamples,
    stab_rows,
    outlier_score,
    boot=None,
) -> Segmentation:
    if row["family"] == "kmeans":
        k = int(row["param"])
        model = kmeans if k == kmeans.n_clusters_ else kmeans.with_k(X, k)
        labels = model.labels_
        confidence, nearest, used = model.confidence(X), labels, None
        outlier = np.zeros(len(labels), dtype=bool)
    else:
        model = DensityClusterer(
            min_cluster_share=float(row["param"]), sample_size=sample_size, random_state=seed
        ).fit(space)
        labels, confidence = model.labels_, model.probabilities_
        nearest = np.where(labels >= 0, labels, model.nearest(space))
        outlier = (labels < 0) | (model.outlier_scores_ > outlier_score)
        used = reducer
    # Per-persona stability is measured against the final labels, so its keys match them;
    # the search's own k-means partition was resampled as a finalist already (``boot``).
    if boot is None:
        fit_predict, Z = _refitter(row, n_init, sample_size, X, space, kmeans)
        boot = clusterboot(
            fit_predict,
            Z[stab_rows],
            np.asarray(labels)[stab_rows],
            n_resamples=n_resamples,
            random_state=seed,
        )
    return Segmentation(
        name=name,
        labels=np.asarray(labels),
        nearest=np.asarray(nearest),
        outlier=outlier,
        confidence=np.clip(np.asarray(confidence, dtype=float), 0, 1),
        stability=boot,
        candidates=table,
        reason=reason,
        model=model,
        reducer=used,
    )
