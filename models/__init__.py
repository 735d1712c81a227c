"""Preprocessing, clustering and the persona profiler.

Nothing here imports `features` or `pipelines`; what the profiler needs to know about a
feature arrives as a metadata table.
"""

from models.clustering import AutoKMeans, order_by_size
from models.clv import BetaGeoModel, GammaGammaModel, customer_value
from models.density import DensityClusterer
from models.nps import nps_summary
from models.preprocessing import Preprocessor
from models.profiler import profile_personas
from models.reducers import IdentityReducer, PCAReducer, UMAPReducer
from models.selection import Segmentation, select_segmentation
from models.stability import clusterboot

__all__ = [
    "AutoKMeans",
    "BetaGeoModel",
    "GammaGammaModel",
    "customer_value",
    "DensityClusterer",
    "IdentityReducer",
    "PCAReducer",
    "Preprocessor",
    "Segmentation",
    "UMAPReducer",
    "clusterboot",
    "nps_summary",
    "order_by_size",
    "profile_personas",
    "select_segmentation",
]
