"""Preprocessing, clustering and the persona profiler.

Nothing here imports `features` or `pipelines`; what the profiler needs to know about a
feature arrives as a metadata table.
"""

from models.clustering import AutoKMeans, order_by_size
from models.preprocessing import Preprocessor
from models.profiler import nps_summary, profile_personas

__all__ = ["AutoKMeans", "Preprocessor", "nps_summary", "order_by_size", "profile_personas"]
