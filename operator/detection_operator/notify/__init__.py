"""Alert delivery: receivers, payloads, signed webhooks and Alertmanager."""
