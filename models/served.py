"""The served persona model: features in, persona out, for one customer or a million.

It holds fitted parameters (the table's fitted definition, scalers, centres or the density
model, persona names) and, for a density model, only what its prediction needs (see
`models.density` and `models.reducers`); for k-means no customer's data at all, so it can
be logged and shared. Every customer is placed on their own, so a customer's persona does
not depend on who else is in the batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.clustering import lookup

__all__ = ["PersonaModel"]


class PersonaModel:
    """Place customers in the personas of a trained segmentation.

    Parameters
    ----------
    preprocessor : models.Preprocessor
        The fitted preprocessor.
    columns : list of str
        Feature columns the preprocessor expects, in order.
    clusterer : object
        The fitted clusterer (`AutoKMeans`, `DensityClusterer`, or any class with the
        clusterer contract: ``predict`` (a cluster, -1 for noise), ``confidence`` (0-1),
        ``nearest`` (a cluster for everyone) and ``outlier_scores`` (0-1)).
    reducer : object or None
        The fitted reducer the clusterer works after (None for the scaled features).
    renumber : dict of int to int
        Clusterer label -> persona id (personas are numbered by size).
    names : dict of int to str
        Persona id -> persona name.
    noise : {"nearest", "unassigned"}
        What happens to customers a density model calls noise.
    outlier_confidence : float
        Below this confidence a customer is flagged ``is_outlier``.
    outlier_score : float
        Density models: GLOSH score above which a customer is flagged ``is_outlier``.
    definition : object, optional
        The fitted definition of the feature table (`pipelines.table.TableDefinition`):
        what scoring needs to build the same features from raw tables, with no config.
    """

    def __init__(
        self,
        *,
        preprocessor,
        columns,
        clusterer,
        reducer,
        renumber,
        names,
        noise,
        outlier_confidence,
        outlier_score,
        definition=None,
    ):
        self.preprocessor = preprocessor
        self.columns = list(columns)
        self.clusterer = clusterer
        self.reducer = reducer
        self.renumber = dict(renumber)
        self.names = dict(names)
        self.noise = noise
        self.outlier_confidence = outlier_confidence
        self.outlier_score = outlier_score
        self.definition = definition

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Assign each row of a customer feature table to a persona.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per customer with (at least) the training feature columns; the index
            is kept.

        Returns
        -------
        pandas.DataFrame
            ``persona_id``, ``persona_name``, ``confidence``, ``is_outlier`` per row.
        """
        missing = [c for c in self.columns if c not in features.columns]
        if missing:
            raise ValueError(
                f"The feature table lacks {len(missing)} column(s) the model was trained on "
                f"(e.g. {', '.join(missing[:5])}); score with the same tables as training."
            )
        X = self.preprocessor.transform(features[self.columns])
        Z = self.reducer.transform(X) if self.reducer is not None else X
        raw = self.clusterer.predict(Z)
        confidence = self.clusterer.confidence(Z)
        outlier = (raw < 0) | (self.clusterer.outlier_scores(Z) > self.outlier_score)
        labels = (
            np.where(raw >= 0, raw, self.clusterer.nearest(Z)) if self.noise == "nearest" else raw
        )
        ids = lookup(labels, self.renumber, -1)
        confidence = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
        return pd.DataFrame(
            {
                "persona_id": ids,
                "persona_name": lookup(ids, self.names, "Unassigned", dtype=object),
                "confidence": np.round(confidence, 4),
                "is_outlier": outlier | (ids < 0) | (confidence < self.outlier_confidence),
            },
            index=features.index,
        )
