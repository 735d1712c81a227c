"""Turn the feature table into the matrix the clustering sees."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, RobustScaler
from sklearn.utils.validation import check_is_fitted

__all__ = ["Preprocessor", "signed_log1p"]


def signed_log1p(x):
    """``sign(x) * log1p(|x|)``: tames heavy tails and keeps refunds negative."""
    x = np.asarray(x, dtype=float)
    return np.sign(x) * np.log1p(np.abs(x))


def _clip(x, bound):
    return np.clip(np.asarray(x, dtype=float), -bound, bound)


class Preprocessor(TransformerMixin, BaseEstimator):
    """Impute, log-transform, robust-scale, clip and one-hot encode customer features.

    Parameters
    ----------
    log_columns : list of str, default=()
        Heavy-tailed columns (counts, money) that get ``signed_log1p`` first.
    categorical_columns : list of str, default=()
        Columns one-hot encoded (missing values become their own level).
    max_categories : int, default=12
        Most frequent levels kept per categorical column; the rest share one column.
    clip : float, default=5.0
        Scaled values are clipped to ``[-clip, clip]`` so that a few extreme customers
        cannot claim a cluster of their own.

    Attributes
    ----------
    transformer_ : sklearn.compose.ColumnTransformer
        The fitted transformer.
    feature_names_in_ : ndarray of str
        Columns seen during `fit`.

    Notes
    -----
    Numeric columns are imputed with their median and gain a missing indicator where
    values were missing during `fit`; scaling uses the median and interquartile range
    (`sklearn.preprocessing.RobustScaler`), so outliers do not set the scale.
    """

    def __init__(self, *, log_columns=(), categorical_columns=(), max_categories=12, clip=5.0):
        self.log_columns = log_columns
        self.categorical_columns = categorical_columns
        self.max_categories = max_categories
        self.clip = clip

    def _categoricals(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for col in self.categorical_columns:
            if col in X:
                X[col] = X[col].astype(object).where(X[col].notna(), "missing").astype(str)
        return X

    def fit(self, X: pd.DataFrame, y=None):
        """Learn medians, scales and category levels from ``X``.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_customers, n_features)
            The feature table.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : Preprocessor
            The fitted preprocessor.
        """
        X = pd.DataFrame(X)
        cats = [c for c in X.columns if c in self.categorical_columns]
        logs = [c for c in X.columns if c in self.log_columns and c not in cats]
        plain = [c for c in X.columns if c not in cats and c not in logs]

        def numeric(*head):
            return make_pipeline(
                *head,
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                RobustScaler(),
                FunctionTransformer(
                    _clip, kw_args={"bound": self.clip}, feature_names_out="one-to-one"
                ),
            )

        self.transformer_ = ColumnTransformer(
            [
                (
                    "log",
                    numeric(FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
                    logs,
                ),
                ("num", numeric(), plain),
                (
                    "cat",
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist",
                        max_categories=self.max_categories,
                        sparse_output=False,
                    ),
                    cats,
                ),
            ],
            verbose_feature_names_out=False,
        )
        self.transformer_.fit(self._categoricals(X))
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Return the scaled matrix for ``X``.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_customers, n_features)
            Same columns as during `fit`.

        Returns
        -------
        ndarray of shape (n_customers, n_outputs)
            Scaled, clipped and encoded values.
        """
        check_is_fitted(self, "transformer_")
        X = pd.DataFrame(X)
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the columns {missing} seen in fit.")
        out = self.transformer_.transform(self._categoricals(X[list(self.feature_names_in_)]))
        return np.asarray(out, dtype=float)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output columns (missing indicators and one-hot levels included)."""
        check_is_fitted(self, "transformer_")
        return self.transformer_.get_feature_names_out()
