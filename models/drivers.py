"""Key drivers of NPS: which features move the score, overall and within each persona.

A gradient-boosted model predicts each respondent's score (or promoter vs detractor) from
the features, cross-fitted so that every respondent is predicted by a model that did not
see them. A feature's importance is how much the held-out error grows when its values are
shuffled (permutation importance): across all respondents for the overall drivers, and
within one persona's respondents for that persona's drivers, so a persona's drivers say
what moves the score *inside* it, not what sets it apart. The interval of an importance
is mean +- z standard errors of the per-respondent error increases, and a driver is
"clear" only when a one-sided test of importance > 0 holds after Holm's correction across
the features of its list, so that among forty noise features none looks like a driver.
Gradient boosting runs on one thread below 50,000 respondents: OpenMP start-up costs more
than it saves on small data. A shuffled copy is predicted by the trees that split on the
shuffled feature only; the other trees' values are reused, summed in scikit-learn's order,
so the predictions (and importances) are the model's own, bit for bit. The features'
shuffles are drawn first, in one fixed order, then predicted on every core at once (each
tree on one thread): the numbers do not depend on how many cores there are.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pandas as pd
from joblib import cpu_count
from scipy.stats import norm, spearmanr
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from models.nps import holm

__all__ = ["key_drivers"]

logger = logging.getLogger(__name__)
_progress = logging.getLogger("personas.progress")  # shown by pipelines.run.stage

_KINDS = {
    "score": ("increase in mean absolute error of the 0-10 score", "score points"),
    "promoter": ("increase in Brier score of promoter vs detractor", "Brier points"),
}


def _design(frame: pd.DataFrame, features: list[str], categorical: set[str], max_categories: int):
    """Numeric matrix with categorical features as codes (NaN = missing), and the mask."""
    cols, mask = [], []
    for f in features:
        col = frame[f]
        if f in categorical or not pd.api.types.is_numeric_dtype(col):
            keep = col.astype("string").value_counts().index[:max_categories]
            codes = pd.Categorical(col.astype("string"), categories=keep).codes.astype(float)
            codes[codes < 0] = np.nan
            cols.append(codes)
            mask.append(True)
        else:
            cols.append(pd.to_numeric(col, errors="coerce").to_numpy(dtype=float))
            mask.append(False)
    return np.column_stack(cols), np.array(mask)


def _folds(groups: np.ndarray, n_splits: int, seed: int):
    counts = np.unique(groups, return_counts=True)[1]
    if counts.min() >= n_splits:
        return StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(groups, groups)
    return KFold(n_splits, shuffle=True, random_state=seed).split(groups)


def _model(kind: str, cat_mask: np.ndarray, seed: int):
    params = dict(
        max_iter=150,
        learning_rate=0.08,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=10,
        categorical_features=cat_mask if cat_mask.any() else None,
        random_state=seed,
    )
    if kind == "score":
        return HistGradientBoostingRegressor(**params)
    return HistGradientBoostingClassifier(**params)


def _predict(model, X: np.ndarray, kind: str) -> np.ndarray:
    return model.predict(X) if kind == "score" else model.predict_proba(X)[:, 1]


def _error(y: np.ndarray, pred: np.ndarray, kind: str) -> np.ndarray:
    return np.abs(y - pred) if kind == "score" else (y - pred) ** 2


def _within(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Permute positions only inside each group."""
    out = np.arange(groups.size)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = rng.permutation(idx)
    return out


def _summaries(delta, X, y, rows, names, meta, categorical, z, alpha) -> list[dict]:
    out = []
    n = len(rows)
    d = delta[rows]
    mean = d.mean(axis=0)
    se = d.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(len(names))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_one_sided = np.where(se > 0, norm.sf(mean / se), np.where(mean > 0, 0.0, 1.0))
    p_adjusted = holm(p_one_sided)
    for j, f in enumerate(names):
        direction = None
        x = X[rows, j]
        ok = ~np.isnan(x)
        if f not in categorical and ok.sum() > 2 and np.ptp(x[ok]) > 0 and np.ptp(y[rows][ok]) > 0:
            rho = spearmanr(x[ok], y[rows][ok]).statistic
            direction = 0 if abs(rho) < 0.05 else int(np.sign(rho))
        info = meta.loc[f] if meta is not None and f in meta.index else {}
        out.append(
            {
                "feature": f,
                "label": info.get("label", f) if len(info) else f,
                "description": info.get("description", f) if len(info) else f,
                "importance": round(float(mean[j]), 4),
                "ci_low": round(float(mean[j] - z * se[j]), 4),
                "ci_high": round(float(mean[j] + z * se[j]), 4),
                "p_value": float(f"{p_adjusted[j]:.4g}"),
                "clear": bool(p_adjusted[j] < alpha),
                "direction": direction,
            }
        )
    return sorted(out, key=lambda r: -r["importance"])


def _differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where two arrays differ, NaN equal to NaN."""
    return (a != b) & ~(np.isnan(a) & np.isnan(b))


class _Trees:
    """A fitted model's trees, to predict copies of the held-out rows with one column shuffled.

    A tree that never splits on a feature gives every row the same value whatever that
    feature holds, so once each tree's values on the held-out rows are known, shuffling a
    feature only needs the trees that split on it (a quarter of them, typically): the
    others' values are reused. They are
    summed in the order scikit-learn sums them (its ``_raw_predict``), so the predictions
    are bit for bit the model's own; `of` checks that on the held-out rows and returns None
    (predict the plain way) when they differ or scikit-learn's internals have moved.
    """

    def __init__(self, model, kind: str, X: np.ndarray):
        self.model, self.kind = model, kind
        self.bitsets, self.f_idx_map = model._bin_mapper.make_known_categories_bitsets()
        self.trees = [tree for iteration in model._predictors for tree in iteration]
        self.splits_on = [
            set(tree.nodes["feature_idx"][tree.nodes["is_leaf"] == 0].tolist())
            for tree in self.trees
        ]
        self.X = np.ascontiguousarray(model._preprocess_X(X, reset=False))
        self.values = [self._tree(tree, self.X) for tree in self.trees]

    @classmethod
    def of(cls, model, kind: str, X: np.ndarray, expected: np.ndarray) -> _Trees | None:
        """Return the trees of ``model`` on the held-out rows ``X`` (None: predict plainly)."""
        try:
            trees = cls(model, kind, X)
            ok = model.n_trees_per_iteration_ == 1 and np.array_equal(trees.predict(X), expected)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError):
            return None
        return trees if ok else None

    def _tree(self, tree, X: np.ndarray) -> np.ndarray:
        # one thread: thousands of short calls, where OpenMP's start-up (and, on a shared
        # machine, its spinning) costs more than a second thread saves
        return tree.predict(
            X, known_cat_bitsets=self.bitsets, f_idx_map=self.f_idx_map, n_threads=1
        )

    def predict(self, stacked: np.ndarray) -> np.ndarray:
        """Predict ``stacked``: copies of the held-out rows that differ in a column or two.

        The columns are compared after scikit-learn's own preprocessing, which encodes
        and reorders categorical features, so no assumption is made about its layout.
        """
        copies = len(stacked) // len(self.X)
        X = np.ascontiguousarray(self.model._preprocess_X(stacked, reset=False))
        same = np.tile(self.X, (copies, 1))
        return self._predict(X, set(np.flatnonzero(_differ(X, same).any(axis=0)).tolist()))

    def shuffled(self, Xt: np.ndarray, j: int, orders: list[np.ndarray]) -> np.ndarray:
        """Predict copies of the held-out rows ``Xt``, column ``j`` of copy r in ``orders[r]``.

        Scikit-learn's preprocessing maps each row on its own, so a copy's preprocessed
        rows are the held-out rows' (``self.X``) with one column reordered: which column
        is found once per feature, from one probe of the held-out rows (`_column`), and
        the copies are not preprocessed again. Where the probe does not single out one
        column, the copies are preprocessed as `predict` does.
        """
        column, m = self._column(Xt, j), len(Xt)
        if column is None:
            stacked = np.tile(Xt, (len(orders), 1))
            for r, order in enumerate(orders):
                stacked[r * m : (r + 1) * m, j] = Xt[order, j]
            return self.predict(stacked)
        X = np.tile(self.X, (len(orders), 1))
        for r, order in enumerate(orders):
            X[r * m : (r + 1) * m, column] = self.X[order, column]
        same = np.tile(self.X[:, column], len(orders))
        return self._predict(X, {column} if _differ(X[:, column], same).any() else set())

    def _column(self, Xt: np.ndarray, j: int) -> int | None:
        """Return the preprocessed column of feature ``j`` (None: not one column found)."""
        probe = Xt.copy()
        probe[:, j] = Xt[::-1, j]
        P = self.model._preprocess_X(probe, reset=False)
        found = np.flatnonzero(_differ(P, self.X).any(axis=0))
        return int(found[0]) if len(found) == 1 else None

    def _predict(self, X: np.ndarray, changed: set) -> np.ndarray:
        """Predict preprocessed copies of the held-out rows that differ in ``changed``."""
        copies = len(X) // len(self.X)
        raw = np.zeros((len(X), 1), dtype=self.model._baseline_prediction.dtype, order="F")
        raw += self.model._baseline_prediction
        for tree, splits_on, values in zip(self.trees, self.splits_on, self.values, strict=True):
            raw[:, 0] += self._tree(tree, X) if splits_on & changed else np.tile(values, copies)
        if self.kind == "score":
            return self.model._loss.link.inverse(raw.ravel())
        return self.model._loss.predict_proba(raw)[:, 1]


def _cross_fit(X, y, groups, cat_mask, kind, *, n_splits, n_repeats, rng, seed):
    """Held-out predictions and per-respondent error increases when a feature is shuffled.

    Returns the predictions, and two (n_rows, n_features) arrays of error increases:
    shuffling across all held-out rows, and shuffling within each persona. Each shuffled
    copy is predicted by the trees that split on the shuffled feature only (`_Trees`).
    """
    pred = np.empty(y.size)
    overall = np.zeros(X.shape)
    inside = np.zeros(X.shape)
    copies = 2 * n_repeats
    for fold, (train, test) in enumerate(_folds(groups, n_splits, seed)):
        _progress.info("", extra={"progress": (fold + 1, n_splits, "folds")})
        # small fits run faster on one thread
        with threadpool_limits(limits=1 if train.size < 50_000 else None, user_api="openmp"):
            model = _model(kind, cat_mask, seed + fold).fit(X[train], y[train])
        Xt, yt, m = X[test], y[test], len(test)
        pred[test] = _predict(model, Xt, kind)
        base = _error(yt, pred[test], kind)
        trees = _Trees.of(model, kind, Xt, pred[test])
        # every shuffle drawn first, in the order of a loop over the features, so the
        # features can then be predicted on every core with the same numbers
        orders = [
            [rng.permutation(m) if r < n_repeats else _within(groups[test], rng)
             for r in range(copies)]
            for _ in range(X.shape[1])
        ]  # fmt: skip

        work = partial(_shuffled, model, trees, Xt, kind)
        with ThreadPoolExecutor(cpu_count() if trees is not None else 1) as pool:
            for j, got in enumerate(pool.map(work, range(X.shape[1]), orders)):
                err = _error(np.tile(yt, copies), got, kind).reshape(copies, m) - base
                overall[test, j] = err[:n_repeats].mean(axis=0)
                inside[test, j] = err[n_repeats:].mean(axis=0)
    return pred, overall, inside


def _shuffled(model, trees: _Trees | None, Xt, kind: str, j: int, orders: list) -> np.ndarray:
    """Predict copies of the held-out rows ``Xt``, column ``j`` of copy r in ``orders[r]``."""
    if trees is not None:
        return trees.shuffled(Xt, j, orders)
    m = len(Xt)
    stacked = np.tile(Xt, (len(orders), 1))
    for r, order in enumerate(orders):
        stacked[r * m : (r + 1) * m, j] = Xt[order, j]
    return _predict(model, stacked, kind)


def key_drivers(
    frame: pd.DataFrame,
    labels: np.ndarray,
    meta: pd.DataFrame | None = None,
    *,
    target: str = "nps_latest",
    kind: str = "score",
    features: list[str] | None = None,
    exclude_families: tuple[str, ...] = ("feedback",),
    n_splits: int = 3,
    n_repeats: int = 5,
    sample_size: int = 6_000,
    min_respondents: int = 30,
    max_categories: int = 20,
    ci_level: float = 0.95,
    top: int = 10,
    random_state: int = 0,
) -> dict:
    """Which features move NPS, overall and within each persona, with honest intervals.

    Parameters
    ----------
    frame : pandas.DataFrame of shape (n_customers, n_features)
        Raw feature values and the ``target`` column.
    labels : ndarray of shape (n_customers,)
        Persona id of each customer (-1 for unassigned).
    meta : pandas.DataFrame, optional
        Feature metadata (family, label, description, transform) indexed by feature.
    target : str, default="nps_latest"
        The latest 0-10 score; customers without one are left out.
    kind : {"score", "promoter"}, default="score"
        Model the score (error: absolute, in score points) or promoter (9-10) vs
        detractor (0-6), passives left out (error: Brier score).
    features : list of str, optional
        Candidate drivers (default: every feature of ``meta`` outside
        ``exclude_families``, else every column but the target).
    exclude_families : tuple of str, default=("feedback",)
        Families that restate the outcome (NPS, CSAT, comments) and so are no drivers.
    n_splits : int, default=3
        Cross-fitting folds: each respondent's error is measured on a held-out model.
    n_repeats : int, default=5
        Shuffles per feature.
    sample_size : int, default=6000
        Respondents used at most (a seeded sample): an importance's 95% interval is
        +-1.96 s/sqrt(n), s its spread over respondents, whatever the size of the base.
    min_respondents : int, default=30
        Personas with fewer respondents get no drivers of their own.
    max_categories : int, default=20
        Levels kept per categorical feature; the rest count as missing.
    ci_level : float, default=0.95
        Coverage of the importance intervals.
    top : int, default=10
        Drivers kept overall and per persona.
    random_state : int, default=0
        Seed of the sample, the folds, the models and the shuffles.

    Returns
    -------
    dict
        ``kind``, ``metric`` and ``unit`` (what an importance measures), ``respondents``,
        ``model_quality`` (held-out R² of the score, or ROC AUC), ``overall`` (list of
        drivers: ``feature``, ``label``, ``description``, ``importance``, ``ci_low``,
        ``ci_high``, ``clear``, ``direction``: +1 when higher values go with higher
        scores, -1 the reverse, 0 neither, None for categories) and ``by_persona``
        (persona id -> list of drivers).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r} should be one of {sorted(_KINDS)}")
    labels = np.asarray(labels)
    metric, unit = _KINDS[kind]
    empty = {"kind": kind, "metric": metric, "unit": unit, "respondents": 0}
    empty |= {"model_quality": None, "overall": [], "by_persona": {}}
    if target not in frame:
        return empty
    if features is None and meta is not None:
        features = [f for f in meta.index if meta.loc[f, "family"] not in exclude_families]
    features = [f for f in (features or frame.columns) if f in frame and f != target]
    categorical = set() if meta is None else set(meta.index[meta["transform"] == "category"])
    y_all = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=float)
    keep = ~np.isnan(y_all)
    if kind == "promoter":
        keep &= (y_all >= 9) | (y_all <= 6)
    rows = np.flatnonzero(keep)
    rng = np.random.default_rng(random_state)
    if rows.size > sample_size:
        rows = np.sort(rng.choice(rows, sample_size, replace=False))
    y = y_all[rows] if kind == "score" else (y_all[rows] >= 9).astype(float)
    # a feature with fewer than two values among respondents cannot drive anything (and
    # gradient boosting cannot bin an all-missing column)
    features = [f for f in features if frame[f].iloc[rows].nunique(dropna=True) > 1]
    if rows.size < 10 * n_splits or not features or np.ptp(y) == 0:
        return empty | {"respondents": int(rows.size)}
    X, cat_mask = _design(frame.iloc[rows], features, categorical, max_categories)
    groups = labels[rows]
    pred, overall, inside = _cross_fit(
        X,
        y,
        groups,
        cat_mask,
        kind,
        n_splits=n_splits,
        n_repeats=n_repeats,
        rng=rng,
        seed=random_state,
    )
    if kind == "score":
        quality = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    else:
        quality = roc_auc_score(y, pred)
    z = float(norm.ppf(0.5 + ci_level / 2))
    everyone = np.arange(rows.size)
    result = empty | {
        "respondents": int(rows.size),
        "model_quality": round(float(quality), 3),
        "overall": _summaries(
            overall, X, y, everyone, features, meta, categorical, z, 1 - ci_level
        )[:top],
    }
    for pid in sorted(set(groups.tolist())):
        mine = np.flatnonzero(groups == pid)
        if pid == -1 or mine.size < min_respondents or np.ptp(y[mine]) == 0:
            continue
        found = _summaries(inside, X, y, mine, features, meta, categorical, z, 1 - ci_level)[:top]
        result["by_persona"][int(pid)] = found
    logger.info(
        "Key drivers: %d respondents, held-out %s %.3f",
        rows.size,
        "R²" if kind == "score" else "AUC",
        quality,
    )
    return result
