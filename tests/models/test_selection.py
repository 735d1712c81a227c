"""Model selection, density clustering, reducers and stability."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.manifold import trustworthiness
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from models import DensityClusterer, IdentityReducer, PCAReducer, UMAPReducer, clusterboot
from models.selection import select_segmentation

FAST = {"n_resamples": 5, "stability_sample": 600, "sample_size": 2000}


def blobs():
    X, y = make_blobs(
        n_samples=[500, 300, 150, 50],
        centers=None,
        cluster_std=[0.6, 0.6, 0.6, 0.6],
        n_features=6,
        random_state=42,
    )
    return X, y


def rings_with_noise(seed=0):
    """Two concentric rings and a small dense core, unequal sizes, plus 5% uniform noise."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for label, (radius, n, spread) in enumerate([(6.0, 600, 0.25), (3.0, 300, 0.15)]):
        angle = rng.uniform(0, 2 * np.pi, n)
        r = radius + rng.normal(0, spread, n)
        parts.append(np.column_stack([r * np.cos(angle), r * np.sin(angle)]))
        labels += [label] * n
    parts.append(rng.normal(0, 0.3, size=(120, 2)))
    labels += [2] * 120
    n_noise = int(0.05 * sum(len(p) for p in parts))
    parts.append(rng.uniform(-8, 8, size=(n_noise, 2)))
    labels += [-1] * n_noise
    return np.vstack(parts), np.array(labels)


def test_kmeans_wins_on_round_blobs():
    X, y = blobs()
    seg = select_segmentation(X, density_space="scaled", **FAST)
    assert seg.name == "kmeans_k4", seg.candidates
    assert adjusted_rand_score(y, seg.labels) == pytest.approx(1.0)
    assert seg.candidates["finalist"].sum() >= 2
    assert seg.candidates.loc[seg.name, "winner"]
    assert "best quality" in seg.reason


def test_hdbscan_wins_on_rings_and_flags_noise():
    X, y = rings_with_noise()
    seg = select_segmentation(X, k_min=3, density_space="scaled", **FAST)
    assert seg.name.startswith("hdbscan"), seg.candidates
    planted = y >= 0
    assert adjusted_rand_score(y[planted], seg.nearest[planted]) >= 0.9
    # uniform noise also falls on the rings (about a quarter of the square), so not all of
    # it can be told apart; half must be, at almost no cost to planted customers
    assert seg.outlier[~planted].mean() >= 0.45
    assert seg.outlier[planted].mean() <= 0.05
    assert set(np.unique(seg.nearest)) == {0, 1, 2}


def test_force_picks_a_named_candidate_and_rejects_unknown():
    X, y = blobs()
    seg = select_segmentation(X, density_shares=(), force="kmeans_k5", **FAST)
    assert seg.name == "kmeans_k5"
    assert len(np.unique(seg.labels)) == 5
    with pytest.raises(ValueError, match="not a candidate"):
        select_segmentation(X, density_shares=(), force="nope", **FAST)


def test_selection_is_deterministic():
    X, _ = rings_with_noise(1)
    a = select_segmentation(X, density_space="scaled", **FAST)
    b = select_segmentation(X, density_space="scaled", **FAST)
    assert a.name == b.name
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    assert a.stability == b.stability


def test_clusterboot_separates_real_from_imposed_clusters():
    X, y = blobs()

    def kmeans(k):
        from sklearn.cluster import KMeans

        return lambda Z, seed: KMeans(n_clusters=k, n_init=2, random_state=seed).fit_predict(Z)

    real = clusterboot(kmeans(4), X, kmeans(4)(X, 0), n_resamples=8)
    assert min(real["jaccard"].values()) > 0.9 and real["ari"] > 0.95
    noise = np.random.default_rng(0).uniform(size=(600, 6))
    imposed = clusterboot(kmeans(7), noise, kmeans(7)(noise, 0), n_resamples=8)
    assert imposed["ari"] < real["ari"]
    assert min(imposed["jaccard"].values()) < 0.85


def test_density_clusterer_places_new_points_and_noise():
    X, y = rings_with_noise(2)
    model = DensityClusterer(min_cluster_share=0.05, random_state=0).fit(X)
    assert set(np.unique(model.labels_)) >= {0, 1, 2}
    np.testing.assert_array_equal(model.predict(X[:50]) >= 0, model.labels_[:50] >= 0)
    assert (model.nearest(X) >= 0).all()
    assert ((model.confidence(X) >= 0) & (model.confidence(X) <= 1)).all()
    with pytest.raises(ValueError, match="too few"):
        DensityClusterer(min_cluster_share=0.6).fit(X[:20])


def test_pca_space_runs_hdbscan_on_seeded_principal_components():
    X, _ = blobs()
    X = np.hstack([X, 0.01 * np.random.default_rng(0).normal(size=(len(X), 4))])  # 4 flat axes
    seg = select_segmentation(
        X, density_shares=(0.05,), density_space="pca", force="hdbscan_pca_0.05", **FAST
    )
    assert seg.candidates.loc["hdbscan_pca_0.05", "space"] == "pca"
    assert isinstance(seg.reducer, PCAReducer)
    Z = seg.reducer.transform(X)
    assert Z.shape[1] < 6  # the flat axes and part of the blobs' are dropped
    assert seg.reducer.pca_.explained_variance_ratio_.sum() >= 0.9
    np.testing.assert_array_equal(seg.model.predict(Z[:100]) >= 0, seg.labels[:100] >= 0)
    again = select_segmentation(
        X, density_shares=(0.05,), density_space="pca", force="hdbscan_pca_0.05", **FAST
    )
    np.testing.assert_array_equal(again.labels, seg.labels)


def test_identity_and_pca_reducers():
    X, _ = blobs()
    np.testing.assert_array_equal(IdentityReducer().fit_transform(X), X)
    Z = PCAReducer(n_components=2, random_state=0).fit_transform(X)
    assert Z.shape == (len(X), 2)


@pytest.mark.slow
def test_umap_reducer_is_seeded_and_trustworthy():
    X, _ = make_blobs(n_samples=400, centers=4, n_features=8, random_state=3)
    a = UMAPReducer(n_components=2, sample_size=300, random_state=0).fit_transform(X)
    b = UMAPReducer(n_components=2, sample_size=300, random_state=0).fit_transform(X)
    np.testing.assert_allclose(a, b)
    assert trustworthiness(X, a, n_neighbors=10) >= 0.8


@pytest.mark.slow
def test_umap_places_customers_whatever_the_batch():
    X, _ = make_blobs(n_samples=600, centers=4, n_features=8, random_state=5)
    reducer = UMAPReducer(n_components=2, sample_size=300, random_state=0).fit(X)
    # fitted and new customers alike: the same coordinates alone, in any batch, as in fit
    np.testing.assert_array_equal(reducer.transform(X), reducer.embedding_)
    np.testing.assert_array_equal(reducer.transform(X[::-7]), reducer.embedding_[::-7])
    new = X[:50] + 0.01
    np.testing.assert_array_equal(reducer.transform(new)[7], reducer.transform(new[7:8])[0])
    # a new customer lands beside its nearest fitted customers, not somewhere else
    near = reducer.transform(new)
    gap = np.linalg.norm(near - reducer.embedding_[:50], axis=1)
    assert np.median(gap) < 0.1 * np.ptp(reducer.embedding_, axis=0).max()


@parametrize_with_checks(
    [
        IdentityReducer(),
        PCAReducer(n_components=2, random_state=0),
        DensityClusterer(min_cluster_share=0.1, random_state=0),
    ]
)
def test_stages_follow_the_sklearn_contract(estimator, check):
    check(estimator)
