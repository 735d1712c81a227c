"""How many personas, and whether there are any: density valleys, merging, the verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from models.clusterability import (
    distance,
    divisive_search,
    gap_statistic,
    pair_valley,
    separation,
)
from models.clustering import AutoKMeans
from models.selection import select_segmentation

FAST = {"n_resamples": 5, "stability_sample": 600, "sample_size": 3000, "density_shares": ()}


def many_unequal(seed=0, n=3000):
    """Ten personas of 3% to 20% in 8 dimensions, neighbours touching but not merged."""
    rng = np.random.default_rng(seed)
    shares = np.array([0.20, 0.16, 0.13, 0.11, 0.10, 0.09, 0.07, 0.06, 0.05, 0.03])
    centres = rng.normal(0, 2.2, size=(len(shares), 8))
    y = np.repeat(np.arange(len(shares)), np.round(shares * n).astype(int))
    X = centres[y] + rng.normal(0, 0.6, size=(len(y), 8))
    return X, y


def continuum(seed=0, n=2000):
    """One profile with customer-level spread: correlated, skewed, no groups."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 6)) @ rng.normal(size=(6, 6))
    return np.column_stack([Z, np.log1p(rng.gamma(2.0, 1.0, size=(n, 2)))])


def test_two_halves_of_one_group_have_no_valley_two_groups_do():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5))
    half = X[:, 0] > 0
    ratio, z = pair_valley(X, half, ~half)
    assert ratio > 0.9 and z < 1
    Y = np.vstack(
        [rng.normal(0, 1, size=(600, 5)), rng.normal(0, 1, size=(300, 5)) + [5, 0, 0, 0, 0]]
    )
    first = np.arange(len(Y)) < 600
    ratio, z = pair_valley(Y, first, ~first)
    assert ratio < 0.2 and z > 5
    assert distance(Y, first, ~first) > 2 > distance(X, half, ~half)


def test_search_finds_many_unequal_personas_where_silhouette_merges():
    X, y = many_unequal()
    found = divisive_search(X, random_state=0)
    assert found["n_valleys"] == found["n_groups"] == 10
    labels = found["partitions"][10]
    assert adjusted_rand_score(y, labels) > 0.97
    silhouette = AutoKMeans(k_min=2, k_max=15, criterion="silhouette", random_state=0).fit(X)
    assert silhouette.n_clusters_ < 10  # the old rule merges touching personas


def test_search_does_not_split_a_continuum():
    found = divisive_search(continuum(), random_state=0)
    assert found["n_valleys"] == found["n_groups"] == 1
    assert set(found["partitions"]) == set(range(1, 16))  # every k is there to be forced


def test_a_yes_no_habit_leaves_a_valley_but_is_merged_back():
    X, y = make_blobs(n_samples=[600, 500, 400], n_features=8, cluster_std=1.0, random_state=1)
    X = X * 3
    habit = np.random.default_rng(1).random(len(X)) < 0.4  # e.g. a ticket in the window or not
    X = np.column_stack([X, 6.0 * habit])  # 0.7 spreads: a valley, not a persona
    found = divisive_search(X, random_state=0)
    assert found["n_valleys"] > 3  # the habit splits each group by a valley
    assert found["n_groups"] == 3 and found["merged"] >= 1
    assert adjusted_rand_score(y, found["partitions"][3]) > 0.99


def test_separation_and_gap_score_groups_above_slices():
    X, y = many_unequal(seed=2)
    groups = separation(X, y)
    assert groups["valley"] < 0.6 and groups["valley_z"] > 2 and groups["distance"] > 1
    flat = continuum(seed=2)
    km = AutoKMeans(k_min=4, k_max=4, criterion="silhouette", random_state=0).fit(flat)
    slices = separation(flat, km.labels_)
    assert slices["valley"] > 0.6
    gap_groups = gap_statistic(
        X, float(((X - np.array([X[y == c].mean(0) for c in range(10)])[y]) ** 2).sum()), 10
    )
    gap_flat = gap_statistic(flat, float(km._kmeans.inertia_), 4)
    assert gap_groups[0] / gap_groups[1] > 10 > 2 > gap_flat[0] / gap_flat[1]


def test_verdict_distinct_on_groups_none_on_a_continuum():
    X, y = many_unequal(seed=3)
    seg = select_segmentation(X, **FAST)
    assert seg.structure == "distinct", seg.structure_reason
    assert seg.name == "kmeans_k10" and seg.n_personas == 10
    assert adjusted_rand_score(y, seg.labels) > 0.97
    flat = select_segmentation(continuum(seed=3), **FAST)
    assert flat.structure == "none", flat.structure_reason
    assert flat.n_personas == 3  # still k_min slices, fitted and written
    assert "continuum" in flat.structure_reason and "k_min" in flat.reason


def test_verdict_does_not_depend_on_the_k_criterion():
    flat = select_segmentation(continuum(seed=4), criterion="silhouette", **FAST)
    assert flat.structure == "none", flat.structure_reason


def test_summary_is_what_segmentation_json_needs():
    X, _ = many_unequal(seed=5, n=1500)
    seg = select_segmentation(X, **FAST)
    summary = json.loads(json.dumps(seg.summary()))  # plain JSON: no NaN, no numpy
    assert set(summary) >= {"chosen", "n_personas", "candidates", "reason", "structure"}
    assert summary["chosen"] == seg.name and summary["n_personas"] == seg.n_personas
    names = [c["name"] for c in summary["candidates"]]
    assert names == list(seg.candidates.index) and len(names) == 14  # k = 2 .. 15
    chosen = next(c for c in summary["candidates"] if c["name"] == seg.name)
    assert chosen["winner"] and {"valley", "valley_z", "distance", "gap_z"} <= set(chosen)


def test_forcing_any_k_uses_the_search_partition_and_is_deterministic():
    X, _ = many_unequal(seed=6, n=1500)
    a = select_segmentation(X, force="kmeans_k7", **FAST)
    b = select_segmentation(X, force="kmeans_k7", **FAST)
    assert a.n_personas == 7
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.structure == b.structure == "distinct"
    km = AutoKMeans(k_min=3, k_max=12, criterion="valley", random_state=0).fit(X)
    assert km.with_k(X, 5).n_clusters_ == 5 and km.n_clusters_ == 10
    with pytest.raises(ValueError, match="not scored"):
        km.with_k(X, 13)


def held_attributes(seed=0, n=2000, classes=4):
    """Customers holding 6 discrete attributes drawn from ``classes`` latent classes.

    Returns the one-hot matrix with a noisy bill column after it, each family scaled to
    a total variance of 1 as `models.Preprocessor` balances them, the column blocks of
    each attribute and the planted class; with ``classes=1`` the attributes are independent.
    """
    rng = np.random.default_rng(seed)
    levels = [3, 2, 2, 3, 2, 4]
    shares = rng.dirichlet(np.full(classes, 3.0))
    y = rng.choice(classes, size=n, p=shares)
    columns, blocks = [], []
    for m in levels:
        probs = rng.dirichlet(np.full(m, 0.5), size=classes)  # each class its own profile
        code = np.array([rng.choice(m, p=probs[c]) for c in y])
        blocks.append(list(range(sum(len(b) for b in blocks), sum(len(b) for b in blocks) + m)))
        columns.append(np.eye(m)[code])
    held = np.hstack(columns)
    held = held / np.sqrt(held.var(axis=0).sum())
    return np.hstack([held, rng.normal(size=(n, 1))]), blocks, y


@pytest.mark.parametrize("seed", [0, 1])
def test_attributes_count_latent_classes_not_their_combinations(seed) -> None:
    X, blocks, y = held_attributes(seed)
    plain = divisive_search(X, random_state=0)
    found = divisive_search(X, blocks=blocks, random_state=0)
    assert found["evidence"] == "latent" and plain["evidence"] == "valley"
    assert found["n_valleys"] == found["n_groups"] == 4
    labels = found["partitions"][found["n_groups"]]
    assert adjusted_rand_score(y, labels) >= 0.5  # 6 attributes: classes overlap


def test_independent_attributes_form_one_class_and_the_verdict_says_so() -> None:
    X, blocks, _ = held_attributes(0, classes=1)
    found = divisive_search(X, blocks=blocks, random_state=0)
    assert found["n_valleys"] == 1
    seg = select_segmentation(X, blocks=blocks, random_state=0, **FAST)
    assert seg.structure in {"none", "weak"}
    assert "no latent classes" in seg.structure_reason
