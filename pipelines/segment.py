"""Stage: segment the customers — scale the modelled features and choose the model.

Which features shape the personas is `modelled_columns` (``model.families``,
``model.attributes`` and ``model.lens``); the scaling is `models.Preprocessor`; the model search is
`models.select_segmentation`. Personas smaller than ``privacy.min_persona_size`` are
merged into the nearest larger one, and the personas are numbered by size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from features import DataError, FeatureTable
from models import Preprocessor, Segmentation, order_by_size, select_segmentation
from pipelines.run import stage

__all__ = [
    "BEHAVIOUR_FAMILIES",
    "attribute_blocks",
    "attributes_lead",
    "VALUE_FAMILIES",
    "Segments",
    "merge_small",
    "modelled_columns",
    "segment",
    "shaping_families",
]

logger = logging.getLogger(__name__)

#: Settings of ``model:`` that `select_segmentation` takes under the same name.
_SELECTION = (
    "k_min", "k_max", "n_init", "tie_tolerance", "criterion", "max_valley", "min_valley_z",
    "min_distance", "min_share", "density_space", "sample_size", "stability_sample",
    "min_stability", "family_margin", "min_agreement", "outlier_score", "force", "metric",
)  # fmt: skip

#: Families that describe what a customer is worth: the value lens clusters on them.
VALUE_FAMILIES = ("revenue", "rfm", "clv")


@dataclass
class Segments:
    """What the segment stage hands on.

    Attributes
    ----------
    selection : models.Segmentation
        The chosen model, its candidates, stability and reason.
    X : ndarray of shape (n_customers, n_scaled)
        The scaled features the model saw.
    labels : ndarray of shape (n_customers,)
        Each customer's persona (numbered by size, from 0).
    confidence : ndarray of shape (n_customers,)
        How firmly each customer sits in their persona, in [0, 1].
    outlier : ndarray of bool of shape (n_customers,)
        Customers the model could not place firmly.
    preprocessor : models.Preprocessor
        The fitted scaling.
    columns : list of str
        The features that shape the personas, in the preprocessor's order.
    renumber : dict of int to int
        The model's cluster -> persona id.
    """

    selection: Segmentation
    X: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    outlier: np.ndarray
    preprocessor: Preprocessor
    columns: list[str]
    renumber: dict[int, int]


#: Families read from the logs of what customers do; without any, what they hold (products,
#: plan, contract: the customers' attributes) is what tells their needs apart.
BEHAVIOUR_FAMILIES = ("usage", "usage_mix", "engagement")


def shaping_families(table: FeatureTable, model: dict) -> list[str]:
    """Return the families that shape the personas: ``model.families``, and the attributes.

    ``model.attributes`` decides when the customers' attribute columns shape them:
    ``auto`` (the default) when no usage or engagement log gave a feature (a base of
    products held, plans and contracts, with bills); ``always``; ``never``. The feedback
    family never does (`pipelines.config` refuses it).
    """
    families, rule = list(model["families"]), model["attributes"]
    built = {f.family for f in table.features}
    if "attributes" in families or "attributes" not in built or rule == "never":
        return families
    if rule == "always" or not built & set(BEHAVIOUR_FAMILIES):
        logger.info(
            "The customers' attributes shape the personas (model.attributes: %s%s).",
            rule,
            "; no usage or engagement log" if rule == "auto" else "",
        )
        families.append("attributes")
    return families


def modelled_columns(table: FeatureTable, model: dict) -> list[str]:
    """Return the features that shape the personas, by ``model.families`` and ``model.lens``.

    ``both`` takes every feature of the shaping families (`shaping_families`); ``needs``
    only their needs features (what customers do, want and hold); ``value`` the value
    features of those families and of the value families (revenue, RFM, CLV) whenever
    they were built.
    """
    lens, families = model["lens"], shaping_families(table, model)
    if lens == "both":
        return table.families(families)
    if lens == "value":
        families = [*families, *VALUE_FAMILIES]
    return [f.name for f in table.features if f.family in families and f.lens == lens]


def attributes_lead(table: FeatureTable, columns: list[str]) -> list[str]:
    """Return the attribute features when they, and no usage or engagement log, shape.

    The personas are then combinations of what customers hold: their number is that of
    the latent classes of the attributes (`attribute_blocks`), and the attributes name them
    (`models.profiler.name_personas`). Empty when the rule does not apply.
    """
    family = table.meta.loc[columns, "family"]
    if set(family) & set(BEHAVIOUR_FAMILIES):
        return []
    return list(family.index[family == "attributes"])


def attribute_blocks(
    table: FeatureTable, columns: list[str], pre: Preprocessor
) -> list[list[int]] | None:
    """Columns of the scaled matrix that hold each attribute, when attributes lead.

    Returns the columns of each attribute of `attributes_lead` (its one-hot columns, or
    its one scaled column), or None when attributes do not lead.
    """
    sources = pre.sources()
    blocks = [[i for i, s in enumerate(sources) if s == a] for a in attributes_lead(table, columns)]
    return [b for b in blocks if b] or None


def merge_small(X: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Move the customers of personas smaller than ``min_size`` to the nearest larger one.

    A persona of a handful of customers can single people out; it is merged whole into
    the larger persona whose centre is nearest its own, never reported alone. Whole, so
    the served model sends a customer of that cluster where training did.
    """
    labels = np.asarray(labels).copy()
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    small, large = ids[counts < min_size], ids[counts >= min_size]
    if not len(small) or not len(large):
        return labels
    centres = np.array([X[labels == c].mean(axis=0) for c in large])
    for c in small:
        rows = labels == c
        d = ((centres - X[rows].mean(axis=0)) ** 2).sum(axis=1)
        labels[rows] = large[np.argmin(d)]
        logger.info("Persona of %d customers merged (privacy.min_persona_size).", rows.sum())
    return labels


def _preprocessor(table: FeatureTable, columns: list[str], cfg: dict) -> Preprocessor:
    """Return the scaling of the modelled features, each family weighted by its settings."""
    m = cfg["model"]
    meta = table.meta.loc[columns]
    lens_of = meta.groupby("family")["lens"].agg(lambda x: x.mode().iloc[0])
    weights = {
        family: m["family_weights"].get(family, 1.0) * m["lens_weights"].get(lens, 1.0)
        for family, lens in lens_of.items()
    }
    return Preprocessor(
        log_columns=list(meta.index[meta["transform"] == "log"]),
        categorical_columns=list(meta.index[meta["transform"] == "category"]),
        share_columns=list(meta.index[meta["family"] == "usage_mix"]),
        groups=meta["family"].to_dict(),
        balance_groups=m["balance_families"],
        group_weights=weights,
        max_categories=cfg["features"]["max_categories"],
        clip=m["clip"],
    )


def segment(table: FeatureTable, cfg: dict) -> Segments:
    """Scale the modelled families and choose the segmentation (see `select_segmentation`).

    Raises
    ------
    DataError
        When none of the modelled families could be built, or they do not vary.
    """
    m = cfg["model"]
    columns = modelled_columns(table, m)
    if not columns:
        raise DataError(
            f"None of the feature families the model uses ({', '.join(m['families'])}, lens "
            f"{m['lens']}) could be built from the tables present; add their tables or change "
            "model.families or model.lens."
        )
    with stage("Model"):
        pre = _preprocessor(table, columns, cfg)
        X = pre.fit_transform(table.frame[columns])
        try:
            seg = select_segmentation(
                X,
                **{key: m[key] for key in _SELECTION},
                density_shares=tuple(m["density_shares"]),
                umap_params=m["umap"],
                n_resamples=m["stability_resamples"],
                min_size=cfg["privacy"]["min_persona_size"],  # no persona privacy would merge
                blocks=attribute_blocks(table, columns, pre),
                random_state=cfg["seed"],
            )
        except ValueError as error:
            if "is not a candidate" in str(error):  # model.force names one the data ruled out
                raise DataError(f"{error} (model.force = {m['force']!r}).") from error
            if "same features" not in str(error):
                raise
            raise DataError(
                f"{error} The model sees the families {', '.join(m['families'])}; check that "
                "the tables feeding them vary between customers, or change model.families."
            ) from error
        logger.info("Chosen: %s. %s", seg.name, seg.reason)
    raw = seg.nearest if m["noise"] == "nearest" else seg.labels
    merged = merge_small(X, raw, cfg["privacy"]["min_persona_size"])
    labels = order_by_size(merged)
    first = np.sort(np.unique(raw, return_index=True)[1])  # each raw label's first customer
    renumber = {int(o): int(n) for o, n in zip(raw[first], labels[first], strict=True)}
    kept = set(merged.tolist())  # a merged cluster's stability is not its new persona's
    seg.stability["jaccard"] = {
        renumber[o]: v for o, v in seg.stability["jaccard"].items() if o in kept
    }
    return Segments(
        selection=seg,
        X=X,
        labels=labels,
        confidence=seg.confidence,
        outlier=(seg.labels < 0) | seg.outlier | (seg.confidence < m["outlier_confidence"]),
        preprocessor=pre,
        columns=columns,
        renumber=renumber,
    )
