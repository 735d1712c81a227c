"""The chosen segmentation: what a model says about every customer, and why it won.

`models.selection.select_segmentation` returns a `Segmentation`; its `summary` is what
``segmentation.json`` holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Segmentation"]


@dataclass
class Segmentation:
    """The chosen model and what it says about every customer.

    Attributes
    ----------
    name : str
        Candidate name, e.g. ``kmeans_k6`` or ``hdbscan_umap_0.05``.
    labels : ndarray of shape (n_customers,)
        Cluster of each customer; -1 where the model calls them noise.
    nearest : ndarray of shape (n_customers,)
        The nearest cluster of each customer, noise included.
    outlier : ndarray of bool of shape (n_customers,)
        Customers the model could not place firmly: noise, or a GLOSH outlier score
        above ``outlier_score`` (density models only).
    confidence : ndarray of shape (n_customers,)
        How firmly each customer sits in their cluster, in [0, 1].
    stability : dict
        ``jaccard`` per cluster and ``ari`` for the whole model.
    candidates : pandas.DataFrame
        Every candidate with its metrics, ``finalist`` and ``winner`` flags.
    reason : str
        How many personas and why the winner won, in a sentence or two.
    model, reducer : object
        The fitted clusterer and the reducer it works after.
    structure : str
        Whether customers form distinct groups: ``distinct``, ``weak`` or ``none``.
    structure_reason : str
        Why, in a sentence.
    """

    name: str
    labels: np.ndarray
    nearest: np.ndarray
    outlier: np.ndarray
    confidence: np.ndarray
    stability: dict
    candidates: pd.DataFrame
    reason: str
    model: object = None
    reducer: object = None
    structure: str = "distinct"
    structure_reason: str = ""

    @property
    def n_personas(self) -> int:
        """Number of personas the model placed customers in (noise is not one)."""
        return int(len(np.unique(self.labels[self.labels >= 0])))

    def summary(self) -> dict:
        """Return what ``segmentation.json`` holds: the choice, every candidate, the verdict.

        Returns
        -------
        dict
            ``chosen``, ``n_personas``, ``candidates`` (one dict per candidate: ``name``
            and its scores, NaN as None), ``reason``, ``structure`` and
            ``structure_reason``.
        """
        table = self.candidates.reset_index()
        candidates = [
            {k: _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")
        ]
        return {
            "chosen": self.name,
            "n_personas": self.n_personas,
            "candidates": candidates,
            "reason": self.reason,
            "structure": self.structure,
            "structure_reason": self.structure_reason,
        }


def _plain(value):
    """Return a JSON-ready scalar: numpy scalars as Python ones, NaN as None."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and not np.isfinite(value) else value
