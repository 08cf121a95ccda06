"""Real local parts — control plane, Prometheus, metric exporter — for tests, benchmarks and the demo."""
