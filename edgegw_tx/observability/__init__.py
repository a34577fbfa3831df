"""Observability: Prometheus metrics, the access log and trace context (issue 17)."""
