"""`make demo`: a local control plane, Prometheus, a metric simulator and the operator, playing a scenario."""
