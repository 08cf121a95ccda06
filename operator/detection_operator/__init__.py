"""detection-operator: adaptive bot-detection profiles and ML model failover, driven by PromQL thresholds."""

__version__ = "0.1.0"
