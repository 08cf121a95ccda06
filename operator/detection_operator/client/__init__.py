"""What data-plane services import: readers and verifiers of the documents the operator publishes."""

from .readers import ProfileReader, RouteReader

__all__ = ["ProfileReader", "RouteReader"]
