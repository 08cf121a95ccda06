"""Prometheus access: the MetricsSource interface, query templating and result normalisation."""
