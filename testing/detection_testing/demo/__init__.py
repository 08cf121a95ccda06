"""`make demo`: a local control plane, Prometheus, a closed-loop bot detector, model servers behind a
router and the operator, playing a scenario."""
