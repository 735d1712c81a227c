"""Load customer tables, check them against the contract and build per-customer features.

Nothing here imports `models` or `pipelines`: the feature table and its metadata are the
hand-over.
"""

from features.builders import build_features
from features.contract import TABLES, DataError
from features.loading import LoadedData, load_data
from features.table import Feature, FeatureTable

__all__ = [
    "TABLES",
    "DataError",
    "Feature",
    "FeatureTable",
    "LoadedData",
    "build_features",
    "load_data",
]
