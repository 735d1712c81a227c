"""The feature table: per-customer values and what each feature means.

What the profiler needs to know about a feature (its description, unit, lens and
transform) travels with the table as data, and into the Parquet file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Feature", "FeatureTable"]


@dataclass(frozen=True)
class Feature:
    """What a feature is, for the models and for the people reading the personas.

    Parameters
    ----------
    name : str
        Column name in the feature table.
    family : str
        Feature family (usage, usage_mix, engagement, revenue, feedback, support, attributes).
    lens : {"value", "needs"}
        Which lens it speaks to: what the customer is worth, or what they need.
    description : str
        One line, in plain words.
    unit : str
        Unit of the values (``days``, ``events``, ``share``, ``money``...).
    transform : {"log", "none", "category"}
        ``log`` for heavy-tailed counts and money, ``category`` for categoricals.
    label : str
        Short human label used in persona names (``reports``, ``discount``).
    fill : {"zero", "span", "nan"}
        The value of a customer with no events: zero (counts, shares), the span of the
        data (recency: "longer ago than we can see"), or NaN (undefined, e.g. the average
        order of a customer who never bought; imputed later, with a missing indicator).
    """

    name: str
    family: str
    lens: str
    description: str
    unit: str
    transform: str = "none"
    label: str = ""
    fill: str = "zero"


@dataclass
class FeatureTable:
    """The customer x feature table and what each feature means.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per customer (index ``customer_id``, sorted),
        one column per feature.
    features : list of Feature
        Metadata for each column of ``frame``, in the same order.
    as_of : pandas.Timestamp
        The reference date the features were computed at.
    spec : features.builders.FeatureSpec or None
        The fitted definition the table was built with (None for derived tables).
    """

    frame: pd.DataFrame
    features: list[Feature]
    as_of: pd.Timestamp
    spec: object = None

    @property
    def meta(self) -> pd.DataFrame:
        """The feature metadata as a tidy table, indexed by feature name."""
        return pd.DataFrame([asdict(f) for f in self.features]).set_index("name")

    def families(self, names: list[str]) -> list[str]:
        """Names of the features that belong to the given families."""
        return [f.name for f in self.features if f.family in names]

    def to_parquet(self, path) -> None:
        """Write the table with its metadata in the Parquet schema (key ``personas``)."""
        table = pa.Table.from_pandas(self.frame.reset_index(), preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), **self.parquet_metadata()}
        )
        pq.write_table(table, path)

    def parquet_metadata(self) -> dict[bytes, bytes]:
        """Return the Parquet schema metadata `to_parquet` writes (key ``personas``)."""
        meta = {
            "as_of": str(self.as_of),
            "features": [asdict(f) for f in self.features],
        }
        return {b"personas": json.dumps(meta).encode()}
