"""The running process: kopf wiring, scheduling, leader election, HTTP endpoints, settings, telemetry."""
