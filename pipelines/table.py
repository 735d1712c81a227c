"""Stage: build the table the personas are found in, fitted once and applied unchanged.

The table of a run is its customer features (`features.build_features`), each buyer's
value (`pipelines.value`) and, at ``level: account``, the roll-up of people to accounts
(`pipelines.b2b`). Everything its definition learns from the data (the product features
and usage themes, the channels and attribute categories kept, the transforms, the RFM
quintile edges, the value model and its billing cycle) plus the settings that shape it
(the window, the column mapping, the level) is a `TableDefinition`. Train fits one; the
served model carries it, and score applies it to any batch, so a customer's features
never depend on who else is in the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import pandas as pd

from features import DataError, Feature, FeatureTable, LoadedData, build_features
from features.builders import FeatureSpec
from features.engine import Engine
from pipelines import b2b
from pipelines.run import stage
from pipelines.value import add_customer_value

__all__ = ["SETTINGS", "Table", "TableDefinition", "build_table"]

logger = logging.getLogger(__name__)

#: The settings that shape a table: a served model carries them, so score needs no config.
SETTINGS = ("seed", "columns", "tables", "privacy", "features", "clv", "level", "b2b")


@dataclass
class TableDefinition:
    """A table's definition, fitted on the training data (see the module docstring).

    Attributes
    ----------
    settings : dict
        The run's `SETTINGS` sections.
    features : features.builders.FeatureSpec
        The fitted feature families.
    value : dict or None
        The fitted value model (`pipelines.value.add_customer_value`), None without one.
    columns : list of Feature
        The final table's columns, in order (after value and roll-up).
    as_of : pandas.Timestamp
        The reference time of the training data.
    people : list of Feature or None
        At ``level: account``, the people's columns before the roll-up (None otherwise).
    """

    settings: dict
    features: FeatureSpec
    value: dict | None
    columns: list[Feature]
    as_of: pd.Timestamp
    people: list[Feature] | None = None

    def of_people(self) -> TableDefinition:
        """Return the definition of the people's table an account table is rolled up from.

        It builds one row per person (``level: customer``) with the fitted families and
        value model; `pipelines.cluster_accounts` rolls those rows up on the cluster.
        """
        if self.people is None:
            raise ValueError("This definition builds no people's table (level: customer).")
        settings = {**self.settings, "level": "customer"}
        return replace(self, settings=settings, columns=list(self.people), people=None)


@dataclass
class Table:
    """What the table stage hands on.

    Attributes
    ----------
    table : FeatureTable
        One row per customer (per account at ``level: account``).
    definition : TableDefinition
        The definition it was built with.
    accounts : pipelines.b2b.Accounts or None
        At ``level: account``: the people of each account.
    clv : dict or None
        The value model's parameters (``clv_model.json``).
    """

    table: FeatureTable
    definition: TableDefinition
    accounts: b2b.Accounts | None
    clv: dict | None


def build_table(
    loaded: LoadedData, engine: Engine, cfg: dict, definition: TableDefinition | None = None
) -> Table:
    """Build the table: fit its definition on ``loaded`` (train), or apply ``definition``.

    Parameters
    ----------
    loaded : LoadedData
        The checked tables.
    engine : Engine
        Where the feature SQL runs.
    cfg : dict
        The run configuration (with a ``definition``, its settings are the definition's).
    definition : TableDefinition, optional
        A fitted definition (from a served model) to apply unchanged.

    Returns
    -------
    Table
        The table, its definition, the accounts and the value model's parameters.
    """
    fitting = definition is None
    if fitting:
        _require_customers(loaded, cfg)
    with stage("Features"):
        table = build_features(
            loaded,
            {**cfg["features"], "seed": cfg["seed"]},
            engine=engine,
            spec=None if fitting else definition.features,
        )
    spec = table.spec
    with stage("Customer lifetime value"):
        clv, value = add_customer_value(
            loaded, table, cfg, engine=engine, fitted=None if fitting else definition.value
        )
    accounts, people = None, None
    if cfg["level"] == "account":
        people = list(table.features)
        with stage("Roll up to accounts"):
            accounts = b2b.to_accounts(loaded, table, cfg)
            if fitting:
                b2b.require_accounts(
                    accounts, cfg["model"]["k_min"], loaded.quality["tables"]["customers"]["file"]
                )
            table = accounts.table
    table.frame = _as_floats(table.frame, table.features)
    if fitting:
        definition = TableDefinition(
            settings={key: cfg[key] for key in SETTINGS},
            features=spec,
            value=value,
            columns=list(table.features),
            as_of=loaded.as_of,
            people=people,
        )
    else:
        table = _conform(table, definition.columns)
        if accounts is not None:
            accounts.table = table
    return Table(table=table, definition=definition, accounts=accounts, clv=clv)


def _as_floats(frame: pd.DataFrame, features: list[Feature]) -> pd.DataFrame:
    """Return ``frame`` with every numeric feature as float64, whatever the batch.

    A count is whole-numbered in SQL but becomes a float once one customer lacks it; the
    served model's signature must not depend on whether a batch has such a customer.
    """
    numeric = [f.name for f in features if f.transform != "category"]
    return frame.astype(dict.fromkeys(numeric, "float64"))


def _conform(table: FeatureTable, columns: list[Feature]) -> FeatureTable:
    """Give a scored table exactly the fitted columns (one the batch lacks is empty)."""
    frame = table.frame.reindex(columns=[f.name for f in columns])
    for f in columns:
        if f.fill == "zero" and f.name not in table.frame:
            frame[f.name] = 0.0  # e.g. an influence level no person of the batch holds
    return FeatureTable(frame=frame, features=list(columns), as_of=table.as_of, spec=table.spec)


def _require_customers(loaded: LoadedData, cfg: dict) -> None:
    """Stop when there are too few customers to find ``model.k_min`` personas."""
    n, k_min = loaded.n_customers, cfg["model"]["k_min"]
    if n < k_min + 1:
        raise DataError(
            f"{loaded.quality['tables']['customers']['file']}: Only {n} "
            f"customer{'s' if n != 1 else ''}: at least {k_min + 1} are needed to find "
            f"{k_min} or more personas (model.k_min = {k_min})."
        )
