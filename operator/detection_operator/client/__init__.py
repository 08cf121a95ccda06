"""What data-plane services import: readers of the documents the operator publishes, the per-request
model choice, the performance monitor, accuracy scoring and the external-contributor helper.

Nothing here imports kopf or the operator's runtime: a service installs the package and uses only this.
"""

from .accuracy import score
from .monitor import ExternalMetrics, PerformanceMonitor
from .readers import DocumentError, ProfileReader, RouteReader
from .routing import attempts, choose
from .watch import ConfigMapWatch

__all__ = [
    "ConfigMapWatch",
    "DocumentError",
    "ExternalMetrics",
    "PerformanceMonitor",
    "ProfileReader",
    "RouteReader",
    "attempts",
    "choose",
    "score",
]
