"""Stage: profile the personas — what sets each apart, its NPS, drivers, themes and value.

The persona table is made here, whole: `models.profile_personas` (traits, names, NPS
with its interval, focus and at-risk), the key drivers of NPS (`models.drivers`), the
themes of comments and tickets (`models.themes`), each persona's stability and revenue
at risk and, for personas of accounts, the NPS of their people by influence
(`pipelines.b2b`). Only re-identification (`pipelines.compare`) renumbers it later.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features import FeatureTable, LoadedData
from features.engine import Engine, slug
from features.sql import sql_name
from models import profile_personas
from models.drivers import key_drivers
from models.themes import persona_themes
from pipelines import b2b
from pipelines.run import stage
from pipelines.segment import Segments, attributes_lead
from pipelines.value import revenue_at_risk

__all__ = ["Profile", "business_model", "profile"]


@dataclass
class Profile:
    """What the profile stage hands on.

    Attributes
    ----------
    personas : list of dict
        The persona table (``personas.json``).
    drivers : dict
        The key drivers of NPS (`models.drivers.key_drivers`).
    """

    personas: list[dict]
    drivers: dict


#: Customer attributes that say the customers are companies (``business: auto``).
_COMPANY_WORDS = {
    "account_id",
    "company",
    "company_size",
    "employees",
    "industry",
    "sector",
    "seats",
}


def business_model(loaded: LoadedData, cfg: dict) -> str:
    """Return ``b2b`` or ``b2c``: the config's ``business``, or inferred from the data."""
    if cfg["business"] != "auto":
        return cfg["business"]
    columns = {slug(c) for c in loaded.columns.get("customers", [])}
    return "b2b" if cfg["level"] == "account" or columns & _COMPANY_WORDS else "b2c"


def _text(loaded: LoadedData, table: str, column: str) -> pd.DataFrame | None:
    """Return customer_id and one text column of a loaded table (None when absent).

    The texts come as pandas' ``str`` columns, Arrow arrays (`features.engine.Engine.query`):
    no Python string is made per comment or id.
    """
    if column not in loaded.columns.get(table, []):
        return None
    return Engine(loaded).query(
        f"SELECT customer_id, {sql_name(column)} FROM {table} WHERE {sql_name(column)} IS NOT NULL"
    )


def profile(
    loaded: LoadedData,
    table: FeatureTable,
    segments: Segments,
    accounts: b2b.Accounts | None,
    cfg: dict,
) -> Profile:
    """Profile every persona of ``segments`` (see the module docstring)."""
    labels = segments.labels
    with stage("Drivers and themes"):
        drivers = key_drivers(
            table.frame,
            labels,
            table.meta,
            kind=cfg["drivers"]["kind"],
            n_splits=cfg["drivers"]["n_splits"],
            n_repeats=cfg["drivers"]["n_repeats"],
            sample_size=cfg["drivers"]["sample_size"],
            min_respondents=cfg["profile"]["min_respondents"],
            random_state=cfg["seed"],
        )
        units = pd.Series(labels, index=table.frame.index.astype(str))
        themes = persona_themes(
            units if accounts is None else b2b.person_labels(accounts, units),
            comments=_text(loaded, "feedback", "comment"),
            topics=_text(loaded, "support_tickets", "topic"),
            **cfg["themes"],
            random_state=cfg["seed"],
        )
    with stage("Profile"):
        meta = table.meta
        personas = profile_personas(
            table.frame,
            labels,
            meta,
            trait_features=[f for f in meta.index if meta.loc[f, "family"] != "feedback"],
            value_column=cfg["naming"]["value_feature"],
            top_traits=cfg["profile"]["top_traits"],
            min_trait_effect=cfg["profile"]["min_trait_effect"],
            ci_level=cfg["profile"]["ci_level"],
            naming=cfg["naming"],
            min_respondents=cfg["profile"]["min_respondents"],
            alpha=cfg["profile"]["alpha"],
            top_drivers=cfg["profile"]["top_drivers"],
            overrides=cfg["overrides"],
            focus_rule=cfg["focus"],
            actions=cfg["actions"],
            drivers=drivers,
            themes=themes,
            clv_column="clv_value",
            p_alive_column="clv_p_alive",
            business=business_model(loaded, cfg),
            lead=tuple(attributes_lead(table, segments.columns)),
        )
        at_risk = revenue_at_risk(table.frame, labels, "revenue_12m")
        jaccard = segments.selection.stability["jaccard"]
        for p in personas:
            if at_risk:
                p["revenue_at_risk"] = at_risk.get(p["persona_id"], 0.0)
            stability = jaccard.get(p["persona_id"])
            p["stability"] = None if stability is None else round(stability, 3)
            p["unstable"] = stability is not None and stability < cfg["model"]["unstable_below"]
        if accounts is not None:
            b2b.add_influence(personas, accounts, labels, cfg)
    return Profile(personas=personas, drivers=drivers)
